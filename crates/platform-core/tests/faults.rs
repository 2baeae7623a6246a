//! The engine's at-most-once promises against the in-memory fake cloud, one fault each: a lost
//! response, a timeout before the cloud acted, a kill at every state write of an `up`, of a
//! replacement and of a destroy, cancellation, and a stack group that cannot start whole.
//!
//! A "kill" is [`MemoryStateStore::crash_at_write`]: from the k-th write on nothing more is recorded,
//! while what the run already did in the cloud stays done, as when the process dies; the next
//! process is a new engine over the same store and cloud.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use platform_core::testing::{FakeCloud, FakeStack, UpdateFault, fake_engine, local_provider};
use platform_core::{
    Engine, Error, Event, MemoryStateStore, ResourceError, StateStore, UpOptions,
    resource::CancellationToken, state::PendingOp,
};

/// A token that cancels itself `ms` milliseconds from now: Ctrl-C during the run.
fn cancelled_after(ms: u64) -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        cancel.cancel();
    });
    token
}

/// An `up` of `stack` killed at its `k`-th state write (that write and every later one lost, what
/// it did in the cloud done), then the store revived for the next process.
async fn killed_at_write(k: u64, store: &MemoryStateStore, cloud: &FakeCloud, stack: &FakeStack) {
    store.crash_at_write(k);
    fake_engine(store.clone(), cloud)
        .up(stack)
        .await
        .unwrap_err();
    store.revive();
}

/// Every declared resource of `stack` has exactly one live instance, and it is the recorded one.
async fn exactly_one_each(stack: &FakeStack, store: &MemoryStateStore, cloud: &FakeCloud) {
    let state = store.read(&stack.name).await.unwrap().unwrap();
    for node in &stack.nodes {
        let live = cloud.instances_of(&node.name);
        assert_eq!(live.len(), 1, "{}: {live:?}", node.name);
        let recorded = state.resources[&node.name].outputs.as_ref().unwrap();
        assert_eq!(recorded["id"], live[0].id.as_str(), "{}", node.name);
        assert_eq!(live[0].fixed, node.fixed, "{}", node.name);
        assert_eq!(live[0].value, node.value, "{}: configured", node.name);
        assert!(state.resources[&node.name].pending.is_none());
        assert!(state.resources[&node.name].deposed.is_empty());
    }
    assert_eq!(cloud.live().len(), stack.nodes.len(), "{:?}", cloud.live());
}

#[tokio::test]
async fn create_carried_out_response_lost_is_adopted_in_the_same_run_without_a_twin() {
    let (store, cloud) = (MemoryStateStore::new(), FakeCloud::new());
    let adopted = Arc::new(Mutex::new(Vec::new()));
    let seen = adopted.clone();
    let e = Engine::builder(store.clone())
        .provider(local_provider())
        .extension(cloud.clone())
        .on_event(move |ev| {
            if let Event::Adopted { resource, .. } = ev {
                seen.lock().unwrap().push(resource.clone());
            }
        })
        .build();
    let stack = FakeStack::chain("lost", 3);
    cloud.lose_response_of("r1");
    e.up(&stack).await.unwrap();
    assert_eq!(cloud.calls().create, 3, "the create was not sent again");
    assert_eq!(adopted.lock().unwrap().as_slice(), ["r1"]);
    exactly_one_each(&stack, &store, &cloud).await;
    // The adopted instance carries the token recorded for it.
    let state = store.read("lost").await.unwrap().unwrap();
    let token = state.resources["r1"].instance.clone().unwrap();
    assert_eq!(token.len(), 32);
    assert_eq!(cloud.instances_of("r1")[0].tags["platform:instance"], token);
}

#[tokio::test]
async fn create_timed_out_before_acting_is_not_resent_in_the_run_and_the_next_run_creates_one() {
    let (store, cloud) = (MemoryStateStore::new(), FakeCloud::new());
    let stack = FakeStack::chain("timeout", 2);
    cloud.time_out_create_of("r0");
    let err = fake_engine(store.clone(), &cloud)
        .up(&stack)
        .await
        .unwrap_err();
    match &err {
        Error::Resource {
            resource, source, ..
        } => {
            assert_eq!(resource, "r0");
            assert!(
                matches!(**source, ResourceError::OutcomeUnknown { .. }),
                "{source}"
            );
        }
        other => panic!("{other}"),
    }
    assert!(err.to_string().contains("outcome unknown"), "{err}");
    assert_eq!(cloud.calls().create, 1, "sent once, never re-sent blindly");
    let state = store.read("timeout").await.unwrap().unwrap();
    let pending = state.resources["r0"].pending.clone().unwrap();
    assert_eq!(pending.op, PendingOp::Create);
    let token = pending.instance.unwrap();

    // The next run looks first (nothing), then creates with the same token.
    fake_engine(store.clone(), &cloud).up(&stack).await.unwrap();
    exactly_one_each(&stack, &store, &cloud).await;
    assert_eq!(cloud.instances_of("r0")[0].tags["platform:instance"], token);
}

/// Runs `change` with a crash at the k-th write, for every k until a run with no crash completes
/// within k writes; after each crash a new engine runs `target` again, which must converge to one
/// instance of each resource. `setup` makes the starting point on a fresh store and cloud.
async fn kill_at_every_write<F, Fut>(
    setup: F,
    change: &FakeStack,
    check_crashed: impl Fn(&platform_core::state::StackState, &FakeCloud, &str),
) where
    F: Fn(MemoryStateStore, FakeCloud) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut k = 1;
    loop {
        let (store, cloud) = (MemoryStateStore::new(), FakeCloud::new());
        setup(store.clone(), cloud.clone()).await;
        let before = store.writes();
        store.crash_at_write(k);
        let first = fake_engine(store.clone(), &cloud).up(change).await;
        let writes = store.writes() - before;
        store.revive();
        if let Some(state) = store.read(&change.name).await.unwrap() {
            check_crashed(&state, &cloud, &format!("crash at write {k}"));
        }
        fake_engine(store.clone(), &cloud)
            .up(change)
            .await
            .unwrap_or_else(|e| panic!("crash at write {k}: the next run failed: {e}"));
        exactly_one_each(change, &store, &cloud).await;
        fake_engine(store.clone(), &cloud)
            .destroy::<FakeStack>(&change.name)
            .await
            .unwrap();
        assert!(
            cloud.live().is_empty(),
            "crash at write {k}: destroy left {:?}",
            cloud.live()
        );
        if first.is_ok() {
            assert!(
                writes < k,
                "a run that completed wrote {writes} times past the crash at {k}"
            );
            break;
        }
        k += 1;
    }
    assert!(k > 5, "the crash loop covered only {k} writes");
}

#[tokio::test]
async fn killed_at_every_state_write_of_an_up_the_next_run_converges_to_one_of_each() {
    let stack = FakeStack::from_deps("kill", vec![vec![], vec![0], vec![0], vec![1, 2]]);
    kill_at_every_write(|_, _| async {}, &stack, |_, _, _| {}).await;
}

#[tokio::test]
async fn killed_at_every_state_write_of_an_up_whose_creates_publish_early_the_next_run_configures_each_once()
 {
    let stack = FakeStack::from_deps("early", vec![vec![], vec![0], vec![0], vec![1, 2]]);
    let setup = |_, cloud: FakeCloud| async move { cloud.configure_after_publish() };
    kill_at_every_write(setup, &stack, |_, _, _| {}).await;
}

#[tokio::test]
async fn killed_at_every_state_write_of_a_replacement_the_deposed_instance_is_never_adopted() {
    let old = FakeStack::chain("replace", 3);
    let mut new = old.clone();
    new.nodes[1].fixed = "v2".into(); // r1 is replaced; r2 is re-pointed to the new r1.
    let setup = |store: MemoryStateStore, cloud: FakeCloud| {
        let old = old.clone();
        async move {
            fake_engine(store.clone(), &cloud).up(&old).await.unwrap();
        }
    };
    let check = |state: &platform_core::state::StackState, cloud: &FakeCloud, when: &str| {
        let r1 = &state.resources["r1"];
        // A deposed instance that is gone from the cloud but still recorded had its delete intent
        // recorded before the call.
        for d in &r1.deposed {
            let live = cloud.live().contains_key(d.outputs["id"].as_str().unwrap());
            if !live {
                let p = d.pending.as_ref().unwrap_or_else(|| {
                    panic!("{when}: deposed {d:?} deleted without a recorded intent")
                });
                assert_eq!(p.op, PendingOp::Delete, "{when}");
            }
        }
        // The instance being created is never confused with the deposed one: its token differs.
        if let Some(p) = &r1.pending {
            for d in &r1.deposed {
                assert_ne!(p.instance, d.instance, "{when}");
            }
        }
    };
    kill_at_every_write(setup, &new, check).await;
}

#[tokio::test]
async fn killed_at_every_state_write_of_a_destroy_the_next_destroy_leaves_nothing() {
    let stack = FakeStack::from_deps("gone", vec![vec![], vec![0], vec![1], vec![0]]);
    let mut k = 1;
    loop {
        let (store, cloud) = (MemoryStateStore::new(), FakeCloud::new());
        fake_engine(store.clone(), &cloud).up(&stack).await.unwrap();
        store.crash_at_write(k);
        let first = fake_engine(store.clone(), &cloud)
            .destroy::<FakeStack>("gone")
            .await;
        store.revive();
        fake_engine(store.clone(), &cloud)
            .destroy::<FakeStack>("gone")
            .await
            .unwrap_or_else(|e| panic!("crash at write {k}: {e}"));
        assert!(
            cloud.live().is_empty(),
            "crash at write {k}: {:?}",
            cloud.live()
        );
        assert!(store.read("gone").await.unwrap().is_none());
        if first.is_ok() {
            break;
        }
        k += 1;
    }
    assert!(k > 4, "covered {k} writes");
}

#[tokio::test]
async fn an_update_records_its_intent_before_the_call() {
    let (store, cloud) = (MemoryStateStore::new(), FakeCloud::new());
    let mut stack = FakeStack::chain("upd", 1);
    fake_engine(store.clone(), &cloud).up(&stack).await.unwrap();
    stack.nodes[0].value = "v2".into();
    // Write 1 is the intent, with the run's header; write 2, the result, is lost in the crash.
    killed_at_write(2, &store, &cloud, &stack).await;
    let state = store.read("upd").await.unwrap().unwrap();
    let pending = state.resources["r0"].pending.clone().unwrap();
    assert_eq!(pending.op, PendingOp::Update);
    let since = humantime::parse_rfc3339(&pending.since).unwrap();
    assert!(
        since.elapsed().unwrap() < Duration::from_secs(60),
        "{}",
        pending.since
    );
    assert_eq!(
        cloud.instances_of("r0")[0].value,
        "v2",
        "the update was carried out"
    );
}

/// The run's header travels with its first step: a first run killed right after its first create
/// leaves no document, only that step, and still the account it applied to, so that a run with
/// other credentials is refused rather than creating a second set there.
#[tokio::test]
async fn a_first_run_killed_after_its_first_create_keeps_its_account() {
    let (store, cloud) = (MemoryStateStore::new(), FakeCloud::new());
    let stack = FakeStack::chain("first", 2);
    // Write 1, the first create's intent, is recorded; write 2, its result, is lost.
    killed_at_write(2, &store, &cloud, &stack).await;
    let state = store.read("first").await.unwrap().unwrap();
    assert_eq!(state.provider, Some(local_provider()));
    assert_eq!(state.resources.len(), 1, "{:?}", state.resources.keys());
    let calls = cloud.calls();
    let other = Engine::builder(store.clone())
        .provider(platform_core::ProviderInfo {
            account_id: "111111111111".into(),
            region: "local".into(),
        })
        .extension(cloud.clone())
        .build();
    let err = other.up(&stack).await.unwrap_err();
    assert!(matches!(err, Error::ProviderMismatch { .. }), "{err}");
    assert_eq!(cloud.calls(), calls);
    // The run in the right account completes it, with one of each.
    fake_engine(store.clone(), &cloud).up(&stack).await.unwrap();
    exactly_one_each(&stack, &store, &cloud).await;
}

#[tokio::test]
async fn an_already_cancelled_token_starts_nothing() {
    let (store, cloud) = (MemoryStateStore::new(), FakeCloud::new());
    let token = CancellationToken::new();
    token.cancel();
    let err = fake_engine(store.clone(), &cloud)
        .up_with(
            &FakeStack::chain("c", 3),
            UpOptions::default().with_cancellation(token),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Cancelled {
                completed: 0,
                remaining: 3,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(cloud.calls(), Default::default());
    assert_eq!(store.writes(), 0, "not even the lock's first write");
}

#[tokio::test]
async fn an_engine_runs_again_after_a_cancelled_run_and_creates_no_twin() {
    let (store, cloud) = (MemoryStateStore::new(), FakeCloud::new());
    cloud.set_latency(Duration::from_millis(40));
    let e = fake_engine(store.clone(), &cloud);
    let stack = FakeStack::chain("again", 6);
    let token = cancelled_after(60);
    let err = e
        .up_with(&stack, UpOptions::default().with_cancellation(token))
        .await
        .unwrap_err();
    let Error::Cancelled {
        completed,
        remaining,
        ..
    } = err
    else {
        panic!("{err}")
    };
    assert!(completed >= 1 && remaining >= 1, "{completed} {remaining}");
    e.up(&stack).await.unwrap();
    exactly_one_each(&stack, &store, &cloud).await;
    assert_eq!(cloud.calls().create, 6);
}

#[tokio::test]
async fn cancellation_reaches_a_refresh_in_flight() {
    let (store, cloud) = (MemoryStateStore::new(), FakeCloud::new());
    let stack = FakeStack::chain("r", 3);
    fake_engine(store.clone(), &cloud).up(&stack).await.unwrap();
    cloud.set_latency(Duration::from_secs(30));
    let token = cancelled_after(50);
    let e = Engine::builder(store.clone())
        .provider(local_provider())
        .extension(cloud.clone())
        .cancellation(token.clone())
        .build();
    let started = Instant::now();
    let err = e.refresh(&stack).await.unwrap_err();
    assert!(matches!(err, Error::Cancelled { .. }), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_held_lock_refuses_the_whole_group_before_any_call() {
    let (store, cloud) = (MemoryStateStore::new(), FakeCloud::new());
    let held = store.lock("b", "up").await.unwrap();
    let e = fake_engine(store.clone(), &cloud);
    let (a, b) = (FakeStack::chain("a", 2), FakeStack::chain("b", 2));
    let group = e.group(["a", "b"]);
    // Without a lock timeout the held lock is refused at once: a wait would be a bug.
    let (ra, rb) = tokio::time::timeout(Duration::from_secs(5), async {
        tokio::join!(
            group.up(&a, UpOptions::default()),
            group.up(&b, UpOptions::default())
        )
    })
    .await
    .expect("refused at once, not waited for");
    assert!(matches!(rb, Err(Error::State(_))), "{rb:?}");
    let ea = ra.unwrap_err();
    assert!(
        matches!(&ea, Error::GroupMemberInvalid { member, .. } if member == "b"),
        "{ea}"
    );
    assert!(ea.to_string().contains("locked"), "{ea}");
    assert_eq!(
        cloud.calls(),
        Default::default(),
        "no member called the cloud"
    );
    drop(held);
}

#[tokio::test]
async fn a_held_lock_refuses_the_whole_groups_destroy_before_any_delete() {
    let (store, cloud) = (MemoryStateStore::new(), FakeCloud::new());
    let e = fake_engine(store.clone(), &cloud);
    let net = FakeStack::chain("network", 2);
    let app = FakeStack::chain("cluster", 1).using(0, "network", "r1");
    e.up(&net).await.unwrap();
    e.up(&app).await.unwrap();
    let before = cloud.calls();
    // "network" sorts after "cluster": its lock is taken last, and it is held.
    let held = store.lock("network", "up").await.unwrap();
    let group = e.group(["cluster", "network"]);
    let (rc, rn) = tokio::time::timeout(Duration::from_secs(5), async {
        tokio::join!(
            group.destroy::<FakeStack>("cluster"),
            group.destroy::<FakeStack>("network")
        )
    })
    .await
    .expect("refused at once, not waited for");
    assert!(matches!(rn, Err(Error::State(_))), "{rn:?}");
    let ec = rc.unwrap_err();
    assert!(
        matches!(&ec, Error::GroupMemberInvalid { member, .. } if member == "network"),
        "{ec}"
    );
    assert!(
        ec.to_string().contains("stack network is locked by up"),
        "{ec}"
    );
    assert_eq!(cloud.calls(), before, "nothing deleted");
    assert_eq!(cloud.live().len(), 3);
    drop(held);
    // Once the lock is free, the group's destroy deletes everything.
    let group = e.group(["cluster", "network"]);
    let (rc, rn) = tokio::join!(
        group.destroy::<FakeStack>("cluster"),
        group.destroy::<FakeStack>("network")
    );
    rc.unwrap();
    rn.unwrap();
    assert!(cloud.live().is_empty());
}

#[tokio::test]
async fn a_member_that_is_never_called_does_not_hang_the_group() {
    let (store, cloud) = (MemoryStateStore::new(), FakeCloud::new());
    let e = fake_engine(store.clone(), &cloud);
    let group = e.group(["a", "b"]).join_within(Duration::from_millis(200));
    assert_eq!(group.members(), ["a", "b"]);
    let started = Instant::now();
    let err = group
        .up(&FakeStack::chain("a", 1), UpOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::GroupMemberInvalid { member, .. } if member == "b"),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(cloud.calls(), Default::default());
}

#[tokio::test]
async fn a_lost_create_is_looked_for_again_while_it_is_not_visible_yet_with_growing_waits() {
    let (store, cloud) = (MemoryStateStore::new(), FakeCloud::new());
    let stack = FakeStack::chain("late", 1);
    cloud.lose_response_of("r0");
    cloud.hide_from_next_finds(2);
    let started = Instant::now();
    fake_engine(store.clone(), &cloud).up(&stack).await.unwrap();
    // Found on the third look, after 0.25 s and 0.5 s.
    assert!(
        started.elapsed() >= Duration::from_millis(700),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        cloud.calls().read,
        4,
        "three finds (no more once found), then the read of what was adopted"
    );
    assert_eq!(cloud.calls().create, 1);
    exactly_one_each(&stack, &store, &cloud).await;
}

/// One resource applied, then declared with a new value, its next updates going wrong as `faults`
/// says.
async fn changed_with(faults: &[UpdateFault]) -> (MemoryStateStore, FakeCloud, FakeStack) {
    let (store, cloud) = (MemoryStateStore::new(), FakeCloud::new());
    let mut stack = FakeStack::chain("u", 1);
    fake_engine(store.clone(), &cloud).up(&stack).await.unwrap();
    stack.nodes[0].value = "v2".into();
    cloud.fail_updates_of("r0", faults);
    (store, cloud, stack)
}

#[tokio::test]
async fn an_update_carried_out_with_its_response_lost_is_settled_by_reading_not_resent() {
    let (store, cloud, stack) = changed_with(&[UpdateFault::LoseResponse]).await;
    fake_engine(store.clone(), &cloud).up(&stack).await.unwrap();
    assert_eq!(cloud.calls().update, 1, "the read showed it done");
    assert_eq!(cloud.instances_of("r0")[0].value, "v2");
}

#[tokio::test]
async fn an_update_that_timed_out_before_acting_is_sent_again_after_reading() {
    let (store, cloud, stack) = changed_with(&[UpdateFault::TimeOut, UpdateFault::TimeOut]).await;
    fake_engine(store.clone(), &cloud).up(&stack).await.unwrap();
    assert_eq!(cloud.calls().update, 3, "the first, then two after reading");
    assert_eq!(cloud.instances_of("r0")[0].value, "v2");
}

#[tokio::test]
async fn an_update_that_keeps_timing_out_is_sent_at_most_twice_more_then_fails() {
    let (store, cloud, stack) = changed_with(&[UpdateFault::TimeOut; 5]).await;
    let err = fake_engine(store.clone(), &cloud)
        .up(&stack)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Resource {
                action: "update",
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(cloud.calls().update, 3);
    assert_eq!(cloud.instances_of("r0")[0].value, "v1");
}

#[tokio::test]
async fn an_update_refused_outright_is_not_settled_nor_sent_again() {
    let (store, cloud, stack) = changed_with(&[UpdateFault::Fail]).await;
    let err = fake_engine(store.clone(), &cloud)
        .up(&stack)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("injected update failure"), "{err}");
    assert_eq!(cloud.calls().update, 1);
    assert_eq!(cloud.calls().read, 0, "no settling read");
}

#[tokio::test]
async fn a_settling_update_that_is_refused_outright_fails_the_run() {
    let (store, cloud, stack) = changed_with(&[UpdateFault::TimeOut, UpdateFault::Fail]).await;
    let err = fake_engine(store.clone(), &cloud)
        .up(&stack)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("injected update failure"), "{err}");
    assert_eq!(cloud.calls().update, 2);
}

#[tokio::test]
async fn an_adopted_instance_is_brought_to_the_declared_values() {
    let (store, cloud) = (MemoryStateStore::new(), FakeCloud::new());
    let stack = FakeStack::chain("adopt", 1);
    cloud.lose_create_result_of("r0");
    fake_engine(store.clone(), &cloud)
        .up(&stack)
        .await
        .unwrap_err();
    let id = cloud.instances_of("r0")[0].id.clone();
    cloud.tamper(&id, "changed by hand");
    fake_engine(store.clone(), &cloud).up(&stack).await.unwrap();
    assert_eq!(cloud.instances_of("r0")[0].value, "v1");
    assert_eq!(cloud.calls().update, 1);
}

#[tokio::test]
async fn a_replacement_after_an_interrupted_update_never_adopts_the_old_instance() {
    let (store, cloud) = (MemoryStateStore::new(), FakeCloud::new());
    let mut stack = FakeStack::chain("ru", 1);
    fake_engine(store.clone(), &cloud).up(&stack).await.unwrap();
    let old = cloud.instances_of("r0")[0].id.clone();
    // An update whose result was never recorded: a pending update stays with the outputs.
    stack.nodes[0].value = "v2".into();
    killed_at_write(2, &store, &cloud, &stack).await;
    let pending = store.read("ru").await.unwrap().unwrap().resources["r0"]
        .pending
        .clone();
    assert_eq!(pending.map(|p| p.op), Some(PendingOp::Update));
    // Now a replacement: the new instance is created, the old one deleted.
    stack.nodes[0].fixed = "f2".into();
    fake_engine(store.clone(), &cloud).up(&stack).await.unwrap();
    exactly_one_each(&stack, &store, &cloud).await;
    assert_ne!(cloud.instances_of("r0")[0].id, old);
}

#[tokio::test]
async fn cancellation_ends_a_resource_wait_at_once_and_the_run_reports_cancelled() {
    let (store, cloud) = (MemoryStateStore::new(), FakeCloud::new());
    cloud.slow_create_of("r0", Duration::from_secs(8));
    let token = cancelled_after(50);
    let started = Instant::now();
    let err = fake_engine(store.clone(), &cloud)
        .up_with(
            &FakeStack::chain("w", 1),
            UpOptions::default().with_cancellation(token),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Cancelled { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(cloud.live().is_empty(), "the create never acted");
}

#[tokio::test]
async fn a_real_failure_during_a_cancelled_run_is_reported_not_hidden_by_the_cancellation() {
    let (store, cloud) = (MemoryStateStore::new(), FakeCloud::new());
    // Two independent resources: r0 waits, r1 fails at once; then Ctrl-C.
    let stack = FakeStack::from_deps("both", vec![vec![], vec![]]);
    cloud.slow_create_of("r0", Duration::from_secs(8));
    cloud.fail_create_of("r1");
    let token = cancelled_after(100);
    let err = fake_engine(store.clone(), &cloud)
        .up_with(&stack, UpOptions::default().with_cancellation(token))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Resource { resource, .. } if resource == "r1"),
        "{err}"
    );
}

#[tokio::test]
async fn a_cancelled_refresh_reports_how_many_reads_completed() {
    let (store, cloud) = (MemoryStateStore::new(), FakeCloud::new());
    let stack = FakeStack::chain("rc", 3);
    fake_engine(store.clone(), &cloud).up(&stack).await.unwrap();
    cloud.set_latency(Duration::from_millis(300));
    let token = cancelled_after(750);
    let e = Engine::builder(store.clone())
        .provider(local_provider())
        .extension(cloud.clone())
        .concurrency(1)
        .cancellation(token.clone())
        .build();
    let err = e.refresh(&stack).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Cancelled {
                completed: 2,
                remaining: 1,
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn a_group_destroy_waits_for_users_and_fails_fast_when_their_stack_never_starts() {
    let (store, cloud) = (MemoryStateStore::new(), FakeCloud::new());
    let e = fake_engine(store.clone(), &cloud);
    let producer = FakeStack::chain("p", 1);
    let consumer = FakeStack::chain("u", 1).using(0, "p", "r0");
    let group = e.group(["p", "u"]);
    let (rp, rc) = tokio::join!(
        group.up(&producer, UpOptions::default()),
        group.up(&consumer, UpOptions::default())
    );
    rp.unwrap();
    rc.unwrap();

    // Destroyed together, the user goes first: the fake cloud refuses to delete what is in use.
    cloud.set_latency(Duration::from_millis(20));
    let group = e.group(["p", "u"]);
    let (dp, dc) = tokio::join!(
        group.destroy::<FakeStack>("p"),
        group.destroy::<FakeStack>("u")
    );
    dc.unwrap();
    dp.unwrap();
    assert!(cloud.live().is_empty());

    // A user whose stack is never started: the producer's delete fails once the join bound passes.
    let group = e.group(["p", "u"]);
    let (rp, rc) = tokio::join!(
        group.up(&producer, UpOptions::default()),
        group.up(&consumer, UpOptions::default())
    );
    rp.unwrap();
    rc.unwrap();
    let group = e.group(["p", "u"]).join_within(Duration::from_millis(200));
    let alone = tokio::time::timeout(Duration::from_secs(10), group.destroy::<FakeStack>("p"))
        .await
        .expect("no hang");
    let err = alone.unwrap_err();
    // A group's destroy deletes nothing until every member holds its lock.
    assert!(
        matches!(&err, Error::GroupMemberInvalid { member, .. } if member == "u"),
        "{err}"
    );
    assert_eq!(cloud.live().len(), 2, "nothing in use was deleted");
    // A member before it in name order that never starts: it never takes its lock, so the
    // producer does not take its own either, and fails as fast, naming it.
    let group = e.group(["p", "a"]).join_within(Duration::from_millis(200));
    let alone = tokio::time::timeout(Duration::from_secs(10), group.destroy::<FakeStack>("p"))
        .await
        .expect("no hang");
    let err = alone.unwrap_err();
    assert!(
        matches!(&err, Error::GroupMemberInvalid { member, .. } if member == "a"),
        "{err}"
    );
    assert_eq!(cloud.live().len(), 2, "nothing was deleted");
}

#[tokio::test]
async fn in_a_group_a_reference_to_a_stack_outside_it_reads_that_stacks_recorded_outputs() {
    let (store, cloud) = (MemoryStateStore::new(), FakeCloud::new());
    let e = fake_engine(store.clone(), &cloud);
    let producer = FakeStack::chain("p", 1);
    let made = e.up(&producer).await.unwrap();
    let consumer = FakeStack::chain("c", 1).using(0, "p", "r0");
    let group = e.group(["c"]);
    group.up(&consumer, UpOptions::default()).await.unwrap();
    let used = &cloud.instances_of("r0");
    let c = used
        .iter()
        .find(|o| o.tags["platform:stack"] == "c")
        .unwrap();
    assert_eq!(c.deps, [made["r0"].clone()]);
}

/// An engine over `store` and `cloud` with a settle window of `window`.
fn engine_with_window(store: &MemoryStateStore, cloud: &FakeCloud, window: Duration) -> Engine {
    Engine::builder(store.clone())
        .provider(local_provider())
        .extension(cloud.clone())
        .settle_window(window)
        .build()
}

#[tokio::test(start_paused = true)]
async fn a_create_carried_out_after_the_next_run_first_looked_is_adopted_within_the_settle_window()
{
    let (store, cloud) = (MemoryStateStore::new(), FakeCloud::new());
    let mut stack = FakeStack::chain("late", 2);
    // AWS carries out r0's create 10 s after it was sent; the sender hears nothing.
    cloud.create_late_of("r0", Duration::from_secs(10));
    let err = engine_with_window(&store, &cloud, Duration::from_secs(30))
        .up(&stack)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("outcome unknown"), "{err}");
    assert!(cloud.instances_of("r0").is_empty(), "not made yet");
    // The next run starts at once: it looks until r0 shows (no create sent), then goes on. It
    // looks with the inputs the create was sent with, whatever is declared now (a changed value).
    stack.nodes[0].value = "v2".into();
    let progress = Arc::new(Mutex::new(Vec::new()));
    let seen = progress.clone();
    let started = tokio::time::Instant::now();
    Engine::builder(store.clone())
        .provider(local_provider())
        .extension(cloud.clone())
        .settle_window(Duration::from_secs(30))
        .on_event(move |e| {
            if let Event::Progress { message, .. } = e {
                seen.lock().unwrap().push(message.clone());
            }
        })
        .build()
        .up(&stack)
        .await
        .unwrap();
    let progress = progress.lock().unwrap().clone();
    assert_eq!(progress.len(), 1, "{progress:?}");
    assert!(
        progress[0].starts_with(
            "an earlier run was interrupted creating this: looking for what it made for up to"
        ) && ["29s", "30s"]
            .iter()
            .any(|d| progress[0].ends_with(&format!("up to {d} before creating it"))),
        "{progress:?}"
    );
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(8) && waited < Duration::from_secs(15),
        "{waited:?}"
    );
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(cloud.calls().create, 2, "r0 once (late), r1 once");
    exactly_one_each(&stack, &store, &cloud).await;
}

#[tokio::test(start_paused = true)]
async fn a_create_that_lands_after_the_window_leaves_a_twin_which_destroy_sweeps() {
    let (store, cloud) = (MemoryStateStore::new(), FakeCloud::new());
    let stack = FakeStack::chain("twin", 2);
    cloud.create_late_of("r0", Duration::from_secs(10));
    let zero = Duration::ZERO;
    engine_with_window(&store, &cloud, zero)
        .up(&stack)
        .await
        .unwrap_err();
    engine_with_window(&store, &cloud, zero)
        .up(&stack)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(cloud.instances_of("r0").len(), 2, "the late one is a twin");
    // Destroy deletes what state records, then what still carries the stack's tags.
    let report = engine_with_window(&store, &cloud, zero)
        .destroy::<FakeStack>("twin")
        .await
        .unwrap();
    assert!(cloud.live().is_empty(), "{:?}", cloud.live());
    assert_eq!(report.deleted, 3, "two recorded, one swept");
}

#[tokio::test(start_paused = true)]
async fn two_instances_with_the_creates_token_are_ours_one_is_kept_the_other_deleted() {
    let (store, cloud) = (MemoryStateStore::new(), FakeCloud::new());
    let stack = FakeStack::chain("twice", 1);
    cloud.lose_create_result_of("r0");
    let e = engine_with_window(&store, &cloud, Duration::from_secs(30));
    e.up(&stack).await.unwrap_err();
    let token = store.read("twice").await.unwrap().unwrap().resources["r0"]
        .pending
        .clone()
        .unwrap()
        .instance
        .unwrap();
    // AWS carried the same create out twice: two instances carry its token.
    let made = cloud.instances_of("r0");
    assert_eq!(made.len(), 1, "{made:?}");
    cloud.copy_object(&made[0].id);
    assert_eq!(cloud.instances_of("r0").len(), 2);
    let deletes = cloud.calls().delete;
    e.up(&stack).await.unwrap();
    assert_eq!(cloud.calls().delete - deletes, 1, "the twin");
    exactly_one_each(&stack, &store, &cloud).await;
    assert_eq!(cloud.instances_of("r0")[0].tags["platform:instance"], token);
    assert_eq!(
        cloud.instances_of("r0")[0].id,
        made[0].id,
        "the first is kept"
    );
}

#[tokio::test(start_paused = true)]
async fn a_run_after_the_settle_window_looks_once_then_creates() {
    let (store, cloud) = (MemoryStateStore::new(), FakeCloud::new());
    let stack = FakeStack::chain("gone", 1);
    cloud.time_out_create_of("r0");
    let window = Duration::from_secs(30);
    engine_with_window(&store, &cloud, window)
        .up(&stack)
        .await
        .unwrap_err();
    let reads = cloud.calls().read;
    // The intent's time is wall-clock time: a run that starts later than the window looks once.
    let mut state = store.read("gone").await.unwrap().unwrap();
    let intent = state
        .resources
        .get_mut("r0")
        .unwrap()
        .pending
        .as_mut()
        .unwrap();
    intent.since = "2026-01-01T00:00:00Z".into();
    let lock = store.lock("gone", "test").await.unwrap();
    lock.write(&state).await.unwrap();
    lock.release().await.unwrap();
    let started = tokio::time::Instant::now();
    engine_with_window(&store, &cloud, window)
        .up(&stack)
        .await
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(cloud.calls().read - reads, 1, "one find");
    exactly_one_each(&stack, &store, &cloud).await;
}

#[tokio::test(start_paused = true)]
async fn a_destroy_right_after_an_interrupted_create_deletes_what_it_makes_late() {
    let (store, cloud) = (MemoryStateStore::new(), FakeCloud::new());
    let stack = FakeStack::chain("sweep", 1);
    cloud.create_late_of("r0", Duration::from_secs(10));
    let window = Duration::from_secs(30);
    engine_with_window(&store, &cloud, window)
        .up(&stack)
        .await
        .unwrap_err();
    engine_with_window(&store, &cloud, window)
        .destroy::<FakeStack>("sweep")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(cloud.live().is_empty(), "{:?}", cloud.live());
    assert_eq!(store.read("sweep").await.unwrap(), None);
}

#[tokio::test(start_paused = true)]
async fn ctrl_c_while_a_lost_create_is_looked_for_is_a_cancellation_not_an_unknown_outcome() {
    let (store, cloud) = (MemoryStateStore::new(), FakeCloud::new());
    let stack = FakeStack::chain("cancel", 1);
    cloud.time_out_create_of("r0");
    let err = fake_engine(store.clone(), &cloud)
        .up_with(
            &stack,
            UpOptions::default().with_cancellation(cancelled_after(500)),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Cancelled { .. }), "{err}");
    let state = store.read("cancel").await.unwrap().unwrap();
    assert_eq!(
        state.resources["r0"].pending.as_ref().map(|p| p.op),
        Some(PendingOp::Create),
        "the intent stays for the next run to settle"
    );
}

#[tokio::test]
async fn an_instance_found_for_a_create_and_deleted_before_it_is_read_is_not_recorded() {
    let (store, cloud) = (MemoryStateStore::new(), FakeCloud::new());
    let stack = FakeStack::chain("vanish", 1);
    cloud.lose_response_of("r0");
    cloud.vanish_after_find_of("r0");
    let err = fake_engine(store.clone(), &cloud)
        .up(&stack)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("was gone when it was read"),
        "{err}"
    );
    let state = store.read("vanish").await.unwrap().unwrap();
    assert!(
        state.resources["r0"].outputs.is_none(),
        "not recorded as created"
    );
    // The next run creates it.
    fake_engine(store.clone(), &cloud).up(&stack).await.unwrap();
    exactly_one_each(&stack, &store, &cloud).await;
}

#[tokio::test(start_paused = true)]
async fn a_create_refused_outright_is_looked_for_briefly_by_the_next_run_not_over_the_window() {
    let (store, cloud) = (MemoryStateStore::new(), FakeCloud::new());
    let stack = FakeStack::chain("refused", 1);
    cloud.fail_create_of("r0");
    let window = Duration::from_secs(120);
    engine_with_window(&store, &cloud, window)
        .up(&stack)
        .await
        .unwrap_err();
    let state = store.read("refused").await.unwrap().unwrap();
    let intent = state.resources["r0"].pending.clone().unwrap();
    assert!(intent.answered, "{intent:?}");
    let started = tokio::time::Instant::now();
    engine_with_window(&store, &cloud, window)
        .up(&stack)
        .await
        .unwrap();
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1500) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    exactly_one_each(&stack, &store, &cloud).await;
}

#[tokio::test]
async fn the_sweep_never_takes_another_deployment_of_a_stack_of_the_same_name() {
    let cloud = FakeCloud::new();
    let (mine, theirs) = (MemoryStateStore::new(), MemoryStateStore::new());
    let stack = FakeStack::chain("shared", 2);
    fake_engine(mine.clone(), &cloud).up(&stack).await.unwrap();
    fake_engine(theirs.clone(), &cloud)
        .up(&stack)
        .await
        .unwrap();
    assert_eq!(cloud.live().len(), 4);
    let report = fake_engine(mine, &cloud)
        .destroy::<FakeStack>("shared")
        .await
        .unwrap();
    assert_eq!(report.deleted, 2);
    assert_eq!(cloud.live().len(), 2, "theirs stays");
    exactly_one_each(&stack, &theirs, &cloud).await;
}

#[tokio::test(start_paused = true)]
async fn an_instance_made_with_other_fixed_inputs_is_adopted_recorded_as_made_then_replaced() {
    let (store, cloud) = (MemoryStateStore::new(), FakeCloud::new());
    let mut stack = FakeStack::chain("changed", 1);
    cloud.create_late_of("r0", Duration::from_secs(5));
    let window = Duration::from_secs(30);
    engine_with_window(&store, &cloud, window)
        .up(&stack)
        .await
        .unwrap_err();
    // Before the next run, the declaration changes a part that cannot change in place. The late
    // instance is looked for as it was sent, adopted, and recorded as it was made ...
    stack.nodes[0].fixed = "new".into();
    engine_with_window(&store, &cloud, window)
        .up(&stack)
        .await
        .unwrap();
    assert_eq!(cloud.calls().create, 1, "adopted, not made again");
    let state = store.read("changed").await.unwrap().unwrap();
    assert_eq!(state.resources["r0"].inputs["fixed"], "");
    // ... so the next plan replaces it.
    let plan = engine_with_window(&store, &cloud, window)
        .preview(&stack)
        .await
        .unwrap();
    assert_eq!(
        plan.step("r0").unwrap().action.kind(),
        platform_core::plan::ActionKind::Replace,
        "{plan}"
    );
    engine_with_window(&store, &cloud, window)
        .up(&stack)
        .await
        .unwrap();
    exactly_one_each(&stack, &store, &cloud).await;
}

#[tokio::test(start_paused = true)]
async fn a_destroy_after_a_create_refused_outright_looks_briefly_not_over_the_window() {
    let (store, cloud) = (MemoryStateStore::new(), FakeCloud::new());
    let stack = FakeStack::chain("refused-destroy", 1);
    cloud.fail_create_of("r0");
    let window = Duration::from_secs(120);
    engine_with_window(&store, &cloud, window)
        .up(&stack)
        .await
        .unwrap_err();
    let reads = cloud.calls().read;
    let started = tokio::time::Instant::now();
    engine_with_window(&store, &cloud, window)
        .destroy::<FakeStack>("refused-destroy")
        .await
        .unwrap();
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1500) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    // Four finds over 1.75 s for the intent, then the sweep's one.
    assert_eq!(cloud.calls().read - reads, 5);
    assert_eq!(store.read("refused-destroy").await.unwrap(), None);
}

/// An engine over `store` and `cloud` with settle window `window`, whose progress lines go to the
/// returned list.
fn engine_with_progress(
    store: &MemoryStateStore,
    cloud: &FakeCloud,
    window: Duration,
) -> (Engine, Arc<Mutex<Vec<String>>>) {
    let progress = Arc::new(Mutex::new(Vec::new()));
    let seen = progress.clone();
    let engine = Engine::builder(store.clone())
        .provider(local_provider())
        .extension(cloud.clone())
        .settle_window(window)
        .on_event(move |e| {
            if let Event::Progress { message, .. } = e {
                seen.lock().unwrap().push(message.clone());
            }
        })
        .build();
    (engine, progress)
}

/// A one-resource stack `name` whose resource's name is unique (as an IAM role's), applied with
/// settle window `window`; then AWS keeps a deleted instance's name for `hold`, and the resource is
/// changed so that the next `up` replaces it, deleting first.
async fn name_held_replacement(
    name: &str,
    window: Duration,
    hold: Duration,
) -> (MemoryStateStore, FakeCloud, FakeStack) {
    let (store, cloud) = (MemoryStateStore::new(), FakeCloud::new());
    let mut stack = FakeStack::chain(name, 1);
    stack.nodes[0].unique = true;
    engine_with_window(&store, &cloud, window)
        .up(&stack)
        .await
        .unwrap();
    cloud.hold_names_after_delete(hold);
    stack.nodes[0].fixed = "new".into();
    (store, cloud, stack)
}

#[tokio::test(start_paused = true)]
async fn a_create_refused_while_aws_still_holds_the_deleted_instances_name_is_sent_again() {
    let window = Duration::from_secs(30);
    // A replacement deletes first; AWS then keeps the name 10 s and still shows the deleted
    // instance by its name (which carries the old token: never adopted for the new one).
    let (store, cloud, stack) =
        name_held_replacement("held", window, Duration::from_secs(10)).await;
    let old = cloud.instances_of("r0")[0].tags["platform:instance"].clone();
    let creates = cloud.calls().create;
    let (engine, progress) = engine_with_progress(&store, &cloud, window);
    let started = tokio::time::Instant::now();
    engine.up(&stack).await.unwrap();
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(10) && waited < Duration::from_secs(20),
        "{waited:?}"
    );
    let sent = cloud.calls().create - creates;
    assert!((3..=8).contains(&sent), "sent again a few times: {sent}");
    let progress = progress.lock().unwrap().clone();
    assert!(
        progress[0].starts_with(
            "EntityAlreadyExists: the name is held by an instance this create did not make; AWS \
             may still show one just deleted: creating again (waited 1s, up to 30s)"
        ),
        "{progress:?}"
    );
    exactly_one_each(&stack, &store, &cloud).await;
    let new = &cloud.instances_of("r0")[0];
    assert_eq!(new.fixed, "new");
    assert_ne!(new.tags["platform:instance"], old);
}

#[tokio::test(start_paused = true)]
async fn a_name_held_past_the_settle_window_fails_naming_it_and_the_next_run_creates() {
    let window = Duration::from_secs(5);
    let (store, cloud, stack) =
        name_held_replacement("held-long", window, Duration::from_secs(20)).await;
    let started = tokio::time::Instant::now();
    let err = engine_with_window(&store, &cloud, window)
        .up(&stack)
        .await
        .unwrap_err();
    let waited = started.elapsed();
    assert!(
        waited >= window && waited < Duration::from_secs(10),
        "{waited:?}"
    );
    let message = err.to_string();
    assert!(
        message.contains("r0 already exists; the name is still held after 6s")
            && message.contains("by an instance that is not this create's"),
        "{message}"
    );
    assert_eq!(err.aws_code(), Some("EntityAlreadyExists"));
    assert!(cloud.instances_of("r0").is_empty());
    tokio::time::sleep(Duration::from_secs(20)).await;
    engine_with_window(&store, &cloud, window)
        .up(&stack)
        .await
        .unwrap();
    exactly_one_each(&stack, &store, &cloud).await;
}

#[tokio::test(start_paused = true)]
async fn a_refresh_right_after_a_create_reads_again_what_aws_does_not_show_yet() {
    let (store, cloud) = (MemoryStateStore::new(), FakeCloud::new());
    let stack = FakeStack::chain("lagging", 2);
    let window = Duration::from_secs(30);
    let engine = engine_with_window(&store, &cloud, window);
    engine.up(&stack).await.unwrap();
    // Within the settle window, three reads do not see what was just made: read again, not gone.
    cloud.hide_from_next_reads(3);
    let reads = cloud.calls().read;
    let report = engine.refresh_report(&stack).await.unwrap();
    assert!(report.drift.is_empty(), "{:?}", report.drift);
    assert_eq!(cloud.calls().read - reads, 5, "two reads and three again");
    assert!(!report.plan.has_changes(), "{}", report.plan);
    // What is really gone is reported gone once the window has passed.
    let gone = cloud.instances_of("r1")[0].id.clone();
    cloud.remove(&gone);
    let started = tokio::time::Instant::now();
    let report = engine.refresh_report(&stack).await.unwrap();
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(25) && waited <= window,
        "{waited:?}"
    );
    assert_eq!(report.drift.len(), 1);
    assert!(report.drift[0].gone && report.drift[0].resource == "r1");
}

#[tokio::test(start_paused = true)]
async fn past_the_settle_window_a_read_that_sees_nothing_is_gone_at_once() {
    let (store, cloud) = (MemoryStateStore::new(), FakeCloud::new());
    let stack = FakeStack::chain("settled", 1);
    let engine = engine_with_window(&store, &cloud, Duration::ZERO);
    engine.up(&stack).await.unwrap();
    cloud.hide_from_next_reads(1);
    let reads = cloud.calls().read;
    let started = tokio::time::Instant::now();
    let report = engine.refresh_report(&stack).await.unwrap();
    assert_eq!(started.elapsed(), Duration::ZERO);
    assert_eq!(cloud.calls().read - reads, 1);
    assert!(report.drift[0].gone, "{:?}", report.drift);
}

#[tokio::test(start_paused = true)]
async fn a_create_left_unconfigured_is_configured_even_while_aws_does_not_show_it_yet() {
    let (store, cloud) = (MemoryStateStore::new(), FakeCloud::new());
    let stack = FakeStack::chain("unconfigured", 1);
    cloud.configure_after_publish();
    cloud.fail_configure_of("r0");
    let window = Duration::from_secs(30);
    engine_with_window(&store, &cloud, window)
        .up(&stack)
        .await
        .unwrap_err();
    assert_eq!(
        cloud.instances_of("r0")[0].value,
        "",
        "made, not configured"
    );
    // The next run reads it to finish its configuration: the first reads do not see it yet. It
    // reads again after 250 ms, then after twice that.
    cloud.hide_from_next_reads(2);
    let started = tokio::time::Instant::now();
    engine_with_window(&store, &cloud, window)
        .up(&stack)
        .await
        .unwrap();
    assert_eq!(started.elapsed(), Duration::from_millis(750));
    exactly_one_each(&stack, &store, &cloud).await;
}

#[tokio::test(start_paused = true)]
async fn a_destroy_right_after_a_create_deletes_what_aws_does_not_show_yet() {
    let (store, cloud) = (MemoryStateStore::new(), FakeCloud::new());
    let stack = FakeStack::chain("fresh", 2);
    let window = Duration::from_secs(30);
    let engine = engine_with_window(&store, &cloud, window);
    engine.up(&stack).await.unwrap();
    // Each fake delete reads first (as an internet gateway's does); three reads right after the
    // create do not see what it made. Not-found within the window is asked again, not believed.
    cloud.hide_from_next_reads(3);
    let deleted = engine.destroy::<FakeStack>("fresh").await.unwrap();
    assert_eq!(deleted.deleted, 2, "{deleted:?}");
    assert!(cloud.live().is_empty(), "left {:?}", cloud.live());

    // Past the window (here none), a not-found answer is AWS's word: believed at once.
    let engine = engine_with_window(&store, &cloud, Duration::ZERO);
    let settled = FakeStack::chain("settled", 1);
    engine.up(&settled).await.unwrap();
    cloud.hide_from_next_reads(1);
    let started = tokio::time::Instant::now();
    engine.destroy::<FakeStack>("settled").await.unwrap();
    assert_eq!(started.elapsed(), Duration::ZERO);
    assert_eq!(cloud.live().len(), 1, "the delete took not-found for gone");
}

#[tokio::test(start_paused = true)]
async fn a_create_sent_again_while_aws_holds_its_name_waits_no_longer_than_the_window() {
    // Shorter than a settle of the refused create plus the first backoff: the wait before the next
    // try is cut to the window's end, not served whole past it.
    let window = Duration::from_millis(1900);
    let (store, cloud, stack) =
        name_held_replacement("held-short", window, Duration::from_secs(20)).await;
    let started = tokio::time::Instant::now();
    engine_with_window(&store, &cloud, window)
        .up(&stack)
        .await
        .unwrap_err();
    assert_eq!(
        started.elapsed(),
        window + Duration::from_millis(1750),
        "the last try starts when the window ends; the settle of its refusal looks 1.75 s"
    );
}

#[tokio::test(start_paused = true)]
async fn an_instance_adopted_after_a_lost_answer_is_read_again_while_aws_does_not_show_it() {
    let (store, cloud) = (MemoryStateStore::new(), FakeCloud::new());
    let stack = FakeStack::chain("adopted", 1);
    // The create is carried out, its answer lost; the settle finds it, and the read that converges
    // the adopted instance does not see it twice.
    cloud.lose_response_of("r0");
    cloud.hide_from_next_reads(2);
    let reads = cloud.calls().read;
    engine_with_window(&store, &cloud, Duration::from_secs(30))
        .up(&stack)
        .await
        .unwrap();
    assert_eq!(cloud.calls().read - reads, 4, "read again, twice");
    exactly_one_each(&stack, &store, &cloud).await;
}

/// A create carried out after its sender died, found by the next run and then not shown by the
/// describes that read it (AWS's eventual consistency may show an instance to one call and not yet
/// to the next): read again until the settle window counted from the create's intent has passed,
/// not given up after a moment as gone.
#[tokio::test(start_paused = true)]
async fn an_instance_found_for_an_earlier_runs_create_is_read_again_over_the_settle_window() {
    let (store, cloud) = (MemoryStateStore::new(), FakeCloud::new());
    let stack = FakeStack::chain("late", 1);
    // Write 1, the create's intent, is recorded; the create is carried out; its result is lost.
    killed_at_write(2, &store, &cloud, &stack).await;
    assert_eq!(cloud.live().len(), 1);
    // Five reads in a row answer "gone": 3.75 s of reading again, more than a run's own settle.
    cloud.hide_from_next_reads(5);
    engine_with_window(&store, &cloud, Duration::from_secs(30))
        .up(&stack)
        .await
        .unwrap();
    exactly_one_each(&stack, &store, &cloud).await;
}
