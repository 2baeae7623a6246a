//! Stacks applied together (`Engine::group`) against the in-memory fake cloud: a consumer's resource
//! starts when the producer's resource it uses exists, invalid members stop everyone before any call,
//! a failed producer fails only what waited on it, and references across stacks resolve from state
//! when a stack is applied alone.

use std::time::Duration;

use platform_core::testing::{FakeCloud, FakeStack};
use platform_core::{
    Engine, Error, MemoryStateStore, ProviderInfo, StateStore, UpOptions, error::StateError,
    resource::BoxFuture, state::LockInfo, state::StackLock, state::StackState,
};

fn engine(cloud: &FakeCloud) -> Engine {
    Engine::builder(MemoryStateStore::new())
        .provider(ProviderInfo {
            account_id: "000000000000".into(),
            region: "local".into(),
        })
        .extension(cloud.clone())
        .build()
}

/// `stack` with its nodes renamed `{prefix}0`, `{prefix}1`, ... (the fake cloud injects failures
/// by logical name, so the two stacks' names must differ).
fn renamed(mut stack: FakeStack, prefix: &str) -> FakeStack {
    for (i, n) in stack.nodes.iter_mut().enumerate() {
        n.name = format!("{prefix}{i}");
    }
    stack
}

fn position(cloud: &FakeCloud, name: &str) -> usize {
    cloud
        .order()
        .iter()
        .position(|(n, what)| n == name && *what == "create")
        .unwrap_or_else(|| panic!("{name} was not created: {:?}", cloud.order()))
}

#[tokio::test(start_paused = true)]
async fn a_consumer_resource_starts_when_the_resource_it_uses_exists_not_when_its_stack_is_done() {
    let cloud = FakeCloud::new();
    cloud.set_latency(Duration::from_millis(30));
    let engine = engine(&cloud);
    // The producer is a chain p0 -> p1 -> p2 -> p3; the consumer's c0 uses p0 only.
    let producer = renamed(FakeStack::chain("p", 4), "p");
    let consumer = renamed(FakeStack::chain("c", 1), "c").using(0, "p", "p0");
    let group = engine.group(["p", "c"]);
    let (p, c) = tokio::join!(
        group.up(&producer, UpOptions::default()),
        group.up(&consumer, UpOptions::default())
    );
    let (p, c) = (p.unwrap(), c.unwrap());
    assert!(
        position(&cloud, "c0") < position(&cloud, "p3"),
        "c0 waited for the whole producer: {:?}",
        cloud.order()
    );
    // c0 was created with p0's id.
    let live = cloud.live();
    let c0 = &live[&c.outputs["c0"]];
    assert_eq!(c0.deps, [p.outputs["p0"].clone()]);

    // Again: nothing to do, nothing called but reads of recorded state.
    let before = cloud.calls();
    let group = engine.group(["p", "c"]);
    let (p, c) = tokio::join!(
        group.up(&producer, UpOptions::default()),
        group.up(&consumer, UpOptions::default())
    );
    let (p, c) = (p.unwrap(), c.unwrap());
    assert!(!p.plan.has_changes(), "{}", p.plan);
    assert!(!c.plan.has_changes(), "{}", c.plan);
    assert_eq!(cloud.calls(), before);
}

#[tokio::test]
async fn an_invalid_member_stops_every_member_before_any_call() {
    let cloud = FakeCloud::new();
    let engine = engine(&cloud);
    let producer = renamed(FakeStack::chain("p", 2), "p");
    let mut consumer = renamed(FakeStack::chain("c", 1), "c").using(0, "p", "p1");
    consumer.nodes[0].value = "x".repeat(65);
    let group = engine.group(["p", "c"]);
    let (p, c) = tokio::join!(
        group.up(&producer, UpOptions::default()),
        group.up(&consumer, UpOptions::default())
    );
    let c = c.unwrap_err();
    assert!(matches!(c, Error::Invalid { .. }), "{c}");
    match p.unwrap_err() {
        Error::GroupMemberInvalid { stack, member, why } => {
            assert_eq!((stack.as_str(), member.as_str()), ("p", "c"));
            assert!(why.contains("value"), "{why}");
        }
        other => panic!("expected GroupMemberInvalid, got {other}"),
    }
    assert_eq!(cloud.calls().mutating(), 0);
    assert_eq!(cloud.calls().read, 0);
}

#[tokio::test]
async fn a_failed_producer_fails_only_what_waited_on_it_and_the_next_run_completes() {
    let cloud = FakeCloud::new();
    let engine = engine(&cloud);
    let producer = renamed(FakeStack::chain("p", 2), "p");
    // c0 is independent; c1 uses p1, whose create fails once.
    let consumer =
        renamed(FakeStack::from_deps("c", vec![vec![], vec![]]), "c").using(1, "p", "p1");
    cloud.fail_create_of("p1");
    let group = engine.group(["p", "c"]);
    let (p, c) = tokio::join!(
        group.up(&producer, UpOptions::default()),
        group.up(&consumer, UpOptions::default())
    );
    let p = p.unwrap_err();
    assert!(p.to_string().contains("p/p1"), "{p}");
    match c.unwrap_err() {
        Error::DependencyFailed {
            stack,
            resource,
            reference,
            producer,
        } => {
            assert_eq!(
                (stack.as_str(), resource.as_str(), producer.as_str()),
                ("c", "c1", "p")
            );
            assert_eq!(reference, "p/p1.id");
        }
        other => panic!("expected DependencyFailed, got {other}"),
    }
    let created: Vec<_> = cloud.order().into_iter().map(|(n, _)| n).collect();
    assert!(created.contains(&"c0".to_owned()), "{created:?}");
    assert!(!created.contains(&"c1".to_owned()), "{created:?}");

    // The next run does the rest, and creates nothing twice.
    group_up_changing(&engine, &producer, &consumer).await;
    assert_eq!(cloud.live().len(), 4);
    assert_eq!(cloud.calls().create, 5, "p0, c0, the failed p1, p1, c1");
}

async fn group_up_changing(engine: &Engine, producer: &FakeStack, consumer: &FakeStack) {
    let group = engine.group(["p", "c"]);
    let (p, c) = tokio::join!(
        group.up(producer, UpOptions::default()),
        group.up(consumer, UpOptions::default())
    );
    p.unwrap();
    c.unwrap();
}

#[tokio::test]
async fn applied_alone_a_reference_across_stacks_reads_the_producers_state() {
    let cloud = FakeCloud::new();
    let engine = engine(&cloud);
    let producer = renamed(FakeStack::chain("p", 2), "p");
    let consumer = renamed(FakeStack::chain("c", 1), "c").using(0, "p", "p1");

    // Before the producer exists: the value is not known, and up refuses before any call.
    let plan = engine.preview(&consumer).await.unwrap();
    assert!(plan.to_string().contains("(known after apply)"), "{plan}");
    let err = engine.up(&consumer).await.unwrap_err();
    assert!(matches!(err, Error::StackNotFound { .. }), "{err}");
    assert_eq!(cloud.calls().mutating(), 0);

    let p = engine.up(&producer).await.unwrap();
    let plan = engine.preview(&consumer).await.unwrap();
    assert!(plan.to_string().contains(&p["p1"]), "{plan}");
    let c = engine.up(&consumer).await.unwrap();
    assert_eq!(cloud.live()[&c["c0"]].deps, [p["p1"].clone()]);
    // The producer cannot be destroyed under it.
    let err = engine.destroy::<FakeStack>("p").await.unwrap_err();
    assert!(matches!(err, Error::ReferencedBy { .. }), "{err}");
}

#[tokio::test]
async fn a_reference_to_an_unlisted_stack_or_a_cycle_of_stacks_is_refused_before_any_call() {
    let cloud = FakeCloud::new();
    let engine = engine(&cloud);
    let mut consumer = FakeStack::chain("c", 1).using(0, "p", "r0");
    consumer.references.clear();
    let err = engine.up(&consumer).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "c/r0: refers to p/r0.id, but stack c does not list that stack in its references"
    );

    let a = renamed(FakeStack::chain("a", 1), "a").using(0, "b", "b0");
    let b = renamed(FakeStack::chain("b", 1), "b").using(0, "a", "a0");
    let group = engine.group(["a", "b"]);
    let (ra, rb) = tokio::join!(
        group.up(&a, UpOptions::default()),
        group.up(&b, UpOptions::default())
    );
    for err in [ra.unwrap_err(), rb.unwrap_err()] {
        match err {
            Error::Cycle { resources, .. } => assert_eq!(resources, ["a", "b"]),
            other => panic!("expected Cycle, got {other}"),
        }
    }
    assert_eq!(cloud.calls().mutating(), 0);
}

#[tokio::test(start_paused = true)]
async fn destroyed_together_each_used_resource_waits_for_its_users_in_other_stacks() {
    let cloud = FakeCloud::new();
    cloud.set_latency(Duration::from_millis(20));
    let engine = engine(&cloud);
    // p0 <- p1 in the producer; the consumer's c0 uses p0, its c1 uses nothing of the producer.
    let producer = renamed(FakeStack::chain("p", 2), "p");
    let consumer = renamed(FakeStack::chain("c", 2), "c").using(0, "p", "p0");
    let group = engine.group(["p", "c"]);
    let (p, c) = tokio::join!(
        group.up(&producer, UpOptions::default()),
        group.up(&consumer, UpOptions::default())
    );
    p.unwrap();
    c.unwrap();
    let recorded = engine.store().read("c").await.unwrap().unwrap();
    assert_eq!(
        recorded.resources["c0"].uses,
        [platform_core::state::StackResource {
            stack: "p".into(),
            resource: "p0".into()
        }]
    );

    let group = engine.group(["p", "c"]);
    let (p, c) = tokio::join!(
        group.destroy::<FakeStack>("p"),
        group.destroy::<FakeStack>("c")
    );
    assert_eq!((p.unwrap().deleted, c.unwrap().deleted), (2, 2));
    assert!(cloud.live().is_empty());
    let deleted = |name: &str| {
        cloud
            .order()
            .iter()
            .position(|(n, what)| n == name && *what == "delete")
            .unwrap()
    };
    // The fake cloud refuses to delete what is in use, so this order is also what made it work.
    assert!(deleted("c0") < deleted("p0"), "{:?}", cloud.order());
    assert_eq!(engine.store().read("p").await.unwrap(), None);
    assert_eq!(engine.store().read("c").await.unwrap(), None);
}

/// Runs the group `[p, c]` once: the producer and the consumer together.
async fn group_up(
    engine: &Engine,
    producer: &FakeStack,
    consumer: &FakeStack,
) -> Result<(), Error> {
    let group = engine.group(["p", "c"]);
    let (p, c) = tokio::join!(
        group.up(producer, UpOptions::default()),
        group.up(consumer, UpOptions::default())
    );
    p.and(c).map(|_| ())
}

/// A memory store whose locks take a while, differently each time: two runs interleave.
#[derive(Debug, Clone, Default)]
struct SlowLocks {
    inner: MemoryStateStore,
    turn: std::sync::Arc<std::sync::atomic::AtomicU64>,
    seed: u64,
}

impl StateStore for SlowLocks {
    fn lock<'a>(
        &'a self,
        stack: &'a str,
        operation: &'a str,
    ) -> BoxFuture<'a, Result<Box<dyn StackLock>, StateError>> {
        Box::pin(async move {
            let n = self.turn.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            // Delays of 0 to 4 ms, in an order that differs from round to round.
            tokio::time::sleep(Duration::from_millis((n * 7 + self.seed * 3) % 5)).await;
            self.inner.lock(stack, operation).await
        })
    }
    fn read<'a>(&'a self, stack: &'a str) -> BoxFuture<'a, Result<Option<StackState>, StateError>> {
        self.inner.read(stack)
    }
    fn list(&self) -> BoxFuture<'_, Result<Vec<String>, StateError>> {
        self.inner.list()
    }
    fn holder<'a>(&'a self, stack: &'a str) -> BoxFuture<'a, Result<Option<LockInfo>, StateError>> {
        self.inner.holder(stack)
    }
    fn force_unlock<'a>(
        &'a self,
        stack: &'a str,
    ) -> BoxFuture<'a, Result<Option<LockInfo>, StateError>> {
        self.inner.force_unlock(stack)
    }
    fn location(&self) -> String {
        self.inner.location()
    }
}

async fn group_up_reversed(
    engine: &Engine,
    producer: &FakeStack,
    consumer: &FakeStack,
) -> Result<(), Error> {
    let group = engine.group(["c", "p"]);
    let (c, p) = tokio::join!(
        group.up(consumer, UpOptions::default()),
        group.up(producer, UpOptions::default())
    );
    p.and(c).map(|_| ())
}

#[tokio::test]
async fn two_runs_of_one_group_never_each_hold_a_part_of_it() {
    for round in 0..20 {
        let cloud = FakeCloud::new();
        cloud.set_latency(Duration::from_millis(5));
        let store = SlowLocks {
            seed: round,
            ..SlowLocks::default()
        };
        let build = || {
            Engine::builder(store.clone())
                .provider(ProviderInfo {
                    account_id: "000000000000".into(),
                    region: "local".into(),
                })
                .extension(cloud.clone())
                .build()
        };
        let (a, b) = (build(), build());
        let producer = renamed(FakeStack::chain("p", 2), "p");
        let consumer = renamed(FakeStack::chain("c", 1), "c").using(0, "p", "p0");
        // The second run lists its members the other way round: the order is the names', not the
        // caller's.
        let (ra, rb) = tokio::join!(
            group_up(&a, &producer, &consumer),
            group_up_reversed(&b, &producer, &consumer)
        );
        // Locks are taken in name order ("c" first): whoever takes the first one takes them all.
        assert!(
            ra.is_ok() != rb.is_ok(),
            "round {round}: exactly one run must win: {ra:?} / {rb:?}"
        );
        let err = ra.err().or(rb.err()).unwrap().to_string();
        assert!(err.contains("is locked by up by "), "round {round}: {err}");
        assert_eq!(cloud.calls().create, 3, "round {round}");
    }
}
