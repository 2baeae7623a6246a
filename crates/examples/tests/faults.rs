//! The whole platform against the emulator with the response of every kind of create lost: AWS
//! carried the call out, the connection closed before the answer. One `up` must heal every one of
//! them (find, adopt, never a second create) and end with exactly one of each resource.

use std::time::Duration;

use examples::Platform;
use local_cloud::{Fault, Rule, TestCloud};
use platform_core::{Engine, MemoryStateStore, RetryPolicy};

mod common;
use common::{counts, inventory, seed_counts};

/// The first call of each creating operation, one per resource kind and per sub-step of a create.
const CREATES: &[&str] = &[
    "CreateRole",
    "CreatePolicy",
    "AttachRolePolicy",
    "CreateInstanceProfile",
    "AddRoleToInstanceProfile",
    "CreateVpc",
    "CreateSubnet",
    "CreateInternetGateway",
    "AttachInternetGateway",
    "CreateRouteTable",
    "CreateRoute",
    "AssociateRouteTable",
    "CreateSecurityGroup",
    "AuthorizeSecurityGroupIngress",
    "CreateLogGroup",
    "CreateCluster",
    "RegisterTaskDefinition",
    "CreateService",
];

#[tokio::test]
async fn every_create_carried_out_with_its_response_lost_ends_with_exactly_one_of_each() {
    let cloud = TestCloud::start()
        .await
        .expect("an AWS emulator is required for this suite");
    cloud
        .emulator
        .require_ecs()
        .expect("the emulator must serve ECS");
    for op in CREATES {
        cloud
            .proxy
            .add_rule(Rule::new(Fault::LoseResponse).operation(op).times(1));
    }
    let engine = Engine::builder(MemoryStateStore::new())
        .aws(cloud.config.clone())
        .retry(RetryPolicy::new(
            6,
            Duration::from_millis(20),
            Duration::from_millis(200),
        ))
        .build();
    let mut platform = Platform::new(engine);
    platform.cluster = platform
        .cluster
        .clone()
        .with_steady_state_timeout(Some(Duration::from_secs(60)));

    platform
        .up()
        .await
        .unwrap_or_else(|e| panic!("one run heals every lost response: {e}"));
    let lost: Vec<String> = cloud
        .proxy
        .calls()
        .into_iter()
        .filter(|c| c.fault == Some(Fault::LoseResponse))
        .map(|c| c.operation)
        .collect();
    for op in CREATES {
        assert!(lost.iter().any(|l| l == op), "{op} never lost: {lost:?}");
    }
    let live = inventory(&cloud.config).await;
    assert_eq!(counts(&live), seed_counts(), "{live:#?}");

    // Nothing is left half-done: a second run changes nothing.
    let again = platform.up().await.unwrap();
    assert_eq!(again.calls.mutating, 0, "{:?}", again.calls);

    platform.destroy().await.unwrap();
    let left = inventory(&cloud.config).await;
    assert!(left.is_empty(), "{left:#?}");
}
