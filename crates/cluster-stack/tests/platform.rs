//! The whole platform against the AWS emulator: the three stacks from nothing, no-op re-apply, image
//! and desired count changes with exactly the expected calls, the IAM propagation race, and destroy in
//! the right order (network first is refused). Each test runs in an account of its own.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_ecs::Client as Ecs;
use cluster_stack::{Autoscaling, ClusterConfig, ClusterOutputs, ClusterStack};
use iam_stack::{IamConfig, IamOutputs, IamStack};
use local_cloud::{Fault, Rule, TestCloud};
use network_stack::{NetworkConfig, NetworkOutputs, NetworkStack};
use platform_core::{
    Engine, Error, Event, MemoryStateStore, UpOptions, resource::RetryPolicy, stack::Produced,
};

struct World {
    cloud: TestCloud,
    engine: Engine,
    ecs: Ecs,
    events: Arc<Mutex<Vec<Event>>>,
}

async fn world() -> World {
    let cloud = TestCloud::start()
        .await
        .expect("an AWS emulator is required for this suite");
    cloud
        .emulator
        .require_ecs()
        .expect("the emulator must serve ECS");
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    let engine = Engine::builder(MemoryStateStore::new())
        .aws(cloud.config.clone())
        .retry(RetryPolicy::new(
            6,
            Duration::from_millis(20),
            Duration::from_millis(200),
        ))
        .on_event(move |e| {
            if !matches!(e, Event::AwsCall(_)) {
                sink.lock().unwrap().push(e.clone());
            }
        })
        .build();
    World {
        ecs: Ecs::new(&cloud.config),
        cloud,
        engine,
        events,
    }
}

fn cluster_config() -> ClusterConfig {
    ClusterConfig::default().with_steady_state_timeout(Some(Duration::from_secs(60)))
}

/// IAM and network, in parallel, with who produced their outputs.
async fn foundation(w: &World) -> (Produced<IamOutputs>, Produced<NetworkOutputs>) {
    let identity = w.engine.identity().await.unwrap();
    let iam_stack = IamStack::new(IamConfig::default().bound_to(&identity));
    let net_stack = NetworkStack::new(NetworkConfig::default());
    let o = UpOptions::default();
    let (iam, net) = tokio::join!(
        w.engine.up_with(&iam_stack, o.clone()),
        w.engine.up_with(&net_stack, o)
    );
    (iam.unwrap().produced(), net.unwrap().produced())
}

/// IAM and network in parallel, then the cluster on their outputs.
async fn platform(
    w: &World,
    config: ClusterConfig,
) -> (
    Produced<IamOutputs>,
    Produced<NetworkOutputs>,
    ClusterOutputs,
) {
    let (iam, net) = foundation(w).await;
    let cluster = w
        .engine
        .up(&ClusterStack::new(config, &iam, &net))
        .await
        .unwrap();
    (iam, net, cluster)
}

async fn live_service(w: &World, c: &ClusterOutputs) -> aws_sdk_ecs::types::Service {
    let out = w
        .ecs
        .describe_services()
        .cluster(&c.cluster_arn)
        .services(&c.service_name)
        .send()
        .await
        .unwrap();
    out.services()[0].clone()
}

#[tokio::test]
async fn the_whole_platform_comes_up_from_nothing_and_a_second_apply_changes_nothing() {
    let w = world().await;
    let (iam, net, c) = platform(&w, cluster_config()).await;

    assert_eq!(c.cluster_name, "my-ecs-cluster");
    assert_eq!(c.log_group_name, "/ecs/frontend");
    let service = live_service(&w, &c).await;
    assert_eq!(service.status(), Some("ACTIVE"));
    assert_eq!(service.desired_count(), 1);
    assert_eq!(
        service.task_definition(),
        Some(c.task_definition_arn.as_str())
    );
    let vpc = service
        .network_configuration()
        .and_then(|n| n.awsvpc_configuration())
        .unwrap();
    assert_eq!(
        vpc.subnets(),
        [net.public_subnet_ids[0].as_str().to_owned()]
    );
    assert_eq!(
        vpc.security_groups(),
        [net.security_group_id.as_str().to_owned()]
    );

    let def = w
        .ecs
        .describe_task_definition()
        .task_definition(&c.task_definition_arn)
        .send()
        .await
        .unwrap();
    let def = def.task_definition().unwrap();
    assert_eq!((def.cpu(), def.memory()), (Some("256"), Some("512")));
    assert_eq!(
        def.execution_role_arn(),
        Some(iam.services["frontend"].role.arn.as_str())
    );
    assert_eq!(
        def.task_role_arn(),
        Some(iam.services["frontend"].role.arn.as_str())
    );
    let container = &def.container_definitions()[0];
    assert_eq!(container.image(), Some("nginx:latest"));
    assert_eq!(container.port_mappings()[0].container_port(), Some(80));
    let log = container.log_configuration().unwrap();
    assert_eq!(
        log.options()
            .unwrap()
            .get("awslogs-group")
            .map(String::as_str),
        Some("/ecs/frontend")
    );

    let logs = aws_sdk_cloudwatchlogs::Client::new(&w.cloud.config);
    let groups = logs
        .describe_log_groups()
        .log_group_name_prefix("/ecs/frontend")
        .send()
        .await
        .unwrap();
    assert_eq!(groups.log_groups()[0].retention_in_days(), Some(30));
    // The ARN recorded without reading it back is the one AWS gives the group.
    let state = w.engine.store().read("cluster").await.unwrap().unwrap();
    let live_arn = groups.log_groups()[0].arn().unwrap().trim_end_matches(":*");
    assert_eq!(
        state.resources["log-group"].outputs.as_ref().unwrap()["arn"],
        live_arn
    );

    // Again, all three, with a live read of everything: nothing to do, nothing mutating.
    w.cloud.clear();
    let (iam2, net2, c2) = platform(&w, cluster_config()).await;
    assert_eq!(
        (&iam2.outputs, &net2.outputs, &c2),
        (&iam.outputs, &net.outputs, &c)
    );
    assert_eq!(w.cloud.mutating_calls(), Vec::<String>::new());
    let report = w
        .engine
        .up_with(
            &ClusterStack::from_state(
                cluster_config(),
                w.engine.store(),
                &w.engine.identity().await.unwrap(),
            )
            .await
            .unwrap(),
            platform_core::UpOptions::default().with_refresh(true),
        )
        .await
        .unwrap();
    assert!(!report.plan.has_changes(), "{}", report.plan);
    assert_eq!(w.cloud.mutating_calls(), Vec::<String>::new());
}

#[tokio::test]
async fn an_image_change_is_a_new_revision_and_a_service_update_and_nothing_else() {
    let w = world().await;
    let (iam, net, c) = platform(&w, cluster_config()).await;

    let changed = ClusterStack::new(cluster_config().with_image("nginx:1.27"), &iam, &net);
    let plan = w.engine.preview(&changed).await.unwrap();
    let counts = plan.counts();
    assert_eq!(
        (counts.replace, counts.update, counts.same),
        (1, 1, 2),
        "{plan}"
    );

    w.cloud.clear();
    let c2 = w.engine.up(&changed).await.unwrap();
    assert_eq!(
        w.cloud.mutating_calls(),
        [
            "RegisterTaskDefinition",
            "UpdateService",
            "DeregisterTaskDefinition"
        ]
    );
    assert_ne!(c2.task_definition_arn, c.task_definition_arn);
    assert!(
        c2.task_definition_arn.ends_with(":2"),
        "{}",
        c2.task_definition_arn
    );
    assert_eq!(c2.service_arn, c.service_arn);
    assert_eq!(
        live_service(&w, &c2).await.task_definition(),
        Some(c2.task_definition_arn.as_str())
    );
    let old = w
        .ecs
        .describe_task_definition()
        .task_definition(&c.task_definition_arn)
        .send()
        .await
        .unwrap();
    assert_eq!(
        old.task_definition().unwrap().status(),
        Some(&aws_sdk_ecs::types::TaskDefinitionStatus::Inactive)
    );

    // The desired count: one UpdateService, nothing else.
    let scaled = ClusterStack::new(
        cluster_config()
            .with_image("nginx:1.27")
            .with_desired_count(3),
        &iam,
        &net,
    );
    w.cloud.clear();
    w.engine.up(&scaled).await.unwrap();
    assert_eq!(w.cloud.mutating_calls(), ["UpdateService"]);
    assert_eq!(live_service(&w, &c2).await.desired_count(), 3);
}

/// What ECS answers while a just-created role has not propagated through IAM.
fn role_not_ready() -> Rule {
    Rule::new(Fault::AwsError {
        status: 400,
        code: "InvalidParameterException".into(),
        message: "Unable to assume role and validate the specified role".into(),
    })
    .service("ecs")
    .operation("CreateService")
}

#[tokio::test]
async fn a_role_ecs_cannot_assume_yet_is_retried_within_the_bound() {
    let w = world().await;
    let (iam, net) = foundation(&w).await;

    // Just-created roles: ECS refuses twice, as it does until IAM has propagated them.
    w.cloud.proxy.add_rule(role_not_ready().times(2));
    w.cloud.clear();
    w.engine
        .up(&ClusterStack::new(cluster_config(), &iam, &net))
        .await
        .unwrap();
    let creates = w
        .cloud
        .operations()
        .iter()
        .filter(|o| *o == "CreateService")
        .count();
    assert_eq!(creates, 3);
    let retries: Vec<_> = w
        .events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            Event::Retrying {
                operation, code, ..
            } if operation == "CreateService" => code.clone(),
            _ => None,
        })
        .collect();
    assert_eq!(retries, ["InvalidParameterException"; 2]);

    // Beyond the bound it fails, naming the resource and AWS's code.
    let w2 = world().await;
    let (iam, net) = foundation(&w2).await;
    w2.cloud.proxy.add_rule(role_not_ready());
    let err = w2
        .engine
        .up(&ClusterStack::new(cluster_config(), &iam, &net))
        .await
        .unwrap_err();
    assert_eq!(err.aws_code(), Some("InvalidParameterException"), "{err}");
    assert!(err.to_string().contains("service"), "{err}");
}

#[tokio::test]
async fn destroy_goes_cluster_first_and_leaves_nothing_and_network_first_is_refused() {
    let w = world().await;
    let (_, net, c) = platform(&w, cluster_config()).await;

    for referenced in ["network", "iam"] {
        let err = match referenced {
            "network" => w
                .engine
                .destroy::<NetworkStack>("network")
                .await
                .unwrap_err(),
            _ => w.engine.destroy::<IamStack>("iam").await.unwrap_err(),
        };
        match &err {
            Error::ReferencedBy { stack, consumers } => {
                assert_eq!(stack, referenced);
                assert_eq!(consumers, &["cluster".to_owned()]);
            }
            other => panic!("expected ReferencedBy, got {other:?}"),
        }
        assert!(err.to_string().contains("cluster"), "{err}");
    }
    // Nothing was deleted by the refusals.
    assert_eq!(live_service(&w, &c).await.status(), Some("ACTIVE"));

    w.engine.destroy::<ClusterStack>("cluster").await.unwrap();
    w.engine.destroy::<NetworkStack>("network").await.unwrap();
    w.engine.destroy::<IamStack>("iam").await.unwrap();

    let clusters = w
        .ecs
        .describe_clusters()
        .clusters(&c.cluster_arn)
        .send()
        .await
        .unwrap();
    assert!(
        clusters
            .clusters()
            .iter()
            .all(|c| c.status() == Some("INACTIVE")),
        "{clusters:?}"
    );
    let defs = w
        .ecs
        .list_task_definitions()
        .status(aws_sdk_ecs::types::TaskDefinitionStatus::Active)
        .send()
        .await
        .unwrap();
    assert_eq!(defs.task_definition_arns(), Vec::<String>::new());
    let logs = aws_sdk_cloudwatchlogs::Client::new(&w.cloud.config);
    let groups = logs.describe_log_groups().send().await.unwrap();
    assert_eq!(groups.log_groups().len(), 0);
    let ec2 = aws_sdk_ec2::Client::new(&w.cloud.config);
    let vpcs = ec2
        .describe_vpcs()
        .vpc_ids(net.vpc_id.as_str())
        .send()
        .await;
    assert!(
        vpcs.as_ref().map(|v| v.vpcs().is_empty()).unwrap_or(true),
        "{vpcs:?}"
    );
    let iam = aws_sdk_iam::Client::new(&w.cloud.config);
    let roles = iam.list_roles().send().await.unwrap();
    assert_eq!(roles.roles().len(), 0, "{:?}", roles.roles());
}

#[tokio::test]
async fn linked_in_a_group_the_three_stacks_come_up_as_one_graph_and_re_apply_as_no_op() {
    let w = world().await;
    let identity = w.engine.identity().await.unwrap();
    let iam = IamStack::new(IamConfig::default().bound_to(&identity));
    let net = NetworkStack::new(NetworkConfig::default());
    let cluster = ClusterStack::linked(cluster_config(), &iam.exports(), &net.exports());
    let up = || async {
        let group = w.engine.group(["iam", "network", "cluster"]);
        let o = platform_core::UpOptions::default();
        let (i, n, c) = tokio::join!(
            group.up(&iam, o.clone()),
            group.up(&net, o.clone()),
            group.up(&cluster, o)
        );
        (i.unwrap(), n.unwrap(), c.unwrap())
    };
    let (i, n, c) = up().await;
    let service = live_service(&w, &c.outputs).await;
    let vpc = service
        .network_configuration()
        .and_then(|x| x.awsvpc_configuration())
        .unwrap();
    assert_eq!(
        vpc.subnets(),
        [n.outputs.public_subnet_ids[0].as_str().to_owned()]
    );
    let def = w
        .ecs
        .describe_task_definition()
        .task_definition(&c.outputs.task_definition_arn)
        .send()
        .await
        .unwrap();
    assert_eq!(
        def.task_definition().unwrap().execution_role_arn(),
        Some(i.outputs.services["frontend"].role.arn.as_str())
    );
    // The cluster records its references: the network cannot be destroyed under it.
    let err = w
        .engine
        .destroy::<NetworkStack>("network")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::ReferencedBy { .. }), "{err}");

    // Again: nothing changes, nothing mutating is called.
    w.cloud.clear();
    let (i2, n2, c2) = up().await;
    assert!(!c2.plan.has_changes(), "{}", c2.plan);
    assert_eq!(
        (i2.outputs, n2.outputs, c2.outputs),
        (i.outputs, n.outputs, c.outputs)
    );
    assert_eq!(w.cloud.mutating_calls(), Vec::<String>::new());
}

/// A stack of one log group, to change its tags alone.
struct Logs(cluster_stack::resources::LogGroup);

impl platform_core::Stack for Logs {
    type Outputs = ();
    fn name(&self) -> &str {
        "logs"
    }
    fn register(registry: &mut platform_core::resource::Registry) {
        registry.add::<cluster_stack::resources::LogGroup>();
    }
    fn declare(
        &self,
        s: &mut platform_core::Scope,
    ) -> Result<platform_core::stack::Declared<()>, Error> {
        s.add("log-group", self.0.clone());
        Ok(s.outputs(|_| Ok(())))
    }
}

#[tokio::test]
async fn a_log_groups_tags_change_in_place_through_the_logs_tag_helper() {
    let w = world().await;
    let group = |tags: &[(&str, &str)]| {
        Logs(
            serde_json::from_value(serde_json::json!({
                "name": "/ecs/tagged", "retention_days": 7,
                "tags": tags.iter().copied().collect::<std::collections::BTreeMap<_, _>>(),
            }))
            .unwrap(),
        )
    };
    w.engine.up(&group(&[("team", "web")])).await.unwrap();
    w.cloud.clear();
    w.engine.up(&group(&[("owner", "ops")])).await.unwrap();
    assert_eq!(w.cloud.mutating_calls(), ["UntagResource", "TagResource"]);
    let logs = aws_sdk_cloudwatchlogs::Client::new(&w.cloud.config);
    let arn = logs
        .describe_log_groups()
        .log_group_name_prefix("/ecs/tagged")
        .send()
        .await
        .unwrap()
        .log_groups()[0]
        .arn()
        .unwrap()
        .trim_end_matches(":*")
        .to_owned();
    let tags = logs
        .list_tags_for_resource()
        .resource_arn(arn)
        .send()
        .await
        .unwrap();
    let mut keys: Vec<&String> = tags
        .tags()
        .unwrap()
        .keys()
        .filter(|k| !k.starts_with("platform:"))
        .collect();
    keys.sort();
    assert_eq!(keys, ["owner"]);
}

#[tokio::test]
async fn a_cluster_someone_else_made_under_the_name_is_refused_not_adopted_by_create_cluster() {
    let w = world().await;
    // Someone else's cluster under the seed's name, with tags of their own. On AWS, CreateCluster
    // with that name would answer with this cluster, unchanged, and no error.
    w.ecs
        .create_cluster()
        .cluster_name("my-ecs-cluster")
        .tags(
            aws_sdk_ecs::types::Tag::builder()
                .key("team")
                .value("payments")
                .build(),
        )
        .send()
        .await
        .unwrap();
    let (iam, net) = foundation(&w).await;
    w.cloud.clear();
    let err = w
        .engine
        .up(&ClusterStack::new(cluster_config(), &iam, &net))
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("ECS cluster my-ecs-cluster already exists and belongs to nobody"),
        "{message}"
    );
    assert!(
        !w.cloud.operations().iter().any(|o| o == "CreateCluster"),
        "{:?}",
        w.cloud.operations()
    );
    // Theirs, untouched: their tags and no platform tag.
    let live = w
        .ecs
        .describe_clusters()
        .clusters("my-ecs-cluster")
        .include(aws_sdk_ecs::types::ClusterField::Tags)
        .send()
        .await
        .unwrap();
    let tags: Vec<(&str, &str)> = live.clusters()[0]
        .tags()
        .iter()
        .filter_map(|t| Some((t.key()?, t.value()?)))
        .collect();
    assert_eq!(tags, [("team", "payments")]);
}

#[tokio::test]
async fn a_service_name_still_draining_is_retried_until_ecs_lets_it_go() {
    let w = world().await;
    let (iam, net) = foundation(&w).await;
    // A replacement deleted the old service of this name: ECS refuses the name while it drains,
    // more times than the engine's retry bound allows for other errors.
    w.cloud.proxy.add_rule(
        Rule::new(Fault::AwsError {
            status: 400,
            code: "InvalidParameterException".into(),
            message: "Unable to Start a service that is still Draining.".into(),
        })
        .operation("CreateService")
        .times(8),
    );
    w.cloud.clear();
    let cluster = w
        .engine
        .up(&ClusterStack::new(cluster_config(), &iam, &net))
        .await
        .unwrap();
    let creates = w
        .cloud
        .operations()
        .iter()
        .filter(|o| *o == "CreateService")
        .count();
    assert_eq!(creates, 9);
    assert_eq!(live_service(&w, &cluster).await.status(), Some("ACTIVE"));
    let waits = w
        .events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| {
            matches!(e, Event::Progress { message, .. }
                if message.starts_with("CreateService: InvalidParameterException; AWS may take minutes"))
        })
        .count();
    assert_eq!(waits, 8);
}

/// The scalable targets (resource id, min, max) and the policies (resource id, target value).
async fn scaling(w: &World) -> (Vec<(String, i32, i32)>, Vec<(String, f64)>) {
    use aws_sdk_applicationautoscaling::types::ServiceNamespace;
    let client = aws_sdk_applicationautoscaling::Client::new(&w.cloud.config);
    let targets = client
        .describe_scalable_targets()
        .service_namespace(ServiceNamespace::Ecs)
        .send()
        .await
        .unwrap();
    let policies = client
        .describe_scaling_policies()
        .service_namespace(ServiceNamespace::Ecs)
        .send()
        .await
        .unwrap();
    (
        targets
            .scalable_targets()
            .iter()
            .map(|t| {
                (
                    t.resource_id().to_owned(),
                    t.min_capacity(),
                    t.max_capacity(),
                )
            })
            .collect(),
        policies
            .scaling_policies()
            .iter()
            .map(|p| {
                let config = p.target_tracking_scaling_policy_configuration().unwrap();
                (p.resource_id().to_owned(), config.target_value())
            })
            .collect(),
    )
}

#[tokio::test]
async fn a_scaled_services_count_is_the_scalers_and_its_bounds_and_target_change_in_place() {
    let w = world().await;
    let scaled = |min, max, target| {
        let mut c = cluster_config();
        c.services[0].autoscaling = Some(Autoscaling::new(min, max, target));
        c
    };
    let (iam, net, c) = platform(&w, scaled(1, 3, 60)).await;
    let id = "service/my-ecs-cluster/frontend-service".to_owned();
    assert_eq!(
        scaling(&w).await,
        (vec![(id.clone(), 1, 3)], vec![(id.clone(), 60.0)])
    );
    assert_eq!(
        live_service(&w, &c).await.desired_count(),
        1,
        "it starts at min"
    );

    // The scaler moves the count: not drift, and `up` leaves it.
    w.ecs
        .update_service()
        .cluster(&c.cluster_arn)
        .service(&c.service_name)
        .desired_count(3)
        .send()
        .await
        .unwrap();
    let stack = |config| ClusterStack::new(config, &iam, &net);
    let report = w
        .engine
        .refresh_report(&stack(scaled(1, 3, 60)))
        .await
        .unwrap();
    assert_eq!(report.drift, vec![], "{:?}", report.drift);
    w.cloud.clear();
    w.engine
        .up_with(
            &stack(scaled(1, 3, 60)),
            UpOptions::default().with_refresh(true),
        )
        .await
        .unwrap();
    assert_eq!(w.cloud.mutating_calls(), Vec::<String>::new());
    assert_eq!(live_service(&w, &c).await.desired_count(), 3);

    // The target, then the bounds, change in place with one call each.
    w.cloud.clear();
    w.engine.up(&stack(scaled(1, 3, 75))).await.unwrap();
    assert_eq!(w.cloud.mutating_calls(), ["PutScalingPolicy"]);
    w.cloud.clear();
    w.engine.up(&stack(scaled(2, 4, 75))).await.unwrap();
    assert_eq!(w.cloud.mutating_calls(), ["RegisterScalableTarget"]);
    assert_eq!(
        scaling(&w).await,
        (vec![(id.clone(), 2, 4)], vec![(id.clone(), 75.0)])
    );

    // A policy deleted by hand is drift, and `up --refresh` puts it back.
    let client = aws_sdk_applicationautoscaling::Client::new(&w.cloud.config);
    client
        .delete_scaling_policy()
        .policy_name("cpu-target-tracking")
        .service_namespace(aws_sdk_applicationautoscaling::types::ServiceNamespace::Ecs)
        .scalable_dimension(
            aws_sdk_applicationautoscaling::types::ScalableDimension::EcsServiceDesiredCount,
        )
        .resource_id(&id)
        .send()
        .await
        .unwrap();
    let report = w
        .engine
        .refresh_report(&stack(scaled(2, 4, 75)))
        .await
        .unwrap();
    let drifted: Vec<(&str, Vec<&str>)> = report
        .drift
        .iter()
        .map(|d| {
            (
                d.resource.as_str(),
                d.fields.iter().map(|f| f.field.as_str()).collect(),
            )
        })
        .collect();
    assert_eq!(drifted, [("autoscaling", vec!["target_cpu_percent"])]);
    w.cloud.clear();
    w.engine
        .up_with(
            &stack(scaled(2, 4, 75)),
            UpOptions::default().with_refresh(true),
        )
        .await
        .unwrap();
    assert_eq!(w.cloud.mutating_calls(), ["PutScalingPolicy"]);

    // With its state lost, the target is imported by its resource id (and only by that).
    let lost = Engine::builder(MemoryStateStore::new())
        .aws(w.cloud.config.clone())
        .build();
    let scaled_stack = stack(scaled(2, 4, 75));
    for (bad, reason) in [
        ("frontend-service", "service/CLUSTER/SERVICE"),
        ("service/my-ecs-cluster/nothing-here", "nothing"),
    ] {
        let err = lost
            .import(&scaled_stack, "autoscaling", bad)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains(reason), "{bad}: {err}");
    }
    lost.import(&scaled_stack, "autoscaling", &id)
        .await
        .unwrap();
    let plan = lost.preview(&scaled_stack).await.unwrap();
    // Recorded: the plan does not create it again (it waits for the service this state lacks).
    let step = plan.step("autoscaling").map(|s| s.action.kind());
    assert!(
        step.is_some() && step != Some(platform_core::plan::ActionKind::Create),
        "{plan}"
    );

    // Scaling off: policy and target go, and the declared count is sent again.
    w.cloud.clear();
    w.engine.up(&stack(cluster_config())).await.unwrap();
    let mut calls = w.cloud.mutating_calls();
    calls.sort();
    assert_eq!(
        calls,
        [
            "DeleteScalingPolicy",
            "DeregisterScalableTarget",
            "UpdateService"
        ]
    );
    assert_eq!(scaling(&w).await, (vec![], vec![]));
    assert_eq!(live_service(&w, &c).await.desired_count(), 1);

    // On again, then destroyed with the stack: nothing is left.
    w.engine.up(&stack(scaled(1, 2, 50))).await.unwrap();
    assert_eq!(scaling(&w).await.0.len(), 1);
    w.engine.destroy::<ClusterStack>("cluster").await.unwrap();
    assert_eq!(scaling(&w).await, (vec![], vec![]));
}

/// The network with two subnets and a balancer's group for `ports`.
async fn balanced_foundation(w: &World) -> (Produced<IamOutputs>, Produced<NetworkOutputs>) {
    let identity = w.engine.identity().await.unwrap();
    let iam_stack = IamStack::new(IamConfig::default().bound_to(&identity));
    let net_stack = NetworkStack::new(
        NetworkConfig::default()
            .with_public_subnets_across_zones(2)
            .with_balancer(Some(network_stack::BalancerAccess::new(vec![80], vec![80]))),
    );
    let o = UpOptions::default();
    let (iam, net) = tokio::join!(
        w.engine.up_with(&iam_stack, o.clone()),
        w.engine.up_with(&net_stack, o)
    );
    (iam.unwrap().produced(), net.unwrap().produced())
}

/// The frontend behind a balancer on `path`, its group checked on `health`.
fn balanced(path: &str, health: &str, idle: u32, grace: u32) -> ClusterConfig {
    let mut lb = cluster_stack::LoadBalancerConfig::default();
    lb.idle_timeout_secs = idle;
    let mut route = cluster_stack::Route::path(path).with_health_check_path(health);
    route.health_check_grace_period_secs = grace;
    let mut c = cluster_config().with_load_balancer(Some(lb));
    c.services[0] = c.services[0].clone().with_route(Some(route));
    c
}

/// Each balancer kind from nothing with its creates only, re-applied with no call, changed in place
/// with one call each, its drift seen, imported with its state lost, and destroyed.
#[tokio::test]
async fn a_balancer_comes_up_changes_in_place_one_call_at_a_time_and_goes() {
    let w = world().await;
    let (iam, net) = balanced_foundation(&w).await;
    let stack = |config| ClusterStack::new(config, &iam, &net);
    w.cloud.clear();
    let c = w
        .engine
        .up(&stack(balanced("/*", "/", 60, 60)))
        .await
        .unwrap();
    let creates: Vec<String> = w
        .cloud
        .mutating_calls()
        .into_iter()
        .filter(|op| {
            [
                "CreateLoadBalancer",
                "CreateListener",
                "CreateTargetGroup",
                "CreateRule",
            ]
            .contains(&op.as_str())
        })
        .collect();
    let mut sorted = creates.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        [
            "CreateListener",
            "CreateLoadBalancer",
            "CreateRule",
            "CreateTargetGroup"
        ]
    );
    let dns = c.load_balancer_dns_name.clone().unwrap();
    assert_eq!(
        c.services["frontend"].url.as_deref(),
        Some(format!("http://{dns}/").as_str())
    );
    let service = live_service(&w, &c).await;
    assert_eq!(service.load_balancers().len(), 1);
    assert_eq!(service.load_balancers()[0].container_port(), Some(80));

    // Again: no change, no call that changes anything.
    w.cloud.clear();
    w.engine
        .up(&stack(balanced("/*", "/", 60, 60)))
        .await
        .unwrap();
    assert_eq!(w.cloud.mutating_calls(), Vec::<String>::new());

    // One change at a time, one call each.
    for (config, calls) in [
        (
            balanced("/*", "/", 120, 60),
            vec!["ModifyLoadBalancerAttributes"],
        ),
        (
            balanced("/*", "/healthz", 120, 60),
            vec!["ModifyTargetGroup"],
        ),
        (balanced("/app/*", "/healthz", 120, 60), vec!["ModifyRule"]),
        (
            balanced("/app/*", "/healthz", 120, 90),
            vec!["UpdateService"],
        ),
    ] {
        w.cloud.clear();
        w.engine.up(&stack(config)).await.unwrap();
        assert_eq!(w.cloud.mutating_calls(), calls);
    }
    let mut deregistration = balanced("/app/*", "/healthz", 120, 90);
    deregistration
        .load_balancer
        .as_mut()
        .unwrap()
        .deregistration_delay_secs = 5;
    w.cloud.clear();
    w.engine.up(&stack(deregistration.clone())).await.unwrap();
    assert_eq!(w.cloud.mutating_calls(), ["ModifyTargetGroupAttributes"]);
    let tagged = deregistration.clone().with_tag("team", "web");
    w.cloud.clear();
    w.engine.up(&stack(tagged.clone())).await.unwrap();
    let tag_calls = w.cloud.mutating_calls();
    assert_eq!(
        tag_calls.iter().filter(|c| *c == "AddTags").count(),
        4,
        "the balancer, its listener, group and rule: {tag_calls:?}"
    );
    assert!(
        !tag_calls
            .iter()
            .any(|c| c.starts_with("Modify") || c.starts_with("Set")),
        "a tag change changes nothing else: {tag_calls:?}"
    );

    // By hand: the rule's path and the listener's default answer; both are drift.
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&w.cloud.config);
    let lb = elb
        .describe_load_balancers()
        .names("my-ecs-cluster-alb")
        .send()
        .await
        .unwrap();
    let lb_arn = lb.load_balancers()[0]
        .load_balancer_arn()
        .unwrap()
        .to_owned();
    let listener = elb
        .describe_listeners()
        .load_balancer_arn(&lb_arn)
        .send()
        .await
        .unwrap();
    let listener_arn = listener.listeners()[0].listener_arn().unwrap().to_owned();
    let rules = elb
        .describe_rules()
        .listener_arn(&listener_arn)
        .send()
        .await
        .unwrap();
    let rule = rules
        .rules()
        .iter()
        .find(|r| r.is_default() != Some(true))
        .unwrap();
    elb.modify_rule()
        .rule_arn(rule.rule_arn().unwrap())
        .conditions(
            aws_sdk_elasticloadbalancingv2::types::RuleCondition::builder()
                .field("path-pattern")
                .values("/by-hand/*")
                .build(),
        )
        .send()
        .await
        .unwrap();
    elb.modify_listener()
        .listener_arn(&listener_arn)
        .default_actions(
            aws_sdk_elasticloadbalancingv2::types::Action::builder()
                .r#type(aws_sdk_elasticloadbalancingv2::types::ActionTypeEnum::FixedResponse)
                .fixed_response_config(
                    aws_sdk_elasticloadbalancingv2::types::FixedResponseActionConfig::builder()
                        .status_code("503")
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    let report = w
        .engine
        .refresh_report(&stack(tagged.clone()))
        .await
        .unwrap();
    let drifted: Vec<(&str, Vec<&str>)> = report
        .drift
        .iter()
        .map(|d| {
            (
                d.resource.as_str(),
                d.fields.iter().map(|f| f.field.as_str()).collect(),
            )
        })
        .collect();
    assert_eq!(
        drifted,
        [
            ("listener-80", vec!["default_action"]),
            ("listener-rule", vec!["path"])
        ]
    );
    w.cloud.clear();
    w.engine
        .up_with(
            &stack(tagged.clone()),
            UpOptions::default().with_refresh(true),
        )
        .await
        .unwrap();
    let mut repairs = w.cloud.mutating_calls();
    repairs.sort();
    assert_eq!(repairs, ["ModifyListener", "ModifyRule"]);
    let answer = elb
        .describe_listeners()
        .listener_arns(&listener_arn)
        .send()
        .await
        .unwrap();
    let status = answer.listeners()[0].default_actions()[0]
        .fixed_response_config()
        .and_then(|c| c.status_code())
        .map(str::to_owned);
    assert_eq!(status.as_deref(), Some("404"));

    // With its state lost, the balancer is imported by name, the listener by ARN.
    let lost = Engine::builder(MemoryStateStore::new())
        .aws(w.cloud.config.clone())
        .build();
    let s = stack(tagged.clone());
    lost.import(&s, "load-balancer", "my-ecs-cluster-alb")
        .await
        .unwrap();
    lost.import(&s, "listener-80", &listener_arn).await.unwrap();
    let plan = lost.preview(&s).await.unwrap();
    for imported in ["load-balancer", "listener-80"] {
        let step = plan.step(imported).map(|s| s.action.kind());
        assert_ne!(
            step,
            Some(platform_core::plan::ActionKind::Create),
            "{imported}"
        );
    }

    // Without the balancer: its four resources go, the service stays, unregistered.
    w.cloud.clear();
    w.engine.up(&stack(cluster_config())).await.unwrap();
    let mut deletes: Vec<String> = w
        .cloud
        .mutating_calls()
        .into_iter()
        .filter(|op| op.starts_with("Delete"))
        .collect();
    deletes.sort();
    assert_eq!(
        deletes,
        [
            "DeleteListener",
            "DeleteLoadBalancer",
            "DeleteRule",
            "DeleteTargetGroup"
        ]
    );
    let service = live_service(&w, &c).await;
    assert!(service.load_balancers().is_empty());
    let left = elb.describe_target_groups().send().await.unwrap();
    assert!(left.target_groups().is_empty());
}

/// `CreateTargetGroup` and `CreateLoadBalancer` answer a name that exists with that resource, not an
/// error: a group of the name made by someone else is refused before any create, naming whose it is,
/// and nothing of the balancer is made in its place.
#[tokio::test]
async fn a_target_group_someone_else_made_under_the_name_is_refused_not_adopted() {
    let w = world().await;
    let (iam, net) = balanced_foundation(&w).await;
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&w.cloud.config);
    elb.create_target_group()
        .name("my-ecs-cluster-frontend")
        .protocol(aws_sdk_elasticloadbalancingv2::types::ProtocolEnum::Http)
        .port(80)
        .vpc_id(net.vpc_id.as_str())
        .target_type(aws_sdk_elasticloadbalancingv2::types::TargetTypeEnum::Ip)
        .send()
        .await
        .unwrap();
    w.cloud.clear();
    let err = w
        .engine
        .up(&ClusterStack::new(balanced("/*", "/", 60, 60), &iam, &net))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("target group my-ecs-cluster-frontend")
            && err.contains("nobody this engine knows"),
        "{err}"
    );
    assert!(
        !w.cloud
            .mutating_calls()
            .iter()
            .any(|c| c == "CreateTargetGroup" || c == "CreateRule" || c == "CreateService"),
        "{:?}",
        w.cloud.mutating_calls()
    );
}
