//! The planner's decisions on hand-made recorded state: what is a change, what forces a replacement.

use platform_core::testing::FakeStack;
use platform_core::{
    plan::Action, plan::ReplaceReason, plan::plan, stack::Desired, state::ResourceState,
    state::StackState,
};
use serde_json::{Value, json};

/// Stack `s` as recorded with `r0`'s inputs `inputs` and kind `kind` (one resource, no deps).
fn recorded(kind: &str, inputs: Value) -> StackState {
    let mut state = StackState::new("s");
    state.resources.insert(
        "r0".into(),
        serde_json::from_value::<ResourceState>(json!({
            "kind": kind,
            "inputs": inputs,
            "outputs": {"id": "fake-1"},
        }))
        .unwrap(),
    );
    state
}

fn action(state: &StackState) -> Action {
    let desired = Desired::of(&FakeStack::chain("s", 1)).unwrap();
    plan(&desired, state, None)
        .unwrap()
        .step("r0")
        .unwrap()
        .action
        .clone()
}

const SAME: fn() -> Value = || json!({"value": "v1", "fixed": "", "deps": []});

#[test]
fn recorded_as_declared_is_the_same() {
    assert_eq!(action(&recorded("fake:resource", SAME())), Action::Same);
}

#[test]
fn a_logical_name_that_now_holds_another_kind_is_replaced() {
    match action(&recorded("other:kind", SAME())) {
        Action::Replace {
            reason: ReplaceReason::KindChanged { from, to },
            ..
        } => {
            assert_eq!(from, "other:kind");
            assert_eq!(to, "fake:resource");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_field_the_recorded_inputs_lack_is_a_change_unless_it_is_null() {
    let Action::Update { changes } =
        action(&recorded("fake:resource", json!({"fixed": "", "deps": []})))
    else {
        panic!("not an update")
    };
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].field, "value");
    assert_eq!(changes[0].old, None);
}

#[test]
fn a_recorded_field_no_longer_declared_is_a_change_unless_it_was_null() {
    let mut inputs = SAME();
    inputs["legacy"] = json!("x");
    let Action::Update { changes } = action(&recorded("fake:resource", inputs)) else {
        panic!("not an update")
    };
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].field, "legacy");
    assert_eq!(changes[0].old, Some(json!("x")));
    let mut inputs = SAME();
    inputs["legacy"] = Value::Null;
    assert_eq!(action(&recorded("fake:resource", inputs)), Action::Same);
}

#[test]
fn a_change_to_a_field_aws_cannot_change_in_place_replaces() {
    let mut inputs = SAME();
    inputs["fixed"] = json!("old");
    match action(&recorded("fake:resource", inputs)) {
        Action::Replace {
            reason: ReplaceReason::FieldsForceNew(fields),
            changes,
            delete_first: false,
        } => {
            assert_eq!(fields, ["fixed"]);
            assert_eq!(changes.len(), 1);
        }
        other => panic!("{other:?}"),
    }
}
