//! `production destroy`: deletes every resource of the platform, dependents first.

use crate::*;

/// Destroys the platform.
pub(crate) async fn run(session: &mut Session) -> Result<u8, Failure> {
    if session.target == Target::Aws && !session.cli.yes {
        confirm("Delete every resource of the session.platform from AWS")?;
    }
    session.progress.start(0);
    let result = session.platform.destroy().await;
    session.progress.finish();
    let deleted = result?;
    let calls = session.platform.engine().calls();
    session.out.emit(
        "destroy",
        json!({
            "stacks": deleted.iter().map(|(name, n)| json!({"name": name, "deleted": n})).collect::<Vec<_>>(),
            "api_calls": {"read": calls.read, "mutating": calls.mutating},
            "wall_ms": session.started.elapsed().as_millis() as u64,
        }),
        || {
            for (name, n) in &deleted {
                println!("{name}: {n} resources deleted");
            }
            println!(
                "{} AWS calls ({} mutating) in {:.1}s",
                calls.read + calls.mutating,
                calls.mutating,
                session.started.elapsed().as_secs_f64()
            );
        },
    );
    Ok(0)
}
