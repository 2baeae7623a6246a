//! `production outputs`: what the platform exports, as recorded.

use crate::*;

/// Shows the outputs.
pub(crate) async fn run(session: &mut Session) -> Result<u8, Failure> {
    let outputs = session.platform.outputs().await?;
    session.out.emit(
        "outputs",
        json!({"outputs": outputs_json(&outputs)}),
        || print_outputs(&outputs),
    );
    Ok(0)
}
