//! The whole platform against the emulator with the response of every kind of create lost: AWS
//! carried the call out, the connection closed before the answer. One `up` must heal every one of
//! them (find, adopt, never a second create) and end with exactly one of each resource.

use local_cloud::{Fault, Rule, TestCloud};
use platform_core::Engine;

use crate::common::{counts, ecs_cloud, engine, inventory, platform, scaling, seed_counts};

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
    "RegisterScalableTarget",
    "PutScalingPolicy",
];

#[tokio::test]
async fn every_create_carried_out_with_its_response_lost_ends_with_exactly_one_of_each() {
    let cloud = ecs_cloud().await;
    for op in CREATES {
        cloud
            .proxy
            .add_rule(Rule::new(Fault::LoseResponse).operation(op).times(1));
    }
    let mut platform = platform(engine(&cloud.config).build());
    // The frontend scaled, so that the scaling's two calls lose their answers too.
    platform.cluster.services[0].autoscaling = Some(cluster_stack::Autoscaling::new(1, 3, 60));
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
    let (targets, policies) = scaling(&cloud.config).await;
    assert_eq!((targets.len(), policies.len()), (1, 1));

    // Nothing is left half-done: a second run changes nothing.
    let again = platform.up().await.unwrap();
    assert_eq!(again.calls.mutating, 0, "{:?}", again.calls);

    platform.destroy().await.unwrap();
    let left = inventory(&cloud.config).await;
    assert!(left.is_empty(), "{left:#?}");
}

/// The balancer's creates, each carried out with its response lost: one `up` heals them all and
/// ends with one balancer, listener, rule and target group, registered in the service.
#[tokio::test]
async fn every_balancer_create_with_its_response_lost_ends_with_exactly_one_of_each() {
    const ELB_CREATES: &[&str] = &[
        "CreateLoadBalancer",
        "CreateTargetGroup",
        "ModifyTargetGroupAttributes",
        "CreateListener",
        "CreateRule",
        "CreateService",
    ];
    let cloud = ecs_cloud().await;
    for op in ELB_CREATES {
        cloud
            .proxy
            .add_rule(Rule::new(Fault::LoseResponse).operation(op).times(1));
    }
    let mut platform = platform(engine(&cloud.config).build());
    let path = std::path::Path::new("platform.toml");
    examples::config::PlatformConfig::parse(path, crate::common::BALANCED)
        .unwrap()
        .apply(path, &mut platform)
        .unwrap();
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
    for op in ELB_CREATES {
        assert!(lost.iter().any(|l| l == op), "{op} never lost: {lost:?}");
    }
    let live = inventory(&cloud.config).await;
    assert_eq!(counts(&live), crate::common::balanced_counts(), "{live:#?}");
    let again = platform.up().await.unwrap();
    assert_eq!(again.calls.mutating, 0, "{:?}", again.calls);
    platform.destroy().await.unwrap();
    let left = inventory(&cloud.config).await;
    assert!(left.is_empty(), "{left:#?}");
}

/// The trust policy ECS needs, for a role made by hand in the tests below.
const ECS_TRUST: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ecs.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;

/// Makes role `ecs-cluster-role` outside the engine, tagged as stack `stack`, resource
/// `cluster-role`: a create that finished after its sender died looks exactly like this.
async fn role_made_elsewhere(cloud: &TestCloud, stack: &str) {
    let iam = aws_sdk_iam::Client::new(&cloud.config);
    let tag = |k: &str, v: &str| {
        aws_sdk_iam::types::Tag::builder()
            .key(k)
            .value(v)
            .build()
            .unwrap()
    };
    iam.create_role()
        .role_name("ecs-cluster-role")
        .assume_role_policy_document(ECS_TRUST)
        .tags(tag(platform_core::resource::STACK_TAG, stack))
        .tags(tag(platform_core::resource::RESOURCE_TAG, "cluster-role"))
        .send()
        .await
        .unwrap();
    cloud.clear();
}

async fn iam_engine(cloud: &TestCloud) -> (Engine, iam_stack::IamStack) {
    let engine = engine(&cloud.config).build();
    let identity = engine.identity().await.unwrap();
    let stack = iam_stack::IamStack::new(iam_stack::IamConfig::default().bound_to(&identity));
    (engine, stack)
}

#[tokio::test]
async fn create_role_answered_entity_already_exists_while_get_role_still_says_404_adopts_ours() {
    let cloud = TestCloud::start()
        .await
        .expect("an AWS emulator is required for this suite");
    role_made_elsewhere(&cloud, "iam").await;
    // IAM is eventually consistent: the first GetRole after the late create still answers 404.
    cloud.proxy.add_rule(
        Rule::new(Fault::AwsError {
            status: 404,
            code: "NoSuchEntity".into(),
            message: "The role with name ecs-cluster-role cannot be found.".into(),
        })
        .operation("GetRole")
        .times(1),
    );
    let (engine, stack) = iam_engine(&cloud).await;
    engine
        .up(&stack)
        .await
        .unwrap_or_else(|e| panic!("our own role is adopted: {e}"));
    let ops = cloud.operations();
    assert_eq!(
        ops.iter().filter(|o| *o == "CreateRole").count(),
        3,
        "one CreateRole per role, none sent again: {ops:?}"
    );
    let live = inventory(&cloud.config).await;
    assert_eq!(live["role"].len(), 3, "{live:#?}");
    assert_eq!(live["attachment"].len(), 3, "{live:#?}");
}

#[tokio::test]
async fn a_role_of_the_same_name_owned_by_another_stack_is_refused_and_named() {
    let cloud = TestCloud::start()
        .await
        .expect("an AWS emulator is required for this suite");
    role_made_elsewhere(&cloud, "someone-else").await;
    let (engine, stack) = iam_engine(&cloud).await;
    let err = engine.up(&stack).await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains("cluster-role"), "{text}");
    assert!(
        text.contains("IAM role ecs-cluster-role already exists and belongs to stack someone-else, resource cluster-role"),
        "{text}"
    );
    // Nobody else's role was taken or changed.
    let iam = aws_sdk_iam::Client::new(&cloud.config);
    let role = iam
        .get_role()
        .role_name("ecs-cluster-role")
        .send()
        .await
        .unwrap();
    let tags = role.role().unwrap().tags();
    assert!(
        tags.iter()
            .any(|t| t.key() == platform_core::resource::STACK_TAG && t.value() == "someone-else")
    );
    let attached = iam
        .list_attached_role_policies()
        .role_name("ecs-cluster-role")
        .send()
        .await
        .unwrap();
    assert!(attached.attached_policies().is_empty());
}
