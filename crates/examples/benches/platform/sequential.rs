//! The baseline: the seed's resources created by a straightforward sequential program, one SDK call
//! after another, as a person would script it. Its calls are the minimum the AWS API requires for
//! these resources ([`MINIMUM`]); the benchmark checks it made exactly those.

use aws_sdk_ec2::types::{
    AttributeBooleanValue, IpPermission, IpRange, ResourceType, Tag, TagSpecification,
};
use aws_sdk_ecs::types::{
    AssignPublicIp, AwsVpcConfiguration, Compatibility, ContainerDefinition, LaunchType,
    LogConfiguration, LogDriver, NetworkConfiguration, NetworkMode, PortMapping,
};
use aws_types::SdkConfig;
use cluster_stack::ClusterConfig;
use iam_stack::IamConfig;
use iam_stack::policy::PolicyDocument;
use network_stack::NetworkConfig;

use crate::BenchResult;

/// Each call the seed's resources need, how many times, and why it cannot be avoided.
pub(crate) const MINIMUM: &[(&str, u64, &str)] = &[
    (
        "GetCallerIdentity",
        1,
        "the account id, which the least-privilege policies name",
    ),
    (
        "CreateRole",
        3,
        "one per role (cluster, instance, frontend)",
    ),
    ("CreatePolicy", 3, "one managed policy per role"),
    ("AttachRolePolicy", 3, "each policy to its role"),
    (
        "CreateInstanceProfile",
        1,
        "the container instances' profile",
    ),
    (
        "AddRoleToInstanceProfile",
        1,
        "a profile is created empty; its role is a second call",
    ),
    (
        "CreateVpc",
        1,
        "the VPC, its Name tag in the same call (TagSpecifications)",
    ),
    (
        "ModifyVpcAttribute",
        1,
        "DNS hostnames (DNS support is on in a new VPC); EC2 takes one attribute per call",
    ),
    (
        "DescribeAvailabilityZones",
        1,
        "the region's first zone, for the subnet",
    ),
    ("CreateSubnet", 1, "the public subnet"),
    (
        "ModifySubnetAttribute",
        1,
        "public IPs on launch cannot be set by CreateSubnet",
    ),
    ("CreateInternetGateway", 1, "the gateway"),
    ("AttachInternetGateway", 1, "a gateway is created detached"),
    ("CreateRouteTable", 1, "the public route table"),
    ("CreateRoute", 1, "0.0.0.0/0 to the gateway"),
    ("AssociateRouteTable", 1, "the subnet to the route table"),
    (
        "CreateSecurityGroup",
        1,
        "the service's group (all egress is its default)",
    ),
    ("AuthorizeSecurityGroupIngress", 1, "TCP 80 from anywhere"),
    ("CreateLogGroup", 1, "the frontend's log group"),
    (
        "PutRetentionPolicy",
        1,
        "retention cannot be set by CreateLogGroup",
    ),
    ("CreateCluster", 1, "the ECS cluster"),
    ("RegisterTaskDefinition", 1, "the Fargate task definition"),
    ("CreateService", 1, "the service"),
    (
        "DescribeServices",
        1,
        "to know the service is steady, which `up` promises",
    ),
];

/// The total of [`MINIMUM`].
pub(crate) fn minimum_total() -> u64 {
    MINIMUM.iter().map(|(_, n, _)| n).sum()
}

fn name_tag(kind: ResourceType, name: &str) -> TagSpecification {
    TagSpecification::builder()
        .resource_type(kind)
        .tags(Tag::builder().key("Name").value(name).build())
        .build()
}

fn on() -> AttributeBooleanValue {
    AttributeBooleanValue::builder().value(true).build()
}

fn missing(what: &str) -> Box<dyn std::error::Error + Send + Sync> {
    format!("the answer has no {what}").into()
}

/// Creates the seed's resources in `config`'s account, one call after another.
pub(crate) async fn deploy(config: &SdkConfig) -> BenchResult<()> {
    let sts = aws_sdk_sts::Client::new(config);
    let iam = aws_sdk_iam::Client::new(config);
    let ec2 = aws_sdk_ec2::Client::new(config);
    let logs = aws_sdk_cloudwatchlogs::Client::new(config);
    let ecs = aws_sdk_ecs::Client::new(config);
    let region = config
        .region()
        .map(ToString::to_string)
        .ok_or_else(|| missing("region"))?;

    // IAM: three roles, each with its policy, and the instance profile.
    let identity = sts.get_caller_identity().send().await?;
    let account = identity.account().ok_or_else(|| missing("account"))?;
    let mut c = IamConfig::default();
    c.account_id = Some(account.to_owned());
    c.region = Some(region.clone());
    let scope = c.scope();
    let p = &c.name_prefix;
    let mut role_arns = Vec::new();
    for (key, service, policy) in [
        ("cluster", "ecs.amazonaws.com", scope.cluster_policy()),
        ("instance", "ec2.amazonaws.com", scope.instance_policy()),
        (
            "frontend",
            "ecs-tasks.amazonaws.com",
            scope.service_policy(c.service("frontend").ok_or_else(|| missing("frontend"))?),
        ),
    ] {
        let role = format!("{p}-{key}-role");
        let created = iam
            .create_role()
            .role_name(&role)
            .assume_role_policy_document(PolicyDocument::trust(service).to_json())
            .send()
            .await?;
        role_arns.push(
            created
                .role()
                .map(|r| r.arn().to_owned())
                .ok_or_else(|| missing("role"))?,
        );
        let created = iam
            .create_policy()
            .policy_name(format!("{p}-{key}-policy"))
            .policy_document(policy.to_json())
            .send()
            .await?;
        let arn = created
            .policy()
            .and_then(|p| p.arn())
            .ok_or_else(|| missing("policy ARN"))?;
        iam.attach_role_policy()
            .role_name(&role)
            .policy_arn(arn)
            .send()
            .await?;
    }
    let profile = format!("{p}-instance-profile");
    iam.create_instance_profile()
        .instance_profile_name(&profile)
        .send()
        .await?;
    iam.add_role_to_instance_profile()
        .instance_profile_name(&profile)
        .role_name(format!("{p}-instance-role"))
        .send()
        .await?;

    // Network: VPC, subnet, gateway, routes, security group.
    let n = NetworkConfig::default();
    let p = &n.name_prefix;
    let vpc = ec2
        .create_vpc()
        .cidr_block(&n.vpc_cidr)
        .tag_specifications(name_tag(ResourceType::Vpc, &format!("{p}-vpc")))
        .send()
        .await?;
    let vpc = vpc
        .vpc()
        .and_then(|v| v.vpc_id())
        .ok_or_else(|| missing("VPC id"))?
        .to_owned();
    // DNS support is on in a new VPC: only hostnames need a call.
    ec2.modify_vpc_attribute()
        .vpc_id(&vpc)
        .enable_dns_hostnames(on())
        .send()
        .await?;
    let zones = ec2.describe_availability_zones().send().await?;
    let zone = zones
        .availability_zones()
        .first()
        .and_then(|z| z.zone_name())
        .ok_or_else(|| missing("zone"))?;
    let subnet = ec2
        .create_subnet()
        .vpc_id(&vpc)
        .cidr_block(&n.public_subnets[0].cidr)
        .availability_zone(zone)
        .tag_specifications(name_tag(ResourceType::Subnet, &format!("{p}-public-0")))
        .send()
        .await?;
    let subnet = subnet
        .subnet()
        .and_then(|s| s.subnet_id())
        .ok_or_else(|| missing("subnet id"))?
        .to_owned();
    ec2.modify_subnet_attribute()
        .subnet_id(&subnet)
        .map_public_ip_on_launch(on())
        .send()
        .await?;
    let igw = ec2
        .create_internet_gateway()
        .tag_specifications(name_tag(ResourceType::InternetGateway, &format!("{p}-igw")))
        .send()
        .await?;
    let igw = igw
        .internet_gateway()
        .and_then(|g| g.internet_gateway_id())
        .ok_or_else(|| missing("gateway id"))?
        .to_owned();
    ec2.attach_internet_gateway()
        .internet_gateway_id(&igw)
        .vpc_id(&vpc)
        .send()
        .await?;
    let rt = ec2
        .create_route_table()
        .vpc_id(&vpc)
        .tag_specifications(name_tag(
            ResourceType::RouteTable,
            &format!("{p}-public-rt"),
        ))
        .send()
        .await?;
    let rt = rt
        .route_table()
        .and_then(|r| r.route_table_id())
        .ok_or_else(|| missing("route table id"))?
        .to_owned();
    ec2.create_route()
        .route_table_id(&rt)
        .destination_cidr_block("0.0.0.0/0")
        .gateway_id(&igw)
        .send()
        .await?;
    ec2.associate_route_table()
        .route_table_id(&rt)
        .subnet_id(&subnet)
        .send()
        .await?;
    let sg = ec2
        .create_security_group()
        .group_name(format!("{p}-service"))
        .description("ECS services: HTTP in, all out")
        .vpc_id(&vpc)
        .tag_specifications(name_tag(
            ResourceType::SecurityGroup,
            &format!("{p}-service-sg"),
        ))
        .send()
        .await?;
    let sg = sg.group_id().ok_or_else(|| missing("group id"))?.to_owned();
    ec2.authorize_security_group_ingress()
        .group_id(&sg)
        .ip_permissions(
            IpPermission::builder()
                .ip_protocol("tcp")
                .from_port(80)
                .to_port(80)
                .ip_ranges(IpRange::builder().cidr_ip("0.0.0.0/0").build())
                .build(),
        )
        .send()
        .await?;

    // Cluster: log group, cluster, task definition, service.
    let cluster = ClusterConfig::default();
    let k = &cluster.services[0];
    logs.create_log_group()
        .log_group_name(&k.log_group)
        .send()
        .await?;
    logs.put_retention_policy()
        .log_group_name(&k.log_group)
        .retention_in_days(k.log_retention_days.unwrap_or(30))
        .send()
        .await?;
    let cluster = ecs
        .create_cluster()
        .cluster_name(&cluster.cluster_name)
        .send()
        .await?;
    let cluster = cluster
        .cluster()
        .and_then(|c| c.cluster_arn())
        .ok_or_else(|| missing("cluster ARN"))?
        .to_owned();
    let frontend_role = &role_arns[2];
    let task = ecs
        .register_task_definition()
        .family(&k.family)
        .requires_compatibilities(Compatibility::Fargate)
        .network_mode(NetworkMode::Awsvpc)
        .cpu(k.cpu.to_string())
        .memory(k.memory.to_string())
        .execution_role_arn(frontend_role)
        .task_role_arn(frontend_role)
        .container_definitions(
            ContainerDefinition::builder()
                .name(&k.container_name)
                .image(&k.image)
                .essential(true)
                .port_mappings(
                    PortMapping::builder()
                        .container_port(i32::from(k.container_port))
                        .build(),
                )
                .log_configuration(
                    LogConfiguration::builder()
                        .log_driver(LogDriver::Awslogs)
                        .options("awslogs-group", &k.log_group)
                        .options("awslogs-region", &region)
                        .options("awslogs-stream-prefix", &k.container_name)
                        .build()?,
                )
                .build(),
        )
        .send()
        .await?;
    let task = task
        .task_definition()
        .and_then(|t| t.task_definition_arn())
        .ok_or_else(|| missing("task definition ARN"))?
        .to_owned();
    ecs.create_service()
        .cluster(&cluster)
        .service_name(&k.service_name)
        .task_definition(&task)
        .desired_count(k.desired_count)
        .launch_type(LaunchType::Fargate)
        .network_configuration(
            NetworkConfiguration::builder()
                .awsvpc_configuration(
                    AwsVpcConfiguration::builder()
                        .subnets(&subnet)
                        .security_groups(&sg)
                        .assign_public_ip(AssignPublicIp::Enabled)
                        .build()?,
                )
                .build(),
        )
        .send()
        .await?;
    let described = ecs
        .describe_services()
        .cluster(&cluster)
        .services(&k.service_name)
        .send()
        .await?;
    let steady = described
        .services()
        .first()
        .is_some_and(|s| s.running_count() == s.desired_count());
    if steady {
        Ok(())
    } else {
        Err("the sequential program's service is not steady after its create".into())
    }
}
