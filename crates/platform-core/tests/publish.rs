//! Early outputs ([`Context::publish`](platform_core::Context::publish)): a create that publishes
//! its outputs once the resource exists lets its dependents start while it goes on configuring the
//! resource, and whatever happens after the publish is healed by reading, never by creating again.

use std::time::Duration;

use platform_core::testing::{FakeCloud, FakeStack, fake_engine};
use platform_core::{Error, MemoryStateStore, StateStore, plan::ActionKind, state::PendingOp};

/// The fake cloud with two-step creates.
fn two_step_cloud() -> FakeCloud {
    let cloud = FakeCloud::new();
    cloud.configure_after_publish();
    cloud
}

fn position(order: &[(String, &'static str)], name: &str, what: &str) -> usize {
    order
        .iter()
        .position(|(n, w)| n == name && *w == what)
        .unwrap_or_else(|| panic!("no {what} of {name} in {order:?}"))
}

#[tokio::test]
async fn a_dependent_starts_when_its_dependency_publishes_not_when_its_create_ends() {
    let (store, cloud) = (MemoryStateStore::new(), two_step_cloud());
    cloud.slow_configure_of("r0", Duration::from_millis(300));
    let stack = FakeStack::chain("early", 2);
    fake_engine(store.clone(), &cloud).up(&stack).await.unwrap();
    let order = cloud.order();
    assert!(
        position(&order, "r1", "create") < position(&order, "r0", "configure"),
        "r1 waited for r0's configuration: {order:?}"
    );
    // Both end configured, recorded with nothing pending.
    let state = store.read("early").await.unwrap().unwrap();
    for r in ["r0", "r1"] {
        assert!(state.resources[r].pending.is_none(), "{r}");
        let id = state.resources[r].outputs.as_ref().unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(cloud.live()[&id].value, "v1", "{r}");
    }
}

#[tokio::test]
async fn a_create_that_fails_after_publishing_is_recorded_pending_and_the_next_run_updates_it_in_place()
 {
    let (store, cloud) = (MemoryStateStore::new(), two_step_cloud());
    cloud.fail_configure_of("r0");
    let stack = FakeStack::chain("early", 1);
    let err = fake_engine(store.clone(), &cloud)
        .up(&stack)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Resource { .. }), "{err}");
    let state = store.read("early").await.unwrap().unwrap();
    let r0 = &state.resources["r0"];
    let id = r0
        .outputs
        .as_ref()
        .expect("the published outputs are recorded")["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(r0.pending.as_ref().map(|p| p.op), Some(PendingOp::Update));
    assert_eq!(cloud.live()[&id].value, "", "not configured");

    // The plan says it will be finished, and the next run does it in place.
    let engine = fake_engine(store.clone(), &cloud);
    let plan = engine.preview(&stack).await.unwrap();
    assert_eq!(plan.step("r0").unwrap().action.kind(), ActionKind::Update);
    assert!(plan.to_string().contains("finish configuring it"), "{plan}");
    engine.up(&stack).await.unwrap();
    assert_eq!(cloud.calls().create, 1, "never created again");
    assert_eq!(cloud.calls().update, 1);
    assert_eq!(cloud.live().len(), 1);
    assert_eq!(cloud.live()[&id].value, "v1");
    let state = store.read("early").await.unwrap().unwrap();
    assert!(state.resources["r0"].pending.is_none());
}

#[tokio::test]
async fn a_configuration_that_finished_before_the_crash_is_read_and_not_sent_again() {
    let (store, cloud) = (MemoryStateStore::new(), two_step_cloud());
    let stack = FakeStack::chain("early", 1);
    // Writes: the create's intent (with the run's header), the published outputs; the result is
    // lost.
    store.crash_at_write(3);
    fake_engine(store.clone(), &cloud)
        .up(&stack)
        .await
        .unwrap_err();
    store.revive();
    let pending = store.read("early").await.unwrap().unwrap().resources["r0"]
        .pending
        .clone();
    assert_eq!(pending.map(|p| p.op), Some(PendingOp::Update));
    fake_engine(store.clone(), &cloud).up(&stack).await.unwrap();
    let calls = cloud.calls();
    assert_eq!((calls.create, calls.update), (1, 0), "{calls:?}");
    assert!(
        store.read("early").await.unwrap().unwrap().resources["r0"]
            .pending
            .is_none()
    );
}

#[tokio::test]
async fn outputs_published_other_than_those_returned_fail_the_create_as_a_bug_of_the_kind() {
    let (store, cloud) = (MemoryStateStore::new(), two_step_cloud());
    cloud.publish_other_id_of("r0");
    let err = fake_engine(store, &cloud)
        .up(&FakeStack::chain("early", 1))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("published outputs other than those it returned"),
        "{err}"
    );
}

#[tokio::test]
async fn a_publish_whose_outputs_cannot_be_recorded_stops_the_create_with_the_state_error() {
    let (store, cloud) = (MemoryStateStore::new(), two_step_cloud());
    // Writes: the create's intent (with the run's header); the published outputs fail.
    store.crash_at_write(2);
    let err = fake_engine(store.clone(), &cloud)
        .up(&FakeStack::chain("early", 1))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::State(_)), "{err}");
    store.revive();
    assert!(
        cloud.order().iter().all(|(_, what)| *what != "configure"),
        "the create went on: {:?}",
        cloud.order()
    );
}

#[tokio::test]
async fn a_replaced_instance_is_deleted_only_once_its_replacement_is_configured() {
    let (store, cloud) = (MemoryStateStore::new(), FakeCloud::new());
    let mut stack = FakeStack::chain("early", 2);
    fake_engine(store.clone(), &cloud).up(&stack).await.unwrap();
    cloud.configure_after_publish();
    cloud.slow_configure_of("r0", Duration::from_millis(200));
    stack.nodes[0].fixed = "f2".into();
    fake_engine(store.clone(), &cloud).up(&stack).await.unwrap();
    let order = cloud.order();
    let configured = position(&order, "r0", "configure");
    // r1 is re-pointed (replaced, as it uses r0's id) as soon as the new r0 is published, but the
    // old r0 goes only when the new one is whole.
    assert!(position(&order, "r1", "create") < configured, "{order:?}");
    let deleted = order
        .iter()
        .position(|(n, w)| n == "r0" && *w == "delete")
        .unwrap_or_else(|| panic!("the old r0 was not deleted: {order:?}"));
    assert!(configured < deleted, "{order:?}");
    assert_eq!(cloud.instances_of("r0").len(), 1);
}
