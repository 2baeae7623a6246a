//! The engine's public API on the fake cloud: what each method and option does, seen from outside.

use std::time::Duration;

use platform_core::testing::{FakeCloud, FakeStack, fake_engine, local_provider};
use platform_core::{
    Engine, Error, Event, MemoryStateStore, StateStore, UpOptions, events::AwsCall,
};

fn call(operation: &str, mutating: bool) -> Event {
    Event::AwsCall(AwsCall {
        service: "EC2".into(),
        operation: operation.into(),
        mutating,
        duration: Duration::from_millis(3),
        status: Some(200),
        error: None,
        step: None,
    })
}

#[tokio::test]
async fn calls_counts_every_aws_call_the_engine_saw() {
    let e = fake_engine(MemoryStateStore::new(), &FakeCloud::new());
    assert_eq!(e.calls().read + e.calls().mutating, 0);
    e.events().emit(call("CreateVpc", true));
    e.events().emit(call("DescribeVpcs", false));
    e.events().emit(call("DescribeVpcs", false));
    let calls = e.calls();
    assert_eq!((calls.mutating, calls.read), (1, 2));
}

#[tokio::test]
async fn cancelling_the_engines_token_stops_every_run() {
    let (store, cloud) = (MemoryStateStore::new(), FakeCloud::new());
    let e = fake_engine(store.clone(), &cloud);
    e.cancellation().cancel();
    let err = e.up(&FakeStack::chain("c", 2)).await.unwrap_err();
    assert!(matches!(err, Error::Cancelled { .. }), "{err}");
    assert!(cloud.live().is_empty());
}

#[tokio::test]
async fn up_with_refresh_repairs_drift_that_a_plain_up_does_not_see() {
    let (store, cloud) = (MemoryStateStore::new(), FakeCloud::new());
    let e = fake_engine(store.clone(), &cloud);
    let stack = FakeStack::chain("d", 2);
    e.up(&stack).await.unwrap();
    let id = cloud.instances_of("r0")[0].id.clone();
    cloud.tamper(&id, "changed by hand");

    let plain = e.up_with(&stack, UpOptions::default()).await.unwrap();
    assert!(!plain.plan.has_changes(), "{}", plain.plan);
    assert_eq!(cloud.instances_of("r0")[0].value, "changed by hand");

    let refreshed = e
        .up_with(&stack, UpOptions::default().with_refresh(true))
        .await
        .unwrap();
    assert_eq!(refreshed.plan.counts().update, 1, "{}", refreshed.plan);
    assert_eq!(cloud.instances_of("r0")[0].value, "v1");
    let state = store.read("d").await.unwrap().unwrap();
    assert_eq!(state.resources["r0"].inputs["value"], "v1");
}

#[tokio::test]
async fn a_refresh_is_recorded_as_one_more_write_of_the_state() {
    let (store, cloud) = (MemoryStateStore::new(), FakeCloud::new());
    let e = fake_engine(store.clone(), &cloud);
    let stack = FakeStack::chain("s", 2);
    e.up(&stack).await.unwrap();
    let before = store.read("s").await.unwrap().unwrap().serial;
    e.refresh(&stack).await.unwrap();
    assert_eq!(store.read("s").await.unwrap().unwrap().serial, before + 1);
}

#[tokio::test]
async fn destroy_reports_every_instance_it_deleted_replaced_ones_included() {
    let (store, cloud) = (MemoryStateStore::new(), FakeCloud::new());
    let mut stack = FakeStack::chain("r", 1);
    fake_engine(store.clone(), &cloud).up(&stack).await.unwrap();
    // A replacement that stops before deleting the old instance (the create's intent, with the
    // run's header, and its result are written): two instances recorded.
    stack.nodes[0].fixed = "f2".into();
    store.crash_at_write(3);
    fake_engine(store.clone(), &cloud)
        .up(&stack)
        .await
        .unwrap_err();
    store.revive();
    assert_eq!(cloud.live().len(), 2);
    let report = fake_engine(store.clone(), &cloud)
        .destroy::<FakeStack>("r")
        .await
        .unwrap();
    assert_eq!(report.deleted, 2);
    assert!(cloud.live().is_empty());
}

#[tokio::test]
async fn a_resource_whose_name_is_unique_is_replaced_by_deleting_the_old_one_first() {
    let (store, cloud) = (MemoryStateStore::new(), FakeCloud::new());
    let mut stack = FakeStack::chain("u", 1);
    stack.nodes[0].unique = true;
    fake_engine(store.clone(), &cloud).up(&stack).await.unwrap();
    stack.nodes[0].fixed = "f2".into();
    fake_engine(store.clone(), &cloud).up(&stack).await.unwrap();
    let order = cloud.order();
    let deleted = order.iter().position(|o| *o == ("r0".to_owned(), "delete"));
    let created = order
        .iter()
        .rposition(|o| *o == ("r0".to_owned(), "create"));
    assert!(deleted < created, "{order:?}");
    assert_eq!(cloud.instances_of("r0").len(), 1);
    assert_eq!(cloud.instances_of("r0")[0].fixed, "f2");
}

#[tokio::test]
async fn every_state_write_takes_the_next_serial() {
    let (store, cloud) = (MemoryStateStore::new(), FakeCloud::new());
    fake_engine(store.clone(), &cloud)
        .up(&FakeStack::chain("s", 3))
        .await
        .unwrap();
    let state = store.read("s").await.unwrap().unwrap();
    assert_eq!(state.serial, store.writes());
    assert!(
        state.serial >= 7,
        "an intent and a result per create, and the outputs"
    );
}

#[tokio::test]
async fn a_run_that_changes_nothing_reports_no_step_started_or_done() {
    let (store, cloud) = (MemoryStateStore::new(), FakeCloud::new());
    let stack = FakeStack::chain("quiet", 3);
    fake_engine(store.clone(), &cloud).up(&stack).await.unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = seen.clone();
    let e = Engine::builder(store.clone())
        .provider(local_provider())
        .extension(cloud.clone())
        .on_event(move |ev| {
            if matches!(ev, Event::Started { .. } | Event::Done { .. }) {
                sink.lock().unwrap().push(format!("{ev:?}"));
            }
        })
        .build();
    e.up(&stack).await.unwrap();
    assert!(
        seen.lock().unwrap().is_empty(),
        "{:?}",
        seen.lock().unwrap()
    );
    let mut changed = stack.clone();
    changed.nodes[2].value = "v2".into();
    e.up(&changed).await.unwrap();
    assert_eq!(
        seen.lock().unwrap().len(),
        2,
        "one update: started and done"
    );
}

#[tokio::test]
async fn total_counts_adds_up_every_plan() {
    let (store, cloud) = (MemoryStateStore::new(), FakeCloud::new());
    let e = fake_engine(store.clone(), &cloud);
    let (a, b) = (FakeStack::chain("a", 2), FakeStack::chain("b", 3));
    e.up(&a).await.unwrap();
    let plans = [e.preview(&a).await.unwrap(), e.preview(&b).await.unwrap()];
    let total = platform_core::engine::total_counts(&plans);
    assert_eq!((total.create, total.same), (3, 2));
}

#[test]
fn a_declared_stack_names_itself_and_lists_its_resources_in_order() {
    let d = platform_core::stack::Desired::of(&FakeStack::chain("s", 3)).unwrap();
    assert_eq!(d.stack(), "s");
    let names: Vec<&str> = d.names().collect();
    assert_eq!(names, ["r0", "r1", "r2"]);
    assert_eq!(d.dependencies("r0"), Some(&[][..]));
    assert_eq!(d.dependencies("r2"), Some(&["r1".to_owned()][..]));
    assert_eq!(d.dependencies("ghost"), None);
    assert_eq!(
        platform_core::StackRef::<FakeStack>::new("producer").name(),
        "producer"
    );
}

#[test]
fn a_state_is_empty_until_it_records_a_resource_or_outputs() {
    let mut s = platform_core::state::StackState::new("x");
    assert!(s.is_empty());
    s.outputs = Some(serde_json::json!({}));
    assert!(!s.is_empty());
    let mut s = platform_core::state::StackState::new("x");
    s.resources.insert(
        "r".into(),
        serde_json::from_value(serde_json::json!({"kind": "k", "inputs": {}, "outputs": null}))
            .unwrap(),
    );
    assert!(!s.is_empty());
}
