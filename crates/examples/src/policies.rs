//! The platform's built-in guardrails: each rule has a stable id (what `[policy] rules` names), an
//! enforcement, and is written against the stack crates' own types.
//!
//! | id | checks | enforcement |
//! |---|---|---|
//! | `open-admin-port` | ingress from `0.0.0.0/0` or `::/0` to 22 (SSH) or 3389 (RDP) | mandatory |
//! | `ingress-from-anywhere` | ingress from anywhere to a port no service's container or load balancer listener declares | mandatory |
//! | `iam-wildcard` | a managed policy with a `"*"` action, a service wildcard on `"*"`, or a write action (`iam:PassRole`...) on `"*"` | mandatory |
//! | `circuit-breaker` | an ECS service without the deployment circuit breaker | mandatory |
//! | `required-tags` | a taggable resource without a key of `[policy] required_tags` | mandatory |
//! | `log-retention` | a log group that keeps logs forever | advisory |
//! | `image-pinned` | a container image tagged `latest`, or untagged | advisory |

use std::collections::BTreeSet;

use cluster_stack::resources::{Listener, LogGroup, Service, TaskDefinition};
use iam_stack::resources::ManagedPolicy;
use network_stack::resources::{OtherRule, Peer, Protocol, SecurityGroup, SgRule};
use platform_core::policy::{Enforcement, PlanDocument, Policies, Policy, Violation};

/// The built-in rules, `required-tags` with the keys `required_tags` (it passes everything
/// when there are none).
pub fn builtin(required_tags: &[String]) -> Policies {
    Policies::new()
        .with(OpenAdminPort)
        .with(IngressFromAnywhere)
        .with(IamWildcard)
        .with(CircuitBreaker)
        .with(RequiredTags {
            keys: required_tags.to_vec(),
        })
        .with(LogRetention)
        .with(ImagePinned)
}

/// The ports an administrator logs in on: SSH and RDP.
const ADMIN_PORTS: [u16; 2] = [22, 3389];

/// An ingress rule as the policies read it: protocol (AWS's name), ports, peer.
struct Ingress {
    /// Every protocol (`-1`).
    all_protocols: bool,
    /// TCP or UDP.
    ports: Option<(u16, u16)>,
    /// From `0.0.0.0/0` or `::/0`.
    anywhere: bool,
    /// As the user reads it.
    shown: String,
}

impl Ingress {
    fn declared(r: &SgRule) -> Self {
        let ports = r.ports.map(|p| (p.from, p.to));
        Self {
            all_protocols: r.protocol == Protocol::All,
            ports,
            anywhere: matches!(&r.peer, Peer::Cidr(c) if c == "0.0.0.0/0"),
            shown: match ports {
                Some((a, b)) if a == b => format!("{:?} {a} from {}", r.protocol, r.peer),
                Some((a, b)) => format!("{:?} {a}-{b} from {}", r.protocol, r.peer),
                None => format!("every protocol from {}", r.peer),
            }
            .to_lowercase(),
        }
    }

    fn other(r: &OtherRule) -> Self {
        let all_protocols = r.protocol == "-1";
        let transport = matches!(r.protocol.as_str(), "tcp" | "6" | "udp" | "17");
        let port =
            |p: Option<i32>, default: u16| p.and_then(|p| u16::try_from(p).ok()).unwrap_or(default);
        Self {
            all_protocols,
            ports: transport.then(|| (port(r.from_port, 0), port(r.to_port, u16::MAX))),
            anywhere: matches!(r.peer.as_str(), "cidr:0.0.0.0/0" | "ipv6:::/0"),
            shown: format!(
                "{} {}-{} from {}",
                r.protocol,
                r.from_port.unwrap_or(-1),
                r.to_port.unwrap_or(-1),
                r.peer
            ),
        }
    }

    fn of(group: &SecurityGroup) -> Vec<Self> {
        group
            .ingress
            .iter()
            .map(Self::declared)
            .chain(group.other_ingress.iter().map(Self::other))
            .collect()
    }

    fn covers(&self, port: u16) -> bool {
        self.all_protocols || self.ports.is_some_and(|(a, b)| a <= port && port <= b)
    }
}

/// `open-admin-port`.
pub struct OpenAdminPort;

impl Policy for OpenAdminPort {
    fn id(&self) -> &str {
        "open-admin-port"
    }
    fn description(&self) -> &str {
        "no security group admits the internet to SSH (22) or RDP (3389)"
    }
    fn enforcement(&self) -> Enforcement {
        Enforcement::Mandatory
    }
    fn check(&self, plan: &PlanDocument) -> Vec<Violation> {
        let mut out = Vec::new();
        for (r, group) in plan.of_kind::<SecurityGroup>() {
            for rule in Ingress::of(&group).iter().filter(|i| i.anywhere) {
                for port in ADMIN_PORTS.iter().filter(|p| rule.covers(**p)) {
                    out.push(Violation::on(
                        self,
                        r,
                        format!("ingress {} opens port {port} to the internet", rule.shown),
                        "admit your own block only (network.ingress cidr), or use SSM Session Manager / ECS Exec",
                    ));
                }
            }
        }
        out
    }
}

/// `ingress-from-anywhere`.
pub struct IngressFromAnywhere;

impl Policy for IngressFromAnywhere {
    fn id(&self) -> &str {
        "ingress-from-anywhere"
    }
    fn description(&self) -> &str {
        "the internet reaches only the ports the services' containers listen on"
    }
    fn enforcement(&self) -> Enforcement {
        Enforcement::Mandatory
    }
    fn check(&self, plan: &PlanDocument) -> Vec<Violation> {
        // The services' container ports, and the load balancer's listener ports.
        let declared: BTreeSet<u16> = plan
            .of_kind::<TaskDefinition>()
            .flat_map(|(_, t)| t.containers.into_iter().map(|c| c.port))
            .chain(plan.of_kind::<Listener>().map(|(_, l)| l.port))
            .collect();
        let shown = declared
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        let mut out = Vec::new();
        for (r, group) in plan.of_kind::<SecurityGroup>() {
            for rule in Ingress::of(&group).iter().filter(|i| i.anywhere) {
                let undeclared = match rule.ports {
                    _ if rule.all_protocols => true,
                    Some((a, b)) => (a..=b).any(|p| !declared.contains(&p)),
                    None => false,
                };
                if undeclared {
                    out.push(Violation::on(
                        self,
                        r,
                        format!(
                            "ingress {} admits the internet to a port no service declares (declared: {})",
                            rule.shown,
                            if shown.is_empty() { "none" } else { &shown }
                        ),
                        "open only the services' container ports to 0.0.0.0/0; admit other ports from your own block",
                    ));
                }
            }
        }
        out
    }
}

/// `iam-wildcard`: the IAM stack's least-privilege audit over every managed policy of the plan.
pub struct IamWildcard;

impl Policy for IamWildcard {
    fn id(&self) -> &str {
        "iam-wildcard"
    }
    fn description(&self) -> &str {
        "managed policies grant no \"*\" action, no service wildcard on \"*\", no write action (iam:PassRole, ...) on \"*\""
    }
    fn enforcement(&self) -> Enforcement {
        Enforcement::Mandatory
    }
    fn check(&self, plan: &PlanDocument) -> Vec<Violation> {
        plan.of_kind::<ManagedPolicy>()
            .flat_map(|(r, p)| {
                iam_stack::permissions::audit(&p.document)
                    .into_iter()
                    .map(move |f| {
                        Violation::on(
                            self,
                            r,
                            format!("statement {} {}", f.statement, f.problem),
                            "name the actions and the resources (ARNs) the workload needs",
                        )
                    })
            })
            .collect()
    }
}

/// `circuit-breaker`.
pub struct CircuitBreaker;

impl Policy for CircuitBreaker {
    fn id(&self) -> &str {
        "circuit-breaker"
    }
    fn description(&self) -> &str {
        "every ECS service rolls a failing deployment back (deployment circuit breaker)"
    }
    fn enforcement(&self) -> Enforcement {
        Enforcement::Mandatory
    }
    fn check(&self, plan: &PlanDocument) -> Vec<Violation> {
        plan.of_kind::<Service>()
            .filter(|(_, s)| !s.deployment.is_some_and(|d| d.circuit_breaker))
            .map(|(r, s)| {
                Violation::on(
                    self,
                    r,
                    format!(
                        "service {} has no deployment circuit breaker: a failing deployment keeps replacing tasks",
                        s.name
                    ),
                    "turn it on (ClusterConfig::with_circuit_breaker(true, true))",
                )
            })
            .collect()
    }
}

/// `required-tags`.
pub struct RequiredTags {
    /// The keys every taggable resource must carry.
    pub keys: Vec<String>,
}

impl Policy for RequiredTags {
    fn id(&self) -> &str {
        "required-tags"
    }
    fn description(&self) -> &str {
        "every taggable resource carries the tag keys of [policy] required_tags"
    }
    fn enforcement(&self) -> Enforcement {
        Enforcement::Mandatory
    }
    fn check(&self, plan: &PlanDocument) -> Vec<Violation> {
        if self.keys.is_empty() {
            return Vec::new();
        }
        plan.resources
            .iter()
            .filter(|r| r.action.is_kept())
            .filter_map(|r| {
                let tags = r.tags()?;
                let missing: Vec<&str> = self
                    .keys
                    .iter()
                    .filter(|k| !tags.contains_key(*k))
                    .map(String::as_str)
                    .collect();
                (!missing.is_empty()).then(|| {
                    Violation::on(
                        self,
                        r,
                        format!("{} has no tag {}", r.kind, missing.join(", ")),
                        "set them in the config's [tags] table (applied to every resource)",
                    )
                })
            })
            .collect()
    }
}

/// `log-retention`.
pub struct LogRetention;

impl Policy for LogRetention {
    fn id(&self) -> &str {
        "log-retention"
    }
    fn description(&self) -> &str {
        "log groups expire their events"
    }
    fn enforcement(&self) -> Enforcement {
        Enforcement::Advisory
    }
    fn check(&self, plan: &PlanDocument) -> Vec<Violation> {
        plan.of_kind::<LogGroup>()
            .filter(|(_, g)| g.retention_days.is_none())
            .map(|(r, g)| {
                Violation::on(
                    self,
                    r,
                    format!("log group {} keeps its events forever", g.name),
                    "set cluster.log_retention_days (e.g. 30)",
                )
            })
            .collect()
    }
}

/// `image-pinned`.
pub struct ImagePinned;

impl Policy for ImagePinned {
    fn id(&self) -> &str {
        "image-pinned"
    }
    fn description(&self) -> &str {
        "container images name a version (a tag other than latest, or a digest)"
    }
    fn enforcement(&self) -> Enforcement {
        Enforcement::Advisory
    }
    fn check(&self, plan: &PlanDocument) -> Vec<Violation> {
        let mut out = Vec::new();
        for (r, t) in plan.of_kind::<TaskDefinition>() {
            for c in t.containers.iter().filter(|c| !pinned(&c.image)) {
                out.push(Violation::on(
                    self,
                    r,
                    format!(
                        "container {} runs {}: every deployment may pull another image",
                        c.name, c.image
                    ),
                    "name a version or a digest (cluster.image = \"nginx:1.27\" or \"nginx@sha256:...\")",
                ));
            }
        }
        out
    }
}

/// Whether `image` names a version: a digest, or a tag other than `latest`.
fn pinned(image: &str) -> bool {
    if image.contains('@') {
        return true;
    }
    let name = image.rsplit('/').next().unwrap_or(image);
    matches!(name.rsplit_once(':'), Some((_, tag)) if !tag.is_empty() && tag != "latest")
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use platform_core::{Engine, MemoryStateStore};

    use super::*;
    use crate::Platform;
    use crate::config::PlatformConfig;

    fn platform(config: &str) -> Platform {
        crate::config::offline(config, crate::config::DEFAULT_ENV)
    }

    /// (policy, enforcement, stack/resource) of each violation of `p`'s plan.
    async fn found(p: &Platform) -> Vec<(String, Enforcement, String)> {
        p.preview_checked()
            .await
            .unwrap()
            .violations
            .into_iter()
            .map(|v| {
                (
                    v.policy,
                    v.enforcement,
                    format!("{}/{}", v.stack, v.resource),
                )
            })
            .collect()
    }

    fn the_seeds_one() -> (String, Enforcement, String) {
        (
            "image-pinned".into(),
            Enforcement::Advisory,
            "cluster/task-definition".into(),
        )
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn the_seed_breaks_no_mandatory_rule_and_reports_its_latest_image() {
        runtime().block_on(async {
            assert_eq!(found(&platform("")).await, [the_seeds_one()]);
        });
    }

    #[test]
    fn open_admin_port_refuses_ssh_from_anywhere_and_passes_it_from_a_block() {
        runtime().block_on(async {
            let open = platform("[network]\ningress = [{ port = 22, cidr = \"0.0.0.0/0\" }]");
            let v = found(&open).await;
            let sg = "network/service-security-group".to_owned();
            assert!(
                v.contains(&("open-admin-port".into(), Enforcement::Mandatory, sg.clone())),
                "{v:?}"
            );
            let rdp =
                platform("[network]\ningress = [{ protocol = \"all\", cidr = \"0.0.0.0/0\" }]");
            let v = found(&rdp).await;
            assert_eq!(
                v.iter().filter(|x| x.0 == "open-admin-port").count(),
                2,
                "22 and 3389: {v:?}"
            );
            let from_office =
                platform("[network]\ningress = [{ port = 22, cidr = \"203.0.113.0/24\" }]");
            assert_eq!(found(&from_office).await, [the_seeds_one()]);
        });
    }

    #[test]
    fn ingress_from_anywhere_refuses_a_port_no_service_declares() {
        runtime().block_on(async {
            let extra = platform(
                "[network]\ningress = [{ port = 8080, to_port = 8081, cidr = \"0.0.0.0/0\" }]",
            );
            let v = found(&extra).await;
            assert_eq!(
                v[0],
                (
                    "ingress-from-anywhere".into(),
                    Enforcement::Mandatory,
                    "network/service-security-group".into()
                ),
                "{v:?}"
            );
            assert_eq!(v.len(), 2, "{v:?}");
            // The service's own port (80, the seed's) from anywhere passes; so does 8080 from a block.
            let block = platform("[network]\ningress = [{ port = 8080, cidr = \"10.1.0.0/16\" }]");
            assert_eq!(found(&block).await, [the_seeds_one()]);
        });
    }

    #[test]
    fn iam_wildcard_refuses_a_star_action_in_any_managed_policy_of_the_plan() {
        runtime().block_on(async {
            let p = platform("");
            let mut doc = p.preview_checked().await.unwrap().document;
            let policy = doc
                .resources
                .iter_mut()
                .find(|r| r.kind == "iam:policy")
                .unwrap();
            let name = policy.address();
            assert!(
                IamWildcard.check(&doc).is_empty(),
                "the seed's policies pass"
            );
            let policy = doc
                .resources
                .iter_mut()
                .find(|r| r.address() == name)
                .unwrap();
            policy.inputs["document"]["Statement"][0]["Action"] = serde_json::json!("*");
            policy.inputs["document"]["Statement"][0]["Resource"] = serde_json::json!("*");
            let v = IamWildcard.check(&doc);
            assert!(!v.is_empty(), "{:?}", policy_doc(&doc, &name));
            assert!(v.iter().all(|x| x.enforcement == Enforcement::Mandatory
                && format!("{}/{}", x.stack, x.resource) == name));
            assert!(
                v.iter().any(|x| x.message.contains("grants every action")),
                "{v:?}"
            );
        });
    }

    fn policy_doc(doc: &PlanDocument, name: &str) -> serde_json::Value {
        doc.resources
            .iter()
            .find(|r| r.address() == name)
            .map(|r| r.inputs["document"].clone())
            .unwrap_or_default()
    }

    #[test]
    fn circuit_breaker_refuses_a_service_without_it() {
        runtime().block_on(async {
            let mut p = platform("");
            p.cluster = p.cluster.clone().with_circuit_breaker(false, false);
            let v = found(&p).await;
            assert_eq!(
                v[0],
                (
                    "circuit-breaker".into(),
                    Enforcement::Mandatory,
                    "cluster/service".into()
                ),
                "{v:?}"
            );
            assert_eq!(v.len(), 2);
        });
    }

    #[test]
    fn log_retention_reports_a_group_that_keeps_logs_forever() {
        runtime().block_on(async {
            let mut p = platform("[cluster]\nimage = \"nginx:1.27\"");
            assert!(found(&p).await.is_empty());
            p.cluster.services[0].log_retention_days = None;
            assert_eq!(
                found(&p).await,
                [(
                    "log-retention".into(),
                    Enforcement::Advisory,
                    "cluster/log-group".into()
                )]
            );
        });
    }

    #[test]
    fn image_pinned_reports_latest_and_passes_a_version() {
        runtime().block_on(async {
            assert_eq!(found(&platform("")).await, [the_seeds_one()]);
            assert!(
                found(&platform("[cluster]\nimage = \"nginx:1.27\""))
                    .await
                    .is_empty()
            );
        });
    }

    #[test]
    fn required_tags_refuses_untagged_resources_until_the_tags_table_sets_them() {
        runtime().block_on(async {
            let untagged = platform(
                "[cluster]\nimage = \"nginx:1.27\"\n[policy]\nrequired_tags = [\"team\", \"cost-center\"]",
            );
            let v = untagged.preview_checked().await.unwrap().violations;
            assert!(v.len() >= 10, "every taggable resource of the three stacks: {v:?}");
            assert!(v.iter().all(|x| x.policy == "required-tags"
                && x.enforcement == Enforcement::Mandatory
                && x.message.ends_with("has no tag team, cost-center")));
            for stack in ["iam", "network", "cluster"] {
                assert!(v.iter().any(|x| x.stack == stack), "{stack}: {v:?}");
            }
            let tagged = platform(
                "[cluster]\nimage = \"nginx:1.27\"\n[tags]\nteam = \"platform\"\ncost-center = \"42\"\n[policy]\nrequired_tags = [\"team\", \"cost-center\"]",
            );
            assert!(found(&tagged).await.is_empty());
        });
    }

    #[test]
    fn the_config_changes_a_rules_enforcement_and_refuses_an_unknown_one() {
        runtime().block_on(async {
            let strict = platform(
                "[policy]\nrules = { image-pinned = \"mandatory\", log-retention = \"off\" }",
            );
            let v = found(&strict).await;
            assert_eq!(
                v,
                [(
                    "image-pinned".into(),
                    Enforcement::Mandatory,
                    "cluster/task-definition".into()
                )]
            );
            let mut quiet = platform("[policy]\nrules = { image-pinned = \"off\" }");
            assert!(found(&quiet).await.is_empty());
            quiet.cluster.services[0].log_retention_days = None;
            assert_eq!(found(&quiet).await.len(), 1);
        });
        let path = Path::new("p.toml");
        let file =
            PlatformConfig::parse(path, "[policy]\nrules = { no-such-rule = \"off\" }").unwrap();
        let engine = Engine::builder(MemoryStateStore::new()).build();
        let err = file
            .apply(path, &mut Platform::new(engine))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("p.toml: policy.rules.no-such-rule = off: no such policy (the policies: open-admin-port, "),
            "{err}"
        );
        let err = PlatformConfig::parse(path, "[policy]\nrules = { image-pinned = \"loud\" }")
            .unwrap_err()
            .to_string();
        assert!(err.contains("loud"), "{err}");
    }

    #[test]
    fn the_example_policies_shipped_in_policies_refuse_one_task_and_warn_of_big_tasks() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies");
        let config = |extra: &str| {
            format!(
                "[cluster]\nimage = \"nginx:1.27\"\n{extra}\n[policy]\npaths = [{:?}]",
                dir.display().to_string()
            )
        };
        runtime().block_on(async {
            let seed = found(&platform(&config(""))).await;
            assert_eq!(
                seed,
                [(
                    "min-tasks".into(),
                    Enforcement::Mandatory,
                    "cluster/service".into()
                )]
            );
            let big = found(&platform(&config(
                "desired_count = 2\ncpu = 4096\nmemory = 8192",
            )))
            .await;
            assert_eq!(
                big,
                [(
                    "task-size".into(),
                    Enforcement::Advisory,
                    "cluster/task-definition".into()
                )]
            );
        });
    }

    #[test]
    fn a_rego_policy_in_a_directory_refuses_one_task_and_passes_two() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("min-tasks.rego"),
            r#"package main

import rego.v1

deny contains msg if {
	some r in input.resources
	r.kind == "ecs:service"
	r.inputs.desired_count < 2
	msg := {
		"msg": sprintf("service %s runs %d task: one failure takes it down", [r.inputs.name, r.inputs.desired_count]),
		"stack": r.stack,
		"resource": r.name,
		"fix": "cluster.desired_count = 2",
	}
}
"#,
        )
        .unwrap();
        let config = |count: u32| {
            format!(
                "[cluster]\nimage = \"nginx:1.27\"\ndesired_count = {count}\n[policy]\npaths = [{:?}]",
                dir.path().display().to_string()
            )
        };
        runtime().block_on(async {
            let one = platform(&config(1));
            let v = one.preview_checked().await.unwrap().violations;
            assert_eq!(v.len(), 1, "{v:?}");
            assert_eq!(
                (
                    v[0].policy.as_str(),
                    v[0].enforcement,
                    v[0].stack.as_str(),
                    v[0].resource.as_str()
                ),
                ("min-tasks", Enforcement::Mandatory, "cluster", "service")
            );
            assert_eq!(
                v[0].message,
                "service frontend-service runs 1 task: one failure takes it down"
            );
            assert!(found(&platform(&config(2))).await.is_empty());
        });
        // A file that does not parse is refused naming it, its line and why.
        std::fs::write(
            dir.path().join("broken.rego"),
            "package main\ndeny contains msg if {\n",
        )
        .unwrap();
        let path = Path::new("p.toml");
        let file = PlatformConfig::parse(path, &config(2)).unwrap();
        let err = file
            .apply(
                path,
                &mut Platform::new(Engine::builder(MemoryStateStore::new()).build()),
            )
            .unwrap_err()
            .to_string();
        assert!(err.contains("broken.rego:"), "{err}");
    }

    #[test]
    fn an_image_is_pinned_by_a_version_tag_or_a_digest() {
        for image in [
            "nginx:1.27",
            "registry:5000/team/app:v3",
            "nginx@sha256:abcd",
        ] {
            assert!(pinned(image), "{image}");
        }
        for image in ["nginx:latest", "nginx", "registry:5000/team/app", "nginx:"] {
            assert!(!pinned(image), "{image}");
        }
    }

    #[test]
    fn a_rule_covers_its_ports_and_every_protocol_covers_all() {
        let tcp = Ingress::declared(&SgRule::tcp(22, "0.0.0.0/0"));
        assert!(tcp.anywhere && tcp.covers(22) && !tcp.covers(23) && !tcp.covers(21));
        assert_eq!(tcp.shown, "tcp 22 from 0.0.0.0/0");
        let all = Ingress::declared(&SgRule::all("10.0.0.0/8"));
        assert!(!all.anywhere && all.covers(3389));
        let v6 = Ingress::other(&OtherRule {
            protocol: "tcp".into(),
            from_port: Some(20),
            to_port: Some(30),
            peer: "ipv6:::/0".into(),
        });
        assert!(v6.anywhere && v6.covers(22) && !v6.covers(31) && !v6.covers(19));
        let icmp = Ingress::other(&OtherRule {
            protocol: "icmp".into(),
            from_port: Some(-1),
            to_port: Some(-1),
            peer: "cidr:0.0.0.0/0".into(),
        });
        assert!(icmp.anywhere && !icmp.covers(22));
        let group = Ingress::other(&OtherRule {
            protocol: "-1".into(),
            from_port: None,
            to_port: None,
            peer: "group:sg-1".into(),
        });
        assert!(!group.anywhere && group.covers(22));
    }
}
