//! A run's approver (`UpOptions::with_approval`) against the fake cloud: asked once with the plans
//! the run applies, under the locks it holds (another run cannot change the state in between); a
//! declined run changes nothing and gives its locks back; a group asks once for all its members; a
//! mandatory violation refuses whatever the answer; a cancellation ends the wait for an answer.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use platform_core::engine::{Approval, Approver};
use platform_core::policy::{Enforcement, PlanDocument, Policies, Policy, Violation};
use platform_core::resource::CancellationToken;
use platform_core::testing::{FakeCloud, FakeResource, FakeStack, fake_engine};
use platform_core::{Error, MemoryStateStore, StateStore, UpOptions, error::StateError};
use tokio::sync::Notify;

/// An approver that records every approval it is shown and answers `answer`.
fn recording(answer: bool) -> (Approver, Arc<Mutex<Vec<Approval>>>) {
    let seen: Arc<Mutex<Vec<Approval>>> = Arc::default();
    let log = seen.clone();
    let approver = Approver::new(move |approval| {
        log.lock().unwrap().push(approval);
        async move { answer }
    });
    (approver, seen)
}

fn approving(approver: &Approver) -> UpOptions {
    UpOptions::default().with_approval(approver.clone())
}

#[tokio::test]
async fn a_declined_plan_changes_nothing_and_the_approver_saw_the_plan_the_run_would_apply() {
    let cloud = FakeCloud::new();
    let store = MemoryStateStore::new();
    let engine = fake_engine(store.clone(), &cloud);
    let stack = FakeStack::chain("app", 3);
    let (declines, seen) = recording(false);
    let err = engine
        .up_with(&stack, approving(&declines))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Declined { stack } if stack == "app"),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "app: the plan was not approved; nothing was changed"
    );
    assert_eq!(cloud.calls().mutating(), 0, "{:?}", cloud.order());
    let state = store.read("app").await.unwrap();
    assert!(state.is_none_or(|s| s.resources.is_empty()));
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1, "asked once");
        assert_eq!(seen[0].plans.len(), 1);
        assert_eq!(seen[0].plans[0].stack, "app");
        assert_eq!(seen[0].plans[0].counts().create, 3);
        assert!(seen[0].has_changes() && !seen[0].refused());
        assert!(seen[0].violations.is_empty());
    }

    // The lock was given back: approved, the same plan is applied, and it is the one shown.
    let (approves, seen) = recording(true);
    let report = engine.up_with(&stack, approving(&approves)).await.unwrap();
    assert_eq!(cloud.live().len(), 3);
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].plans, vec![report.plan.clone()]);
    }

    // With nothing to change, it is still shown the plan (to print it), which changes nothing.
    let (approves, seen) = recording(true);
    engine.up_with(&stack, approving(&approves)).await.unwrap();
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    assert!(!seen[0].has_changes());
    assert_eq!(seen[0].plans[0].counts().same, 3);
}

#[tokio::test]
async fn the_approver_answers_under_the_lock_so_no_other_run_changes_the_state_meanwhile() {
    let cloud = FakeCloud::new();
    let store = MemoryStateStore::new();
    let engine = Arc::new(fake_engine(store.clone(), &cloud));
    let stack = FakeStack::chain("app", 2);
    let (asked, answer) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let approver = {
        let (asked, answer) = (asked.clone(), answer.clone());
        Approver::new(move |_| {
            let (asked, answer) = (asked.clone(), answer.clone());
            async move {
                asked.notify_one();
                answer.notified().await;
                true
            }
        })
    };
    let run = tokio::spawn({
        let engine = engine.clone();
        let stack = stack.clone();
        async move { engine.up_with(&stack, approving(&approver)).await }
    });
    asked.notified().await;
    // While the plan waits for its answer, another run on the same state is refused its lock.
    let other = fake_engine(store.clone(), &cloud);
    let err = other.up(&stack).await.unwrap_err();
    assert!(
        matches!(&err, Error::State(StateError::Locked { .. })),
        "{err}"
    );
    assert_eq!(cloud.calls().mutating(), 0, "nothing before the answer");
    answer.notify_one();
    let report = run.await.unwrap().unwrap();
    assert_eq!(report.plan.counts().create, 2);
    assert_eq!(cloud.live().len(), 2);
}

#[tokio::test]
async fn a_group_asks_once_with_every_members_plan_in_the_groups_order() {
    let cloud = FakeCloud::new();
    let engine = fake_engine(MemoryStateStore::new(), &cloud);
    let producer = FakeStack::chain("network", 2);
    let mut consumer = FakeStack::chain("app", 1).using(0, "network", "r1");
    consumer.nodes[0].name = "a0".into();
    let (approves, seen) = recording(true);
    let group = engine.group(["network", "app"]);
    let (net, app) = tokio::join!(
        group.up(&producer, approving(&approves)),
        group.up(&consumer, approving(&approves))
    );
    let (net, app) = (net.unwrap(), app.unwrap());
    assert_eq!(cloud.live().len(), 3);
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1, "one question for the whole group");
        assert_eq!(seen[0].plans, vec![net.plan, app.plan]);
    }

    // Declined, no member changes anything, and every member says why.
    let mut more = FakeStack::chain("network", 3);
    more.nodes[2].name = "r2".into();
    let (declines, seen) = recording(false);
    let group = engine.group(["network", "app"]);
    let before = cloud.calls().mutating();
    let (net, app) = tokio::join!(
        group.up(&more, approving(&declines)),
        group.up(&consumer, approving(&declines))
    );
    assert!(matches!(net, Err(Error::Declined { stack }) if stack == "network"));
    assert!(matches!(app, Err(Error::Declined { stack }) if stack == "app"));
    assert_eq!(cloud.calls().mutating(), before);
    assert_eq!(seen.lock().unwrap().len(), 1);
}

/// Flags every fake resource, mandatory.
struct NoFakes;

impl Policy for NoFakes {
    fn id(&self) -> &str {
        "no-fakes"
    }
    fn description(&self) -> &str {
        "refuses every fake resource"
    }
    fn enforcement(&self) -> Enforcement {
        Enforcement::Mandatory
    }
    fn check(&self, plan: &PlanDocument) -> Vec<Violation> {
        plan.of_kind::<FakeResource>()
            .map(|(p, _)| Violation::on(self, p, "a fake", "declare a real one"))
            .collect()
    }
}

#[tokio::test]
async fn a_mandatory_violation_is_shown_to_the_approver_and_refuses_whatever_it_answers() {
    let cloud = FakeCloud::new();
    let engine = fake_engine(MemoryStateStore::new(), &cloud);
    let (approves, seen) = recording(true);
    let options = approving(&approves).with_policies(Policies::new().with(NoFakes));
    let err = engine
        .up_with(&FakeStack::chain("app", 2), options)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::PolicyViolation { violations, .. } if violations.len() == 2),
        "{err}"
    );
    assert_eq!(cloud.calls().mutating(), 0);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    assert!(seen[0].refused());
    assert_eq!(seen[0].violations.len(), 2);
}

#[tokio::test]
async fn a_cancelled_run_stops_waiting_for_an_answer_and_gives_its_lock_back() {
    let cloud = FakeCloud::new();
    let store = MemoryStateStore::new();
    let engine = Arc::new(fake_engine(store.clone(), &cloud));
    let stack = FakeStack::chain("app", 2);
    // A prompt nobody answers.
    let never = Approver::new(|_| std::future::pending::<bool>());
    let cancel = CancellationToken::new();
    let run = tokio::spawn({
        let (engine, stack, cancel) = (engine.clone(), stack.clone(), cancel.clone());
        async move {
            engine
                .up_with(&stack, approving(&never).with_cancellation(cancel))
                .await
        }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    cancel.cancel();
    let err = tokio::time::timeout(Duration::from_secs(5), run)
        .await
        .expect("the run ends once cancelled")
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Cancelled {
                completed: 0,
                remaining: 2,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(cloud.calls().mutating(), 0);
    engine.up(&stack).await.unwrap();
    assert_eq!(cloud.live().len(), 2);
}
