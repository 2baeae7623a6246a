//! # cluster-stack
//!
//! The application layer of the production ECS platform: the ECS cluster `my-ecs-cluster`, the
//! frontend's log group, a Fargate task definition running `nginx:latest` on port 80, and the service
//! that keeps it running in the network's public subnets. It is built on the two other stacks'
//! typed outputs: [`IamOutputs`] (the roles) and [`NetworkOutputs`] (subnets, security group).
//!
//! Three ways to wire the stacks, all typed: the two below, and [`ClusterStack::linked`] on the
//! other stacks' [`IamExports`] / [`NetworkExports`], to apply all three as one graph in a
//! [`StackGroup`](platform_core::StackGroup) (what `examples::Platform` does):
//!
//! ```no_run
//! use cluster_stack::{ClusterConfig, ClusterStack};
//! use iam_stack::{IamConfig, IamStack};
//! use network_stack::{NetworkConfig, NetworkStack};
//! use platform_core::{Engine, LocalStateStore};
//! # async fn run(aws: aws_types::SdkConfig) -> Result<(), platform_core::Error> {
//! let engine = Engine::builder(LocalStateStore::open(".platform/state")?).aws(aws).build();
//!
//! // In one process: apply IAM and network, hand their outputs (and who produced them) to the
//! // cluster.
//! let o = platform_core::UpOptions::default();
//! let iam = engine.up_with(&IamStack::new(IamConfig::default()), o.clone()).await?.produced();
//! let net = engine.up_with(&NetworkStack::new(NetworkConfig::default()), o).await?.produced();
//! let cluster = engine.up(&ClusterStack::new(ClusterConfig::default(), &iam, &net)).await?;
//! println!("service {} on {}", cluster.service_arn, cluster.cluster_arn);
//!
//! // Across processes and teams: read the two stacks' recorded outputs from the state store
//! // (refused when they were applied to another account or region).
//! let here = engine.identity().await?;
//! let stack = ClusterStack::from_state(ClusterConfig::default(), engine.store(), &here).await?;
//! engine.up(&stack).await?;
//! # Ok(()) }
//! ```
//!
//! Both references are typed: outputs of the wrong stack, or a missing one, do not compile.
//!
//! ```compile_fail,E0308
//! # use cluster_stack::{ClusterConfig, ClusterStack};
//! # use platform_core::stack::Produced;
//! # fn f(iam: Produced<iam_stack::IamOutputs>, net: Produced<network_stack::NetworkOutputs>) {
//! // The network's outputs where the IAM stack's belong:
//! let stack = ClusterStack::new(ClusterConfig::default(), &net, &iam);
//! # }
//! ```
//!
//! ```compile_fail,E0061
//! # use cluster_stack::{ClusterConfig, ClusterStack};
//! # fn f(iam: platform_core::stack::Produced<iam_stack::IamOutputs>) {
//! // The network's outputs forgotten:
//! let stack = ClusterStack::new(ClusterConfig::default(), &iam);
//! # }
//! ```
//!
//! ```compile_fail,E0308
//! # use cluster_stack::ClusterStack;
//! # async fn f(store: &dyn platform_core::StateStore, me: &platform_core::ProviderInfo) {
//! // A stack reference read as the wrong stack's outputs:
//! let net: network_stack::NetworkOutputs =
//!     platform_core::StackRef::<iam_stack::IamStack>::new("iam").read(store, me).await.unwrap().outputs;
//! # }
//! ```

mod aws;
mod balancer;
mod elb;
mod ids;
pub mod resources;
mod service_config;
pub mod validate;

use std::collections::BTreeMap;
use std::time::Duration;

use iam_stack::{IamExports, IamOutputs, IamStack, RoleArn};
use network_stack::{
    NetworkExports, NetworkOutputs, NetworkStack, SecurityGroupId, SubnetId, VpcId,
};
use platform_core::{
    Error, Handle, Input, ProviderInfo, Scope, Stack, StackRef, StateStore, ValidationError,
    resource::Registry, stack::Declared, stack::Produced, state::Producer,
};
use serde::{Deserialize, Serialize};

pub use balancer::{LoadBalancerConfig, Route};
pub use ids::{
    ClusterArn, ListenerArn, ListenerRuleArn, LoadBalancerArn, LogGroupArn, ServiceArn,
    TargetGroupArn, TaskDefinitionArn,
};
use resources::{
    Cluster, Container, LogGroup, Service, ServiceScaling, ServiceTarget, TaskDefinition,
};
pub use resources::{ContainerInsights, Deployment, HealthCheck, Launch};
pub use service_config::{Autoscaling, ServiceConfig};

/// The cluster stack's typed config. `Default` reproduces the seed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClusterConfig {
    /// The stack's name in the state store (default `cluster`).
    pub stack_name: String,
    /// The IAM stack it references (default `iam`).
    pub iam_stack: String,
    /// The network stack it references (default `network`).
    pub network_stack: String,
    /// The ECS cluster's name (default `my-ecs-cluster`).
    pub cluster_name: String,
    /// Container Insights (default disabled).
    pub container_insights: ContainerInsights,
    /// The ECS services it runs, each with its own task definition, log group and role (default:
    /// the seed's [`frontend`](ServiceConfig::frontend)); at least one.
    pub services: Vec<ServiceConfig>,
    /// Fargate (default) or EC2.
    pub launch: Launch,
    /// Public IPs for the tasks (default on: the seed's subnets are public, without NAT).
    pub assign_public_ip: bool,
    /// Wait for the deployment a change starts to complete, at most this long (default 10 minutes);
    /// `None` returns as soon as ECS accepted the change. A deployment ECS marks failed or rolls back
    /// fails the run at once, whatever the timeout.
    pub steady_state_timeout: Option<Duration>,
    /// How deployments roll out: circuit breaker with rollback on, 100% / 200% (the default).
    pub deployment: Deployment,
    /// An Application Load Balancer in front of the services that have a
    /// [`route`](ServiceConfig::route) (default none). Needs the network's balancer security group
    /// ([`network_stack::BalancerAccess`]) and public subnets in two zones or more.
    pub load_balancer: Option<LoadBalancerConfig>,
    /// Tags on every resource, besides the engine's own.
    pub tags: BTreeMap<String, String>,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            stack_name: "cluster".into(),
            iam_stack: "iam".into(),
            network_stack: "network".into(),
            cluster_name: "my-ecs-cluster".into(),
            container_insights: ContainerInsights::Disabled,
            services: vec![ServiceConfig::frontend()],
            launch: Launch::Fargate,
            assign_public_ip: true,
            steady_state_timeout: Some(Duration::from_secs(600)),
            deployment: Deployment::default(),
            load_balancer: None,
            tags: BTreeMap::new(),
        }
    }
}

impl ClusterConfig {
    /// The image the first service (the seed's frontend) runs.
    #[must_use]
    pub fn with_image(mut self, image: &str) -> Self {
        self.first().image = image.to_owned();
        self
    }

    /// How many tasks the first service runs.
    #[must_use]
    pub fn with_desired_count(mut self, n: i32) -> Self {
        self.first().desired_count = n;
        self
    }

    /// The first service's task size.
    #[must_use]
    pub fn with_size(mut self, cpu: u32, memory: u32) -> Self {
        let first = self.first();
        first.cpu = cpu;
        first.memory = memory;
        self
    }

    /// The services the cluster runs (instead of the seed's frontend).
    #[must_use]
    pub fn with_services(mut self, services: impl IntoIterator<Item = ServiceConfig>) -> Self {
        self.services = services.into_iter().collect();
        self
    }

    /// The service called `name`.
    pub fn service(&self, name: &str) -> Option<&ServiceConfig> {
        self.services.iter().find(|s| s.name == name)
    }

    fn first(&mut self) -> &mut ServiceConfig {
        if self.services.is_empty() {
            self.services.push(ServiceConfig::frontend());
        }
        &mut self.services[0]
    }

    /// The first service's log retention in days (`None`: forever).
    #[must_use]
    pub fn with_log_retention(mut self, days: Option<i32>) -> Self {
        self.first().log_retention_days = days;
        self
    }

    /// Container Insights.
    #[must_use]
    pub fn with_container_insights(mut self, insights: ContainerInsights) -> Self {
        self.container_insights = insights;
        self
    }

    /// How long to wait for steady state (`None`: do not wait).
    #[must_use]
    pub fn with_steady_state_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.steady_state_timeout = timeout;
        self
    }

    /// ECS's deployment circuit breaker, and whether it rolls a failed deployment back.
    #[must_use]
    pub fn with_circuit_breaker(mut self, enable: bool, rollback: bool) -> Self {
        self.deployment.circuit_breaker = enable;
        self.deployment.rollback = rollback;
        self
    }

    /// The minimum healthy and maximum percent of the desired count during a deployment.
    #[must_use]
    pub fn with_healthy_percent(mut self, minimum: i32, maximum: i32) -> Self {
        self.deployment.minimum_healthy_percent = minimum;
        self.deployment.maximum_percent = maximum;
        self
    }

    /// Fargate or EC2.
    #[must_use]
    pub fn with_launch(mut self, launch: Launch) -> Self {
        self.launch = launch;
        self
    }

    /// A tag on every resource.
    #[must_use]
    pub fn with_tag(mut self, key: &str, value: &str) -> Self {
        self.tags.insert(key.to_owned(), value.to_owned());
        self
    }

    /// Checks the config before any AWS call.
    ///
    /// # Errors
    /// The first problem, naming the field and the value.
    pub fn validate(&self) -> Result<(), ValidationError> {
        for (field, v) in [
            ("stack_name", &self.stack_name),
            ("iam_stack", &self.iam_stack),
            ("network_stack", &self.network_stack),
            ("cluster_name", &self.cluster_name),
        ] {
            validate::ecs_name(field, v)?;
        }
        if self.services.is_empty() {
            return Err(ValidationError::new(
                "services",
                "[]",
                "a cluster runs at least one service",
            ));
        }
        for (i, service) in self.services.iter().enumerate() {
            let field = format!("services[{i}]");
            service.validate(&field)?;
            // Names each service must have to itself: in state, in ECS and in CloudWatch Logs.
            let earlier = &self.services[..i];
            for (k, (key, value)) in service.unique_names().into_iter().enumerate() {
                if earlier.iter().any(|e| e.unique_names()[k].1 == value) {
                    return Err(ValidationError::new(
                        format!("{field}.{key}"),
                        value,
                        "another service has this name",
                    ));
                }
            }
        }
        if self.steady_state_timeout == Some(Duration::ZERO) {
            return Err(ValidationError::new(
                "steady_state_timeout",
                "0s",
                "use None to not wait",
            ));
        }
        self.deployment.validate("deployment")?;
        match &self.load_balancer {
            Some(lb) => {
                if let Some(name) = &lb.name {
                    elb::validate_name("load_balancer.name", name)?;
                }
                resources::Listener::validate_certificate(
                    "load_balancer.certificate_arn",
                    lb.certificate_arn.as_deref(),
                )?;
                elb::validate_idle_timeout(
                    "load_balancer.idle_timeout_secs",
                    lb.idle_timeout_secs,
                )?;
                elb::validate_deregistration_delay(
                    "load_balancer.deregistration_delay_secs",
                    lb.deregistration_delay_secs,
                )?;
            }
            None => {
                if let Some((i, _)) = self
                    .services
                    .iter()
                    .enumerate()
                    .find(|(_, s)| s.route.is_some())
                {
                    return Err(ValidationError::new(
                        format!("services[{i}].path"),
                        "set",
                        "a route needs the cluster's load balancer: add [load_balancer]",
                    ));
                }
            }
        }
        validate::tags("tags", &self.tags)
    }

    /// The load balancer in front of the routed services.
    #[must_use]
    pub fn with_load_balancer(mut self, lb: Option<LoadBalancerConfig>) -> Self {
        self.load_balancer = lb;
        self
    }
}

/// What the cluster stack gives its users, recorded in state.
///
/// ```no_run
/// # async fn f(store: &dyn platform_core::StateStore, here: &platform_core::ProviderInfo) -> Result<(), platform_core::Error> {
/// use cluster_stack::{ClusterOutputs, ClusterStack};
/// let c = platform_core::StackRef::<ClusterStack>::new("cluster").read(store, here).await?;
/// println!("{} runs {}", c.service_name, c.task_definition_arn);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterOutputs {
    /// The cluster's name.
    pub cluster_name: String,
    /// The cluster's ARN.
    pub cluster_arn: ClusterArn,
    /// The first service's name (the seed's `frontend-service`).
    pub service_name: String,
    /// The first service's ARN.
    pub service_arn: ServiceArn,
    /// The first service's task definition family.
    pub task_definition_family: String,
    /// The revision the first service runs.
    pub task_definition_arn: TaskDefinitionArn,
    /// The first service's log group.
    pub log_group_name: String,
    /// Every service, by its short name (`frontend`).
    #[serde(default)]
    pub services: BTreeMap<String, ServiceOutputs>,
    /// The load balancer's DNS name, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer_dns_name: Option<String>,
}

/// One service's outputs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceOutputs {
    /// The ECS service's name.
    pub service_name: String,
    /// Its ARN.
    pub service_arn: ServiceArn,
    /// Its task definition's family.
    pub task_definition_family: String,
    /// The revision it runs.
    pub task_definition_arn: TaskDefinitionArn,
    /// Its log group.
    pub log_group_name: String,
    /// Where users reach it through the load balancer (`http://DNS/api/`), when it has a route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// The cluster stack: its config and what it takes from the two stacks it builds on.
#[derive(Clone, Debug)]
pub struct ClusterStack {
    config: ClusterConfig,
    wiring: Wiring,
    /// Who produced the outputs it was built from (none when linked in a group).
    producers: Vec<Producer>,
}

/// What the cluster takes from the IAM and network stacks: their values, or references to their
/// resources.
#[derive(Clone, Debug)]
struct Wiring {
    /// Each service's role (its task role and execution role), by service name.
    roles: BTreeMap<String, Input<RoleArn>>,
    subnets: Vec<Input<SubnetId>>,
    security_group: Input<SecurityGroupId>,
    vpc: Input<VpcId>,
    /// The network's load balancer group, when it has one.
    balancer_security_group: Option<Input<SecurityGroupId>>,
}

impl ClusterStack {
    /// The stack for `config` on the given IAM and network outputs: from
    /// [`UpReport::produced`](platform_core::UpReport::produced) in this process, or
    /// [`StackRef::read`] from the state store. `config.iam_stack` and `config.network_stack` are
    /// the producers' names, so that the stacks this one references are the ones it was built from;
    /// the engine refuses producers applied to another account or region, and records them.
    pub fn new(
        mut config: ClusterConfig,
        iam: &Produced<IamOutputs>,
        network: &Produced<NetworkOutputs>,
    ) -> Self {
        config.iam_stack.clone_from(&iam.producer.stack);
        config.network_stack.clone_from(&network.producer.stack);
        Self {
            config,
            producers: vec![iam.producer.clone(), network.producer.clone()],
            wiring: Wiring {
                roles: iam
                    .services
                    .iter()
                    .map(|(name, s)| (name.clone(), Input::Value(s.role.arn.clone())))
                    .collect(),
                subnets: network
                    .public_subnet_ids
                    .iter()
                    .cloned()
                    .map(Input::Value)
                    .collect(),
                security_group: Input::Value(network.security_group_id.clone()),
                vpc: Input::Value(network.vpc_id.clone()),
                balancer_security_group: network
                    .balancer_security_group_id
                    .clone()
                    .map(Input::Value),
            },
        }
    }

    /// The stack for `config` on references to the IAM and network stacks' resources, to apply
    /// the three together in a [`StackGroup`](platform_core::StackGroup): the task definition
    /// starts as soon as the frontend role exists, the service as soon as its subnets and security
    /// group do. `config.iam_stack` and `config.network_stack` are taken from the exports.
    ///
    /// ```no_run
    /// use cluster_stack::{ClusterConfig, ClusterStack};
    /// use iam_stack::{IamConfig, IamStack};
    /// use network_stack::{NetworkConfig, NetworkStack};
    /// use platform_core::{Engine, UpOptions};
    /// # async fn run(engine: Engine) -> Result<(), platform_core::Error> {
    /// let iam = IamStack::new(IamConfig::default().bound_to(&engine.identity().await?));
    /// let net = NetworkStack::new(NetworkConfig::default());
    /// let cluster = ClusterStack::linked(ClusterConfig::default(), &iam.exports(), &net.exports());
    /// let group = engine.group(["iam", "network", "cluster"]);
    /// let o = UpOptions::default();
    /// let (i, n, c) = tokio::join!(group.up(&iam, o.clone()), group.up(&net, o.clone()), group.up(&cluster, o));
    /// println!("service {}", c?.outputs.service_arn);
    /// # i?; n?; Ok(()) }
    /// ```
    pub fn linked(mut config: ClusterConfig, iam: &IamExports, network: &NetworkExports) -> Self {
        config.iam_stack.clone_from(&iam.stack);
        config.network_stack.clone_from(&network.stack);
        Self {
            config,
            producers: Vec::new(),
            wiring: Wiring {
                roles: iam
                    .service_roles
                    .iter()
                    .map(|(name, arn)| (name.clone(), Input::from(arn)))
                    .collect(),
                subnets: network.public_subnet_ids.iter().map(Input::from).collect(),
                security_group: Input::from(&network.security_group_id),
                vpc: Input::from(&network.vpc_id),
                balancer_security_group: network
                    .balancer_security_group_id
                    .as_ref()
                    .map(Input::from),
            },
        }
    }

    /// The stack for `config` on the IAM and network outputs recorded in `store` under
    /// `config.iam_stack` and `config.network_stack` (applied elsewhere, by another process or team).
    ///
    /// # Errors
    /// [`Error::StackNotFound`] when either has no outputs yet; [`Error::ForeignOutputs`] when
    /// either was applied to another account or region than `here`; [`Error::IncompatibleOutputs`]
    /// when the recorded outputs are not the expected stack's.
    pub async fn from_state(
        config: ClusterConfig,
        store: &dyn StateStore,
        here: &ProviderInfo,
    ) -> Result<Self, Error> {
        let iam = StackRef::<IamStack>::new(config.iam_stack.clone())
            .read(store, here)
            .await?;
        let network = StackRef::<NetworkStack>::new(config.network_stack.clone())
            .read(store, here)
            .await?;
        Ok(Self::new(config, &iam, &network))
    }

    /// Its config.
    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }
}

impl Stack for ClusterStack {
    type Outputs = ClusterOutputs;

    fn name(&self) -> &str {
        &self.config.stack_name
    }

    fn register(registry: &mut Registry) {
        registry
            .add::<LogGroup>()
            .add::<Cluster>()
            .add::<TaskDefinition>()
            .add::<Service>()
            .add::<ServiceScaling>()
            .add::<resources::LoadBalancer>()
            .add::<resources::Listener>()
            .add::<resources::TargetGroup>()
            .add::<resources::ListenerRule>();
    }

    fn references(&self) -> Vec<String> {
        vec![
            self.config.iam_stack.clone(),
            self.config.network_stack.clone(),
        ]
    }

    fn producers(&self) -> Vec<Producer> {
        self.producers.clone()
    }

    fn declare(&self, s: &mut Scope) -> Result<Declared<ClusterOutputs>, Error> {
        let c = &self.config;
        c.validate()
            .map_err(|source| Error::invalid_config(&c.stack_name, source))?;
        let cluster = s.add(
            "cluster",
            Cluster {
                name: c.cluster_name.clone(),
                container_insights: c.container_insights,
                tags: c.tags.clone(),
            },
        );
        let balancer = match &c.load_balancer {
            Some(lb) => Some(
                self.declare_balancer(s, lb)
                    .map_err(|e| Error::invalid_config(&c.stack_name, e))?,
            ),
            None => None,
        };
        let mut services = Vec::new();
        for (i, svc) in c.services.iter().enumerate() {
            let Some(role) = self.wiring.roles.get(&svc.name) else {
                return Err(Error::invalid_config(
                    &c.stack_name,
                    ValidationError::new(
                        format!("services[{i}].name"),
                        &svc.name,
                        format!(
                            "the IAM stack `{}` makes no role for this service (add it to its services)",
                            c.iam_stack
                        ),
                    ),
                ));
            };
            services.push((
                svc.name.clone(),
                self.declare_service(
                    s,
                    svc,
                    &cluster,
                    role,
                    balancer.as_ref().and_then(|b| b.rules.get(&svc.name)),
                ),
            ));
        }
        let routes: BTreeMap<String, Route> = c
            .services
            .iter()
            .filter_map(|s| Some((s.name.clone(), s.route.clone()?)))
            .collect();
        Ok(s.outputs(move |o| {
            let dns = match &balancer {
                Some(b) => Some((b.scheme, o.get(&b.balancer.dns_name)?)),
                None => None,
            };
            let mut all = BTreeMap::new();
            for (name, (logs, task, service)) in &services {
                let outputs = ServiceOutputs {
                    service_name: o.get(&service.name)?,
                    service_arn: o.get(&service.arn)?,
                    task_definition_family: o.get(&task.family)?,
                    task_definition_arn: o.get(&task.arn)?,
                    log_group_name: o.get(&logs.name)?,
                    url: match (&dns, routes.get(name)) {
                        (Some((scheme, dns)), Some(route)) => Some(route.url(scheme, dns)),
                        _ => None,
                    },
                };
                all.insert(name.clone(), outputs);
            }
            let first = all[&services[0].0].clone();
            Ok(ClusterOutputs {
                cluster_name: o.get(&cluster.name)?,
                cluster_arn: o.get(&cluster.arn)?,
                service_name: first.service_name,
                service_arn: first.service_arn,
                task_definition_family: first.task_definition_family,
                task_definition_arn: first.task_definition_arn,
                log_group_name: first.log_group_name,
                services: all,
                load_balancer_dns_name: dns.map(|(_, d)| d),
            })
        }))
    }
}

/// A service's three resources, as declared.
type ServiceHandles = (Handle<LogGroup>, Handle<TaskDefinition>, Handle<Service>);

impl ClusterStack {
    /// The load balancer, its listeners, and each routed service's target group and rule.
    fn declare_balancer(
        &self,
        s: &mut Scope,
        lb: &LoadBalancerConfig,
    ) -> Result<balancer::Declared, ValidationError> {
        let c = &self.config;
        let refuse =
            |value: String, reason: String| ValidationError::new("load_balancer", value, reason);
        let Some(group) = &self.wiring.balancer_security_group else {
            return Err(refuse(
                "set".into(),
                format!(
                    "the network stack `{}` has no load balancer security group (set its balancer)",
                    c.network_stack
                ),
            ));
        };
        if self.wiring.subnets.len() < 2 {
            return Err(refuse(
                format!("{} public subnet(s)", self.wiring.subnets.len()),
                "an Application Load Balancer needs public subnets in at least two zones".into(),
            ));
        }
        let at = balancer::Placement {
            vpc: &self.wiring.vpc,
            subnets: &self.wiring.subnets,
            security_group: group,
            cluster_name: &c.cluster_name,
            tags: &c.tags,
        };
        Ok(balancer::declare(s, lb, &at, &c.services))
    }

    /// Service `svc`'s log group, task definition and ECS service in `cluster`, running as `role`,
    /// registered through `rule` in its target group when it is behind the balancer.
    fn declare_service(
        &self,
        s: &mut Scope,
        svc: &ServiceConfig,
        cluster: &Handle<Cluster>,
        role: &Input<RoleArn>,
        rule: Option<&Handle<resources::ListenerRule>>,
    ) -> ServiceHandles {
        let c = &self.config;
        let logs = s.add(
            svc.key("log-group"),
            LogGroup {
                name: svc.log_group.clone(),
                retention_days: svc.log_retention_days,
                tags: c.tags.clone(),
            },
        );
        let task = s.add(
            svc.key("task-definition"),
            TaskDefinition {
                family: svc.family.clone(),
                cpu: svc.cpu,
                memory: svc.memory,
                execution_role_arn: role.clone(),
                task_role_arn: role.clone(),
                containers: vec![Container {
                    name: svc.container_name.clone(),
                    image: svc.image.clone(),
                    port: svc.container_port,
                    environment: svc.environment.clone(),
                    log_group: Input::from(&logs.name),
                    log_stream_prefix: svc.container_name.clone(),
                    secrets: svc.secrets.clone(),
                    health_check: svc.health_check.clone(),
                }],
                tags: c.tags.clone(),
            },
        );
        let service = s.add(
            svc.key("service"),
            Service {
                name: svc.service_name.clone(),
                cluster: Input::from(&cluster.arn),
                task_definition: Input::from(&task.arn),
                desired_count: svc.initial_count(),
                scaled: svc.autoscaling.is_some(),
                launch: c.launch,
                subnets: self.wiring.subnets.clone(),
                security_groups: vec![self.wiring.security_group.clone()],
                assign_public_ip: c.assign_public_ip,
                steady_state_timeout_secs: c.steady_state_timeout.map(|d| d.as_secs().max(1)),
                deployment: Some(c.deployment),
                load_balancers: rule
                    .map(|r| ServiceTarget {
                        target_group_arn: Input::from(&r.target_group_arn),
                        container_name: svc.container_name.clone(),
                        container_port: svc.container_port,
                    })
                    .into_iter()
                    .collect(),
                health_check_grace_period_secs: rule
                    .and(svc.route.as_ref())
                    .map(|r| r.health_check_grace_period_secs),
                tags: c.tags.clone(),
            },
        );
        if let Some(a) = svc.autoscaling {
            s.add(
                svc.key("autoscaling"),
                ServiceScaling {
                    cluster: Input::from(&service.cluster_arn),
                    service: Input::from(&service.name),
                    min: a.min,
                    max: a.max,
                    target_cpu_percent: a.target_cpu_percent,
                },
            );
        }
        (logs, task, service)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_config_is_the_seed_and_valid() {
        let c = ClusterConfig::default();
        c.validate().unwrap();
        let f = &c.services[0];
        assert_eq!(c.service("frontend"), Some(f));
        assert_eq!(c.service("api"), None);
        ServiceConfig::new("order-api-2").validate("s").unwrap();
        assert_eq!(
            (
                c.cluster_name.as_str(),
                f.image.as_str(),
                f.cpu,
                f.memory,
                f.desired_count
            ),
            ("my-ecs-cluster", "nginx:latest", 256, 512, 1)
        );
    }

    #[test]
    fn a_balancers_config_names_the_key_it_refuses() {
        let refused = |change: fn(&mut LoadBalancerConfig)| {
            let mut lb = LoadBalancerConfig::default();
            change(&mut lb);
            let e = ClusterConfig::default()
                .with_load_balancer(Some(lb))
                .validate()
                .unwrap_err();
            (e.field, e.value)
        };
        assert!(
            ClusterConfig::default()
                .with_load_balancer(Some(LoadBalancerConfig::default()))
                .validate()
                .is_ok()
        );
        assert_eq!(
            refused(|lb| lb.idle_timeout_secs = 0),
            ("load_balancer.idle_timeout_secs".into(), "0".into())
        );
        assert_eq!(
            refused(|lb| lb.deregistration_delay_secs = 3601),
            (
                "load_balancer.deregistration_delay_secs".into(),
                "3601".into()
            )
        );
        assert_eq!(
            refused(|lb| lb.name = Some("-alb".into())).0,
            "load_balancer.name"
        );
        assert_eq!(
            refused(|lb| lb.certificate_arn = Some("cert".into())).0,
            "load_balancer.certificate_arn"
        );
        let mut routed = ClusterConfig::default();
        routed.services[0].route = Some(Route::path("/*"));
        let e = routed.validate().unwrap_err();
        assert_eq!(
            (e.field.as_str(), e.value.as_str()),
            ("services[0].path", "set")
        );
    }

    #[test]
    fn bad_configs_name_the_field_and_value() {
        let c = ClusterConfig::default().with_size(256, 4096);
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .starts_with("invalid services[0].memory = 4096")
        );
        let c = ClusterConfig::default().with_log_retention(Some(10));
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .starts_with("invalid services[0].log_retention_days = 10")
        );
        let c = ClusterConfig::default().with_desired_count(-1);
        assert_eq!(
            c.validate().unwrap_err().to_string(),
            "invalid services[0].desired_count = -1: must be 0 to 10000"
        );
        let c = ClusterConfig::default().with_services([ServiceConfig::frontend().with_port(0)]);
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .starts_with("invalid services[0].container_port = 0")
        );
        let api = || ServiceConfig::new("api");
        let mut same_log_group = ServiceConfig::new("worker");
        same_log_group.log_group = "/ecs/api".into();
        for (services, error) in [
            (
                vec![],
                "invalid services = []: a cluster runs at least one service",
            ),
            (
                vec![ServiceConfig::frontend(), api(), api()],
                "invalid services[2].name = api: another service has this name",
            ),
            (
                vec![api(), same_log_group],
                "invalid services[1].log_group = /ecs/api: another service has this name",
            ),
            (
                vec![ServiceConfig::new("Api")],
                "invalid services[0].name = Api: a service name is 1 to 64 lowercase letters, digits and -, not starting with -",
            ),
        ] {
            let c = ClusterConfig::default().with_services(services);
            assert_eq!(c.validate().unwrap_err().to_string(), error);
        }
    }
}

/// The compatibility rule of [`Stack::OUTPUTS_SCHEMA`](platform_core::Stack::OUTPUTS_SCHEMA): what a
/// producer of schema 1 recorded stays readable by this build (a field added without a default,
/// or renamed, fails here).
#[cfg(test)]
mod outputs_compatibility {
    use super::*;

    /// `ClusterOutputs` as schema 1 recorded them.
    const SCHEMA_1: &str = r#"{
        "cluster_name": "my-ecs-cluster",
        "cluster_arn": "arn:aws:ecs:us-east-1:123456789012:cluster/my-ecs-cluster",
        "service_name": "frontend",
        "service_arn": "arn:aws:ecs:us-east-1:123456789012:service/my-ecs-cluster/frontend",
        "task_definition_family": "frontend",
        "task_definition_arn": "arn:aws:ecs:us-east-1:123456789012:task-definition/frontend:1",
        "log_group_name": "/ecs/frontend"
    }"#;

    #[test]
    fn outputs_recorded_by_schema_1_are_read_by_this_build() {
        let read: ClusterOutputs = serde_json::from_str(SCHEMA_1).unwrap();
        assert_eq!(read.cluster_name, "my-ecs-cluster");
        assert_eq!(<ClusterStack as Stack>::OUTPUTS_SCHEMA, 1);
    }
}
