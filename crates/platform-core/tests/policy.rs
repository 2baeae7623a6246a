//! Policies against the fake cloud: the plan document a policy sees, a mandatory violation that
//! refuses a run before any change (alone and in a group, where every member's plan is checked
//! first), advisory ones reported, enforcement overrides.

use platform_core::policy::{
    Enforcement, FORMAT_VERSION, PlanDocument, PlannedAction, Policies, Policy, Violation,
};
use platform_core::testing::{FakeCloud, FakeResource, FakeStack};
use platform_core::{Engine, Error, MemoryStateStore, StateStore, UpOptions};

/// Flags every fake resource whose value is `value`, at `enforcement`.
struct ValueIs {
    id: &'static str,
    value: &'static str,
    enforcement: Enforcement,
}

impl Policy for ValueIs {
    fn id(&self) -> &str {
        self.id
    }
    fn description(&self) -> &str {
        "flags a value"
    }
    fn enforcement(&self) -> Enforcement {
        self.enforcement
    }
    fn check(&self, plan: &PlanDocument) -> Vec<Violation> {
        plan.of_kind::<FakeResource>()
            .filter(|(_, r)| r.value == self.value)
            .map(|(p, r)| Violation::on(self, p, format!("value is {}", r.value), "change it"))
            .collect()
    }
}

fn refuse(value: &'static str) -> ValueIs {
    ValueIs {
        id: "no-value",
        value,
        enforcement: Enforcement::Mandatory,
    }
}

fn engine_with(cloud: &FakeCloud, store: MemoryStateStore, policies: Policies) -> Engine {
    Engine::builder(store)
        .provider(platform_core::testing::local_provider())
        .extension(cloud.clone())
        .policies(policies)
        .build()
}

#[tokio::test]
async fn a_mandatory_violation_refuses_up_before_any_change() {
    let cloud = FakeCloud::new();
    let store = MemoryStateStore::new();
    let engine = engine_with(&cloud, store.clone(), Policies::new().with(refuse("v1")));
    let stack = FakeStack::chain("app", 3);
    let err = engine.up(&stack).await.unwrap_err();
    let Error::PolicyViolation {
        stack: s,
        violations,
    } = &err
    else {
        panic!("{err}");
    };
    assert_eq!(s, "app");
    assert_eq!(violations.len(), 3, "{violations:?}");
    assert!(violations.iter().all(|v| v.policy == "no-value"
        && v.enforcement == Enforcement::Mandatory
        && v.stack == "app"
        && v.message == "value is v1"
        && v.fix == "change it"));
    assert_eq!(cloud.calls().mutating(), 0, "nothing was changed");
    assert!(cloud.live().is_empty());
    let text = err.to_string();
    assert!(
        text.starts_with("app: 3 mandatory violations refused by policy, nothing was changed: [no-value] mandatory app/r0: value is v1 (fix: change it)"),
        "{text}"
    );
    // The lock is released and nothing is recorded: with the rule passing, the run goes through.
    let state = store.read("app").await.unwrap();
    assert!(
        state.as_ref().is_none_or(|s| s.resources.is_empty()),
        "{state:?}"
    );
    let report = engine
        .up_with(
            &stack,
            UpOptions::default().with_policies(Policies::new().with(refuse("v2"))),
        )
        .await
        .unwrap();
    assert!(report.violations.is_empty());
    assert_eq!(cloud.live().len(), 3);
}

#[tokio::test]
async fn an_advisory_violation_is_reported_and_the_run_goes_on() {
    let cloud = FakeCloud::new();
    let warn = ValueIs {
        id: "warn-value",
        value: "v1",
        enforcement: Enforcement::Advisory,
    };
    let engine = engine_with(&cloud, MemoryStateStore::new(), Policies::new().with(warn));
    let report = engine
        .up_with(&FakeStack::chain("app", 2), UpOptions::default())
        .await
        .unwrap();
    assert_eq!(cloud.live().len(), 2);
    assert_eq!(report.violations.len(), 2);
    assert!(
        report
            .violations
            .iter()
            .all(|v| v.enforcement == Enforcement::Advisory && v.policy == "warn-value")
    );
}

#[tokio::test]
async fn overrides_change_a_policys_enforcement_and_unknown_ids_are_refused() {
    let mut policies = Policies::new().with(refuse("v1"));
    assert_eq!(
        policies.enforcement("no-value"),
        Some(Enforcement::Mandatory)
    );
    policies.enforce("no-value", Enforcement::Advisory).unwrap();
    assert_eq!(
        policies.enforcement("no-value"),
        Some(Enforcement::Advisory)
    );
    let err = policies
        .enforce("no-such-rule", Enforcement::Off)
        .unwrap_err();
    assert_eq!(err.field, "rules");
    assert_eq!(err.value, "no-such-rule");
    assert!(err.reason.contains("no-value"), "{err}");
    assert_eq!(policies.enforcement("no-such-rule"), None);

    let cloud = FakeCloud::new();
    let engine = engine_with(&cloud, MemoryStateStore::new(), policies.clone());
    let report = engine
        .up_with(&FakeStack::chain("app", 1), UpOptions::default())
        .await
        .unwrap();
    assert_eq!(report.violations.len(), 1);
    assert_eq!(report.violations[0].enforcement, Enforcement::Advisory);

    assert_eq!(engine.policies().ids().collect::<Vec<_>>(), ["no-value"]);
    policies.enforce("no-value", Enforcement::Off).unwrap();
    let doc = engine
        .preview_document(&FakeStack::chain("app", 1))
        .await
        .unwrap()
        .1;
    assert!(policies.check(&doc).is_empty());
    assert_eq!(
        engine.check(&doc).len(),
        1,
        "the engine's own set is unchanged"
    );
}

#[tokio::test]
async fn in_a_group_a_violation_in_one_member_refuses_every_member_before_any_change() {
    let cloud = FakeCloud::new();
    // Only the consumer's resources break the rule: the producer, applied in the same group,
    // must not change anything either.
    let policies = Policies::new().with(refuse("bad"));
    let engine = engine_with(&cloud, MemoryStateStore::new(), policies);
    let producer = FakeStack::chain("network", 2);
    let mut consumer = FakeStack::chain("app", 1).using(0, "network", "r1");
    consumer.nodes[0].name = "a0".into();
    consumer.nodes[0].value = "bad".into();
    let group = engine.group(["network", "app"]);
    let (net, app) = tokio::join!(
        group.up(&producer, UpOptions::default()),
        group.up(&consumer, UpOptions::default())
    );
    for result in [net.map(|_| ()), app.map(|_| ())] {
        let Err(Error::PolicyViolation { violations, .. }) = result else {
            panic!("{result:?}");
        };
        assert_eq!(violations.len(), 1);
        assert_eq!(
            (
                violations[0].stack.as_str(),
                violations[0].resource.as_str()
            ),
            ("app", "a0")
        );
    }
    assert_eq!(cloud.calls().mutating(), 0, "{:?}", cloud.order());

    // The same group without the bad value goes through.
    consumer.nodes[0].value = "good".into();
    let group = engine.group(["network", "app"]);
    let (net, app) = tokio::join!(
        group.up(&producer, UpOptions::default()),
        group.up(&consumer, UpOptions::default())
    );
    net.unwrap();
    app.unwrap();
    assert_eq!(cloud.live().len(), 3);
}

#[tokio::test]
async fn the_plan_document_has_every_resource_with_its_full_inputs_and_unknowns() {
    let cloud = FakeCloud::new();
    let store = MemoryStateStore::new();
    let engine = engine_with(&cloud, store.clone(), Policies::new());
    let stack = FakeStack::chain("app", 3);
    let (plan, doc) = engine.preview_document(&stack).await.unwrap();
    assert_eq!(doc.format_version, FORMAT_VERSION);
    assert_eq!(doc.resources.len(), plan.steps.len());
    let r0 = &doc.resources[0];
    assert_eq!(
        (
            r0.stack.as_str(),
            r0.name.as_str(),
            r0.kind.as_str(),
            r0.action
        ),
        ("app", "r0", "fake:resource", PlannedAction::Create)
    );
    assert_eq!(r0.inputs["value"], "v1");
    assert!(r0.unknown.is_empty());
    // r1 uses r0's id, not known before r0 is created: null, and named as unknown.
    let r1 = &doc.resources[1];
    assert_eq!(r1.unknown, ["deps"]);
    assert_eq!(
        r1.inputs["deps"],
        serde_json::json!([null]),
        "what is known of it"
    );
    let deps = r1.changes.iter().find(|c| c.field == "deps").unwrap();
    assert!(deps.after_unknown && deps.after.is_null() && deps.before.is_null());
    // Typed access keeps the reference where the value is unknown.
    let typed = r1.typed::<FakeResource>().unwrap();
    assert_eq!(typed.deps.len(), 1);
    let platform_core::Input::Ref(r) = &typed.deps[0] else {
        panic!("{typed:?}");
    };
    assert_eq!(r.target().resource, "r0");

    // Applied, then r2's value changed and r0 removed from the declaration... as a new stack of
    // two: r0 same, r1 updated, r2 deleted.
    engine.up(&stack).await.unwrap();
    let mut next = FakeStack::chain("app", 2);
    next.nodes[1].value = "v2".into();
    let (_, doc) = engine.preview_document(&next).await.unwrap();
    let by_name = |n: &str| doc.resources.iter().find(|r| r.name == n).unwrap();
    assert_eq!(by_name("r0").action, PlannedAction::Same);
    assert!(by_name("r0").changes.is_empty());
    let r1 = by_name("r1");
    assert_eq!(r1.action, PlannedAction::Update);
    assert!(r1.unknown.is_empty(), "r0's id is known now");
    let r0_id = store.read("app").await.unwrap().unwrap().resources["r0"]
        .outputs
        .clone()
        .unwrap()["id"]
        .clone();
    assert_eq!(r1.inputs["deps"][0], r0_id);
    assert_eq!(r1.changes.len(), 1);
    assert_eq!(
        (r1.changes[0].before.as_str(), r1.changes[0].after.as_str()),
        (Some("v1"), Some("v2"))
    );
    let r2 = by_name("r2");
    assert_eq!(r2.action, PlannedAction::Delete);
    assert_eq!(
        r2.inputs["value"], "v1",
        "a delete shows its recorded inputs"
    );
    // Deletes are left out of typed access: a policy checks what exists after the change.
    let kept: Vec<&str> = doc
        .of_kind::<FakeResource>()
        .map(|(p, _)| p.name.as_str())
        .collect();
    assert_eq!(kept, ["r0", "r1"]);

    // The declaration alone, whatever was applied: every resource a create, references unknown.
    let declared = PlanDocument::declared(&next).unwrap();
    let actions: Vec<(String, PlannedAction, Vec<String>)> = declared
        .resources
        .iter()
        .map(|r| (r.name.clone(), r.action, r.unknown.clone()))
        .collect();
    assert_eq!(
        actions,
        [
            ("r0".into(), PlannedAction::Create, vec![]),
            ("r1".into(), PlannedAction::Create, vec!["deps".to_owned()])
        ]
    );
    assert_eq!(declared.resources[1].inputs["value"], "v2");

    // What was recorded, as a policy sees what is live.
    let state = store.read("app").await.unwrap().unwrap();
    let live = PlanDocument::recorded([&state]);
    assert_eq!(live.resources.len(), 3);
    assert!(
        live.resources
            .iter()
            .all(|r| r.action == PlannedAction::Same)
    );
}

#[test]
fn the_plan_document_serialises_to_its_documented_shape() {
    let doc = PlanDocument::new(Vec::new());
    let json = serde_json::to_value(&doc).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"format_version": 1, "resources": []})
    );
    let v = Violation::new(&refuse("x"), "s", "r", "m", "f");
    assert_eq!(
        serde_json::to_value(&v).unwrap(),
        serde_json::json!({"policy": "no-value", "enforcement": "mandatory", "stack": "s",
                           "resource": "r", "message": "m", "fix": "f"})
    );
    assert_eq!(v.to_string(), "[no-value] mandatory s/r: m (fix: f)");
    let bare =
        Violation::new(&refuse("x"), "", "", "m", "").with_enforcement(Enforcement::Advisory);
    assert_eq!(bare.to_string(), "[no-value] advisory: m");
    assert_eq!("off".parse::<Enforcement>().unwrap(), Enforcement::Off);
    assert!("loud".parse::<Enforcement>().is_err());
}

#[test]
fn violations_are_sorted_mandatory_first_then_by_stack_and_resource() {
    struct Fixed(Vec<(Enforcement, &'static str, &'static str)>);
    impl Policy for Fixed {
        fn id(&self) -> &str {
            "fixed"
        }
        fn description(&self) -> &str {
            ""
        }
        fn enforcement(&self) -> Enforcement {
            Enforcement::Mandatory
        }
        fn check(&self, _: &PlanDocument) -> Vec<Violation> {
            self.0
                .iter()
                .map(|(e, s, r)| Violation::new(self, *s, *r, "m", "").with_enforcement(*e))
                .collect()
        }
    }
    let p = Policies::new().with(Fixed(vec![
        (Enforcement::Advisory, "a", "x"),
        (Enforcement::Mandatory, "b", "y"),
        (Enforcement::Off, "a", "a"),
        (Enforcement::Mandatory, "a", "z"),
    ]));
    let all = p.check(&PlanDocument::default());
    let mandatory: Vec<&str> = platform_core::policy::mandatory(&all)
        .map(|v| v.resource.as_str())
        .collect();
    assert_eq!(mandatory, ["z", "y"]);
    assert_eq!(p.iter().map(|x| x.id()).collect::<Vec<_>>(), ["fixed"]);
    let got: Vec<(Enforcement, String, String)> = all
        .into_iter()
        .map(|v| (v.enforcement, v.stack, v.resource))
        .collect();
    assert_eq!(
        got,
        [
            (Enforcement::Mandatory, "a".into(), "z".into()),
            (Enforcement::Mandatory, "b".into(), "y".into()),
            (Enforcement::Advisory, "a".into(), "x".into()),
        ]
    );
    assert!(!p.is_empty() && Policies::new().is_empty());
    assert_eq!(p.ids().collect::<Vec<_>>(), ["fixed"]);
}

#[tokio::test]
async fn a_stack_records_the_environment_that_applied_it_and_when() {
    let cloud = FakeCloud::new();
    let store = MemoryStateStore::new();
    let engine = Engine::builder(store.clone())
        .provider(platform_core::testing::local_provider())
        .extension(cloud.clone())
        .environment("staging")
        .build();
    assert_eq!(engine.environment(), Some("staging"));
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    engine.up(&FakeStack::chain("app", 1)).await.unwrap();
    let state = store.read("app").await.unwrap().unwrap();
    assert_eq!(state.environment.as_deref(), Some("staging"));
    let applied = state.applied_at.unwrap();
    assert!(
        applied >= before && applied < before + 60,
        "{applied} {before}"
    );
    // Nothing changed: nothing written, the last apply stays.
    engine.up(&FakeStack::chain("app", 1)).await.unwrap();
    let again = store.read("app").await.unwrap().unwrap();
    assert_eq!(
        (again.serial, again.applied_at),
        (state.serial, state.applied_at)
    );
    // An engine without an environment records none (and a state without one reads as before).
    let plain = Engine::builder(MemoryStateStore::new())
        .provider(platform_core::testing::local_provider())
        .extension(cloud)
        .build();
    assert_eq!(plain.environment(), None);
    let json = serde_json::to_value(platform_core::state::StackState::new("x")).unwrap();
    assert!(json.get("environment").is_none() && json.get("applied_at").is_none());
}

/// Counts its checks and flags nothing.
struct Counted(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl Policy for Counted {
    fn id(&self) -> &str {
        "counted"
    }
    fn description(&self) -> &str {
        "counts its checks"
    }
    fn enforcement(&self) -> Enforcement {
        Enforcement::Advisory
    }
    fn check(&self, _: &PlanDocument) -> Vec<Violation> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Vec::new()
    }
}

#[tokio::test]
async fn a_group_checks_its_document_once_per_set_of_policies_its_members_were_given() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let cloud = FakeCloud::new();
    let shared = std::sync::Arc::new(AtomicUsize::new(0));
    let policies = Policies::new().with(Counted(shared.clone()));
    let engine = engine_with(&cloud, MemoryStateStore::new(), policies);
    let own = std::sync::Arc::new(AtomicUsize::new(0));
    let own_policies = Policies::new().with(Counted(own.clone()));
    let stacks = ["a", "b", "c"].map(|name| FakeStack::chain(name, 1));
    let group = engine.group(["a", "b", "c"]);
    let (a, b, c) = tokio::join!(
        group.up(&stacks[0], UpOptions::default()),
        group.up(&stacks[1], UpOptions::default()),
        group.up(&stacks[2], UpOptions::default().with_policies(own_policies))
    );
    for report in [a, b, c] {
        assert!(report.unwrap().violations.is_empty());
    }
    assert_eq!(
        (shared.load(Ordering::SeqCst), own.load(Ordering::SeqCst)),
        (1, 1)
    );
}
