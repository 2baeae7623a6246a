//! What a command prints: text for a person, or one JSON object per command (`--json`).

use crate::*;

/// The output mode: one JSON object on stdout, or text.
pub(crate) struct Output {
    pub(crate) json: bool,
    pub(crate) target: Target,
}

impl Output {
    pub(crate) fn emit(&self, command: &str, fields: Value, human: impl FnOnce()) {
        if self.json {
            let mut doc = json!({"command": command, "target": self.target.name()});
            if let (Some(d), Value::Object(extra)) = (doc.as_object_mut(), fields) {
                d.extend(extra);
            }
            println!("{doc}");
        } else {
            human();
        }
    }
}

/// Per stack, what drifted: resources gone, and each changed input with its recorded and live value.
pub(crate) fn print_drift(reports: &[RefreshReport]) {
    let drifted: Vec<_> = reports
        .iter()
        .flat_map(|r| r.drift.iter().map(move |d| (&r.plan.stack, d)))
        .collect();
    if drifted.is_empty() {
        println!("no drift: every resource is as recorded");
        if reports.iter().any(|r| r.plan.has_changes()) {
            println!("but the live resources differ from the declared platform: see the plan");
        }
        return;
    }
    println!("drift:");
    for (stack, d) in drifted {
        if d.gone {
            println!(
                "  {stack}/{} ({}): deleted outside the platform",
                d.resource, d.kind
            );
            continue;
        }
        for f in &d.fields {
            println!(
                "  {stack}/{} ({}): {}: recorded {}, live {}",
                d.resource, d.kind, f.field, f.recorded, f.live
            );
        }
    }
}

pub(crate) fn drift_json(reports: &[RefreshReport]) -> Value {
    Value::Array(
        reports
            .iter()
            .flat_map(|r| {
                r.drift.iter().map(move |d| {
                    json!({
                        "stack": r.plan.stack,
                        "resource": d.resource,
                        "kind": d.kind,
                        "gone": d.gone,
                        "fields": d.fields,
                    })
                })
            })
            .collect(),
    )
}

pub(crate) fn plans_json(plans: &[Plan], read: u64, mutating: u64, wall: Duration) -> Value {
    json!({
        "stacks": plans.iter().map(|p| json!({"name": p.stack, "changes": p.counts(), "steps": p.steps})).collect::<Vec<_>>(),
        "totals": total_counts(plans),
        "api_calls": {"read": read, "mutating": mutating},
        "wall_ms": wall.as_millis() as u64,
    })
}

pub(crate) fn sum(counts: impl Iterator<Item = Counts>) -> Counts {
    let mut total = Counts::default();
    for c in counts {
        total.add(&c);
    }
    total
}

pub(crate) fn outputs_json(o: &PlatformOutputs) -> Value {
    json!({
        "iam": o.iam,
        "network": o.network,
        "cluster": o.cluster,
    })
}

pub(crate) fn print_plans(plans: &[Plan]) {
    for p in plans {
        println!("{p}");
    }
}

/// The violations, mandatory first, each with its policy, resource and fix.
pub(crate) fn print_violations(violations: &[Violation]) {
    if violations.is_empty() {
        return;
    }
    println!("policy violations:");
    for v in violations {
        println!("  {v}");
    }
}

/// A mandatory violation stops the run before any change: exit 3.
pub(crate) fn refuse_mandatory(violations: &[Violation]) -> Result<(), Failure> {
    let mandatory: Vec<String> = policy::mandatory(violations)
        .map(ToString::to_string)
        .collect();
    if mandatory.is_empty() {
        return Ok(());
    }
    let mut refused = failure(
        POLICY_EXIT,
        format!(
            "refused by policy, nothing was changed: {} (change the config, or the rule's enforcement in [policy] rules)",
            mandatory.join("; ")
        ),
    );
    refused.violations = policy::mandatory(violations).cloned().collect();
    Err(refused)
}

pub(crate) fn print_summary(t: &Counts, read: u64, mutating: u64, wall: Duration) {
    println!(
        "\n{} created, {} updated, {} replaced, {} deleted, {} unchanged; {} AWS calls ({} mutating); {:.1}s",
        t.create,
        t.update,
        t.replace,
        t.delete,
        t.same,
        read + mutating,
        mutating,
        wall.as_secs_f64()
    );
}

pub(crate) fn print_outputs(o: &PlatformOutputs) {
    let c = &o.cluster;
    let n = &o.network;
    let i = &o.iam;
    println!("\noutputs:");
    println!("  account / region   {} / {}", i.account_id, i.region);
    println!(
        "  cluster            {} ({})",
        c.cluster_name, c.cluster_arn
    );
    if let Some(dns) = &c.load_balancer_dns_name {
        println!("  load balancer      {dns}");
    }
    for (name, svc) in &c.services {
        println!(
            "  service {name:<10} {} ({})",
            svc.service_name, svc.service_arn
        );
        println!("    task definition  {}", svc.task_definition_arn);
        println!("    log group        {}", svc.log_group_name);
        if let Some(url) = &svc.url {
            println!("    url              {url}");
        }
        if let Some(role) = i.service_role_arn(name) {
            println!("    task role        {role}");
        }
    }
    println!("  vpc                {} ({})", n.vpc_id, n.vpc_cidr);
    let subnets: Vec<&str> = n.public_subnet_ids.iter().map(|s| s.as_str()).collect();
    println!(
        "  public subnets     {} in {}",
        subnets.join(", "),
        n.availability_zones.join(", ")
    );
    println!("  security group     {}", n.security_group_id);
    if let Some(lb) = &n.balancer_security_group_id {
        println!("  balancer group     {lb}");
    }
}

pub(crate) fn confirm(question: &str) -> Result<(), Failure> {
    if !std::io::stdin().is_terminal() {
        return Err(failure(
            2,
            "refusing to change real AWS without confirmation: no terminal to ask on; pass --yes",
        ));
    }
    eprint!("{question}? Type yes to go on: ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin()
        .read_line(&mut answer)
        .map_err(|e| failure(1, format!("reading the answer: {e}")))?;
    if answer.trim() == "yes" {
        Ok(())
    } else {
        Err(failure(1, "not confirmed; nothing was changed"))
    }
}
