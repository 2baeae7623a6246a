//! `production refresh`: reads what is live, records it, shows the drift and what is live against the policies.

use crate::*;

/// Refreshes every stack.
pub(crate) async fn run(session: &mut Session, detailed_exitcode: bool) -> Result<u8, Failure> {
    let reports = session.platform.refresh().await?;
    let plans: Vec<Plan> = reports.iter().map(|r| r.plan.clone()).collect();
    // Drift since the last record, or live resources that differ from the declared
    // session.platform (an earlier refresh may have recorded them): either fails the gate.
    let drifted = reports
        .iter()
        .any(|r| !r.drift.is_empty() || r.plan.has_changes());
    // What is live, checked as a plan would be: a port opened by hand is a violation too.
    let violations = session.platform.live_violations(&reports);
    let calls = session.platform.engine().calls();
    let mut doc = plans_json(
        &plans,
        calls.read,
        calls.mutating,
        session.started.elapsed(),
    );
    doc["drift"] = drift_json(&reports);
    doc["violations"] = serde_json::to_value(&violations).unwrap_or_default();
    session.out.emit("refresh", doc, || {
        print_drift(&reports);
        print_plans(&plans);
        print_violations(&violations);
    });
    Ok(
        if detailed_exitcode && policy::mandatory(&violations).next().is_some() {
            POLICY_EXIT
        } else if detailed_exitcode && drifted {
            2
        } else {
            0
        },
    )
}
