//! Team state in S3 (the emulator's), as a team uses it: locks that one run wins and the other
//! names, a write after the lock was forced refused rather than overwriting, answers lost after S3
//! acted recognised as ours, a run killed with -9 that the next run names, `force-unlock` and an `up`
//! that heals, outputs read from another working directory, and a corrupt state restored from the
//! bucket's versions, with the state only ever in S3.

use std::path::Path;
use std::process::ExitStatus;
use std::sync::atomic::{AtomicU64, Ordering};

use aws_sdk_s3::primitives::ByteStream;
use aws_types::SdkConfig;
use local_cloud::{Emulator, Fault, Proxy, Rule};
use platform_core::{S3StateStore, StateStore, error::StateError, state::StackState};
use serde_json::Value;

use crate::common::{counts, inventory, run_production, seed_counts};

static NEXT: AtomicU64 = AtomicU64::new(0);

/// A moto account of the test's own, a proxy that puts every call in it, and a versioned bucket.
struct Team {
    _emulator: Emulator,
    proxy: Proxy,
    /// Straight to the emulator, in the account.
    config: SdkConfig,
    bucket: String,
}

impl Team {
    async fn start() -> Self {
        let emulator = Emulator::start()
            .await
            .expect("an AWS emulator is required for this suite");
        let n = u64::from(std::process::id()) * 1_000 + NEXT.fetch_add(1, Ordering::SeqCst);
        let account = format!("{:012}", 300_000_000_000 + n % 600_000_000_000);
        let proxy = Proxy::start(emulator.endpoint_url()).await.unwrap();
        proxy.set_account(&account);
        let config = emulator.account(&account);
        let bucket = format!("platform-state-{account}");
        let s3 = s3(&config);
        s3.create_bucket().bucket(&bucket).send().await.unwrap();
        s3.put_bucket_versioning()
            .bucket(&bucket)
            .versioning_configuration(
                aws_sdk_s3::types::VersioningConfiguration::builder()
                    .status(aws_sdk_s3::types::BucketVersioningStatus::Enabled)
                    .build(),
            )
            .send()
            .await
            .unwrap();
        Self {
            _emulator: emulator,
            proxy,
            config,
            bucket,
        }
    }

    fn url(&self) -> String {
        format!("s3://{}/team", self.bucket)
    }

    /// A store straight on the emulator (another client: another member of the team).
    fn store(&self) -> S3StateStore {
        S3StateStore::from_url(&self.config, &self.url()).unwrap()
    }

    /// A store whose calls go through the proxy (to lose their answers).
    fn proxied_store(&self) -> S3StateStore {
        S3StateStore::from_url(
            &Emulator::at(&self.proxy.endpoint_url()).sdk_config(),
            &self.url(),
        )
        .unwrap()
    }

    /// The keys under the prefix.
    async fn keys(&self) -> Vec<String> {
        let out = s3(&self.config)
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix("team/")
            .send()
            .await
            .unwrap();
        out.contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_owned))
            .collect()
    }

    /// Runs `production --endpoint PROXY --state s3://.. ARGS` in `cwd`; with `kill_at`, SIGKILLs
    /// it as soon as its `kill_at`-th call was carried out upstream (`None`: it was killed).
    async fn run(
        &self,
        cwd: &Path,
        args: &[&str],
        kill_at: Option<usize>,
    ) -> Option<(ExitStatus, String, String, u32)> {
        let (endpoint, url) = (self.proxy.endpoint_url(), self.url());
        let mut all = vec!["--endpoint", &endpoint, "--state", &url];
        all.extend_from_slice(args);
        run_production(&self.proxy, cwd, &all, kill_at)
            .await
            .map(|r| (r.status, r.stdout, r.stderr, r.pid))
    }

    /// A run that must succeed; its stdout.
    async fn ok(&self, cwd: &Path, args: &[&str]) -> String {
        let (status, out, err, _) = self.run(cwd, args, None).await.unwrap();
        assert!(status.success(), "{args:?} exited {status}:\n{err}");
        out
    }
}

fn s3(config: &SdkConfig) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(config)
            .force_path_style(true)
            .build(),
    )
}

fn sample(stack: &str, serial: u64) -> StackState {
    let mut s = StackState::new(stack);
    s.serial = serial;
    s
}

#[tokio::test]
async fn of_two_lockers_exactly_one_wins_and_the_other_is_told_who_holds_the_lock() {
    let team = Team::start().await;
    let (a, b) = (team.store(), team.store());
    for round in 0..10 {
        let (la, lb) = tokio::join!(a.lock("network", "up"), b.lock("network", "destroy"));
        let (winner, err) = match (la, lb) {
            (Ok(w), Err(e)) | (Err(e), Ok(w)) => (w, e),
            (la, lb) => panic!("round {round}: exactly one must win: {la:?} / {lb:?}"),
        };
        let StateError::Locked {
            stack,
            holder,
            info,
        } = &err
        else {
            panic!("round {round}: {err}");
        };
        let held = a.holder("network").await.unwrap().unwrap();
        assert_eq!(stack, "network");
        assert_eq!(info.as_deref(), Some(&held), "round {round}");
        assert_eq!(held.pid, std::process::id());
        assert!(
            holder.contains(&format!("pid {}", std::process::id())),
            "{holder}"
        );
        winner.release().await.unwrap();
        assert_eq!(a.holder("network").await.unwrap(), None, "round {round}");
    }
    assert_eq!(team.keys().await, Vec::<String>::new());
}

#[tokio::test]
async fn a_write_after_the_lock_was_forced_and_taken_is_refused_and_overwrites_nothing() {
    let team = Team::start().await;
    let (a, b) = (team.store(), team.store());
    let first = a.lock("iam", "up").await.unwrap();
    first.write(&sample("iam", 1)).await.unwrap();
    first.write(&sample("iam", 2)).await.unwrap();
    // Someone decides the first run is dead, removes its lock, and runs.
    let forced = b.force_unlock("iam").await.unwrap().unwrap();
    assert_eq!(forced.operation, "up");
    let second = b.lock("iam", "up").await.unwrap();
    second.write(&sample("iam", 3)).await.unwrap();
    // The first run goes on writing: refused, and what the second wrote stays.
    let err = first.write(&sample("iam", 9)).await.unwrap_err();
    assert!(matches!(err, StateError::Conflict { .. }), "{err}");
    assert!(err.to_string().contains("was its lock forced?"), "{err}");
    assert_eq!(a.read("iam").await.unwrap(), Some(sample("iam", 3)));
    // Its release leaves the second run's lock alone.
    first.release().await.unwrap();
    assert!(b.holder("iam").await.unwrap().is_some());
    second.release().await.unwrap();
    assert_eq!(b.holder("iam").await.unwrap(), None);
    // A stack created by someone else after the lock was taken is not overwritten either.
    let third = a.lock("fresh", "up").await.unwrap();
    let other = b.force_unlock("fresh").await.unwrap();
    assert!(other.is_some());
    let fourth = b.lock("fresh", "up").await.unwrap();
    fourth.write(&sample("fresh", 1)).await.unwrap();
    let err = third.write(&sample("fresh", 7)).await.unwrap_err();
    assert!(matches!(err, StateError::Conflict { .. }), "{err}");
}

#[tokio::test]
async fn answers_lost_after_s3_acted_are_recognised_as_ours() {
    let team = Team::start().await;
    let store = team.proxied_store();
    // The lock's create is carried out, its answer lost; the SDK sends it again and S3 refuses it
    // (the lock exists): it is ours, not someone else's.
    team.proxy.add_rule(
        Rule::new(Fault::LoseResponse)
            .operation("PutObject")
            .times(1),
    );
    let lock = store.lock("network", "up").await.unwrap();
    // The same for a state write: refused the second time (the ETag moved), and ours.
    lock.write(&sample("network", 1)).await.unwrap();
    team.proxy.add_rule(
        Rule::new(Fault::LoseResponse)
            .operation("PutObject")
            .times(1),
    );
    lock.write(&sample("network", 2)).await.unwrap();
    lock.write(&sample("network", 3)).await.unwrap();
    assert_eq!(
        store.read("network").await.unwrap(),
        Some(sample("network", 3))
    );
    let lost = team
        .proxy
        .calls()
        .iter()
        .filter(|c| c.fault.is_some())
        .count();
    assert_eq!(lost, 2, "both faults were injected");
    lock.release().await.unwrap();
    assert_eq!(store.holder("network").await.unwrap(), None);
}

#[tokio::test]
async fn a_corrupt_state_names_the_version_that_restores_it() {
    let team = Team::start().await;
    let store = team.store();
    let lock = store.lock("network", "up").await.unwrap();
    lock.write(&sample("network", 1)).await.unwrap();
    lock.write(&sample("network", 2)).await.unwrap();
    lock.release().await.unwrap();
    let s3 = s3(&team.config);
    s3.put_object()
        .bucket(&team.bucket)
        .key("team/network.json")
        .body(ByteStream::from_static(b"{\"version\": 1, \"stack\": "))
        .send()
        .await
        .unwrap();
    let err = store.read("network").await.unwrap_err();
    let StateError::Corrupt {
        backup: Some(restore),
        ..
    } = &err
    else {
        panic!("no version named: {err}");
    };
    assert!(err.to_string().contains(restore.as_str()), "{err}");
    // The command names the newest good version: do what it says.
    let source = restore
        .split("--copy-source '")
        .nth(1)
        .and_then(|s| s.strip_suffix('\''))
        .unwrap_or_else(|| panic!("{restore}"));
    assert!(source.starts_with(&format!("{}/team/network.json?versionId=", team.bucket)));
    s3.copy_object()
        .bucket(&team.bucket)
        .key("team/network.json")
        .copy_source(source)
        .send()
        .await
        .unwrap();
    assert_eq!(
        store.read("network").await.unwrap(),
        Some(sample("network", 2))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_platform_lives_in_s3_is_killed_unlocked_healed_and_destroyed() {
    let team = Team::start().await;
    let here = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();

    // Another run holds a lock: `up` fails at once, names it, says how to clear it, and leaves
    // nothing locked of its own.
    let other = team.store();
    let held = other.lock("network", "up").await.unwrap();
    let (status, _, err, _) = team.run(here.path(), &["up"], None).await.unwrap();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(
        err.contains("stack network is locked by up by")
            && err.contains(&format!("pid {}", std::process::id())),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "production --state {} force-unlock network",
            team.url()
        )),
        "{err}"
    );
    assert_eq!(other.holder("cluster").await.unwrap(), None);
    assert_eq!(other.holder("iam").await.unwrap(), None);
    assert!(inventory(&team.config).await.is_empty());
    held.release().await.unwrap();

    // Killed with -9 in the middle of `up`, holding the three locks.
    let killed = team.run(here.path(), &["up"], Some(25)).await;
    assert!(killed.is_none(), "the run ended before its 25th call");
    let holder = other
        .holder("cluster")
        .await
        .unwrap()
        .expect("the lock stays");
    assert_eq!(holder.operation, "up");
    let (status, _, err, _) = team.run(here.path(), &["up"], None).await.unwrap();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("pid {}", holder.pid)) && err.contains("that process is gone"),
        "{err}"
    );
    assert!(err.contains("force-unlock cluster"), "{err}");

    // force-unlock shows each holder and removes the three locks.
    let out = team
        .ok(here.path(), &["--json", "--yes", "force-unlock"])
        .await;
    let doc: Value = serde_json::from_str(&out).unwrap();
    let removed: Vec<&str> = doc["removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["stack"].as_str().unwrap())
        .collect();
    assert_eq!(removed, ["iam", "network", "cluster"], "{doc}");
    assert_eq!(doc["removed"][0]["holder"]["pid"], holder.pid);
    assert_eq!(doc["remaining"], serde_json::json!([]));
    let out = team.ok(here.path(), &["force-unlock"]).await;
    assert!(out.contains("no lock is held"), "{out}");

    // The next `up` heals: exactly one of each resource.
    let up: Value = serde_json::from_str(&team.ok(here.path(), &["--json", "up"]).await).unwrap();
    let live = inventory(&team.config).await;
    assert_eq!(counts(&live), seed_counts(), "{live:#?}");

    // Another machine (another working directory) reads the same outputs.
    let outputs: Value =
        serde_json::from_str(&team.ok(elsewhere.path(), &["--json", "outputs"]).await).unwrap();
    assert_eq!(outputs["outputs"], up["outputs"]);
    assert!(
        outputs["outputs"]["cluster"]["service_arn"]
            .as_str()
            .is_some_and(|a| a.contains("my-ecs-cluster"))
    );
    let noop: Value =
        serde_json::from_str(&team.ok(elsewhere.path(), &["--json", "up"]).await).unwrap();
    assert_eq!(noop["api_calls"]["mutating"], 0, "{noop}");

    // Killed in the middle of `destroy`; with --take-over-dead-locks, the next run takes the dead
    // run's locks over, says so, and finishes.
    let killed = team.run(here.path(), &["destroy"], Some(12)).await;
    assert!(killed.is_none(), "the destroy ended before its 12th call");
    let (status, _, err, _) = team
        .run(here.path(), &["--take-over-dead-locks", "destroy"], None)
        .await
        .unwrap();
    assert!(status.success(), "{err}");
    assert!(err.contains("took over the lock of stack"), "{err}");
    assert!(inventory(&team.config).await.is_empty());
    assert_eq!(team.keys().await, Vec::<String>::new());

    // Nothing was written to local disk, in either working directory.
    for dir in [here.path(), elsewhere.path()] {
        let written: Vec<_> = std::fs::read_dir(dir).unwrap().collect();
        assert!(written.is_empty(), "{}: {written:?}", dir.display());
    }
}

#[tokio::test]
async fn outputs_recorded_by_another_account_are_refused_and_ours_are_read_with_their_producer() {
    let team = Team::start().await;
    let store = team.store();
    let here = platform_core::Engine::builder(platform_core::MemoryStateStore::new())
        .aws(team.config.clone())
        .build()
        .identity()
        .await
        .unwrap();
    // The IAM and network stacks' outputs, recorded by whoever applied them.
    let record = |stack: &str, account: &str, outputs: Value| {
        let mut s = sample(stack, 7);
        s.provider = Some(platform_core::ProviderInfo {
            account_id: account.to_owned(),
            region: here.region.clone(),
        });
        s.outputs = Some(outputs);
        s.outputs_schema = Some(1);
        s
    };
    let iam = serde_json::json!({
        "account_id": here.account_id, "region": here.region,
        "cluster_role": {"name": "c", "arn": "arn:aws:iam::1:role/c"},
        "instance_role": {"name": "i", "arn": "arn:aws:iam::1:role/i"},
        "frontend_role": {"name": "f", "arn": "arn:aws:iam::1:role/f"},
        "cluster_policy_arn": "p1", "instance_policy_arn": "p2", "frontend_policy_arn": "p3",
        "instance_profile_name": "ip", "instance_profile_arn": "arn:aws:iam::1:instance-profile/ip"
    });
    let network = serde_json::json!({
        "vpc_id": "vpc-1", "vpc_cidr": "10.0.0.0/16", "public_subnet_ids": ["subnet-1"],
        "availability_zones": ["us-east-1a"], "security_group_id": "sg-1",
        "route_table_id": "rtb-1", "internet_gateway_id": "igw-1"
    });
    for (stack, outputs, account) in [
        ("iam", iam.clone(), "999999999999"),
        ("network", network.clone(), here.account_id.as_str()),
    ] {
        let lock = store.lock(stack, "up").await.unwrap();
        lock.write(&record(stack, account, outputs)).await.unwrap();
        lock.release().await.unwrap();
    }
    // Another account's IAM outputs: refused, naming both accounts.
    let err = cluster_stack::ClusterStack::from_state(
        cluster_stack::ClusterConfig::default(),
        &store,
        &here,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, platform_core::Error::ForeignOutputs { stack, .. } if stack == "iam"),
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.contains("999999999999") && text.contains(&here.account_id),
        "{text}"
    );
    // Re-recorded by our own account: read, from S3, with who produced them.
    let lock = store.lock("iam", "up").await.unwrap();
    lock.write(&record("iam", &here.account_id, iam))
        .await
        .unwrap();
    lock.release().await.unwrap();
    let read = platform_core::StackRef::<iam_stack::IamStack>::new("iam")
        .read(&store, &here)
        .await
        .unwrap();
    assert_eq!(read.producer.serial, Some(7));
    assert_eq!(read.producer.provider.as_ref(), Some(&here));
    cluster_stack::ClusterStack::from_state(cluster_stack::ClusterConfig::default(), &store, &here)
        .await
        .unwrap();
}
