//! kill -9 at every AWS call: the `production` binary is killed right after its k-th call reached the
//! emulator (AWS carried it out; the process never heard back), for every k of a full `up` and of a
//! full `destroy`; the next run must converge with exactly one of each resource, and a destroy must
//! then leave nothing. The proxy keeps forwarding a dead client's requests, as AWS does.

use std::path::Path;
use std::process::ExitStatus;
use std::sync::Arc;

use local_cloud::{Emulator, Proxy};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::common::{counts, fresh_account, inventory, run_command, run_ok, scaling, seed_counts};

/// `production --json COMMAND` through `proxy` with state in `state`; with `kill_at`, SIGKILLed as
/// soon as its `kill_at`-th call was carried out upstream. `None` when it was killed.
async fn run(
    proxy: &Proxy,
    state: &Path,
    command: &str,
    kill_at: Option<usize>,
) -> Option<(ExitStatus, String)> {
    run_command(
        proxy,
        state,
        &[],
        command,
        kill_at.map(|k| proxy.trip_after(k)),
    )
    .await
}

/// A run that must succeed.
async fn ok(proxy: &Proxy, state: &Path, command: &str, what: &str) {
    run_ok(proxy, state, &[], command, what).await;
}

/// A fresh moto account, a proxy that puts every call in it, and a state directory.
async fn fresh(emulator: &Emulator) -> (Proxy, aws_types::SdkConfig, tempfile::TempDir) {
    fresh_account(emulator, 200_000_000_000).await
}

#[derive(Clone, Copy, Debug)]
enum Phase {
    Up,
    Destroy,
}

impl Phase {
    fn command(self) -> &'static str {
        match self {
            Phase::Up => "up",
            Phase::Destroy => "destroy",
        }
    }
}

/// A fresh account where `production EXTRA COMMAND` (after an `up`, for a destroy) was SIGKILLed
/// right after its call `k` was carried out: the account's proxy, config and state, and the case's
/// name.
async fn killed_with(
    emulator: &Emulator,
    extra: &[&str],
    phase: Phase,
    k: usize,
) -> (Proxy, aws_types::SdkConfig, tempfile::TempDir, String) {
    let (proxy, config, dir) = fresh(emulator).await;
    let state = dir.path();
    let what = format!("killed after call {k} of {phase:?}");
    if let Phase::Destroy = phase {
        run_ok(&proxy, state, extra, "up", &what).await;
    }
    let trip = Some(proxy.trip_after(k));
    let killed = run_command(&proxy, state, extra, phase.command(), trip)
        .await
        .is_none();
    assert!(killed, "{what}: the run ended before its call {k}");
    (proxy, config, dir, what)
}

async fn killed_at(emulator: Arc<Emulator>, phase: Phase, k: usize) {
    let (proxy, config, dir) = fresh(&emulator).await;
    let state = dir.path();
    let what = format!("killed after call {k} of {phase:?}");
    match phase {
        Phase::Up => {
            let killed = run(&proxy, state, "up", Some(k)).await.is_none();
            assert!(killed, "{what}: the run ended before its call {k}");
            ok(&proxy, state, "up", &what).await;
            let live = inventory(&config).await;
            assert_eq!(counts(&live), seed_counts(), "{what}: {live:#?}");
            ok(&proxy, state, "destroy", &what).await;
        }
        Phase::Destroy => {
            ok(&proxy, state, "up", &what).await;
            let killed = run(&proxy, state, "destroy", Some(k)).await.is_none();
            assert!(killed, "{what}: the run ended before its call {k}");
            ok(&proxy, state, "destroy", &what).await;
        }
    }
    let left = inventory(&config).await;
    assert!(left.is_empty(), "{what}: left {left:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_after_every_aws_call_of_up_and_of_destroy_the_next_run_converges() {
    let emulator = Arc::new(
        Emulator::start()
            .await
            .expect("an AWS emulator is required for this suite"),
    );
    emulator.require_ecs().expect("the emulator must serve ECS");
    // How many calls a clean up and a clean destroy make.
    let (proxy, config, dir) = fresh(&emulator).await;
    ok(&proxy, dir.path(), "up", "clean up").await;
    let up_calls = proxy.calls().len();
    proxy.clear_calls();
    ok(&proxy, dir.path(), "destroy", "clean destroy").await;
    let destroy_calls = proxy.calls().len();
    assert!(inventory(&config).await.is_empty());
    assert!(
        up_calls > 30 && destroy_calls > 15,
        "{up_calls} {destroy_calls}"
    );

    let cases: Vec<(Phase, usize)> = (1..=up_calls)
        .map(|k| (Phase::Up, k))
        .chain((1..=destroy_calls).map(|k| (Phase::Destroy, k)))
        .collect();
    let total = cases.len();
    let permits = Arc::new(Semaphore::new(4));
    let mut set = JoinSet::new();
    for (phase, k) in cases {
        let (emulator, permits) = (emulator.clone(), permits.clone());
        set.spawn(async move {
            let _permit = permits.acquire_owned().await.unwrap();
            killed_at(emulator, phase, k).await;
        });
    }
    let mut done = 0;
    while let Some(joined) = set.join_next().await {
        joined.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
        done += 1;
    }
    assert_eq!(done, total);
    eprintln!("killed and healed at each of {up_calls} calls of up and {destroy_calls} of destroy");
}

/// A platform whose frontend Application Auto Scaling scales.
const SCALED: &str = "[[service]]\nname = \"frontend\"\nautoscaling = { min = 1, max = 3, target_cpu_percent = 60 }\n";

/// The scalable targets and the scaling policies in `config`'s account, by resource id.
async fn scaling_ids(config: &aws_types::SdkConfig) -> (Vec<String>, Vec<String>) {
    let (targets, policies) = scaling(config).await;
    (
        targets.into_iter().map(|(id, ..)| id).collect(),
        policies.into_iter().map(|(id, _)| id).collect(),
    )
}

/// Killed right after each call that scales the service (`RegisterScalableTarget`,
/// `PutScalingPolicy` and the reads between them in `up`; the policy's delete, the look and the
/// deregister in `destroy`): the next run converges on one target with one policy, and a destroy
/// then leaves nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_scaled_service_killed_at_each_call_of_its_scaling_converges() {
    let emulator = Arc::new(
        Emulator::start()
            .await
            .expect("an AWS emulator is required for this suite"),
    );
    emulator.require_ecs().expect("the emulator must serve ECS");
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), SCALED).unwrap();
    let path = file.path().to_str().unwrap().to_owned();
    let extra = ["--config", path.as_str()];
    let scaling_call = |op: &str| op.contains("Scalable") || op.contains("ScalingPolic");

    let (proxy, config, dir) = fresh(&emulator).await;
    run_ok(&proxy, dir.path(), &extra, "up", "clean up").await;
    let up: Vec<usize> = (proxy.calls().iter().enumerate())
        .filter(|(_, c)| scaling_call(&c.operation))
        .map(|(i, _)| i + 1)
        .collect();
    let service = "service/my-ecs-cluster/frontend-service".to_owned();
    assert_eq!(
        scaling_ids(&config).await,
        (vec![service.clone()], vec![service.clone()])
    );
    proxy.clear_calls();
    run_ok(&proxy, dir.path(), &extra, "destroy", "clean destroy").await;
    let destroy: Vec<usize> = (proxy.calls().iter().enumerate())
        .filter(|(_, c)| scaling_call(&c.operation))
        .map(|(i, _)| i + 1)
        .collect();
    assert!(up.len() >= 2 && destroy.len() >= 2, "{up:?} {destroy:?}");
    assert_eq!(scaling_ids(&config).await, (vec![], vec![]));

    let mut set = JoinSet::new();
    let cases = up
        .into_iter()
        .map(|k| (Phase::Up, k))
        .chain(destroy.into_iter().map(|k| (Phase::Destroy, k)));
    for (phase, k) in cases {
        let (emulator, path, service) = (emulator.clone(), path.clone(), service.clone());
        set.spawn(async move {
            let extra = ["--config", path.as_str()];
            let (proxy, config, dir, what) = killed_with(&emulator, &extra, phase, k).await;
            let (state, command) = (dir.path(), phase.command());
            let registers = |calls: Vec<local_cloud::Call>| {
                calls
                    .into_iter()
                    .filter(|c| c.operation == "RegisterScalableTarget")
                    .count()
            };
            let registered = registers(proxy.calls()) > 0;
            proxy.clear_calls();
            run_ok(&proxy, state, &extra, command, &what).await;
            if let Phase::Up = phase {
                // What the killed run registered is found by the service and adopted (its policy
                // put if it had none yet), not registered again.
                if registered {
                    assert_eq!(registers(proxy.calls()), 0, "{what}");
                }
                assert_eq!(
                    scaling_ids(&config).await,
                    (vec![service.clone()], vec![service.clone()]),
                    "{what}"
                );
                run_ok(&proxy, state, &extra, "destroy", &what).await;
            }
            assert_eq!(scaling_ids(&config).await, (vec![], vec![]), "{what}");
            let left = inventory(&config).await;
            assert!(left.is_empty(), "{what}: left {left:#?}");
        });
    }
    while let Some(joined) = set.join_next().await {
        joined.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
    }
}

/// Killed right after each call of the load balancer's (every `elasticloadbalancing` call of a
/// balanced platform's `up` and `destroy`, and `CreateService`, which registers the service in its
/// target group): the next run converges on one balancer, listener, rule and target group, and a
/// destroy then leaves nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_balanced_platform_killed_at_each_call_of_its_balancer_converges() {
    use crate::common::{BALANCED, balanced_counts};
    let emulator = Arc::new(
        Emulator::start()
            .await
            .expect("an AWS emulator is required for this suite"),
    );
    emulator.require_ecs().expect("the emulator must serve ECS");
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), BALANCED).unwrap();
    let path = file.path().to_str().unwrap().to_owned();
    let extra = ["--config", path.as_str()];
    let balancer_call = |c: &local_cloud::Call| {
        c.service == "elasticloadbalancing" || c.operation == "CreateService"
    };
    let positions = |calls: Vec<local_cloud::Call>| -> Vec<usize> {
        calls
            .iter()
            .enumerate()
            .filter(|(_, c)| balancer_call(c))
            .map(|(i, _)| i + 1)
            .collect()
    };

    let (proxy, config, dir) = fresh(&emulator).await;
    run_ok(&proxy, dir.path(), &extra, "up", "clean up").await;
    let up = positions(proxy.calls());
    assert_eq!(counts(&inventory(&config).await), balanced_counts());
    proxy.clear_calls();
    run_ok(&proxy, dir.path(), &extra, "destroy", "clean destroy").await;
    let destroy = positions(proxy.calls());
    assert!(up.len() >= 6 && destroy.len() >= 4, "{up:?} {destroy:?}");
    assert!(inventory(&config).await.is_empty());

    eprintln!(
        "killing at {} calls of up and {} of destroy: {up:?} {destroy:?}",
        up.len(),
        destroy.len()
    );
    let permits = Arc::new(Semaphore::new(4));
    let mut set = JoinSet::new();
    let cases = up
        .into_iter()
        .map(|k| (Phase::Up, k))
        .chain(destroy.into_iter().map(|k| (Phase::Destroy, k)));
    for (phase, k) in cases {
        let (emulator, path, permits) = (emulator.clone(), path.clone(), permits.clone());
        set.spawn(async move {
            let _permit = permits.acquire_owned().await.unwrap();
            let extra = ["--config", path.as_str()];
            let (proxy, config, dir, what) = killed_with(&emulator, &extra, phase, k).await;
            let (state, command) = (dir.path(), phase.command());
            run_ok(&proxy, state, &extra, command, &what).await;
            if let Phase::Up = phase {
                let live = inventory(&config).await;
                assert_eq!(counts(&live), balanced_counts(), "{what}: {live:#?}");
                run_ok(&proxy, state, &extra, "destroy", &what).await;
            }
            let left = inventory(&config).await;
            assert!(left.is_empty(), "{what}: left {left:#?}");
        });
    }
    while let Some(joined) = set.join_next().await {
        joined.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
    }
}
