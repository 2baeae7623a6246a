//! The engine against the in-memory fake cloud: ordering, parallelism, idempotence, healing, state.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use platform_core::testing::{FakeCloud, FakeStack};
use platform_core::{
    Engine, Error, Event, LocalStateStore, MemoryStateStore, ProviderInfo, StateStore, UpOptions,
    error::StateError, plan::Action, plan::ActionKind, plan::UNKNOWN, resource::CancellationToken,
};
use proptest::prelude::*;

fn local() -> ProviderInfo {
    ProviderInfo {
        account_id: "000000000000".into(),
        region: "local".into(),
    }
}

/// An engine over the fake cloud, which shows what it makes at once: no settle window (a read that
/// sees nothing is gone at once, even right after the create).
fn engine(store: impl StateStore + 'static, cloud: &FakeCloud) -> Engine {
    Engine::builder(store)
        .provider(local())
        .extension(cloud.clone())
        .settle_window(std::time::Duration::ZERO)
        .build()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Random DAGs: node i depends on a subset of the (at most 4) nodes before it within `depth` levels.
fn dag() -> impl Strategy<Value = Vec<Vec<usize>>> {
    (1usize..24).prop_flat_map(|n| {
        proptest::collection::vec(
            proptest::collection::vec(any::<prop::sample::Index>(), 0..3),
            n,
        )
        .prop_map(|raw| {
            raw.into_iter()
                .enumerate()
                .map(|(i, picks)| {
                    let mut deps: Vec<usize> = if i == 0 {
                        vec![]
                    } else {
                        picks.into_iter().map(|p| p.index(i)).collect()
                    };
                    deps.sort_unstable();
                    deps.dedup();
                    deps
                })
                .collect()
        })
    })
}

fn position(order: &[(String, &'static str)], name: &str, what: &str) -> usize {
    order
        .iter()
        .position(|(n, w)| n == name && *w == what)
        .unwrap_or_else(|| panic!("{what} of {name} not in {order:?}"))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    #[test]
    fn apply_respects_dependencies_then_plans_same_then_destroys_in_reverse(deps in dag()) {
        rt().block_on(async {
            let cloud = FakeCloud::new();
            let e = engine(MemoryStateStore::new(), &cloud);
            let stack = FakeStack::from_deps("dag", deps.clone());
            e.up(&stack).await.unwrap();
            let order = cloud.order();
            for (i, ds) in deps.iter().enumerate() {
                for d in ds {
                    let (before, after) = (position(&order, &format!("r{d}"), "create"), position(&order, &format!("r{i}"), "create"));
                    prop_assert!(before < after, "r{} created before its dependency r{}", i, d);
                }
            }
            prop_assert_eq!(cloud.calls().create, deps.len() as u64);
            // Plan after apply: all Same, and a second up makes no call at all.
            let plan = e.preview(&stack).await.unwrap();
            prop_assert!(plan.steps.iter().all(|s| s.action == Action::Same), "{plan}");
            let before = cloud.calls();
            e.up(&stack).await.unwrap();
            prop_assert_eq!(cloud.calls(), before);
            // Destroy: every dependent deleted before what it depends on.
            e.destroy::<FakeStack>("dag").await.unwrap();
            let order = cloud.order();
            for (i, ds) in deps.iter().enumerate() {
                for d in ds {
                    let (first, then) = (position(&order, &format!("r{i}"), "delete"), position(&order, &format!("r{d}"), "delete"));
                    prop_assert!(first < then, "r{} deleted before its dependent r{}", d, i);
                }
            }
            prop_assert!(cloud.live().is_empty());
            prop_assert_eq!(e.store().read("dag").await.unwrap(), None);
            Ok(())
        })?;
    }

    #[test]
    fn parallelism_never_exceeds_the_bound(deps in dag(), bound in 1usize..5) {
        rt().block_on(async {
            let cloud = FakeCloud::new();
            cloud.set_latency(Duration::from_millis(2));
            let e = Engine::builder(MemoryStateStore::new()).provider(local()).extension(cloud.clone())
                .concurrency(bound).build();
            e.up(&FakeStack::from_deps("dag", deps)).await.unwrap();
            prop_assert!(cloud.max_in_flight() <= bound);
            Ok(())
        })?;
    }
}

/// An engine on `cloud` with at most `concurrency` calls at once, and twelve resources that depend
/// on nothing.
fn wide(cloud: &FakeCloud, concurrency: usize) -> (Engine, FakeStack) {
    let e = Engine::builder(MemoryStateStore::new())
        .provider(local())
        .extension(cloud.clone())
        .concurrency(concurrency)
        .build();
    (e, FakeStack::from_deps("wide", vec![vec![]; 12]))
}

/// On virtual time: each call takes 30 ms of the paused clock, which moves only when every task
/// waits, so the bound is reached (and not passed) however loaded the machine is.
#[tokio::test(start_paused = true)]
async fn independent_resources_run_up_to_the_global_and_service_bounds() {
    let cloud = FakeCloud::new();
    cloud.set_latency(Duration::from_millis(30));
    let (e, wide) = wide(&cloud, 5);
    e.up(&wide).await.unwrap();
    assert_eq!(cloud.max_in_flight(), 5, "global bound reached, not passed");

    let cloud = FakeCloud::new();
    cloud.set_latency(Duration::from_millis(30));
    let e = Engine::builder(MemoryStateStore::new())
        .provider(local())
        .extension(cloud.clone())
        .concurrency(10)
        .service_limit("fake", 3)
        .build();
    e.up(&wide).await.unwrap();
    assert_eq!(
        cloud.max_in_flight(),
        3,
        "per-service bound reached, not passed"
    );
}

/// On virtual time: the lists a destroy makes first, one per recorded instance, for twins AWS made
/// of a create, go out at once (within the bounds), not one after another.
#[tokio::test(start_paused = true)]
async fn a_destroy_lists_its_instances_at_once_within_the_bounds() {
    let cloud = FakeCloud::new();
    let (e, wide) = wide(&cloud, 6);
    e.up(&wide).await.unwrap();
    cloud.set_latency(Duration::from_millis(100));
    let reads = cloud.calls().read;
    let started = tokio::time::Instant::now();
    assert_eq!(e.destroy::<FakeStack>("wide").await.unwrap().deleted, 12);
    assert_eq!(cloud.calls().read - reads, 12, "one list per instance");
    assert_eq!(cloud.max_in_flight(), 6, "the bound reached, not passed");
    // Twelve lists six at a time, then twelve deletes six at a time: four rounds, not fourteen.
    assert_eq!(started.elapsed(), Duration::from_millis(400));
}

/// On virtual time: each call takes 30 ms of the paused clock, which moves only when every task
/// waits, so the bound is reached (and not passed) however loaded the machine is.
#[tokio::test(start_paused = true)]
async fn the_bounds_hold_across_stacks_applied_at_once() {
    let cloud = FakeCloud::new();
    cloud.set_latency(Duration::from_millis(30));
    let e = Engine::builder(MemoryStateStore::new())
        .provider(local())
        .extension(cloud.clone())
        .concurrency(3)
        .build();
    let (a, b) = (
        FakeStack::from_deps("a", vec![vec![]; 6]),
        FakeStack::from_deps("b", vec![vec![]; 6]),
    );
    let (ra, rb) = tokio::join!(e.up(&a), e.up(&b));
    ra.unwrap();
    rb.unwrap();
    assert_eq!(cloud.max_in_flight(), 3, "one bound for the whole engine");
    assert_eq!(cloud.live().len(), 12);
}

#[tokio::test]
async fn a_failure_mid_apply_is_completed_by_the_next_run_without_duplicates() {
    let cloud = FakeCloud::new();
    let e = engine(MemoryStateStore::new(), &cloud);
    let stack = FakeStack::chain("chain", 5);
    cloud.fail_create_of("r2");
    let err = e.up(&stack).await.unwrap_err();
    assert!(
        matches!(&err, Error::Resource { resource, action: "create", .. } if resource == "r2"),
        "{err}"
    );
    assert_eq!(
        cloud.live().len(),
        2,
        "r0, r1 created; r2 failed; r3, r4 never started"
    );
    let state = e.store().read("chain").await.unwrap().unwrap();
    assert!(state.resources["r0"].outputs.is_some());
    assert!(state.resources["r2"].outputs.is_none());

    let plan = e.preview(&stack).await.unwrap();
    assert_eq!(plan.counts().create, 3, "{plan}");
    e.up(&stack).await.unwrap();
    assert_eq!(cloud.live().len(), 5);
    assert_eq!(
        cloud.calls().create,
        6,
        "5 creates + the failed one, no twin"
    );
}

#[tokio::test]
async fn a_create_whose_result_was_lost_is_found_by_its_tags_and_adopted() {
    let cloud = FakeCloud::new();
    let adopted = Arc::new(Mutex::new(Vec::new()));
    let seen = adopted.clone();
    let e = Engine::builder(MemoryStateStore::new())
        .provider(local())
        .extension(cloud.clone())
        .on_event(move |ev| {
            if let Event::Adopted { resource, .. } = ev {
                seen.lock().unwrap().push(resource.clone());
            }
        })
        .build();
    let stack = FakeStack::chain("heal", 3);
    cloud.lose_create_result_of("r1");
    e.up(&stack).await.unwrap_err();
    assert_eq!(
        cloud.live().len(),
        2,
        "r1 exists in the cloud though the engine never heard back"
    );
    let state = e.store().read("heal").await.unwrap().unwrap();
    assert!(
        state.resources["r1"].pending.is_some(),
        "the intent was recorded"
    );

    let outputs = e.up(&stack).await.unwrap();
    assert_eq!(cloud.live().len(), 3, "no twin of r1");
    assert_eq!(adopted.lock().unwrap().as_slice(), ["r1"]);
    assert!(cloud.live().contains_key(&outputs["r1"]));
}

#[tokio::test]
async fn updates_in_place_and_replacements_follow_the_fields_rules() {
    let cloud = FakeCloud::new();
    let e = engine(MemoryStateStore::new(), &cloud);
    let mut stack = FakeStack::chain("ch", 3);
    let first = e.up(&stack).await.unwrap();

    // An updatable field: one update call, nothing else.
    stack.nodes[1].value = "v2".into();
    let plan = e.preview(&stack).await.unwrap();
    assert_eq!(plan.step("r1").unwrap().action.kind(), ActionKind::Update);
    assert_eq!(plan.counts().same, 2);
    let before = cloud.calls();
    let second = e.up(&stack).await.unwrap();
    let d = cloud.calls();
    assert_eq!(
        (
            d.update - before.update,
            d.create - before.create,
            d.delete - before.delete
        ),
        (1, 0, 0)
    );
    assert_eq!(first, second);

    // A force-new field: r1 is replaced; r2, which uses r1's id, is updated to the new id (its value
    // is unknown until then); the old r1 is deleted after r2 moved.
    stack.nodes[1].fixed = "other".into();
    let plan = e.preview(&stack).await.unwrap();
    let Action::Replace { reason, .. } = &plan.step("r1").unwrap().action else {
        panic!("{plan}")
    };
    assert_eq!(reason.to_string(), "fixed cannot change in place");
    assert_eq!(plan.step("r2").unwrap().action.kind(), ActionKind::Update);
    assert!(plan.to_string().contains(UNKNOWN), "{plan}");
    let third = e.up(&stack).await.unwrap();
    assert_ne!(third["r1"], second["r1"]);
    assert_eq!(third["r2"], second["r2"]);
    let order = cloud.order();
    let tail: Vec<_> = order[order.len() - 3..].to_vec();
    assert_eq!(
        tail,
        vec![
            ("r1".to_string(), "create"),
            ("r2".to_string(), "update"),
            ("r1".to_string(), "delete")
        ]
    );
    assert!(!e.preview(&stack).await.unwrap().has_changes());
    assert_eq!(cloud.live().len(), 3);
}

#[tokio::test]
async fn a_replacement_that_would_collide_deletes_first_and_its_replaced_dependents_before_it() {
    let cloud = FakeCloud::new();
    let e = engine(MemoryStateStore::new(), &cloud);
    let mut stack = FakeStack::chain("collide", 3);
    let before = e.up(&stack).await.unwrap();
    // r1's new fixed part collides with the old instance (ends in `!`); r2, which uses r1, is
    // replaced too (its own fixed part), so it goes before r1; r0 stays.
    stack.nodes[1].fixed = "same-name!".into();
    stack.nodes[2].fixed = "other".into();
    let plan = e.preview(&stack).await.unwrap();
    let Action::Replace { delete_first, .. } = plan.step("r1").unwrap().action else {
        panic!("{plan}")
    };
    assert!(delete_first, "{plan}");
    let Action::Replace { delete_first, .. } = plan.step("r2").unwrap().action else {
        panic!("{plan}")
    };
    assert!(!delete_first, "r2's own change does not collide: {plan}");
    let shown = plan.to_string();
    assert!(
        shown.contains("-/+ r1 (fake:resource) (delete first): fixed cannot change in place"),
        "{shown}"
    );
    assert!(
        shown.contains("-/+ r2 (fake:resource): fixed cannot change in place"),
        "{shown}"
    );
    let after = e.up(&stack).await.unwrap();
    let order = cloud.order();
    let tail: Vec<(&str, &str)> = order[order.len() - 4..]
        .iter()
        .map(|(n, w)| (n.as_str(), *w))
        .collect();
    assert_eq!(
        tail,
        [
            ("r2", "delete"),
            ("r1", "delete"),
            ("r1", "create"),
            ("r2", "create")
        ]
    );
    assert_eq!(after["r0"], before["r0"]);
    assert_ne!(after["r1"], before["r1"]);
    assert_eq!(cloud.live().len(), 3);
    assert!(!e.preview(&stack).await.unwrap().has_changes());
    // A change that does not collide creates first, as before.
    stack.nodes[2].fixed = "third".into();
    let plan = e.preview(&stack).await.unwrap();
    assert!(!plan.to_string().contains("(delete first)"), "{plan}");
}

#[tokio::test]
async fn removed_resources_are_deleted_after_their_dependents() {
    let cloud = FakeCloud::new();
    let e = engine(MemoryStateStore::new(), &cloud);
    e.up(&FakeStack::chain("rm", 4)).await.unwrap();
    let smaller = FakeStack::chain("rm", 2);
    let plan = e.preview(&smaller).await.unwrap();
    let deletes: Vec<_> = plan
        .steps
        .iter()
        .filter(|s| s.action == Action::Delete)
        .map(|s| s.resource.as_str())
        .collect();
    assert_eq!(deletes, ["r3", "r2"]);
    e.up(&smaller).await.unwrap();
    let order = cloud.order();
    assert!(position(&order, "r3", "delete") < position(&order, "r2", "delete"));
    assert_eq!(cloud.live().len(), 2);
}

#[tokio::test]
async fn bad_graphs_and_bad_inputs_are_refused_before_any_call() {
    let cloud = FakeCloud::new();
    let e = engine(MemoryStateStore::new(), &cloud);
    let mut stack = FakeStack::chain("bad", 2);
    stack.nodes[1].value = "x".repeat(65);
    let err = e.up(&stack).await.unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("bad/r1") && msg.contains("invalid value"),
        "{msg}"
    );

    let mut dup = FakeStack::chain("dup", 2);
    dup.nodes[1].name = "r0".into();
    let err = e.up(&dup).await.unwrap_err();
    assert!(matches!(err, Error::DuplicateResource { .. }), "{err}");
    assert_eq!(cloud.calls().mutating() + cloud.calls().read, 0);
    assert_eq!(e.store().list().await.unwrap(), Vec::<String>::new());
}

#[tokio::test]
async fn state_from_another_account_is_refused_before_any_call() {
    let cloud = FakeCloud::new();
    let store = MemoryStateStore::new();
    let e = engine(store.clone(), &cloud);
    e.up(&FakeStack::chain("p", 2)).await.unwrap();
    let calls = cloud.calls();
    let other = Engine::builder(store)
        .provider(ProviderInfo {
            account_id: "111111111111".into(),
            region: "local".into(),
        })
        .extension(cloud.clone())
        .build();
    let mut changed = FakeStack::chain("p", 2);
    changed.nodes[0].value = "v9".into();
    let err = other.up(&changed).await.unwrap_err();
    assert!(matches!(err, Error::ProviderMismatch { .. }), "{err}");
    assert!(err.to_string().contains("111111111111"), "{err}");
    let err = other.destroy::<FakeStack>("p").await.unwrap_err();
    assert!(matches!(err, Error::ProviderMismatch { .. }), "{err}");
    assert_eq!(cloud.calls(), calls);
}

#[tokio::test]
async fn stack_references_are_typed_recorded_and_block_the_producers_destroy() {
    let cloud = FakeCloud::new();
    let e = engine(MemoryStateStore::new(), &cloud);
    let mut consumer = FakeStack::chain("app", 1);
    consumer.references = vec!["base".into()];
    let err = e.up(&consumer).await.unwrap_err();
    assert!(
        matches!(&err, Error::StackNotFound { stack } if stack == "base"),
        "{err}"
    );

    e.up(&FakeStack::chain("base", 2)).await.unwrap();
    let base = platform_core::StackRef::<FakeStack>::new("base")
        .read(e.store(), &local())
        .await
        .unwrap();
    assert_eq!(base.len(), 2);
    assert_eq!(
        base.producer.serial,
        Some(e.store().read("base").await.unwrap().unwrap().serial)
    );
    e.up(&consumer).await.unwrap();
    // The consumer records the producer it read, at the write it read.
    let recorded = e.store().read("app").await.unwrap().unwrap().producers;
    assert_eq!(recorded, std::slice::from_ref(&base.producer));
    let err = e.destroy::<FakeStack>("base").await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "stack base is referenced by app; destroy those first"
    );
    assert_eq!(cloud.live().len(), 3, "nothing deleted");
    e.destroy::<FakeStack>("app").await.unwrap();
    e.destroy::<FakeStack>("base").await.unwrap();
    assert!(cloud.live().is_empty());
}

#[tokio::test]
async fn incompatible_outputs_are_a_clear_error() {
    let cloud = FakeCloud::new();
    let e = engine(MemoryStateStore::new(), &cloud);
    e.up(&FakeStack::chain("base", 1)).await.unwrap();
    struct Wrong;
    impl platform_core::Stack for Wrong {
        type Outputs = Vec<u32>;
        fn name(&self) -> &str {
            "wrong"
        }
        fn register(_: &mut platform_core::resource::Registry) {}
        fn declare(
            &self,
            s: &mut platform_core::Scope,
        ) -> Result<platform_core::stack::Declared<Vec<u32>>, Error> {
            Ok(s.outputs(|_| Ok(vec![])))
        }
    }
    let err = platform_core::StackRef::<Wrong>::new("base")
        .read(e.store(), &local())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::IncompatibleOutputs { .. }), "{err}");
}

/// A stack with no resources whose outputs are `O`, built from `producers`, referencing them.
struct Outputs<O, const SCHEMA: u32> {
    name: &'static str,
    value: O,
    producers: Vec<platform_core::state::Producer>,
}

impl<O, const SCHEMA: u32> platform_core::Stack for Outputs<O, SCHEMA>
where
    O: serde::Serialize + serde::de::DeserializeOwned + Clone + Send + Sync + 'static,
{
    type Outputs = O;
    const OUTPUTS_SCHEMA: u32 = SCHEMA;
    fn name(&self) -> &str {
        self.name
    }
    fn register(_: &mut platform_core::resource::Registry) {}
    fn declare(
        &self,
        s: &mut platform_core::Scope,
    ) -> Result<platform_core::stack::Declared<O>, Error> {
        let value = self.value.clone();
        Ok(s.outputs(move |_| Ok(value.clone())))
    }
    fn references(&self) -> Vec<String> {
        self.producers.iter().map(|p| p.stack.clone()).collect()
    }
    fn producers(&self) -> Vec<platform_core::state::Producer> {
        self.producers.clone()
    }
}

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct V1 {
    a: String,
}

/// V1 with a field added the compatible way: with a default.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct V1Plus {
    a: String,
    #[serde(default)]
    b: Option<String>,
}

/// V1 with a field added without a default: what the rule forbids.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct V1Required {
    a: String,
    b: String,
}

fn other_account() -> ProviderInfo {
    ProviderInfo {
        account_id: "999999999999".into(),
        region: "local".into(),
    }
}

#[tokio::test]
async fn outputs_with_a_field_added_with_a_default_still_read_an_older_producers_state() {
    let cloud = FakeCloud::new();
    let store = MemoryStateStore::new();
    let e = engine(store.clone(), &cloud);
    let v1 = Outputs::<V1, 1> {
        name: "base",
        value: V1 { a: "x".into() },
        producers: vec![],
    };
    e.up(&v1).await.unwrap();
    let recorded = store.read("base").await.unwrap().unwrap();
    assert_eq!(recorded.outputs_schema, Some(1));
    assert_eq!(recorded.producers, [], "built from no other stack");
    let read = platform_core::StackRef::<Outputs<V1Plus, 1>>::new("base")
        .read(&store, &local())
        .await
        .unwrap();
    assert_eq!(
        read.outputs,
        V1Plus {
            a: "x".into(),
            b: None
        }
    );
    assert_eq!(read.producer.schema, Some(1));
    // Without a default, the older state cannot be read: the error names the missing field.
    let err = platform_core::StackRef::<Outputs<V1Required, 1>>::new("base")
        .read(&store, &local())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::IncompatibleOutputs { .. }), "{err}");
    assert!(err.to_string().contains("missing field `b`"), "{err}");
    // A producer with a newer schema is refused by an older consumer, naming both versions.
    let v2 = Outputs::<V1, 2> {
        name: "next",
        value: V1 { a: "y".into() },
        producers: vec![],
    };
    e.up(&v2).await.unwrap();
    let err = platform_core::StackRef::<Outputs<V1, 1>>::new("next")
        .read(&store, &local())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::NewerOutputs {
                found: 2,
                supported: 1,
                ..
            }
        ),
        "{err}"
    );
    let read = platform_core::StackRef::<Outputs<V1, 2>>::new("next")
        .read(&store, &local())
        .await
        .unwrap();
    assert_eq!(read.producer.schema, Some(2));
}

#[tokio::test]
async fn outputs_of_another_account_are_refused_when_read_referenced_or_handed_in() {
    let cloud = FakeCloud::new();
    let store = MemoryStateStore::new();
    // The producer was applied to another account (with the same store).
    let theirs = Engine::builder(store.clone())
        .provider(other_account())
        .extension(cloud.clone())
        .build();
    theirs.up(&FakeStack::chain("base", 1)).await.unwrap();
    let ours = engine(store.clone(), &cloud);
    let err = platform_core::StackRef::<FakeStack>::new("base")
        .read(&store, &local())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::ForeignOutputs { stack, producer, consumer }
            if stack == "base" && producer == &other_account() && consumer == &local()),
        "{err}"
    );
    assert!(err.to_string().contains("999999999999"), "{err}");
    // Referenced by a stack of ours: refused before any call.
    let mut consumer = FakeStack::chain("app", 1);
    consumer.references = vec!["base".into()];
    let before = cloud.calls().create;
    let err = ours.up(&consumer).await.unwrap_err();
    assert!(matches!(err, Error::ForeignOutputs { .. }), "{err}");
    // Handed in as a value read elsewhere: refused too.
    let foreign = platform_core::state::Producer {
        stack: "base".into(),
        provider: Some(other_account()),
        serial: Some(1),
        schema: Some(1),
    };
    let handed = Outputs::<V1, 1> {
        name: "handed",
        value: V1 { a: "x".into() },
        producers: vec![foreign.clone()],
    };
    let err = ours.up(&handed).await.unwrap_err();
    assert!(matches!(err, Error::ForeignOutputs { .. }), "{err}");
    assert_eq!(cloud.calls().create, before, "nothing was called");
    assert_eq!(store.read("app").await.unwrap(), None);
    // From our own account: accepted, and recorded as the producer actually read.
    ours.up(&FakeStack::chain("mine", 1)).await.unwrap();
    let mine = platform_core::StackRef::<FakeStack>::new("mine")
        .read(&store, &local())
        .await
        .unwrap()
        .producer;
    let handed = Outputs::<V1, 1> {
        name: "handed",
        value: V1 { a: "x".into() },
        producers: vec![mine.clone()],
    };
    ours.up(&handed).await.unwrap();
    let state = store.read("handed").await.unwrap().unwrap();
    assert_eq!(state.producers, [mine]);
    assert_eq!(state.references, ["mine"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancellation_lets_in_flight_calls_finish_and_records_them() {
    let cloud = FakeCloud::new();
    cloud.set_latency(Duration::from_millis(20));
    let token = CancellationToken::new();
    let t2 = token.clone();
    // Ctrl-C arrives while r1 is in flight.
    let e = Engine::builder(MemoryStateStore::new())
        .provider(local())
        .extension(cloud.clone())
        .cancellation(token.clone())
        .on_event(move |ev| {
            if matches!(ev, Event::Started { resource, .. } if resource == "r1") {
                t2.cancel();
            }
        })
        .build();
    let stack = FakeStack::chain("c", 4);
    let err = e.up(&stack).await.unwrap_err();
    let Error::Cancelled {
        completed,
        remaining,
        ..
    } = err
    else {
        panic!("{err}")
    };
    // r0 done; r1 in flight when cancelled, finished and recorded; r2, r3 never started.
    assert_eq!((completed, remaining), (2, 2));
    let state = e.store().read("c").await.unwrap().unwrap();
    assert!(state.resources["r1"].outputs.is_some());
    assert!(!state.resources.contains_key("r2"));
    assert_eq!(cloud.live().len(), 2);
}

#[tokio::test]
async fn a_locked_stack_is_refused_with_the_holder_named() {
    let dir = tempfile::tempdir().unwrap();
    let cloud = FakeCloud::new();
    let store = LocalStateStore::open(dir.path()).unwrap();
    let _held = store.lock("x", "up").await.unwrap();
    let e = engine(LocalStateStore::open(dir.path()).unwrap(), &cloud);
    // No lock timeout: refused at once, not waited for.
    let err = tokio::time::timeout(Duration::from_secs(5), e.up(&FakeStack::chain("x", 1)))
        .await
        .expect("a held lock is refused at once without a lock timeout")
        .unwrap_err();
    assert!(
        matches!(&err, Error::State(StateError::Locked { holder, .. }) if holder.contains("pid")),
        "{err}"
    );
    assert_eq!(cloud.calls().create, 0);
}

/// A memory store whose locks cannot be released (a store that lost its connection).
#[derive(Debug, Clone, Default)]
struct StuckLocks(MemoryStateStore);

#[derive(Debug)]
struct StuckLock(Box<dyn platform_core::state::StackLock>);

impl platform_core::state::StackLock for StuckLock {
    fn write<'a>(
        &'a self,
        state: &'a platform_core::state::StackState,
    ) -> platform_core::resource::BoxFuture<'a, Result<(), StateError>> {
        self.0.write(state)
    }
    fn remove(&self) -> platform_core::resource::BoxFuture<'_, Result<(), StateError>> {
        self.0.remove()
    }
    fn release(&self) -> platform_core::resource::BoxFuture<'_, Result<(), StateError>> {
        Box::pin(async {
            Err(StateError::Io {
                path: "stuck.lock".into(),
                source: std::io::Error::other("the store went away"),
            })
        })
    }
}

impl StateStore for StuckLocks {
    fn lock<'a>(
        &'a self,
        stack: &'a str,
        operation: &'a str,
    ) -> platform_core::resource::BoxFuture<
        'a,
        Result<Box<dyn platform_core::state::StackLock>, StateError>,
    > {
        Box::pin(async move {
            let inner = self.0.lock(stack, operation).await?;
            Ok(Box::new(StuckLock(inner)) as Box<dyn platform_core::state::StackLock>)
        })
    }
    fn read<'a>(
        &'a self,
        stack: &'a str,
    ) -> platform_core::resource::BoxFuture<
        'a,
        Result<Option<platform_core::state::StackState>, StateError>,
    > {
        self.0.read(stack)
    }
    fn list(&self) -> platform_core::resource::BoxFuture<'_, Result<Vec<String>, StateError>> {
        self.0.list()
    }
    fn holder<'a>(
        &'a self,
        stack: &'a str,
    ) -> platform_core::resource::BoxFuture<
        'a,
        Result<Option<platform_core::state::LockInfo>, StateError>,
    > {
        self.0.holder(stack)
    }
    fn force_unlock<'a>(
        &'a self,
        stack: &'a str,
    ) -> platform_core::resource::BoxFuture<
        'a,
        Result<Option<platform_core::state::LockInfo>, StateError>,
    > {
        self.0.force_unlock(stack)
    }
    fn location(&self) -> String {
        "stuck".into()
    }
}

#[tokio::test]
async fn a_lock_that_cannot_be_released_fails_a_good_run_but_never_hides_a_failed_runs_error() {
    let cloud = FakeCloud::new();
    let e = engine(StuckLocks::default(), &cloud);
    // Everything applied and recorded, but the lock stays: the run says so.
    let err = e.up(&FakeStack::chain("x", 1)).await.unwrap_err();
    assert!(matches!(&err, Error::State(StateError::Io { .. })), "{err}");
    assert!(err.to_string().contains("the store went away"), "{err}");
    assert_eq!(cloud.calls().create, 1);
    // A run that failed reports its own failure, not the release's.
    cloud.fail_create_of("r0");
    let err = e.up(&FakeStack::chain("y", 1)).await.unwrap_err();
    assert!(matches!(&err, Error::Resource { .. }), "{err}");
}

#[tokio::test]
async fn a_held_lock_is_waited_for_up_to_the_lock_timeout_saying_who_holds_it() {
    let cloud = FakeCloud::new();
    let store = MemoryStateStore::new();
    let held = store.lock("x", "destroy").await.unwrap();
    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = events.clone();
    let e = Engine::builder(store.clone())
        .provider(local())
        .extension(cloud.clone())
        .lock_timeout(Duration::from_secs(30))
        .on_event(move |ev| {
            if let Event::LockWait {
                stack,
                holder,
                timeout,
            } = ev
            {
                seen.lock()
                    .unwrap()
                    .push((stack.clone(), holder.clone(), *timeout));
            }
        })
        .build();
    let release = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        held.release().await.unwrap();
    };
    let stack = FakeStack::chain("x", 2);
    let (up, ()) = tokio::join!(e.up(&stack), release);
    up.unwrap();
    let events = events.lock().unwrap().clone();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].0, "x");
    assert!(events[0].1.starts_with("destroy by "), "{}", events[0].1);
    assert_eq!(events[0].2, Duration::from_secs(30));
    assert_eq!(cloud.calls().create, 2);
    // Released when the run ended.
    assert_eq!(store.holder("x").await.unwrap(), None);
}

#[tokio::test]
async fn a_lock_held_past_the_timeout_fails_naming_the_holder_having_called_nothing() {
    let cloud = FakeCloud::new();
    let store = MemoryStateStore::new();
    let _held = store.lock("x", "refresh").await.unwrap();
    let e = Engine::builder(store.clone())
        .provider(local())
        .extension(cloud.clone())
        .lock_timeout(Duration::from_millis(1200))
        .build();
    let started = std::time::Instant::now();
    let err = e.up(&FakeStack::chain("x", 1)).await.unwrap_err();
    assert!(started.elapsed() >= Duration::from_millis(1200));
    assert!(
        matches!(&err, Error::State(StateError::Locked { holder, .. }) if holder.starts_with("refresh by ")),
        "{err}"
    );
    assert_eq!(cloud.calls().create, 0);
}

#[tokio::test]
async fn the_lock_is_released_when_a_run_fails_and_when_it_succeeds() {
    let cloud = FakeCloud::new();
    let store = MemoryStateStore::new();
    let e = engine(store.clone(), &cloud);
    cloud.fail_create_of("r1");
    e.up(&FakeStack::chain("x", 2)).await.unwrap_err();
    assert_eq!(store.holder("x").await.unwrap(), None);
    e.refresh(&FakeStack::chain("x", 2)).await.unwrap();
    assert_eq!(store.holder("x").await.unwrap(), None);
    e.destroy::<FakeStack>("x").await.unwrap();
    assert_eq!(store.holder("x").await.unwrap(), None);
}

#[tokio::test]
async fn a_stack_name_with_path_characters_is_refused_before_any_call() {
    let cloud = FakeCloud::new();
    let store = MemoryStateStore::new();
    let e = engine(store.clone(), &cloud);
    for bad in ["../x", "a/b", "a.b"] {
        let err = e.up(&FakeStack::chain(bad, 1)).await.unwrap_err();
        assert!(
            matches!(&err, Error::Invalid { resource, .. } if resource == "stack"),
            "{bad}: {err}"
        );
        assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        let err = e.destroy::<FakeStack>(bad).await.unwrap_err();
        assert!(matches!(&err, Error::Invalid { .. }), "{bad}: {err}");
    }
    assert_eq!(cloud.calls().create, 0);
    assert!(store.list().await.unwrap().is_empty());
}

#[tokio::test]
async fn refresh_shows_drift_and_up_corrects_it() {
    let cloud = FakeCloud::new();
    let e = engine(MemoryStateStore::new(), &cloud);
    let stack = FakeStack::chain("d", 2);
    let out = e.up(&stack).await.unwrap();
    cloud.tamper(&out["r1"], "changed by hand");
    assert!(
        !e.preview(&stack).await.unwrap().has_changes(),
        "preview reads no live state"
    );
    let plan = e.refresh(&stack).await.unwrap();
    let Action::Update { changes } = &plan.step("r1").unwrap().action else {
        panic!("{plan}")
    };
    assert_eq!(changes[0].field, "value");
    e.up(&stack).await.unwrap();
    assert_eq!(cloud.live()[&out["r1"]].value, "v1");
}

#[tokio::test]
async fn a_refresh_report_names_each_drifted_field_and_each_resource_deleted_by_hand() {
    let cloud = FakeCloud::new();
    let store = MemoryStateStore::new();
    let e = engine(store.clone(), &cloud);
    let stack = FakeStack::chain("d", 3);
    let out = e.up(&stack).await.unwrap();
    let clean = e.refresh_report(&stack).await.unwrap();
    assert_eq!(clean.drift, []);
    assert!(!clean.plan.has_changes(), "{}", clean.plan);

    cloud.tamper(&out["r1"], "changed by hand");
    cloud.remove(&out["r2"]);
    // (resource, kind, gone, [(field, recorded, live)])
    type Seen = (
        String,
        String,
        bool,
        Vec<(String, serde_json::Value, serde_json::Value)>,
    );
    let seen_of = |drift: &[platform_core::engine::Drift]| -> Vec<Seen> {
        let fields = |d: &platform_core::engine::Drift| {
            let f = d.fields.iter();
            f.map(|f| (f.field.clone(), f.recorded.clone(), f.live.clone()))
                .collect()
        };
        drift
            .iter()
            .map(|d| (d.resource.clone(), d.kind.clone(), d.gone, fields(d)))
            .collect()
    };
    let expected: Vec<Seen> = vec![
        (
            "r1".into(),
            "fake:resource".into(),
            false,
            vec![("value".into(), "v1".into(), "changed by hand".into())],
        ),
        ("r2".into(), "fake:resource".into(), true, vec![]),
    ];
    // Planned against what exists, recorded nowhere, and no lock taken.
    let writes = store.writes();
    let _held = store.lock("d", "up").await.unwrap();
    let seen = e.preview_refreshed(&stack).await.unwrap();
    assert_eq!(store.writes(), writes);
    assert_eq!(seen_of(&seen.drift), expected);
    assert_eq!(
        seen.plan.step("r1").unwrap().action.kind(),
        ActionKind::Update
    );
    assert_eq!(
        seen.plan.step("r2").unwrap().action.kind(),
        ActionKind::Create
    );
    drop(_held);
    assert!(!e.preview(&stack).await.unwrap().has_changes());

    // Recorded by a refresh: the same drift, once; after it, the plan still says what differs.
    let report = e.refresh_report(&stack).await.unwrap();
    assert_eq!(seen_of(&report.drift), expected);
    assert_eq!(store.writes(), writes + 1);
    let again = e.refresh_report(&stack).await.unwrap();
    assert_eq!(again.drift, []);
    assert!(again.plan.has_changes());
    e.up(&stack).await.unwrap();
    assert_eq!(e.refresh_report(&stack).await.unwrap().drift, []);
    assert!(!e.preview(&stack).await.unwrap().has_changes());
}

#[tokio::test]
async fn import_records_a_resource_made_by_hand_and_refuses_what_it_cannot_take() {
    let cloud = FakeCloud::new();
    let store = MemoryStateStore::new();
    let e = engine(store.clone(), &cloud);
    let stack = FakeStack::chain("app", 2);
    let id = cloud.make_by_hand("old value");

    // Refused, state untouched: a name the stack does not declare, an id that does not exist.
    let err = e.import(&stack, "nope", &id).await.unwrap_err();
    assert!(matches!(&err, Error::Invalid { .. }), "{err}");
    assert!(
        err.to_string().contains("invalid resource = app/nope")
            && err.to_string().contains("it declares r0, r1"),
        "{err}"
    );
    let err = e.import(&stack, "r0", "fake-missing").await.unwrap_err();
    assert!(
        matches!(&err, Error::ImportNotFound { id, kind, .. } if id == "fake-missing" && kind == "fake:resource"),
        "{err}"
    );
    assert_eq!(store.writes(), 0);
    assert_eq!(store.read("app").await.unwrap(), None);

    // Imported: read, recorded, tagged as the stack's.
    let report = e.import(&stack, "r0", &id).await.unwrap();
    assert_eq!(report.outputs, serde_json::json!({"id": id}));
    assert_eq!(cloud.live()[&id].tags["platform:stack"], "app");
    let recorded = store.read("app").await.unwrap().unwrap();
    assert_eq!(recorded.resources["r0"].inputs["value"], "old value");
    assert_eq!(recorded.provider, Some(local()));
    assert_eq!(
        (recorded.serial, store.writes()),
        (1, 1),
        "one write, serial 1"
    );
    let writes = store.writes();
    let err = e.import(&stack, "r0", &id).await.unwrap_err();
    assert!(matches!(&err, Error::AlreadyManaged { .. }), "{err}");
    assert_eq!(store.writes(), writes);
    assert_eq!(store.holder("app").await.unwrap(), None);

    // The plan shows only the differences; `up` makes it match and builds around it.
    let plan = e.preview(&stack).await.unwrap();
    assert_eq!(plan.step("r0").unwrap().action.kind(), ActionKind::Update);
    assert_eq!(plan.step("r1").unwrap().action.kind(), ActionKind::Create);
    let out = e.up(&stack).await.unwrap();
    assert_eq!(out["r0"], id);
    assert_eq!(cloud.calls().create, 1);
    assert_eq!(cloud.live()[&id].value, "v1");
    assert_eq!(cloud.live()[&out["r1"]].deps, std::slice::from_ref(&id));
}

#[tokio::test]
async fn an_up_with_refresh_records_the_refresh_and_a_run_that_changes_nothing_writes_nothing() {
    let cloud = FakeCloud::new();
    let store = MemoryStateStore::new();
    let e = engine(store.clone(), &cloud);
    let stack = FakeStack::chain("s", 2);
    let first = e.up_with(&stack, UpOptions::default()).await.unwrap();
    let serial = store.read("s").await.unwrap().unwrap().serial;
    assert_eq!(first.producer.serial, Some(serial));
    assert_eq!(first.producer.stack, "s");
    assert_eq!(first.producer.provider, Some(local()));
    let again = e
        .up_with(&stack, UpOptions::default().with_refresh(true))
        .await
        .unwrap();
    let now = store.read("s").await.unwrap().unwrap().serial;
    assert_eq!(
        now,
        serial + 1,
        "the refresh's write; the run changed nothing"
    );
    assert_eq!(again.producer.serial, Some(now));
    assert_eq!(again.produced().producer, again.producer);
    let writes = store.writes();
    let third = e.up_with(&stack, UpOptions::default()).await.unwrap();
    assert_eq!(
        store.writes(),
        writes,
        "a run with nothing to do writes nothing"
    );
    assert_eq!(third.producer.serial, Some(now));
    // A change writes: the step's intent (with the run's header) and result, the outputs.
    let mut changed = stack.clone();
    changed.nodes[1].value = "v2".into();
    let fourth = e.up_with(&changed, UpOptions::default()).await.unwrap();
    assert_eq!(store.writes(), writes + 3);
    assert_eq!(fourth.producer.serial, Some(now + 3));
}

#[tokio::test]
async fn local_state_survives_the_engine_and_names_every_step() {
    let dir = tempfile::tempdir().unwrap();
    let cloud = FakeCloud::new();
    let events = Arc::new(Mutex::new(HashMap::<String, Vec<ActionKind>>::new()));
    let ev = events.clone();
    let e = Engine::builder(LocalStateStore::open(dir.path()).unwrap())
        .provider(local())
        .extension(cloud.clone())
        .on_event(move |event| {
            if let Event::Done {
                resource, action, ..
            } = event
            {
                ev.lock()
                    .unwrap()
                    .entry(resource.clone())
                    .or_default()
                    .push(*action);
            }
        })
        .build();
    e.up(&FakeStack::chain("disk", 2)).await.unwrap();
    drop(e);
    let raw = std::fs::read_to_string(dir.path().join("disk.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(json["version"], 1);
    assert_eq!(json["provider"]["account_id"], "000000000000");
    assert_eq!(json["resources"]["r1"]["dependencies"][0], "r0");
    assert_eq!(events.lock().unwrap()["r1"], vec![ActionKind::Create]);
    let e = engine(LocalStateStore::open(dir.path()).unwrap(), &cloud);
    assert!(
        !e.preview(&FakeStack::chain("disk", 2))
            .await
            .unwrap()
            .has_changes()
    );
}
