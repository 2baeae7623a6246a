//! Shared by the example's suites: the `production` binary, and what lives in an emulator account by
//! kind (the count that proves "exactly one of each").
#![allow(dead_code, reason = "each test crate uses a part of this module")]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use std::time::Duration;

use aws_sdk_ec2::types::Filter;
use aws_types::SdkConfig;
use platform_core::{EngineBuilder, MemoryStateStore, resource::RetryPolicy};

/// A local cloud (emulator, recording proxy, an account of the test's own) that serves ECS.
pub(crate) async fn ecs_cloud() -> local_cloud::TestCloud {
    let cloud = local_cloud::TestCloud::start()
        .await
        .expect("an AWS emulator is required for this suite");
    cloud
        .emulator
        .require_ecs()
        .expect("the emulator must serve ECS");
    cloud
}

/// An engine over `config` with in-memory state and retries quick enough for tests.
pub(crate) fn engine(config: &SdkConfig) -> EngineBuilder {
    platform_core::Engine::builder(MemoryStateStore::new())
        .aws(config.clone())
        .retry(RetryPolicy::new(
            6,
            Duration::from_millis(20),
            Duration::from_millis(200),
        ))
}

/// The seed's platform on `engine`, waiting at most a minute for its service's rollout.
pub(crate) fn platform(engine: platform_core::Engine) -> examples::Platform {
    let mut platform = examples::Platform::new(engine);
    platform.cluster = platform
        .cluster
        .clone()
        .with_steady_state_timeout(Some(Duration::from_secs(60)));
    platform
}

/// Every platform resource in the account of `config`, by kind, as sorted ids (EC2 resources count
/// only when they carry the engine's `platform:stack` tag; the account's default VPC does not).
pub(crate) async fn inventory(config: &SdkConfig) -> BTreeMap<&'static str, Vec<String>> {
    let mut all: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
    let mut put = |kind: &'static str, id: String| all.entry(kind).or_default().push(id);
    let ec2 = aws_sdk_ec2::Client::new(config);
    let ours = || {
        vec![
            Filter::builder()
                .name("tag-key")
                .values(platform_core::resource::STACK_TAG)
                .build(),
        ]
    };
    let vpcs = ec2
        .describe_vpcs()
        .set_filters(Some(ours()))
        .send()
        .await
        .unwrap();
    for v in vpcs.vpcs() {
        put("vpc", v.vpc_id().unwrap().to_owned());
    }
    let subnets = ec2
        .describe_subnets()
        .set_filters(Some(ours()))
        .send()
        .await
        .unwrap();
    for s in subnets.subnets() {
        put("subnet", s.subnet_id().unwrap().to_owned());
    }
    let igws = ec2
        .describe_internet_gateways()
        .set_filters(Some(ours()))
        .send()
        .await
        .unwrap();
    for g in igws.internet_gateways() {
        let id = g.internet_gateway_id().unwrap();
        put("internet_gateway", id.to_owned());
        for a in g.attachments() {
            put(
                "gateway_attachment",
                format!("{id}>{}", a.vpc_id().unwrap_or("?")),
            );
        }
    }
    let tables = ec2
        .describe_route_tables()
        .set_filters(Some(ours()))
        .send()
        .await
        .unwrap();
    for t in tables.route_tables() {
        let id = t.route_table_id().unwrap();
        put("route_table", id.to_owned());
        for r in t
            .routes()
            .iter()
            .filter(|r| r.gateway_id().is_some_and(|g| g.starts_with("igw-")))
        {
            put(
                "route",
                format!("{id}:{}", r.destination_cidr_block().unwrap_or("?")),
            );
        }
        for a in t.associations().iter().filter(|a| a.main() != Some(true)) {
            put(
                "association",
                format!("{id}:{}", a.subnet_id().unwrap_or("?")),
            );
        }
    }
    let groups = ec2
        .describe_security_groups()
        .set_filters(Some(ours()))
        .send()
        .await
        .unwrap();
    for g in groups.security_groups() {
        let id = g.group_id().unwrap();
        put("security_group", id.to_owned());
        for p in g.ip_permissions() {
            for r in p.ip_ranges() {
                put(
                    "ingress_rule",
                    format!("{id}:{:?}:{}", p.from_port(), r.cidr_ip().unwrap_or("?")),
                );
            }
            for g in p.user_id_group_pairs() {
                put(
                    "ingress_rule",
                    format!("{id}:{:?}:{}", p.from_port(), g.group_id().unwrap_or("?")),
                );
            }
        }
    }

    let iam = aws_sdk_iam::Client::new(config);
    let roles = iam.list_roles().send().await.unwrap();
    for r in roles
        .roles()
        .iter()
        .filter(|r| !r.path().starts_with("/aws-service-role/"))
    {
        put("role", r.role_name().to_owned());
        let attached = iam
            .list_attached_role_policies()
            .role_name(r.role_name())
            .send()
            .await
            .unwrap();
        for p in attached.attached_policies() {
            put(
                "attachment",
                format!("{}:{}", r.role_name(), p.policy_name().unwrap_or("?")),
            );
        }
    }
    let policies = iam
        .list_policies()
        .scope(aws_sdk_iam::types::PolicyScopeType::Local)
        .send()
        .await
        .unwrap();
    for p in policies.policies() {
        put("policy", p.policy_name().unwrap().to_owned());
    }
    let profiles = iam.list_instance_profiles().send().await.unwrap();
    for p in profiles.instance_profiles() {
        put("instance_profile", p.instance_profile_name().to_owned());
        for r in p.roles() {
            put(
                "profile_role",
                format!("{}:{}", p.instance_profile_name(), r.role_name()),
            );
        }
    }

    let logs = aws_sdk_cloudwatchlogs::Client::new(config);
    let groups = logs.describe_log_groups().send().await.unwrap();
    for g in groups.log_groups() {
        put("log_group", g.log_group_name().unwrap().to_owned());
    }

    let ecs = aws_sdk_ecs::Client::new(config);
    // Deleted clusters and services stay listed a while (INACTIVE, DRAINING): only ACTIVE ones count.
    let clusters = ecs.list_clusters().send().await.unwrap();
    for c in clusters.cluster_arns() {
        let described = ecs.describe_clusters().clusters(c).send().await.unwrap();
        if !described
            .clusters()
            .iter()
            .any(|c| c.status() == Some("ACTIVE"))
        {
            continue;
        }
        put("cluster", c.clone());
        let services = ecs.list_services().cluster(c).send().await.unwrap();
        if services.service_arns().is_empty() {
            continue;
        }
        let described = ecs
            .describe_services()
            .cluster(c)
            .set_services(Some(services.service_arns().to_vec()))
            .send()
            .await
            .unwrap();
        for s in described
            .services()
            .iter()
            .filter(|s| s.status() == Some("ACTIVE"))
        {
            put("service", s.service_arn().unwrap().to_owned());
        }
    }
    let defs = ecs
        .list_task_definitions()
        .status(aws_sdk_ecs::types::TaskDefinitionStatus::Active)
        .send()
        .await
        .unwrap();
    for d in defs.task_definition_arns() {
        put("task_definition", d.clone());
    }

    let elb = aws_sdk_elasticloadbalancingv2::Client::new(config);
    let lbs = elb.describe_load_balancers().send().await.unwrap();
    for lb in lbs.load_balancers() {
        let arn = lb.load_balancer_arn().unwrap();
        put("load_balancer", arn.to_owned());
        let listeners = elb
            .describe_listeners()
            .load_balancer_arn(arn)
            .send()
            .await
            .unwrap();
        for l in listeners.listeners() {
            let arn = l.listener_arn().unwrap();
            put("listener", arn.to_owned());
            let rules = elb.describe_rules().listener_arn(arn).send().await.unwrap();
            for r in rules
                .rules()
                .iter()
                .filter(|r| r.is_default() != Some(true))
            {
                put("listener_rule", r.rule_arn().unwrap().to_owned());
            }
        }
    }
    let groups = elb.describe_target_groups().send().await.unwrap();
    for g in groups.target_groups() {
        put("target_group", g.target_group_arn().unwrap().to_owned());
    }
    for ids in all.values_mut() {
        ids.sort();
    }
    all
}

/// The scalable targets (resource id, min, max) and the target-tracking policies (resource id,
/// target value) of ECS services in `config`'s account.
pub(crate) async fn scaling(config: &SdkConfig) -> (Vec<(String, i32, i32)>, Vec<(String, f64)>) {
    use aws_sdk_applicationautoscaling::types::ServiceNamespace;
    let client = aws_sdk_applicationautoscaling::Client::new(config);
    let targets = client
        .describe_scalable_targets()
        .service_namespace(ServiceNamespace::Ecs)
        .send()
        .await
        .unwrap();
    let policies = client
        .describe_scaling_policies()
        .service_namespace(ServiceNamespace::Ecs)
        .send()
        .await
        .unwrap();
    (
        targets
            .scalable_targets()
            .iter()
            .map(|t| {
                (
                    t.resource_id().to_owned(),
                    t.min_capacity(),
                    t.max_capacity(),
                )
            })
            .collect(),
        policies
            .scaling_policies()
            .iter()
            .map(|p| {
                let tracking = p.target_tracking_scaling_policy_configuration();
                (
                    p.resource_id().to_owned(),
                    tracking.map_or(0.0, |t| t.target_value()),
                )
            })
            .collect(),
    )
}

/// The platform of [`balanced_counts`]: two subnets, a balancer, the frontend behind it.
pub(crate) const BALANCED: &str = "[network]\npublic_subnets = [\"10.0.1.0/24\", \"10.0.2.0/24\"]\n[load_balancer]\n[[service]]\nname = \"frontend\"\npath = \"/*\"\n";

/// The number of each kind [`BALANCED`] has when it is up: the seed's, a second subnet (and its
/// route table association), the balancer's security group (one ingress rule: 80 from anywhere),
/// the balancer, its listener, the frontend's target group and rule.
pub(crate) fn balanced_counts() -> BTreeMap<&'static str, usize> {
    let mut counts = seed_counts();
    for (kind, n) in [
        ("subnet", 2),
        ("association", 2),
        ("security_group", 2),
        ("ingress_rule", 2),
        ("load_balancer", 1),
        ("listener", 1),
        ("listener_rule", 1),
        ("target_group", 1),
    ] {
        counts.insert(kind, n);
    }
    counts
}

/// The number of each kind the seed's platform has when it is up: one of everything, three roles and
/// policies (each attached to its role), one subnet, HTTP 80 in.
pub(crate) fn seed_counts() -> BTreeMap<&'static str, usize> {
    BTreeMap::from([
        ("association", 1),
        ("attachment", 3),
        ("cluster", 1),
        ("gateway_attachment", 1),
        ("ingress_rule", 1),
        ("instance_profile", 1),
        ("internet_gateway", 1),
        ("log_group", 1),
        ("policy", 3),
        ("profile_role", 1),
        ("role", 3),
        ("route", 1),
        ("route_table", 1),
        ("security_group", 1),
        ("service", 1),
        ("subnet", 1),
        ("task_definition", 1),
        ("vpc", 1),
    ])
}

/// The counts of an inventory.
pub(crate) fn counts(
    inventory: &BTreeMap<&'static str, Vec<String>>,
) -> BTreeMap<&'static str, usize> {
    inventory.iter().map(|(k, v)| (*k, v.len())).collect()
}

/// The example binary `cargo test` built next to this test's binary.
pub(crate) fn production() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let debug = exe.parent().and_then(Path::parent).unwrap();
    let bin = debug.join("examples").join("production");
    assert!(
        bin.exists(),
        "{} is missing: `cargo test` builds examples; run it from the workspace",
        bin.display()
    );
    bin
}

/// What a `production` run gave: its exit status, its output, its pid.
pub(crate) struct Ran {
    pub(crate) status: std::process::ExitStatus,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
    pub(crate) pid: u32,
}

/// Runs `production ARGS` in `cwd`; with `kill_at`, SIGKILLs it as soon as its `kill_at`-th call was
/// carried out upstream by `proxy` (AWS acted; the process never heard back). `None`: it was killed.
pub(crate) async fn run_production(
    proxy: &local_cloud::Proxy,
    cwd: &Path,
    args: &[&str],
    kill_at: Option<usize>,
) -> Option<Ran> {
    let trip = kill_at.map(|k| proxy.trip_after(k));
    run_production_until(cwd, args, trip).await
}

/// Runs `production ARGS` in `cwd`; with `kill_on`, SIGKILLs it as soon as that fires. `None`: it
/// was killed.
pub(crate) async fn run_production_until(
    cwd: &Path,
    args: &[&str],
    trip: Option<std::sync::Arc<tokio::sync::Notify>>,
) -> Option<Ran> {
    // The emulator shows what it makes at once, and the proxy carries out a dead client's request
    // at once: a short settle window (unless the test sets its own, to hold creates for longer).
    let window: &[&str] = if args.contains(&"--settle-window") {
        &[]
    } else {
        &["--settle-window", "2s"]
    };
    let mut child = tokio::process::Command::new(production())
        .current_dir(cwd)
        .args(window)
        .args(args)
        .env_remove("AWS_ENDPOINT_URL")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let read = tokio::spawn(async move {
        let (mut out, mut err) = (String::new(), String::new());
        let _ = tokio::join!(
            tokio::io::AsyncReadExt::read_to_string(&mut stdout, &mut out),
            tokio::io::AsyncReadExt::read_to_string(&mut stderr, &mut err)
        );
        (out, err)
    });
    let status = match trip {
        Some(trip) => tokio::select! {
            () = trip.notified() => {
                child.start_kill().unwrap();
                child.wait().await.unwrap();
                return None;
            }
            status = child.wait() => status.unwrap(),
        },
        None => child.wait().await.unwrap(),
    };
    let (stdout, stderr) = read.await.unwrap();
    Some(Ran {
        status,
        stdout,
        stderr,
        pid,
    })
}

static NEXT_ACCOUNT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A fresh moto account (numbered from `first`, so that each suite keeps to a range of its own), a
/// proxy that puts every call in it, and a state directory.
pub(crate) async fn fresh_account(
    emulator: &local_cloud::Emulator,
    first: u64,
) -> (local_cloud::Proxy, SdkConfig, tempfile::TempDir) {
    let n = u64::from(std::process::id()) * 1_000
        + NEXT_ACCOUNT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let account = format!("{:012}", first + n % 99_000_000_000);
    let proxy = local_cloud::Proxy::start(emulator.endpoint_url())
        .await
        .unwrap();
    proxy.set_account(&account);
    (
        proxy,
        emulator.account(&account),
        tempfile::tempdir().unwrap(),
    )
}

/// `production --endpoint PROXY --state-dir STATE EXTRA.. --json COMMAND` through `proxy`, killed
/// when `kill_on` fires: its exit status and stderr, `None` when it was killed.
pub(crate) async fn run_command(
    proxy: &local_cloud::Proxy,
    state: &Path,
    extra: &[&str],
    command: &str,
    kill_on: Option<std::sync::Arc<tokio::sync::Notify>>,
) -> Option<(std::process::ExitStatus, String)> {
    let endpoint = proxy.endpoint_url();
    let mut args = vec![
        "--endpoint",
        endpoint.as_str(),
        "--state-dir",
        state.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    args.extend(["--json", command]);
    run_production_until(Path::new("."), &args, kill_on)
        .await
        .map(|ran| (ran.status, ran.stderr))
}

/// A [`run_command`] that must succeed (`what` names the case in the failure).
pub(crate) async fn run_ok(
    proxy: &local_cloud::Proxy,
    state: &Path,
    extra: &[&str],
    command: &str,
    what: &str,
) {
    let (status, stderr) = run_command(proxy, state, extra, command, None)
        .await
        .unwrap();
    assert!(
        status.success(),
        "{what}: `{command}` exited {status}:\n{stderr}"
    );
}
