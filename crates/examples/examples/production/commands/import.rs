//! `production import STACK/RESOURCE ID`: adopts an existing AWS resource into the state.

use crate::*;

/// Imports `id` as `address`.
pub(crate) async fn run(session: &mut Session, address: String, id: String) -> Result<u8, Failure> {
    if session.target == Target::Aws && !session.cli.yes {
        confirm(&format!(
            "Import {id} as {address} and tag it as the session.platform's"
        ))?;
    }
    let report = session.platform.import(&address, &id).await?;
    session.out.emit(
        "import",
        json!({
            "stack": report.stack,
            "resource": report.resource,
            "kind": report.kind,
            "outputs": report.outputs,
        }),
        || {
            println!(
                "imported {id} as {}/{} ({}); `preview` shows what `up` will change",
                report.stack, report.resource, report.kind
            );
        },
    );
    Ok(0)
}
