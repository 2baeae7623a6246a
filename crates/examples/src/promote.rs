//! Promotion: how one environment's declared platform differs from another's
//! (`production --env staging preview --against production`), names aside.

use std::collections::BTreeMap;

use platform_core::policy::{PlanDocument, PlannedResource};
use platform_core::{Plan, plan::Action, plan::FieldChange, plan::Planned, plan::Step};
use serde_json::Value;

use crate::config::DEFAULT_ENV;

/// Per stack (in `this`'s order, named as in the default environment), what changes from `other`'s
/// declaration (environment `other_env`) to `this`'s (environment `this_env`): a resource only
/// `this` declares is a create, one only `other` declares a delete, one whose inputs differ an
/// update with each field from `other`'s value to `this`'s. Names aside: each environment's prefix
/// (`staging-`) is taken out of every string before comparing.
pub fn against(
    this: &PlanDocument,
    this_env: &str,
    other: &PlanDocument,
    other_env: &str,
) -> Vec<Plan> {
    let index = |doc: &PlanDocument, env: &str| -> BTreeMap<(String, String), PlannedResource> {
        doc.resources
            .iter()
            .filter(|r| r.action.is_kept())
            .map(|r| {
                let mut r = r.clone();
                r.stack = unprefixed(env, &r.stack);
                for v in r.inputs.values_mut() {
                    *v = names_aside(env, v);
                }
                ((r.stack.clone(), r.name.clone()), r)
            })
            .collect()
    };
    let mine = index(this, this_env);
    let theirs = index(other, other_env);
    let mut stacks: Vec<String> = Vec::new();
    for (stack, _) in mine.keys().chain(theirs.keys()) {
        if !stacks.contains(stack) {
            stacks.push(stack.clone());
        }
    }
    let order = |s: &String| {
        this.resources
            .iter()
            .position(|r| &unprefixed(this_env, &r.stack) == s)
            .unwrap_or(usize::MAX)
    };
    stacks.sort_by_key(order);
    stacks
        .into_iter()
        .map(|stack| {
            let mut steps = Vec::new();
            for ((s, name), r) in &mine {
                if s != &stack {
                    continue;
                }
                let action = match theirs.get(&(s.clone(), name.clone())) {
                    None => Action::Create {
                        inputs: r.inputs.iter().map(|(f, v)| change(f, None, v)).collect(),
                    },
                    Some(o) => {
                        let mut changes = Vec::new();
                        for (f, v) in &r.inputs {
                            let before = o.inputs.get(f).unwrap_or(&Value::Null);
                            if before != v {
                                changes.push(change(f, Some(before), v));
                            }
                        }
                        for (f, before) in &o.inputs {
                            if !r.inputs.contains_key(f) {
                                changes.push(change(f, Some(before), &Value::Null));
                            }
                        }
                        if changes.is_empty() {
                            Action::Same
                        } else {
                            Action::Update { changes }
                        }
                    }
                };
                steps.push(Step {
                    resource: name.clone(),
                    kind: r.kind.clone(),
                    action,
                });
            }
            for ((s, name), r) in &theirs {
                if s == &stack && !mine.contains_key(&(s.clone(), name.clone())) {
                    steps.push(Step {
                        resource: name.clone(),
                        kind: r.kind.clone(),
                        action: Action::Delete,
                    });
                }
            }
            Plan { stack, steps }
        })
        .collect()
}

fn change(field: &str, before: Option<&Value>, after: &Value) -> FieldChange {
    FieldChange {
        field: field.to_owned(),
        old: before.cloned(),
        new: Planned::Known(after.clone()),
    }
}

/// `name` without environment `env`'s prefix.
fn unprefixed(env: &str, name: &str) -> String {
    if env == DEFAULT_ENV {
        return name.to_owned();
    }
    name.replace(&format!("{env}-"), "")
}

/// `v` with environment `env`'s prefix taken out of every string.
fn names_aside(env: &str, v: &Value) -> Value {
    match v {
        Value::String(s) => Value::String(unprefixed(env, s)),
        Value::Array(items) => Value::Array(items.iter().map(|i| names_aside(env, i)).collect()),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, i)| (k.clone(), names_aside(env, i)))
                .collect(),
        ),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn document(text: &str, env: &str) -> PlanDocument {
        crate::config::offline(text, env).declared().await.unwrap()
    }

    #[test]
    fn environments_differ_only_where_their_keys_do_names_aside() {
        let file = "[env.staging.cluster]\ndesired_count = 2\nlog_retention_days = 7\n";
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let staging = document(file, "staging").await;
            let production = document(file, "production").await;
            let plans = against(&staging, "staging", &production, "production");
            let stacks: Vec<&str> = plans.iter().map(|p| p.stack.as_str()).collect();
            assert_eq!(stacks, ["iam", "network", "cluster"]);
            let changed: Vec<(String, String, Vec<String>)> = plans
                .iter()
                .flat_map(|p| {
                    p.steps.iter().filter_map(move |s| match &s.action {
                        Action::Update { changes } => Some((
                            p.stack.clone(),
                            s.resource.clone(),
                            changes
                                .iter()
                                .map(|c| {
                                    format!(
                                        "{}: {} -> {}",
                                        c.field,
                                        c.old.clone().unwrap_or_default(),
                                        c.new
                                    )
                                })
                                .collect(),
                        )),
                        Action::Same => None,
                        other => panic!("{other:?}"),
                    })
                })
                .collect();
            assert_eq!(
                changed,
                [
                    (
                        "cluster".into(),
                        "log-group".into(),
                        vec!["retention_days: 30 -> 7".into()]
                    ),
                    (
                        "cluster".into(),
                        "service".into(),
                        vec!["desired_count: 1 -> 2".into()]
                    ),
                ]
            );
            // The same environment against itself: nothing.
            let same = against(&production, "production", &production, "production");
            assert!(same.iter().all(|p| !p.has_changes()));
            // A resource only one side declares: a create one way, a delete the other.
            let two = document(
                "[network]\npublic_subnets = [\"10.0.1.0/24\", \"10.0.2.0/24\"]\n",
                "staging",
            )
            .await;
            let plans = against(&two, "staging", &production, "production");
            let net = &plans[1];
            assert_eq!(net.counts().create, 2, "{net}");
            let back = against(&production, "production", &two, "staging");
            assert_eq!(back[1].counts().delete, 2);
        });
    }
}
