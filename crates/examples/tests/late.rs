//! Creates that AWS carries out late: the `production` binary is killed while one of its creating
//! calls is held at the proxy, which carries it out seconds later (as AWS may carry out a request
//! whose sender died, or show a new resource to its describe calls seconds after the create). The
//! next run starts at once, before the held create lands, while what EC2 creates stays invisible to
//! describes for a while (read lag): it must adopt the instance when it shows within the settle
//! window, not make a second one; `destroy` must then leave nothing. Every creating operation of the
//! platform's `up` is held in turn.

use std::sync::Arc;
use std::time::Duration;

use local_cloud::Emulator;
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;

use crate::common::{counts, fresh_account, inventory, run_command, run_ok, seed_counts};

/// How long the proxy holds the create before carrying it out.
const HOLD: Duration = Duration::from_secs(3);
/// How long what an EC2 create made stays invisible to describes after it was carried out.
const LAG: Duration = Duration::from_secs(2);
/// The runs' settle window: longer than the hold, as AWS's lag is shorter than the default window.
const WINDOW: &str = "8s";

/// The runs' own flags.
const FLAGS: [&str; 2] = ["--settle-window", WINDOW];

/// Whether `operation` makes something (the calls a late landing can twin).
fn creating(operation: &str) -> bool {
    ["Create", "Register", "Associate", "Attach", "Add"]
        .iter()
        .any(|p| operation.starts_with(p))
}

async fn held(emulator: Arc<Emulator>, operation: String) {
    let (proxy, config, dir) = fresh_account(&emulator, 100_000_000_000).await;
    let state = dir.path();
    let what = format!("{operation} held {HOLD:?}, the client killed, reads lagging {LAG:?}");
    proxy.lag_reads(LAG);
    let arrived = proxy.hold(&operation, HOLD);
    let killed = run_command(&proxy, state, &FLAGS, "up", Some(arrived))
        .await
        .is_none();
    assert!(killed, "{what}: the run ended before calling {operation}");
    // At once: the held create has not landed yet.
    run_ok(&proxy, state, &FLAGS, "up", &what).await;
    let live = inventory(&config).await;
    assert_eq!(counts(&live), seed_counts(), "{what}: {live:#?}");
    run_ok(&proxy, state, &FLAGS, "destroy", &what).await;
    let left = inventory(&config).await;
    assert!(left.is_empty(), "{what}: left {left:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_create_carried_out_seconds_after_its_sender_was_killed_is_adopted_not_twinned() {
    let emulator = Arc::new(
        Emulator::start()
            .await
            .expect("an AWS emulator is required for this suite"),
    );
    emulator.require_ecs().expect("the emulator must serve ECS");
    // The creating operations of a clean up, each once.
    let (proxy, config, dir) = fresh_account(&emulator, 100_000_000_000).await;
    run_ok(&proxy, dir.path(), &FLAGS, "up", "clean up").await;
    let mut operations: Vec<String> = proxy
        .calls()
        .into_iter()
        .map(|c| c.operation)
        .filter(|o| creating(o))
        .collect();
    operations.sort();
    operations.dedup();
    run_ok(&proxy, dir.path(), &FLAGS, "destroy", "clean destroy").await;
    assert!(inventory(&config).await.is_empty());
    assert!(operations.len() >= 12, "{operations:?}");

    let permits = Arc::new(Semaphore::new(4));
    let mut set = JoinSet::new();
    for operation in operations.clone() {
        let (emulator, permits) = (emulator.clone(), permits.clone());
        set.spawn(async move {
            let _permit = permits.acquire_owned().await.unwrap();
            held(emulator, operation).await;
        });
    }
    while let Some(joined) = set.join_next().await {
        joined.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
    }
    eprintln!("held and healed: {}", operations.join(", "));
}

/// Past the settle window (here none at all) a late create leaves a twin; `destroy` sweeps it. The
/// held create is carried out only once the next run has finished, however slow the machine.
async fn twinned(emulator: Arc<Emulator>, operation: &'static str) {
    let (proxy, config, dir) = fresh_account(&emulator, 100_000_000_000).await;
    let state = dir.path();
    let what = format!("{operation} held past the next run and a zero settle window");
    let none = ["--settle-window", "0s"];
    let release = Arc::new(Notify::new());
    let arrived = proxy.hold_until(operation, release.clone());
    let killed = run_command(&proxy, state, &none, "up", Some(arrived))
        .await
        .is_none();
    assert!(killed, "{what}: the run ended before calling {operation}");
    run_ok(&proxy, state, &none, "up", &what).await;
    release.notify_one();
    // The twin lands.
    let landed = tokio::time::Instant::now() + Duration::from_secs(30);
    let live = loop {
        let live = inventory(&config).await;
        if counts(&live) != seed_counts() || tokio::time::Instant::now() > landed {
            break live;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_ne!(
        counts(&live),
        seed_counts(),
        "{what}: a twin was expected: {live:#?}"
    );
    run_ok(&proxy, state, &none, "destroy", &what).await;
    let left = inventory(&config).await;
    assert!(left.is_empty(), "{what}: left {left:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_twin_made_by_a_create_that_landed_after_the_settle_window_is_swept_by_destroy() {
    let emulator = Arc::new(
        Emulator::start()
            .await
            .expect("an AWS emulator is required for this suite"),
    );
    emulator.require_ecs().expect("the emulator must serve ECS");
    let mut set = JoinSet::new();
    // The EC2 kinds that take neither a name nor (on moto) an idempotency token, and a task
    // definition (every register makes a revision).
    for operation in [
        "CreateVpc",
        "CreateInternetGateway",
        "CreateRouteTable",
        "RegisterTaskDefinition",
    ] {
        let emulator = emulator.clone();
        set.spawn(async move { twinned(emulator, operation).await });
    }
    while let Some(joined) = set.join_next().await {
        joined.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
    }
}
