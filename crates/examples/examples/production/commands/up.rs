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
    // The plans are shown, checked and confirmed under the locks the run holds: what is
    // confirmed is what is applied, planned once.
    let refusal: Arc<Mutex<Option<Failure>>> = Arc::default();
    let approver = {
        let (json, progress, refusal) =
            (session.cli.json, session.progress.clone(), refusal.clone());
        let ask = session.target == Target::Aws && !session.cli.yes;
        Approver::new(move |approval: Approval| {
            let (progress, refusal) = (progress.clone(), refusal.clone());
            async move {
                if !json {
                    print_plans(&approval.plans);
                    print_violations(&approval.violations);
                }
                let mut verdict = refuse_mandatory(&approval.violations);
                if verdict.is_ok() && ask && approval.has_changes() {
                    // The prompt blocks on the terminal: off the async threads.
                    verdict = tokio::task::spawn_blocking(|| confirm("Apply these changes to AWS"))
                        .await
                        .unwrap_or_else(|e| Err(failure(1, format!("the prompt failed: {e}"))));
                }
                if let Err(f) = verdict {
                    *refusal.lock().unwrap_or_else(|e| e.into_inner()) = Some(f);
                    return false;
                }
                progress.start(total_counts(&approval.plans).changes());
                true
            }
        })
    };
    let result = session
        .platform
        .up_with(UpOptions::default().with_approval(approver))
        .await;
    session.progress.finish();
    if let Some(refused) = refusal.lock().unwrap_or_else(|e| e.into_inner()).take() {
        return Err(refused);
    }
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
