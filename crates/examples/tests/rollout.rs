//! ECS rollouts that fail say why within seconds. moto runs no task, so the proxy rewrites ECS's
//! answers into the shapes AWS gives (field names from the ECS API reference: a deployment's
//! `rolloutState` / `rolloutStateReason`, a task's `stoppedReason`, the service's `events`): a
//! deployment its circuit breaker failed, one rolled back to the previous task definition, and one
//! that is slow but healthy.

use std::path::Path;
use std::process::Output;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use examples::Platform;
use local_cloud::{Emulator, Fault, Proxy, Rewriter, Rule, TestCloud, XmlRewriter};
use platform_core::Event;
use serde_json::{Value, json};

use crate::common::{counts, ecs_cloud, engine, inventory, platform, production, seed_counts};

const PULL_ERROR: &str = "CannotPullContainerError: pull image manifest has been retried 7 time(s): \
    failed to resolve ref docker.io/library/nginx:latest: not found";
const BREAKER: &str = "ECS deployment circuit breaker: tasks failed to start.";

/// DescribeServices: the deployment failed, no task runs, the service says so in its events.
fn failed_rollout(v: &mut Value) {
    for s in v["services"].as_array_mut().into_iter().flatten() {
        s["runningCount"] = json!(0);
        s["pendingCount"] = json!(0);
        if let Some(d) = s["deployments"].get_mut(0) {
            d["rolloutState"] = json!("FAILED");
            d["rolloutStateReason"] = json!(BREAKER);
            d["runningCount"] = json!(0);
            d["failedTasks"] = json!(3);
        }
        s["events"] = json!([{
            "id": "1",
            "createdAt": 1_790_000_000.0,
            "message": "(service frontend-service) deployment failed: tasks failed to start."
        }]);
    }
}

/// ListTasks: one stopped task.
fn one_stopped_task(v: &mut Value) {
    v["taskArns"] = json!(["arn:aws:ecs:us-east-1:123456789012:task/my-ecs-cluster/0a1b2c3d4e"]);
}

/// DescribeTasks: why that task stopped.
fn stopped_for_a_missing_image(v: &mut Value) {
    v["tasks"] = json!([{
        "taskArn": "arn:aws:ecs:us-east-1:123456789012:task/my-ecs-cluster/0a1b2c3d4e",
        "lastStatus": "STOPPED",
        "desiredStatus": "STOPPED",
        "stopCode": "TaskFailedToStart",
        "stoppedReason": PULL_ERROR,
        "containers": [{"name": "frontend", "lastStatus": "STOPPED", "reason": PULL_ERROR}]
    }]);
    v["failures"] = json!([]);
}

/// DescribeServices: ECS rolled the deployment back: the primary one runs the previous revision and
/// the failed deployment is gone from the list.
fn rolled_back(v: &mut Value) {
    for s in v["services"].as_array_mut().into_iter().flatten() {
        let Some(ours) = s["deployments"].get(0).cloned() else {
            continue;
        };
        let task = ours["taskDefinition"].as_str().unwrap_or_default();
        let previous = match task.rsplit_once(':') {
            Some((family, _)) => format!("{family}:1"),
            None => task.to_owned(),
        };
        let mut primary = ours.clone();
        primary["id"] = json!("ecs-svc/0000000000rollback");
        primary["taskDefinition"] = json!(previous);
        primary["rolloutState"] = json!("COMPLETED");
        primary["rolloutStateReason"] =
            json!("ECS deployment circuit breaker: rolled back to the last completed deployment.");
        s["deployments"] = json!([primary]);
        s["taskDefinition"] = json!(previous);
    }
}

/// DescribeServices: the deployment is still starting its task.
fn starting(v: &mut Value) {
    for s in v["services"].as_array_mut().into_iter().flatten() {
        s["runningCount"] = json!(0);
        s["pendingCount"] = json!(1);
        if let Some(d) = s["deployments"].get_mut(0) {
            d["rolloutState"] = json!("IN_PROGRESS");
            d["runningCount"] = json!(0);
            d["pendingCount"] = json!(1);
        }
        s["events"] = json!([{
            "id": "2",
            "createdAt": 1_790_000_000.0,
            "message": "(service frontend-service) has started 1 tasks: (task 0a1b2c3d4e)."
        }]);
    }
}

fn rule(name: &'static str, apply: fn(&mut Value), operation: &str) -> Rule {
    Rule::new(Fault::Rewrite(Rewriter { name, apply })).operation(operation)
}

fn failing_rules(proxy: &Proxy) {
    proxy.add_rule(rule("failed rollout", failed_rollout, "DescribeServices"));
    proxy.add_rule(rule("a stopped task", one_stopped_task, "ListTasks"));
    proxy.add_rule(rule(
        "missing image",
        stopped_for_a_missing_image,
        "DescribeTasks",
    ));
}

/// `production up` through `proxy` (a process of its own, awaited without blocking the proxy).
async fn production_up(proxy: &Proxy, state: &Path, json: bool) -> (Output, Duration) {
    let started = Instant::now();
    let mut cmd = tokio::process::Command::new(production());
    cmd.arg("--endpoint")
        .arg(proxy.endpoint_url())
        .arg("--state-dir")
        .arg(state);
    if json {
        cmd.arg("--json");
    }
    let out = cmd
        .arg("up")
        .env_remove("AWS_ENDPOINT_URL")
        .output()
        .await
        .unwrap();
    (out, started.elapsed())
}

#[tokio::test]
async fn a_failed_rollout_exits_1_within_seconds_with_the_stopped_tasks_reason_then_heals() {
    let emulator = Emulator::start()
        .await
        .expect("an AWS emulator is required for this suite");
    emulator.require_ecs().expect("the emulator must serve ECS");
    let proxy = Proxy::start(emulator.endpoint_url()).await.unwrap();
    proxy.set_account("300000000001");
    let dir = tempfile::tempdir().unwrap();
    failing_rules(&proxy);

    // --json: one object on stdout naming the failure and the reason the task stopped.
    let (out, took) = production_up(&proxy, dir.path(), true).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(took < Duration::from_secs(30), "reported after {took:?}");
    let doc: Value = serde_json::from_str(stdout.trim()).unwrap();
    let error = doc["error"].as_str().unwrap();
    for needle in [
        PULL_ERROR,
        BREAKER,
        "deployment failed: tasks failed to start",
    ] {
        assert!(error.contains(needle), "{needle} not in {error}");
    }
    assert!(stderr.contains(PULL_ERROR), "{stderr}");

    // Without --json, the same on stderr.
    let (out, _) = production_up(&proxy, dir.path(), false).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(PULL_ERROR), "{stderr}");

    // ECS healthy again: the next up converges to exactly the platform.
    proxy.clear_rules();
    let (out, _) = production_up(&proxy, dir.path(), true).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let live = inventory(&emulator.account("300000000001")).await;
    assert_eq!(counts(&live), seed_counts(), "{live:#?}");
}

struct Rig {
    cloud: TestCloud,
    platform: Platform,
    progress: Arc<Mutex<Vec<String>>>,
}

async fn rig() -> Rig {
    let cloud = ecs_cloud().await;
    let progress = Arc::new(Mutex::new(Vec::new()));
    let seen = progress.clone();
    let engine = engine(&cloud.config)
        .on_event(move |e| {
            if let Event::Progress { message, .. } = e {
                seen.lock().unwrap().push(message.clone());
            }
        })
        .build();
    Rig {
        platform: platform(engine),
        cloud,
        progress,
    }
}

#[tokio::test]
async fn a_rollback_to_the_previous_task_definition_is_a_failure() {
    let mut r = rig().await;
    r.platform.up().await.unwrap();
    r.platform.cluster = r.platform.cluster.clone().with_image("nginx:1.27");
    r.cloud
        .proxy
        .add_rule(rule("rolled back", rolled_back, "DescribeServices"));
    let started = Instant::now();
    let err = r.platform.up().await.unwrap_err().to_string();
    assert!(started.elapsed() < Duration::from_secs(30));
    assert!(err.contains("was rolled back to"), "{err}");
    assert!(err.contains("frontend:1"), "{err}");
    assert!(
        err.contains("rolled back to the last completed deployment"),
        "{err}"
    );
}

#[tokio::test]
async fn a_slow_but_healthy_rollout_succeeds_and_shows_its_progress() {
    let r = rig().await;
    r.cloud
        .proxy
        .add_rule(rule("starting", starting, "DescribeServices").times(3));
    r.platform.up().await.unwrap();
    let polls = r
        .cloud
        .operations()
        .iter()
        .filter(|o| *o == "DescribeServices")
        .count();
    assert!(
        polls >= 4,
        "three polls while starting, one when done: {polls}"
    );
    let progress = r.progress.lock().unwrap().clone();
    assert!(
        progress
            .iter()
            .any(|m| m.contains("0 of 1 tasks running") && m.contains("has started 1 tasks")),
        "{progress:?}"
    );
}

/// IAM's propagation delay, as AWS answers it right after a role or policy was created: each answer
/// twice, then the call goes through.
#[tokio::test]
async fn iam_propagation_races_are_retried_within_the_bound_and_the_platform_comes_up() {
    let r = rig().await;
    let race = |operation: &str, status: u16, code: &str, message: &str| {
        Rule::new(Fault::AwsError {
            status,
            code: code.into(),
            message: message.into(),
        })
        .operation(operation)
        .times(2)
    };
    let proxy = &r.cloud.proxy;
    proxy.add_rule(race(
        "AttachRolePolicy",
        404,
        "NoSuchEntity",
        "The role with name ecs-cluster-role cannot be found.",
    ));
    proxy.add_rule(race(
        "AddRoleToInstanceProfile",
        404,
        "NoSuchEntity",
        "The role with name ecs-instance-role cannot be found.",
    ));
    proxy.add_rule(race(
        "CreateService",
        400,
        "AccessDeniedException",
        "User: arn:aws:iam::123456789012:user/deployer is not authorized to perform: \
         iam:PassRole on resource: arn:aws:iam::123456789012:role/ecs-frontend-role",
    ));
    r.platform.up().await.unwrap();
    let ops = r.cloud.operations();
    for (op, sent) in [
        ("AttachRolePolicy", 5),
        ("AddRoleToInstanceProfile", 3),
        ("CreateService", 3),
    ] {
        assert_eq!(
            ops.iter().filter(|o| *o == op).count(),
            sent,
            "{op}: {ops:?}"
        );
    }
    let live = inventory(&r.cloud.config).await;
    assert_eq!(counts(&live), seed_counts(), "{live:#?}");
}

/// `DescribeTargetHealth` as AWS answers it for one target in `state` (moto's ECS registers none):
/// field names from the Elastic Load Balancing API reference.
fn target_health(state: &str, reason: &str, description: &str) -> String {
    format!(
        r#"<DescribeTargetHealthResponse xmlns="http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/">
  <DescribeTargetHealthResult>
    <TargetHealthDescriptions>
      <member>
        <HealthCheckPort>80</HealthCheckPort>
        <Target><Id>10.0.1.23</Id><Port>80</Port></Target>
        <TargetHealth><State>{state}</State>{reason}{description}</TargetHealth>
      </member>
    </TargetHealthDescriptions>
  </DescribeTargetHealthResult>
  <ResponseMetadata><RequestId>proxy</RequestId></ResponseMetadata>
</DescribeTargetHealthResponse>"#,
        reason = if reason.is_empty() {
            String::new()
        } else {
            format!("<Reason>{reason}</Reason>")
        },
        description = if description.is_empty() {
            String::new()
        } else {
            format!("<Description>{description}</Description>")
        },
    )
}

fn unhealthy(_: &str) -> String {
    target_health(
        "unhealthy",
        "Target.FailedHealthChecks",
        "Health checks failed with these codes: [404]",
    )
}

fn initial(_: &str) -> String {
    target_health(
        "initial",
        "Elb.InitialHealthChecking",
        "Initial health checks in progress",
    )
}

fn healthy(_: &str) -> String {
    target_health("healthy", "", "")
}

fn health(name: &'static str, apply: fn(&str) -> String) -> Rule {
    Rule::new(Fault::RewriteXml(XmlRewriter { name, apply })).operation("DescribeTargetHealth")
}

/// The frontend behind the balancer.
async fn balanced_rig() -> Rig {
    let mut r = rig().await;
    let path = Path::new("platform.toml");
    examples::config::PlatformConfig::parse(path, crate::common::BALANCED)
        .unwrap()
        .apply(path, &mut r.platform)
        .unwrap();
    r
}

#[tokio::test]
async fn a_rollout_whose_targets_fail_their_health_checks_fails_with_the_balancers_reason() {
    let r = balanced_rig().await;
    r.cloud.proxy.add_rule(health("unhealthy", unhealthy));
    let started = Instant::now();
    let err = r.platform.up().await.unwrap_err().to_string();
    assert!(started.elapsed() < Duration::from_secs(30), "{err}");
    assert!(
        err.contains("its targets are unhealthy in the load balancer: target 10.0.1.23:80 unhealthy: Target.FailedHealthChecks (Health checks failed with these codes: [404])"),
        "{err}"
    );
    // The service exists and is recorded as failed, not lost: healthy targets let the next run pass.
    r.cloud.proxy.clear_rules();
    r.cloud.proxy.add_rule(health("healthy", healthy));
    r.platform.up().await.unwrap();
}

#[tokio::test]
async fn a_rollout_waits_while_its_targets_are_checked_then_completes() {
    let r = balanced_rig().await;
    r.cloud.proxy.add_rule(health("initial", initial).times(2));
    r.cloud.proxy.add_rule(health("healthy", healthy));
    r.platform.up().await.unwrap();
    let checks = r
        .cloud
        .operations()
        .iter()
        .filter(|o| *o == "DescribeTargetHealth")
        .count();
    assert!(checks >= 3, "two while checked, one healthy: {checks}");
    let progress = r.progress.lock().unwrap().clone();
    assert!(
        progress
            .iter()
            .any(|m| m.contains("waiting for healthy targets (0 of 1 healthy)")),
        "{progress:?}"
    );
}
