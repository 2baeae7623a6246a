//! The network stack against the AWS emulator: create, no-op, in-place updates, replacement, drift,
//! destroy. Each test runs in an AWS account of its own; calls are counted by the recording proxy.

use aws_sdk_ec2::Client;
use aws_sdk_ec2::types::Filter;
use local_cloud::TestCloud;
use network_stack::resources::SgRule;
use network_stack::{NetworkConfig, NetworkStack, SubnetSpec, stack_filter};
use platform_core::{Engine, MemoryStateStore, StackRef, plan::Action, plan::ActionKind};

struct World {
    cloud: TestCloud,
    engine: Engine,
    ec2: Client,
}

async fn world() -> World {
    let cloud = TestCloud::start()
        .await
        .expect("an AWS emulator is required for this suite");
    let engine = Engine::builder(MemoryStateStore::new())
        .aws(cloud.config.clone())
        .build();
    World {
        ec2: Client::new(&cloud.config),
        cloud,
        engine,
    }
}

/// The VPC gateway `igw` is attached to, as EC2 describes it.
async fn attached_vpc(w: &World, igw: &network_stack::InternetGatewayId) -> Option<String> {
    let g = w
        .ec2
        .describe_internet_gateways()
        .internet_gateway_ids(igw.as_str())
        .send()
        .await
        .unwrap();
    g.internet_gateways()[0]
        .attachments()
        .first()
        .and_then(|a| a.vpc_id())
        .map(str::to_owned)
}

#[tokio::test]
async fn the_seed_network_is_created_and_a_second_apply_makes_no_call() {
    let w = world().await;
    let stack = NetworkStack::new(NetworkConfig::default());
    let plan = w.engine.preview(&stack).await.unwrap();
    assert_eq!(plan.counts().create, 8, "{plan}");
    assert!(plan.to_string().contains("(known after apply)"), "{plan}");

    let net = w.engine.up(&stack).await.unwrap();

    // What AWS now has, read with the plain SDK.
    let vpc = w
        .ec2
        .describe_vpcs()
        .vpc_ids(net.vpc_id.as_str())
        .send()
        .await
        .unwrap();
    assert_eq!(vpc.vpcs()[0].cidr_block(), Some("10.0.0.0/16"));
    for attr in [
        aws_sdk_ec2::types::VpcAttributeName::EnableDnsSupport,
        aws_sdk_ec2::types::VpcAttributeName::EnableDnsHostnames,
    ] {
        let a = w
            .ec2
            .describe_vpc_attribute()
            .vpc_id(net.vpc_id.as_str())
            .attribute(attr.clone())
            .send()
            .await
            .unwrap();
        let on = a
            .enable_dns_support()
            .or(a.enable_dns_hostnames())
            .and_then(|v| v.value());
        assert_eq!(on, Some(true), "{attr:?}");
    }
    let subnets = w
        .ec2
        .describe_subnets()
        .subnet_ids(net.public_subnet_ids[0].as_str())
        .send()
        .await
        .unwrap();
    let subnet = &subnets.subnets()[0];
    assert_eq!(subnet.cidr_block(), Some("10.0.1.0/24"));
    assert_eq!(subnet.map_public_ip_on_launch(), Some(true));
    assert_eq!(
        subnet.availability_zone(),
        Some(net.availability_zones[0].as_str())
    );
    assert_eq!(net.availability_zones[0], "us-east-1a");

    assert_eq!(
        attached_vpc(&w, &net.internet_gateway_id).await.as_deref(),
        Some(net.vpc_id.as_str())
    );
    let rt = w
        .ec2
        .describe_route_tables()
        .route_table_ids(net.route_table_id.as_str())
        .send()
        .await
        .unwrap();
    let rt = &rt.route_tables()[0];
    assert!(
        rt.routes()
            .iter()
            .any(|r| r.destination_cidr_block() == Some("0.0.0.0/0")
                && r.gateway_id() == Some(net.internet_gateway_id.as_str()))
    );
    assert!(
        rt.associations()
            .iter()
            .any(|a| a.subnet_id() == Some(net.public_subnet_ids[0].as_str()))
    );
    let sg = w
        .ec2
        .describe_security_groups()
        .group_ids(net.security_group_id.as_str())
        .send()
        .await
        .unwrap();
    let perms = sg.security_groups()[0].ip_permissions();
    assert_eq!(perms.len(), 1);
    assert_eq!(
        (
            perms[0].ip_protocol(),
            perms[0].from_port(),
            perms[0].to_port()
        ),
        (Some("tcp"), Some(80), Some(80))
    );
    assert_eq!(perms[0].ip_ranges()[0].cidr_ip(), Some("0.0.0.0/0"));

    // The typed outputs are in the state store for other stacks.
    let here = w.engine.identity().await.unwrap();
    let read = StackRef::<NetworkStack>::new("network")
        .read(w.engine.store(), &here)
        .await
        .unwrap();
    assert_eq!(read.outputs, net);
    assert_eq!(read.producer.stack, "network");

    // Idempotent: no change planned, and not a single AWS call on the second apply.
    w.cloud.clear();
    let report = w
        .engine
        .up_with(&stack, platform_core::UpOptions::default())
        .await
        .unwrap();
    assert!(!report.plan.has_changes(), "{}", report.plan);
    assert_eq!(report.calls.mutating, 0);
    // Only the identity was asked (once per engine, so not even that).
    assert!(
        w.cloud.proxy.calls().is_empty(),
        "{:?}",
        w.cloud.proxy.calls()
    );

    // With a refresh: at most one read per resource, still nothing mutating.
    let report = w
        .engine
        .up_with(
            &stack,
            platform_core::UpOptions::default().with_refresh(true),
        )
        .await
        .unwrap();
    assert!(!report.plan.has_changes(), "{}", report.plan);
    assert!(
        w.cloud.mutating_calls().is_empty(),
        "{:?}",
        w.cloud.mutating_calls()
    );
}

#[tokio::test]
async fn rules_and_dns_change_in_place_with_only_the_calls_needed() {
    let w = world().await;
    let mut config = NetworkConfig::default();
    let net = w
        .engine
        .up(&NetworkStack::new(config.clone()))
        .await
        .unwrap();

    config.ingress = vec![SgRule::tcp(80, "0.0.0.0/0"), SgRule::tcp(443, "0.0.0.0/0")];
    let stack = NetworkStack::new(config.clone());
    let plan = w.engine.preview(&stack).await.unwrap();
    assert_eq!(
        plan.step("service-security-group").unwrap().action.kind(),
        ActionKind::Update
    );
    assert_eq!(plan.counts().update, 1, "{plan}");
    w.cloud.clear();
    let after = w.engine.up(&stack).await.unwrap();
    assert_eq!(w.cloud.mutating_calls(), ["AuthorizeSecurityGroupIngress"]);
    assert_eq!(
        after.security_group_id, net.security_group_id,
        "never replaced"
    );

    config.ingress = vec![SgRule::tcp(443, "0.0.0.0/0")];
    w.cloud.clear();
    w.engine
        .up(&NetworkStack::new(config.clone()))
        .await
        .unwrap();
    assert_eq!(w.cloud.mutating_calls(), ["RevokeSecurityGroupIngress"]);

    config.dns_hostnames = false;
    w.cloud.clear();
    w.engine
        .up(&NetworkStack::new(config.clone()))
        .await
        .unwrap();
    assert_eq!(w.cloud.mutating_calls(), ["ModifyVpcAttribute"]);
    let a = w
        .ec2
        .describe_vpc_attribute()
        .vpc_id(net.vpc_id.as_str())
        .attribute(aws_sdk_ec2::types::VpcAttributeName::EnableDnsHostnames)
        .send()
        .await
        .unwrap();
    assert_eq!(
        a.enable_dns_hostnames().and_then(|v| v.value()),
        Some(false)
    );

    config.tags.insert("team".into(), "platform".into());
    w.cloud.clear();
    w.engine
        .up(&NetworkStack::new(config.clone()))
        .await
        .unwrap();
    let mut ops = w.cloud.mutating_calls();
    ops.sort();
    assert_eq!(
        ops,
        vec!["CreateTags"; 5],
        "one CreateTags per taggable resource"
    );

    // A tag replaced by another: one DeleteTags and one CreateTags per taggable resource.
    config.tags.remove("team");
    config.tags.insert("owner".into(), "ops".into());
    w.cloud.clear();
    w.engine.up(&NetworkStack::new(config)).await.unwrap();
    let mut ops = w.cloud.mutating_calls();
    ops.sort();
    assert_eq!(ops, [vec!["CreateTags"; 5], vec!["DeleteTags"; 5]].concat());
    let vpc = w
        .ec2
        .describe_vpcs()
        .vpc_ids(net.vpc_id.as_str())
        .send()
        .await
        .unwrap();
    let keys: Vec<&str> = vpc.vpcs()[0]
        .tags()
        .iter()
        .filter_map(|t| t.key())
        .filter(|k| !k.starts_with("platform:"))
        .collect();
    assert_eq!(
        keys,
        ["Name", "owner"],
        "team removed, owner set, Name kept"
    );
}

#[tokio::test]
async fn a_subnet_cidr_change_replaces_the_subnet_and_its_association() {
    let w = world().await;
    let before = w
        .engine
        .up(&NetworkStack::new(NetworkConfig::default()))
        .await
        .unwrap();
    let moved = NetworkStack::new(
        NetworkConfig::default().with_public_subnets(vec![SubnetSpec::public("10.0.2.0/24", 0)]),
    );
    let plan = w.engine.preview(&moved).await.unwrap();
    let Action::Replace { reason, .. } = &plan.step("public-subnet-0").unwrap().action else {
        panic!("{plan}")
    };
    assert_eq!(reason.to_string(), "cidr_block cannot change in place");
    assert_eq!(
        plan.step("public-subnet-0-route").unwrap().action.kind(),
        ActionKind::Replace
    );
    assert_eq!(plan.counts().same, 6, "{plan}");

    let after = w.engine.up(&moved).await.unwrap();
    assert_ne!(after.public_subnet_ids, before.public_subnet_ids);
    assert_eq!(after.vpc_id, before.vpc_id);
    let old = w
        .ec2
        .describe_subnets()
        .filters(
            Filter::builder()
                .name("subnet-id")
                .values(before.public_subnet_ids[0].as_str())
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert!(old.subnets().is_empty(), "the old subnet is deleted");
    let new = w
        .ec2
        .describe_subnets()
        .subnet_ids(after.public_subnet_ids[0].as_str())
        .send()
        .await
        .unwrap();
    assert_eq!(new.subnets()[0].cidr_block(), Some("10.0.2.0/24"));
    assert!(!w.engine.preview(&moved).await.unwrap().has_changes());
}

#[tokio::test]
async fn refresh_shows_a_rule_added_by_hand_and_apply_removes_it() {
    let w = world().await;
    let stack = NetworkStack::new(NetworkConfig::default());
    let net = w.engine.up(&stack).await.unwrap();
    w.ec2
        .authorize_security_group_ingress()
        .group_id(net.security_group_id.as_str())
        .ip_protocol("tcp")
        .from_port(22)
        .to_port(22)
        .cidr_ip("0.0.0.0/0")
        .send()
        .await
        .unwrap();
    let plan = w.engine.refresh(&stack).await.unwrap();
    let Action::Update { changes } = &plan.step("service-security-group").unwrap().action else {
        panic!("{plan}")
    };
    assert_eq!(changes[0].field, "ingress");
    assert!(changes[0].old.as_ref().unwrap().to_string().contains("22"));
    assert_eq!(plan.counts().update, 1, "{plan}");

    w.cloud.clear();
    w.engine.up(&stack).await.unwrap();
    assert_eq!(w.cloud.mutating_calls(), ["RevokeSecurityGroupIngress"]);
    let sg = w
        .ec2
        .describe_security_groups()
        .group_ids(net.security_group_id.as_str())
        .send()
        .await
        .unwrap();
    let ports: Vec<_> = sg.security_groups()[0]
        .ip_permissions()
        .iter()
        .map(|p| p.from_port())
        .collect();
    assert_eq!(ports, [Some(80)]);
}

#[tokio::test]
async fn n_public_subnets_span_n_zones_and_destroy_leaves_nothing_tagged() {
    let w = world().await;
    let stack = NetworkStack::new(NetworkConfig::default().with_public_subnets_across_zones(3));
    let net = w.engine.up(&stack).await.unwrap();
    assert_eq!(net.public_subnet_ids.len(), 3);
    assert_eq!(
        net.availability_zones,
        ["us-east-1a", "us-east-1b", "us-east-1c"]
    );

    let report = w.engine.destroy::<NetworkStack>("network").await.unwrap();
    assert_eq!(report.deleted, 12);
    let f = || Some(vec![stack_filter("network")]);
    let vpcs = w.ec2.describe_vpcs().set_filters(f()).send().await.unwrap();
    let subnets = w
        .ec2
        .describe_subnets()
        .set_filters(f())
        .send()
        .await
        .unwrap();
    let igws = w
        .ec2
        .describe_internet_gateways()
        .set_filters(f())
        .send()
        .await
        .unwrap();
    let rts = w
        .ec2
        .describe_route_tables()
        .set_filters(f())
        .send()
        .await
        .unwrap();
    let sgs = w
        .ec2
        .describe_security_groups()
        .set_filters(f())
        .send()
        .await
        .unwrap();
    assert!(vpcs.vpcs().is_empty());
    assert!(subnets.subnets().is_empty());
    assert!(igws.internet_gateways().is_empty());
    assert!(rts.route_tables().is_empty());
    assert!(sgs.security_groups().is_empty());
    assert_eq!(w.engine.store().read("network").await.unwrap(), None);
}

#[tokio::test]
async fn invalid_config_is_refused_before_any_call() {
    let w = world().await;
    let stack = NetworkStack::new(NetworkConfig::default().with_public_subnets(vec![
        SubnetSpec::public("10.0.1.0/24", 0),
        SubnetSpec::public("10.0.1.0/25", 1),
    ]));
    let err = w.engine.up(&stack).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "network/config: invalid public_subnets[1].cidr = 10.0.1.0/25: overlaps public_subnets[0].cidr = 10.0.1.0/24"
    );
    assert!(
        w.cloud.proxy.calls().is_empty(),
        "{:?}",
        w.cloud.proxy.calls()
    );
}

#[tokio::test]
async fn every_call_of_an_apply_is_attributed_to_the_resource_that_made_it() {
    let cloud = TestCloud::start()
        .await
        .expect("an AWS emulator is required for this suite");
    let calls = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = calls.clone();
    let engine = Engine::builder(MemoryStateStore::new())
        .aws(cloud.config.clone())
        .on_event(move |e| {
            if let platform_core::Event::AwsCall(c) = e {
                sink.lock().unwrap().push(c.clone());
            }
        })
        .build();
    engine
        .up(&NetworkStack::new(NetworkConfig::default()))
        .await
        .unwrap();
    let calls = calls.lock().unwrap().clone();
    let mut by_step = std::collections::BTreeMap::<String, Vec<String>>::new();
    for c in &calls {
        match &c.step {
            Some((stack, resource)) => {
                assert_eq!(stack, "network");
                by_step
                    .entry(resource.clone())
                    .or_default()
                    .push(c.operation.clone());
            }
            // Only the identity check runs outside a step.
            None => assert_eq!(c.operation, "GetCallerIdentity", "{c:?}"),
        }
    }
    assert_eq!(by_step["vpc"][0], "CreateVpc", "{by_step:?}");
    assert_eq!(by_step["internet-gateway"], ["CreateInternetGateway"]);
    assert_eq!(
        by_step["internet-gateway-attachment"],
        ["AttachInternetGateway"]
    );
    assert_eq!(by_step["public-subnet-0-route"], ["AssociateRouteTable"]);
    // The zone lookup is a step of its own, made while the VPC is; the subnet makes no lookup.
    assert_eq!(by_step["availability-zones"], ["DescribeAvailabilityZones"]);
    assert_eq!(by_step["public-subnet-0"][0], "CreateSubnet");
    assert_eq!(by_step.len(), 8, "{by_step:?}");
}

#[tokio::test]
async fn state_from_before_the_attachment_and_zone_lookup_were_resources_is_adopted_with_nothing_new()
 {
    let w = world().await;
    let stack = NetworkStack::new(NetworkConfig::default());
    let net = w.engine.up(&stack).await.unwrap();
    // The state an older build wrote: the gateway recorded with its VPC (it attached itself), no
    // attachment of its own.
    let store = w.engine.store();
    let mut state = store.read("network").await.unwrap().unwrap();
    state.resources.remove("internet-gateway-attachment");
    let gateway = state.resources.get_mut("internet-gateway").unwrap();
    gateway.inputs["vpc_id"] = serde_json::json!(net.vpc_id.as_str());
    // Nor the zone lookup: the subnet looked its zone up itself.
    state.resources.remove("availability-zones");
    let subnet = state.resources.get_mut("public-subnet-0").unwrap();
    subnet.inputs.as_object_mut().unwrap().remove("zone_names");
    let lock = store.lock("network", "test").await.unwrap();
    lock.write(&state).await.unwrap();
    lock.release().await.unwrap();

    // The gateway loses its VPC (no call), the attachment and the zone lookup are new, the route
    // table's route takes the gateway from the attachment and the subnet its zone names from the
    // lookup (known after apply: no call, nothing replaced).
    let plan = w.engine.preview(&stack).await.unwrap();
    let counts = plan.counts();
    assert_eq!(
        (counts.create, counts.update, counts.replace),
        (2, 3, 0),
        "{plan}"
    );
    w.cloud.clear();
    let again = w.engine.up(&stack).await.unwrap();
    assert_eq!(again.internet_gateway_id, net.internet_gateway_id);
    // The attach is refused (already attached to this VPC) and the attachment adopted.
    let mutating: Vec<String> = w
        .cloud
        .operations()
        .into_iter()
        .filter(|op| !op.starts_with("Describe"))
        .collect();
    assert_eq!(mutating, ["AttachInternetGateway"]);
    assert_eq!(again.public_subnet_ids, net.public_subnet_ids);
    let state = store.read("network").await.unwrap().unwrap();
    assert!(
        state.resources["internet-gateway-attachment"]
            .outputs
            .is_some()
    );
    assert!(
        state.resources["internet-gateway"]
            .inputs
            .get("vpc_id")
            .is_none()
    );
    assert!(!w.engine.preview(&stack).await.unwrap().has_changes());
    // And it is detached and deleted on destroy.
    w.engine.destroy::<NetworkStack>("network").await.unwrap();
    let left = w
        .ec2
        .describe_internet_gateways()
        .set_filters(Some(vec![stack_filter("network")]))
        .send()
        .await
        .unwrap();
    assert!(left.internet_gateways().is_empty());
}

#[tokio::test]
async fn a_gateway_detached_by_hand_is_seen_by_refresh_and_attached_again() {
    let mut w = world().await;
    // The attachment is detached seconds after it was made: refresh believes it gone only once the
    // settle window has passed (AWS may not show a new attachment yet), here 2 s, not 2 minutes.
    w.engine = Engine::builder(MemoryStateStore::new())
        .aws(w.cloud.config.clone())
        .settle_window(std::time::Duration::from_secs(2))
        .build();
    let stack = NetworkStack::new(NetworkConfig::default());
    let net = w.engine.up(&stack).await.unwrap();
    w.ec2
        .detach_internet_gateway()
        .internet_gateway_id(net.internet_gateway_id.as_str())
        .vpc_id(net.vpc_id.as_str())
        .send()
        .await
        .unwrap();
    let plan = w.engine.refresh(&stack).await.unwrap();
    assert_eq!(
        plan.step("internet-gateway-attachment")
            .unwrap()
            .action
            .kind(),
        ActionKind::Create,
        "{plan}"
    );
    w.engine.up(&stack).await.unwrap();
    assert_eq!(
        attached_vpc(&w, &net.internet_gateway_id).await.as_deref(),
        Some(net.vpc_id.as_str())
    );
}

/// A subnet associated with one of two route tables of a VPC: which one is the config.
struct TwoTables {
    second: bool,
}

impl platform_core::Stack for TwoTables {
    type Outputs = String;

    fn name(&self) -> &str {
        "two-tables"
    }

    fn register(registry: &mut platform_core::resource::Registry) {
        NetworkStack::register(registry);
    }

    fn declare(
        &self,
        s: &mut platform_core::Scope,
    ) -> Result<platform_core::stack::Declared<String>, platform_core::Error> {
        use network_stack::resources::{Az, RouteTable, RouteTableAssociation, Subnet, Vpc};
        use platform_core::Input;
        let vpc = s.add(
            "vpc",
            Vpc {
                cidr_block: "10.9.0.0/16".into(),
                enable_dns_support: true,
                enable_dns_hostnames: false,
                tags: Default::default(),
            },
        );
        let a = s.add("table-a", RouteTable::new(&vpc.vpc_id, vec![]));
        let b = s.add("table-b", RouteTable::new(&vpc.vpc_id, vec![]));
        let subnet = s.add(
            "subnet",
            Subnet {
                vpc_id: Input::from(&vpc.vpc_id),
                cidr_block: "10.9.1.0/24".into(),
                availability_zone: Az::Name("us-east-1a".into()),
                map_public_ip_on_launch: false,
                tags: Default::default(),
                zone_names: None,
            },
        );
        let table = if self.second { &b } else { &a };
        let assoc = s.add(
            "association",
            RouteTableAssociation {
                route_table_id: Input::from(&table.route_table_id),
                subnet_id: Input::from(&subnet.subnet_id),
            },
        );
        Ok(s.outputs(move |o| Ok(o.get(&assoc.association_id)?.to_string())))
    }
}

#[tokio::test]
async fn a_lost_answer_to_replace_route_table_association_is_settled_by_reading_not_resent() {
    let w = world().await;
    w.engine.up(&TwoTables { second: false }).await.unwrap();
    // AWS moves the subnet to table B and retires the association id; the answer is lost.
    w.cloud.proxy.add_rule(
        local_cloud::Rule::new(local_cloud::Fault::LoseResponse)
            .operation("ReplaceRouteTableAssociation")
            .times(1),
    );
    w.cloud.clear();
    let id = w.engine.up(&TwoTables { second: true }).await.unwrap();
    let replaces = w
        .cloud
        .operations()
        .iter()
        .filter(|o| *o == "ReplaceRouteTableAssociation")
        .count();
    assert_eq!(replaces, 1, "sent once: {:?}", w.cloud.operations());
    // The subnet is on table B under the id recorded, and the next run has nothing to do.
    let state = w.engine.store().read("two-tables").await.unwrap().unwrap();
    let table_b = state.resources["table-b"].outputs.as_ref().unwrap()["route_table_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let rt = w
        .ec2
        .describe_route_tables()
        .route_table_ids(&table_b)
        .send()
        .await
        .unwrap();
    let live: Vec<&str> = rt.route_tables()[0]
        .associations()
        .iter()
        .filter_map(|a| a.route_table_association_id())
        .collect();
    assert_eq!(live, [id.as_str()]);
    w.cloud.clear();
    w.engine.up(&TwoTables { second: true }).await.unwrap();
    assert!(
        w.cloud.mutating_calls().is_empty(),
        "{:?}",
        w.cloud.mutating_calls()
    );
    // A refresh reads the association under its live id.
    let report = w
        .engine
        .refresh_report(&TwoTables { second: true })
        .await
        .unwrap();
    assert!(report.drift.is_empty(), "{report:?}");
}

#[tokio::test]
async fn a_call_that_never_answers_times_out_and_its_create_is_settled_not_resent() {
    let cloud = TestCloud::start()
        .await
        .expect("an AWS emulator is required for this suite");
    let engine = || {
        Engine::builder(MemoryStateStore::new())
            .aws(cloud.config.clone())
            .call_timeouts(platform_core::engine::CallTimeouts::new(
                std::time::Duration::from_millis(500),
                std::time::Duration::from_secs(1),
            ))
            .settle_window(std::time::Duration::from_secs(2))
            .build()
    };
    let engine = engine();
    cloud.proxy.add_rule(
        local_cloud::Rule::new(local_cloud::Fault::Hang)
            .operation("CreateVpc")
            .times(1),
    );
    let stack = NetworkStack::new(NetworkConfig::default());
    let err = tokio::time::timeout(std::time::Duration::from_secs(30), engine.up(&stack))
        .await
        .expect("a hung call must not hold the run")
        .unwrap_err();
    assert!(err.to_string().contains("outcome unknown"), "{err}");
    let creates = |ops: Vec<String>| ops.iter().filter(|o| *o == "CreateVpc").count();
    assert_eq!(creates(cloud.operations()), 1, "not re-sent in the run");
    // The next run looks for it, finds nothing (it never reached EC2), and creates it once.
    let net = engine.up(&stack).await.unwrap();
    assert_eq!(creates(cloud.operations()), 2);
    let vpcs = Client::new(&cloud.config)
        .describe_vpcs()
        .filters(stack_filter("network"))
        .send()
        .await
        .unwrap();
    let ids: Vec<&str> = vpcs.vpcs().iter().filter_map(|v| v.vpc_id()).collect();
    assert_eq!(ids, [net.vpc_id.as_str()]);
}

#[tokio::test]
async fn a_destroy_waits_while_aws_refuses_deletes_for_an_interface_fargate_is_releasing() {
    let cloud = TestCloud::start()
        .await
        .expect("an AWS emulator is required for this suite");
    let progress = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = progress.clone();
    // Retries that give up within a second: the wait is the delete's own budget, not them.
    let engine = Engine::builder(MemoryStateStore::new())
        .aws(cloud.config.clone())
        .retry(platform_core::resource::RetryPolicy::new(
            3,
            std::time::Duration::from_millis(50),
            std::time::Duration::from_millis(500),
        ))
        .on_event(move |e| {
            if let platform_core::Event::Progress { message, .. } = e {
                seen.lock().unwrap().push(message.clone());
            }
        })
        .build();
    let stack = NetworkStack::new(NetworkConfig::default());
    engine.up(&stack).await.unwrap();
    let refused = std::time::Duration::from_secs(4);
    cloud.proxy.refuse_for("DeleteSubnet", refused);
    cloud.proxy.refuse_for("DeleteSecurityGroup", refused);
    let started = std::time::Instant::now();
    engine.destroy::<NetworkStack>("network").await.unwrap();
    assert!(started.elapsed() >= refused, "{:?}", started.elapsed());
    let progress = progress.lock().unwrap().clone();
    assert!(
        progress
            .iter()
            .any(|m| m.starts_with("DeleteSubnet: DependencyViolation; AWS may take minutes")),
        "{progress:?}"
    );
    let left = Client::new(&cloud.config)
        .describe_subnets()
        .filters(stack_filter("network"))
        .send()
        .await
        .unwrap();
    assert!(left.subnets().is_empty());
}

#[tokio::test]
async fn a_subnet_moved_to_another_zone_with_its_block_is_deleted_first_then_made_again() {
    let w = world().await;
    let before = w
        .engine
        .up(&NetworkStack::new(NetworkConfig::default()))
        .await
        .unwrap();
    // The same block in the second zone: EC2 refuses an overlapping block in the VPC
    // (InvalidSubnet.Conflict) while the old subnet exists.
    let moved = NetworkStack::new(
        NetworkConfig::default().with_public_subnets(vec![SubnetSpec::public("10.0.1.0/24", 1)]),
    );
    let plan = w.engine.preview(&moved).await.unwrap();
    let Action::Replace { delete_first, .. } = &plan.step("public-subnet-0").unwrap().action else {
        panic!("{plan}")
    };
    assert!(delete_first, "{plan}");
    assert!(
        plan.to_string()
            .contains("public-subnet-0 (ec2:subnet) (delete first)"),
        "{plan}"
    );
    w.cloud.clear();
    let after = w.engine.up(&moved).await.unwrap();
    let ops = w.cloud.mutating_calls();
    let position = |op: &str| ops.iter().position(|o| o == op).unwrap();
    assert!(
        position("DisassociateRouteTable") < position("DeleteSubnet")
            && position("DeleteSubnet") < position("CreateSubnet"),
        "{ops:?}"
    );
    assert_ne!(after.public_subnet_ids, before.public_subnet_ids);
    assert_eq!(after.availability_zones, ["us-east-1b"]);
    let ours = w
        .ec2
        .describe_subnets()
        .filters(stack_filter("network"))
        .send()
        .await
        .unwrap();
    let ids: Vec<&str> = ours
        .subnets()
        .iter()
        .filter_map(|s| s.subnet_id())
        .collect();
    assert_eq!(ids, [after.public_subnet_ids[0].as_str()]);
    assert!(!w.engine.preview(&moved).await.unwrap().has_changes());
}
