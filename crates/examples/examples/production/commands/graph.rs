//! `production graph`: the deployed resources and their dependencies, as Mermaid or DOT.

use crate::*;

/// Draws the graph.
pub(crate) async fn run(session: &mut Session, format: GraphFormat) -> Result<u8, Failure> {
    let mut stacks = Vec::new();
    for name in session.platform.stack_names() {
        if let Some(s) = session
            .platform
            .engine()
            .store()
            .read(name)
            .await
            .map_err(Error::from)?
        {
            stacks.push(s);
        }
    }
    if stacks.is_empty() {
        return Err(failure(1, "nothing is deployed: run `production up` first"));
    }
    let format = match format {
        GraphFormat::Mermaid => Format::Mermaid,
        GraphFormat::Dot => Format::Dot,
    };
    let text = graph::render(&stacks, format);
    session
        .out
        .emit("graph", json!({"graph": text}), || print!("{text}"));
    Ok(0)
}
