//! `production envs`: the environments the state store holds, their stacks and when each was last applied.

use crate::*;

/// Lists the environments.
pub(crate) async fn run(session: &mut Session) -> Result<u8, Failure> {
    let mut envs: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for name in session.store.list().await.map_err(Error::from)? {
        let Some(state) = session.store.read(&name).await.map_err(Error::from)? else {
            continue;
        };
        let env = state.environment.clone().unwrap_or_else(|| {
            ["iam", "network", "cluster"]
                .iter()
                .find_map(|s| name.strip_suffix(&format!("-{s}")))
                .unwrap_or(DEFAULT_ENV)
                .to_owned()
        });
        let applied = state.applied_at.map(|t| {
            humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_secs(t))
                .to_string()
        });
        envs.entry(env).or_default().push(json!({
            "stack": name,
            "serial": state.serial,
            "applied_at": applied,
            "resources": state.resources.len(),
        }));
    }
    session.out.emit(
        "envs",
        json!({"environments": envs.iter().map(|(e, s)| json!({"name": e, "stacks": s})).collect::<Vec<_>>()}),
        || {
            if envs.is_empty() {
                println!("no environment: the state session.store holds no stack");
            }
            for (env, stacks) in &envs {
                println!("{env}");
                for s in stacks {
                    println!(
                        "  {:<24} serial {:<4} {} resources, last applied {}",
                        s["stack"].as_str().unwrap_or_default(),
                        s["serial"],
                        s["resources"],
                        s["applied_at"].as_str().unwrap_or("never")
                    );
                }
            }
        },
    );
    Ok(0)
}
