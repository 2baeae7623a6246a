//! A plan a reviewer can read in a pull request: `production preview --format markdown`.

use std::fmt::Write;

use platform_core::policy::{Enforcement, PlannedAction};
use serde_json::Value;

use crate::Preview;

/// `preview` as Markdown: the violations first (mandatory, then advisory), then per stack a table
/// of the resources that change and the fields that change.
pub fn markdown(preview: &Preview) -> String {
    let mut out = String::from("## Platform plan\n\n");
    let counts = platform_core::engine::total_counts(&preview.plans);
    let _ = writeln!(
        out,
        "**{} to create, {} to update, {} to replace, {} to delete**, {} unchanged.\n",
        counts.create, counts.update, counts.replace, counts.delete, counts.same
    );
    if preview.violations.is_empty() {
        out.push_str("### Policies\n\nNo violation.\n\n");
    } else {
        let mandatory = preview
            .violations
            .iter()
            .filter(|v| v.enforcement == Enforcement::Mandatory)
            .count();
        let _ = writeln!(
            out,
            "### Policies\n\n{mandatory} mandatory (the plan will not be applied), {} advisory.\n",
            preview.violations.len() - mandatory
        );
        out.push_str("| | policy | resource | problem | fix |\n|---|---|---|---|---|\n");
        for v in &preview.violations {
            let mark = match v.enforcement {
                Enforcement::Mandatory => "⛔ mandatory",
                _ => "⚠️ advisory",
            };
            let resource = if v.resource.is_empty() {
                String::new()
            } else {
                format!("`{}/{}`", v.stack, v.resource)
            };
            let _ = writeln!(
                out,
                "| {mark} | `{}` | {resource} | {} | {} |",
                v.policy,
                cell(&v.message),
                cell(&v.fix)
            );
        }
        out.push('\n');
    }
    for plan in &preview.plans {
        let c = plan.counts();
        let _ = writeln!(
            out,
            "### {}\n\n{} to create, {} to update, {} to replace, {} to delete, {} unchanged.\n",
            plan.stack, c.create, c.update, c.replace, c.delete, c.same
        );
        let changing: Vec<_> = preview
            .document
            .resources
            .iter()
            .filter(|r| r.stack == plan.stack && r.action != PlannedAction::Same)
            .collect();
        if changing.is_empty() {
            continue;
        }
        out.push_str("| action | resource | kind | changes |\n|---|---|---|---|\n");
        for r in changing {
            let changes: Vec<String> = match r.action {
                PlannedAction::Create => vec![format!("{} inputs", r.changes.len())],
                _ => r
                    .changes
                    .iter()
                    .map(|c| {
                        let after = if c.after_unknown {
                            "(known after apply)".to_owned()
                        } else {
                            short(&c.after)
                        };
                        format!("`{}`: {} → {}", c.field, short(&c.before), after)
                    })
                    .collect(),
            };
            let _ = writeln!(
                out,
                "| {} | `{}` | `{}` | {} |",
                r.action,
                r.name,
                r.kind,
                cell(&changes.join("<br>"))
            );
        }
        out.push('\n');
    }
    out
}

/// A value in a table cell: JSON, cut at 60 characters.
fn short(v: &Value) -> String {
    let text = v.to_string();
    if text.chars().count() > 60 {
        format!("{}…", text.chars().take(60).collect::<String>())
    } else {
        text
    }
}

/// Text safe in a Markdown table cell.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}
