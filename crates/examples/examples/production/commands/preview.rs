//! `production preview`: what `up` would change (text, Markdown or JSON), or how two environments differ (`--against`).

use crate::*;

/// The plan against the recorded state (or, with `refresh`, against what is live).
pub(crate) async fn run(
    session: &mut Session,
    detailed_exitcode: bool,
    refresh: bool,
    format: PreviewFormat,
) -> Result<u8, Failure> {
    let (checked, reports) = if refresh {
        let reports = session.platform.preview_refreshed().await?;
        (session.platform.checked(&reports), Some(reports))
    } else {
        (session.platform.preview_checked().await?, None)
    };
    let plans = &checked.plans;
    let changes = plans.iter().any(Plan::has_changes);
    let calls = session.platform.engine().calls();
    let mut doc = plans_json(plans, calls.read, calls.mutating, session.started.elapsed());
    if let Some(reports) = &reports {
        doc["drift"] = drift_json(reports);
    }
    doc["plan"] = serde_json::to_value(&checked.document).unwrap_or_default();
    doc["violations"] = serde_json::to_value(&checked.violations).unwrap_or_default();
    session.out.emit("preview", doc, || {
        if format == PreviewFormat::Markdown {
            print!("{}", examples::review::markdown(&checked));
            return;
        }
        if let Some(reports) = &reports {
            print_drift(reports);
        }
        print_plans(plans);
        print_violations(&checked.violations);
    });
    if policy::mandatory(&checked.violations).next().is_some() {
        return Ok(POLICY_EXIT);
    }
    Ok(if detailed_exitcode && changes { 2 } else { 0 })
}

/// How this environment differs from environment `other` of the same file, names aside.
pub(crate) async fn against(
    session: &mut Session,
    detailed_exitcode: bool,
    other: String,
) -> Result<u8, Failure> {
    // The other environment, from the same file (or the seed's values).
    let (path, config) = match &session.written {
        Some((path, config)) => (path.clone(), config.clone()),
        None => (PathBuf::from("--env"), PlatformConfig::default()),
    };
    let mut theirs = Platform::new((session.engine)());
    config
        .environment(&path, &other)
        .and_then(|c| c.apply(&path, &mut theirs))
        .map_err(|e| failure(2, e.to_string()))?;
    let mine = session.platform.declared().await?;
    let them = theirs.declared().await?;
    let plans = examples::promote::against(&mine, &session.cli.env, &them, &other);
    let differ = plans.iter().any(Plan::has_changes);
    let calls = session.platform.engine().calls();
    let mut doc = plans_json(
        &plans,
        calls.read,
        calls.mutating,
        session.started.elapsed(),
    );
    doc["env"] = json!(session.cli.env);
    doc["against"] = json!(other);
    session.out.emit("preview", doc, || {
        println!("{} against {other} (names aside):", session.cli.env);
        print_plans(&plans);
    });
    Ok(if detailed_exitcode && differ { 2 } else { 0 })
}
