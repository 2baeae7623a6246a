//! `production up [--refresh]`: the plan, its policy check, a confirmation on AWS, the apply with progress.

use crate::*;

/// Applies the platform (refreshed first with `refresh`).
pub(crate) async fn run(session: &mut Session, refresh: bool) -> Result<u8, Failure> {
    if refresh {
        // Read live and record it; the plan below is then against what exists.
        let reports = session.platform.refresh().await?;
        if !session.cli.json {
            print_drift(&reports);
        }
    }
    let checked = session.platform.preview_checked().await?;
    let plans = checked.plans;
    if !session.cli.json {
        print_plans(&plans);
        print_violations(&checked.violations);
    }
    refuse_mandatory(&checked.violations)?;
    if session.target == Target::Aws && !session.cli.yes && plans.iter().any(Plan::has_changes) {
        confirm("Apply these changes to AWS")?;
    }
    session.progress.start(
        plans
            .iter()
            .map(|p| {
                let c = p.counts();
                c.create + c.update + c.replace + c.delete
            })
            .sum(),
    );
    let result = session.platform.up().await;
    session.progress.finish();
    let summary = result?;
    let totals = sum(summary.stacks.iter().map(|s| s.changes));
    session.out.emit(
        "up",
        json!({
            "stacks": summary.stacks,
            "totals": totals,
            "api_calls": {"read": summary.calls.read, "mutating": summary.calls.mutating},
            "wall_ms": session.started.elapsed().as_millis() as u64,
            "outputs": outputs_json(&summary.outputs),
            "violations": summary.violations,
        }),
        || {
            print_summary(
                &totals,
                summary.calls.read,
                summary.calls.mutating,
                session.started.elapsed(),
            );
            print_outputs(&summary.outputs);
        },
    );
    Ok(0)
}
