//! `ecs:service`: the service that keeps the frontend's tasks running, and its wait for steady state.

use platform_core::resource::Idempotent;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use aws_sdk_ecs::types::{
    AssignPublicIp, AwsVpcConfiguration, DeploymentCircuitBreaker, DeploymentConfiguration,
    DesiredStatus, LaunchType, LoadBalancer, NetworkConfiguration, ServiceField,
};
use network_stack::{SecurityGroupId, SubnetId};
use platform_core::{
    Context, Input, Observed, Resource, ResourceError, ValidationError, error::GoneExt,
    resource_outputs,
};
use serde::{Deserialize, Serialize};

use crate::aws;
use crate::elb;
use crate::validate;
use crate::{ClusterArn, ServiceArn, TargetGroupArn, TaskDefinitionArn};

/// A container of the service that registers in a load balancer's target group.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServiceTarget {
    /// The target group (type `ip`).
    pub target_group_arn: Input<TargetGroupArn>,
    /// The container's name in the task definition.
    pub container_name: String,
    /// The container port the group forwards to.
    pub container_port: u16,
}

impl ServiceTarget {
    fn sdk(&self) -> Result<LoadBalancer, ResourceError> {
        Ok(LoadBalancer::builder()
            .target_group_arn(self.target_group_arn.get()?.as_str())
            .container_name(&self.container_name)
            .container_port(i32::from(self.container_port))
            .build())
    }
}

/// How the service's tasks run. A change replaces the service (ECS cannot change it in place).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Launch {
    /// Serverless (the seed's choice).
    #[default]
    Fargate,
    /// On the cluster's EC2 container instances.
    Ec2,
}

impl Launch {
    fn sdk(self) -> LaunchType {
        match self {
            Self::Fargate => LaunchType::Fargate,
            Self::Ec2 => LaunchType::Ec2,
        }
    }
}

/// How ECS rolls out a new deployment of the service and when it gives up on one.
///
/// The default turns ECS's deployment circuit breaker on, with rollback: a deployment whose tasks keep
/// failing to start is stopped by ECS (and the previous one restored), and the engine reports it as
/// failed at once with ECS's reasons, instead of waiting out its timeout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deployment {
    /// ECS's deployment circuit breaker.
    pub circuit_breaker: bool,
    /// With the circuit breaker: restore the last completed deployment when one fails.
    pub rollback: bool,
    /// The share of the desired count that must stay running during a deployment (0 to 100).
    pub minimum_healthy_percent: i32,
    /// The most tasks, as a share of the desired count, a deployment may run at once (100 to 200).
    pub maximum_percent: i32,
}

impl Default for Deployment {
    fn default() -> Self {
        Self {
            circuit_breaker: true,
            rollback: true,
            minimum_healthy_percent: 100,
            maximum_percent: 200,
        }
    }
}

impl Deployment {
    fn sdk(self) -> DeploymentConfiguration {
        let breaker = DeploymentCircuitBreaker::builder()
            .enable(self.circuit_breaker)
            .rollback(self.rollback)
            .build();
        DeploymentConfiguration::builder()
            .deployment_circuit_breaker(breaker)
            .minimum_healthy_percent(self.minimum_healthy_percent)
            .maximum_percent(self.maximum_percent)
            .build()
    }

    /// The configuration as ECS describes it; `None` when it describes none (moto 5.2.5 keeps none).
    fn of(live: Option<&DeploymentConfiguration>) -> Option<Self> {
        let live = live?;
        let breaker = live.deployment_circuit_breaker();
        Some(Self {
            circuit_breaker: breaker.is_some_and(DeploymentCircuitBreaker::enable),
            rollback: breaker.is_some_and(DeploymentCircuitBreaker::rollback),
            minimum_healthy_percent: live.minimum_healthy_percent().unwrap_or(100),
            maximum_percent: live.maximum_percent().unwrap_or(200),
        })
    }

    /// Checks the percentages, naming `field`.
    ///
    /// # Errors
    /// The value out of range.
    pub fn validate(&self, field: &str) -> Result<(), ValidationError> {
        if !(0..=100).contains(&self.minimum_healthy_percent) {
            return Err(ValidationError::new(
                format!("{field}.minimum_healthy_percent"),
                self.minimum_healthy_percent,
                "must be 0 to 100",
            ));
        }
        if !(100..=200).contains(&self.maximum_percent) {
            return Err(ValidationError::new(
                format!("{field}.maximum_percent"),
                self.maximum_percent,
                "must be 100 to 200",
            ));
        }
        if self.rollback && !self.circuit_breaker {
            return Err(ValidationError::new(
                format!("{field}.rollback"),
                true,
                "a rollback needs the circuit breaker on",
            ));
        }
        Ok(())
    }
}

/// An ECS service. A name, cluster or launch type change replaces it; the task definition, desired
/// count and network placement change in place with one `UpdateService`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Service {
    /// The service's name, unique in the cluster.
    pub name: String,
    /// The cluster's ARN.
    pub cluster: Input<ClusterArn>,
    /// The task definition revision's ARN.
    pub task_definition: Input<TaskDefinitionArn>,
    /// How many tasks to keep running; with [`scaled`](Self::scaled), how many to start.
    pub desired_count: i32,
    /// The count belongs to Application Auto Scaling ([`ServiceScaling`](super::ServiceScaling)):
    /// `desired_count` is sent at create only, and the live count is never drift.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub scaled: bool,
    /// Fargate or EC2.
    pub launch: Launch,
    /// The subnets the tasks are placed in.
    pub subnets: Vec<Input<SubnetId>>,
    /// The security groups of the tasks' network interfaces.
    pub security_groups: Vec<Input<SecurityGroupId>>,
    /// Whether the tasks get public IPs (needed in public subnets without a NAT gateway).
    pub assign_public_ip: bool,
    /// After a create or update, wait at most this many seconds for the deployment it started to
    /// complete; `None` does not wait.
    pub steady_state_timeout_secs: Option<u64>,
    /// The deployment configuration; `None` (state written before it existed) is ECS's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment: Option<Deployment>,
    /// The target groups its containers register in (none: no load balancer). A rollout then
    /// completes only when its targets are healthy there.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub load_balancers: Vec<ServiceTarget>,
    /// Seconds ECS ignores a new task's failing load balancer health checks (with load balancers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check_grace_period_secs: Option<u32>,
    /// User tags (the engine adds its own).
    pub tags: BTreeMap<String, String>,
}

resource_outputs! {
    /// A service's outputs.
    pub struct ServiceOutputs / ServiceRefs {
        /// The service's name.
        pub name: String,
        /// The service's ARN.
        pub arn: ServiceArn,
        /// The cluster's ARN.
        pub cluster_arn: ClusterArn,
    }
}

async fn describe(
    ctx: &Context,
    client: &aws_sdk_ecs::Client,
    cluster: &str,
    name: &str,
) -> Result<Option<aws_sdk_ecs::types::Service>, ResourceError> {
    let out = ctx
        .call("DescribeServices", Idempotent, || {
            client
                .describe_services()
                .cluster(cluster)
                .services(name)
                .include(ServiceField::Tags)
                .send()
        })
        .await
        .gone_is_none()?;
    // A deleted service stays visible as DRAINING, then INACTIVE.
    Ok(out.and_then(|o| {
        o.services()
            .iter()
            .find(|s| s.status() == Some("ACTIVE"))
            .cloned()
    }))
}

impl Service {
    /// The subnet ids, resolved.
    fn subnet_ids(&self) -> Result<Vec<String>, ResourceError> {
        self.subnets
            .iter()
            .map(|s| Ok(s.get()?.as_str().to_owned()))
            .collect()
    }

    /// The security group ids, resolved.
    fn group_ids(&self) -> Result<Vec<String>, ResourceError> {
        self.security_groups
            .iter()
            .map(|g| Ok(g.get()?.as_str().to_owned()))
            .collect()
    }

    fn load_balancers(&self) -> Result<Vec<LoadBalancer>, ResourceError> {
        self.load_balancers.iter().map(ServiceTarget::sdk).collect()
    }

    fn grace_period(&self) -> Option<i32> {
        self.health_check_grace_period_secs
            .and_then(|s| i32::try_from(s).ok())
    }

    /// How the service's targets stand in its target groups (`DescribeTargetHealth` of each).
    async fn targets(&self, ctx: &Context) -> Result<Targets, ResourceError> {
        if self.load_balancers.is_empty() {
            return Ok(Targets::Healthy);
        }
        let client = elb::client(ctx)?;
        let mut seen = Vec::new();
        for lb in &self.load_balancers {
            let group = lb.target_group_arn.get()?.as_str();
            let out = ctx
                .call("DescribeTargetHealth", Idempotent, || {
                    client
                        .describe_target_health()
                        .target_group_arn(group)
                        .send()
                })
                .await?;
            for d in out.target_health_descriptions() {
                let target = d.target().map_or_else(String::new, |t| {
                    format!("{}:{}", t.id().unwrap_or("?"), t.port().unwrap_or_default())
                });
                let health = d.target_health();
                seen.push(TargetSeen {
                    target,
                    state: health
                        .and_then(|h| h.state())
                        .map_or("unknown", |s| s.as_str())
                        .to_owned(),
                    reason: health
                        .and_then(|h| h.reason())
                        .map(|r| r.as_str().to_owned()),
                    description: health.and_then(|h| h.description()).map(str::to_owned),
                });
            }
        }
        Ok(Targets::judge(&seen))
    }

    fn network(&self) -> Result<NetworkConfiguration, ResourceError> {
        let vpc = AwsVpcConfiguration::builder()
            .set_subnets(Some(self.subnet_ids()?))
            .set_security_groups(Some(self.group_ids()?))
            .assign_public_ip(if self.assign_public_ip {
                AssignPublicIp::Enabled
            } else {
                AssignPublicIp::Disabled
            })
            .build()
            .map_err(|e| aws::build_error("network configuration", e))?;
        Ok(NetworkConfiguration::builder()
            .awsvpc_configuration(vpc)
            .build())
    }

    /// Follows deployment `deployment` (the one this run's create or update started; the primary one
    /// when ECS named none) until it completes.
    ///
    /// - It fails at once when ECS marks the deployment `FAILED` (its circuit breaker tripped) or rolls
    ///   it back (another deployment, of another task definition, became primary), with ECS's reason,
    ///   why its recent tasks stopped, and the service's latest events.
    /// - A deployment that is slow but healthy is waited for, with a progress line per poll
    ///   (running / desired, the latest event), polls backing off from 0.5 s to 15 s.
    /// - It ends at once on Ctrl-C ([`ResourceError::Cancelled`]); at the timeout it fails with the last
    ///   counts and events.
    async fn wait_rollout(
        &self,
        ctx: &Context,
        client: &aws_sdk_ecs::Client,
        cluster: &str,
        deployment: Option<String>,
    ) -> Result<(), ResourceError> {
        let Some(timeout) = self.steady_state_timeout_secs.map(Duration::from_secs) else {
            return Ok(());
        };
        let task = self.task_definition.get()?;
        let started = Instant::now();
        let mut delay = Duration::from_millis(500);
        loop {
            let service = describe(ctx, client, cluster, &self.name)
                .await?
                .ok_or_else(|| ResourceError::Failed {
                    message: format!("service {} disappeared while waiting for it", self.name),
                })?;
            let mut waiting_on_targets = None;
            match rollout(&service, deployment.as_deref(), task) {
                Rollout::Completed => match self.targets(ctx).await? {
                    Targets::Healthy => return Ok(()),
                    Targets::Waiting(what) => waiting_on_targets = Some(what),
                    Targets::Unhealthy(reasons) => {
                        let stopped = self.stopped_reasons(ctx, client, cluster).await?;
                        let why = format!(
                            "its targets are unhealthy in the load balancer: {}",
                            reasons.join("; ")
                        );
                        return Err(ResourceError::Failed {
                            message: failure_report(&self.name, &why, &stopped, &service),
                        });
                    }
                },
                Rollout::InProgress => {}
                Rollout::Failed(why) => {
                    let stopped = self.stopped_reasons(ctx, client, cluster).await?;
                    let why = with_targets(why, self.targets(ctx).await?);
                    return Err(ResourceError::Failed {
                        message: failure_report(&self.name, &why, &stopped, &service),
                    });
                }
            }
            let (running, desired) = (service.running_count(), service.desired_count());
            if started.elapsed() >= timeout {
                let stopped = self.stopped_reasons(ctx, client, cluster).await?;
                let why = with_targets(
                    format!(
                        "did not complete within {}s ({running} of {desired} tasks running, {} pending)",
                        timeout.as_secs(),
                        service.pending_count()
                    ),
                    self.targets(ctx).await?,
                );
                return Err(ResourceError::Failed {
                    message: failure_report(&self.name, &why, &stopped, &service),
                });
            }
            let latest = service
                .events()
                .first()
                .and_then(|e| e.message())
                .map(|m| format!("; {m}"))
                .unwrap_or_default();
            ctx.progress(match &waiting_on_targets {
                Some(what) => format!("deploying: waiting for healthy targets ({what})"),
                None => format!("deploying: {running} of {desired} tasks running{latest}"),
            });
            // Ctrl-C ends the wait at once (the service stays as it is; the next run waits again).
            ctx.sleep(delay.min(timeout.saturating_sub(started.elapsed())))
                .await?;
            delay = (delay * 2).min(Duration::from_secs(15));
        }
    }

    /// Why ECS stopped the service's recent tasks (`CannotPullContainerError: ...`), newest first, at
    /// most five.
    async fn stopped_reasons(
        &self,
        ctx: &Context,
        client: &aws_sdk_ecs::Client,
        cluster: &str,
    ) -> Result<Vec<String>, ResourceError> {
        let list = ctx
            .call("ListTasks", Idempotent, || {
                client
                    .list_tasks()
                    .cluster(cluster)
                    .service_name(&self.name)
                    .desired_status(DesiredStatus::Stopped)
                    .send()
            })
            .await?;
        if list.task_arns().is_empty() {
            return Ok(Vec::new());
        }
        let tasks = ctx
            .call("DescribeTasks", Idempotent, || {
                client
                    .describe_tasks()
                    .cluster(cluster)
                    .set_tasks(Some(list.task_arns().iter().take(5).cloned().collect()))
                    .send()
            })
            .await?;
        Ok(tasks
            .tasks()
            .iter()
            .map(|t| {
                let id = t
                    .task_arn()
                    .and_then(|a| a.rsplit('/').next())
                    .unwrap_or("?");
                let containers: Vec<String> = t
                    .containers()
                    .iter()
                    .filter_map(|c| Some(format!("{}: {}", c.name()?, c.reason()?)))
                    .collect();
                format!(
                    "task {id}: {}{}",
                    t.stopped_reason().unwrap_or("no reason given"),
                    if containers.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", containers.join(", "))
                    }
                )
            })
            .collect())
    }
}

impl Resource for Service {
    type Outputs = ServiceOutputs;
    const KIND: &'static str = "ecs:service";
    const SERVICE: &'static str = "ecs";
    const UPDATES_IN_PLACE: bool = true;
    const DELETE_BEFORE_REPLACE: bool = true;

    fn force_new(&self, previous: &Self) -> platform_core::ForceNew {
        platform_core::force_new!(self, previous; name, cluster, launch)
    }

    fn validate(&self) -> Result<(), ValidationError> {
        validate::ecs_name("name", &self.name)?;
        if !(0..=10_000).contains(&self.desired_count) {
            return Err(ValidationError::new(
                "desired_count",
                self.desired_count,
                "must be 0 to 10000",
            ));
        }
        if self.subnets.is_empty() || self.subnets.len() > 16 {
            return Err(ValidationError::new(
                "subnets",
                format!("{:?}", self.subnets),
                "an awsvpc service needs 1 to 16 subnets",
            ));
        }
        if self.security_groups.len() > 5 {
            return Err(ValidationError::new(
                "security_groups",
                format!("{:?}", self.security_groups),
                "at most 5 security groups",
            ));
        }
        if let Some(d) = &self.deployment {
            d.validate("deployment")?;
        }
        if self.steady_state_timeout_secs == Some(0) {
            return Err(ValidationError::new(
                "steady_state_timeout_secs",
                0,
                "use None to not wait",
            ));
        }
        validate::tags("tags", &self.tags)
    }

    async fn create(&self, ctx: &Context) -> Result<ServiceOutputs, ResourceError> {
        let client = aws::ecs(ctx)?;
        let (cluster, task) = (self.cluster.get()?, self.task_definition.get()?);
        let network = self.network()?;
        let deployment = self.deployment.map(Deployment::sdk);
        let load_balancers = self.load_balancers()?;
        let tags = aws::ecs_tags(&ctx.tags_with(&self.tags));
        // A replacement deleted the old service of this name first: ECS refuses the name while
        // that one drains, for minutes. (A role ECS cannot assume yet is retried within the
        // engine's bound, by each attempt.)
        let draining =
            |e: &ResourceError| matches!(e, ResourceError::Aws(e) if aws::is_still_draining(e));
        let out = ctx
            .retry_within("CreateService", aws::SERVICE_DRAIN_BUDGET, draining, || {
                ctx.call(
                    "CreateService",
                    Idempotent.retrying(aws::is_role_not_ready),
                    || {
                        client
                            .create_service()
                            .cluster(cluster)
                            .service_name(&self.name)
                            .task_definition(task)
                            .desired_count(self.desired_count)
                            .launch_type(self.launch.sdk())
                            .network_configuration(network.clone())
                            .set_tags(Some(tags.clone()))
                            .set_deployment_configuration(deployment.clone())
                            .set_load_balancers(Some(load_balancers.clone()))
                            .set_health_check_grace_period_seconds(self.grace_period())
                            // ECS's own idempotency: a repeat with this token answers the same service.
                            .set_client_token(ctx.instance_token().map(str::to_owned))
                            .send()
                    },
                )
            })
            .await?;
        let arn = out
            .service()
            .and_then(|s| s.service_arn())
            .map(ServiceArn::new)
            .ok_or_else(|| ResourceError::missing("CreateService", "a service ARN"))?;
        let started = out.service().and_then(primary_deployment);
        self.wait_rollout(ctx, &client, cluster, started).await?;
        Ok(ServiceOutputs {
            name: self.name.clone(),
            arn,
            cluster_arn: cluster.clone(),
        })
    }

    async fn read(
        &self,
        ctx: &Context,
        outputs: &ServiceOutputs,
    ) -> Result<Option<Observed<Self>>, ResourceError> {
        let client = aws::ecs(ctx)?;
        let Some(s) = describe(ctx, &client, &outputs.cluster_arn, &outputs.name).await? else {
            return Ok(None);
        };
        let vpc = s
            .network_configuration()
            .and_then(|n| n.awsvpc_configuration());
        let mut subnets = vpc.map(|v| v.subnets().to_vec()).unwrap_or_default();
        let mut groups = vpc
            .map(|v| v.security_groups().to_vec())
            .unwrap_or_default();
        // Sets in AWS: compare in the order we declared when the members are the same.
        let same_members = |live: &mut Vec<String>, declared: Vec<String>| {
            let (mut a, mut b) = (live.clone(), declared.clone());
            a.sort();
            b.sort();
            if a == b {
                *live = declared;
            }
        };
        same_members(&mut subnets, self.subnet_ids().unwrap_or_default());
        same_members(&mut groups, self.group_ids().unwrap_or_default());
        Ok(Some(Observed {
            inputs: Service {
                name: outputs.name.clone(),
                cluster: Input::Value(outputs.cluster_arn.clone()),
                task_definition: Input::Value(TaskDefinitionArn::new(
                    s.task_definition().unwrap_or_default(),
                )),
                // A scaled service's count is the scaler's: what was declared is taken as live.
                desired_count: if self.scaled {
                    self.desired_count
                } else {
                    s.desired_count()
                },
                scaled: self.scaled,
                launch: match s.launch_type() {
                    Some(LaunchType::Ec2) => Launch::Ec2,
                    _ => Launch::Fargate,
                },
                subnets: subnets
                    .into_iter()
                    .map(|s| Input::Value(SubnetId::new(s)))
                    .collect(),
                security_groups: groups
                    .into_iter()
                    .map(|g| Input::Value(SecurityGroupId::new(g)))
                    .collect(),
                assign_public_ip: vpc.and_then(|v| v.assign_public_ip())
                    == Some(&AssignPublicIp::Enabled),
                steady_state_timeout_secs: self.steady_state_timeout_secs,
                // ECS describes the configuration it keeps; where it describes none (moto), what
                // was declared is taken as live rather than shown as drift on every refresh.
                deployment: Deployment::of(s.deployment_configuration()).or(self.deployment),
                load_balancers: s
                    .load_balancers()
                    .iter()
                    .map(|l| ServiceTarget {
                        target_group_arn: Input::Value(TargetGroupArn::new(
                            l.target_group_arn().unwrap_or_default(),
                        )),
                        container_name: l.container_name().unwrap_or_default().to_owned(),
                        container_port: l
                            .container_port()
                            .and_then(|p| u16::try_from(p).ok())
                            .unwrap_or_default(),
                    })
                    .collect(),
                // Meaningful only with load balancers (ECS may keep the old value after they are
                // removed, or give 0); where ECS gives nothing (moto), what was declared is taken
                // as live.
                health_check_grace_period_secs: live_grace(
                    s.health_check_grace_period_seconds(),
                    !s.load_balancers().is_empty(),
                    self.health_check_grace_period_secs,
                ),
                tags: platform_core::resource::user_tags(aws::pairs(s.tags())),
            },
            outputs: outputs.clone(),
        }))
    }

    async fn update(
        &self,
        ctx: &Context,
        previous: &Self,
        outputs: &ServiceOutputs,
    ) -> Result<ServiceOutputs, ResourceError> {
        let client = aws::ecs(ctx)?;
        let cluster = outputs.cluster_arn.as_str();
        let task = self.task_definition.get()?;
        let changes = Changes::between(self, previous)?;
        let mut started = None;
        if changes.any() {
            let load_balancers = if changes.targets {
                Some(self.load_balancers()?)
            } else {
                None
            };
            let network = if changes.network {
                Some(self.network()?)
            } else {
                None
            };
            let deployment = match self.deployment {
                Some(d) if changes.deployment => Some(d.sdk()),
                _ => None,
            };
            let out = ctx
                .call(
                    "UpdateService",
                    Idempotent.retrying(aws::is_role_not_ready),
                    || {
                        client
                            .update_service()
                            .cluster(cluster)
                            .service(&self.name)
                            .set_task_definition(changes.task.then(|| task.to_string()))
                            .set_desired_count(changes.count.then_some(self.desired_count))
                            .set_network_configuration(network.clone())
                            .set_deployment_configuration(deployment.clone())
                            .set_load_balancers(load_balancers.clone())
                            // Sent when it changes and there is one: ECS takes a grace period
                            // only for a service with load balancers.
                            .set_health_check_grace_period_seconds(
                                self.grace_period().filter(|_| changes.grace),
                            )
                            .send()
                    },
                )
                .await?;
            started = out.service().and_then(primary_deployment);
        }
        aws::update_ecs_tags(ctx, &client, &outputs.arn, &previous.tags, &self.tags).await?;
        if changes.rolls_out() {
            self.wait_rollout(ctx, &client, cluster, started).await?;
        }
        Ok(outputs.clone())
    }

    /// Deletes with `force` (no need to scale to zero first), then waits, within the engine's retry
    /// bound, until ECS no longer lists it as active.
    async fn delete(&self, ctx: &Context, outputs: &ServiceOutputs) -> Result<(), ResourceError> {
        let client = aws::ecs(ctx)?;
        let cluster = outputs.cluster_arn.as_str();
        ctx.call("DeleteService", Idempotent, || {
            client
                .delete_service()
                .cluster(cluster)
                .service(&outputs.name)
                .force(true)
                .send()
        })
        .await
        .gone_is_ok()?;
        let client = &client;
        ctx.retry(
            "waiting for the service to drain",
            |e| matches!(e, ResourceError::Failed { .. }),
            || async move {
                match describe(ctx, client, cluster, &outputs.name).await? {
                    Some(_) => Err(ResourceError::Failed {
                        message: format!(
                            "service {} is still active after DeleteService",
                            outputs.name
                        ),
                    }),
                    None => Ok(()),
                }
            },
        )
        .await
    }

    /// A service adopted after a create that did not finish (a failed rollout, a kill) is recorded
    /// only once its deployment completes: a failed or rolled-back one fails this run too.
    async fn adopted(&self, ctx: &Context, outputs: &ServiceOutputs) -> Result<(), ResourceError> {
        let client = aws::ecs(ctx)?;
        self.wait_rollout(ctx, &client, &outputs.cluster_arn, None)
            .await
    }

    /// By service ARN (`arn:aws:ecs:REGION:ACCOUNT:service/CLUSTER/NAME`: it names the cluster).
    async fn import(
        &self,
        ctx: &Context,
        id: &str,
    ) -> Result<Option<ServiceOutputs>, ResourceError> {
        let Some((cluster, name)) = id
            .strip_prefix("arn:")
            .and_then(|_| id.split_once(":service/"))
            .and_then(|(_, rest)| rest.split_once('/'))
        else {
            return Err(ResourceError::Invalid(ValidationError::new(
                "id",
                id,
                "a service is imported by its ARN (arn:aws:ecs:REGION:ACCOUNT:service/CLUSTER/NAME)",
            )));
        };
        let client = aws::ecs(ctx)?;
        let Some(s) = describe(ctx, &client, cluster, name).await? else {
            return Ok(None);
        };
        let (Some(arn), Some(cluster_arn)) = (s.service_arn(), s.cluster_arn()) else {
            return Ok(None);
        };
        aws::tag_ecs_as_ours(ctx, &client, arn).await?;
        Ok(Some(ServiceOutputs {
            name: s.service_name().unwrap_or(name).to_owned(),
            arn: ServiceArn::new(arn),
            cluster_arn: ClusterArn::new(cluster_arn),
        }))
    }

    async fn find(&self, ctx: &Context) -> Result<Option<ServiceOutputs>, ResourceError> {
        let client = aws::ecs(ctx)?;
        let cluster = self.cluster.get()?;
        let Some(s) = describe(ctx, &client, cluster, &self.name).await? else {
            return Ok(None);
        };
        ctx.claim(&format!("ECS service {}", self.name), aws::pairs(s.tags()))?;
        Ok(s.service_arn().map(|arn| ServiceOutputs {
            name: self.name.clone(),
            arn: ServiceArn::new(arn),
            cluster_arn: cluster.clone(),
        }))
    }
}

/// What an update changes: each part `UpdateService` sends only when it changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Changes {
    task: bool,
    /// Sent only when the count is ours: changed, or handed back by the scaler.
    count: bool,
    network: bool,
    deployment: bool,
    targets: bool,
    grace: bool,
}

impl Changes {
    fn between(new: &Service, old: &Service) -> Result<Self, ResourceError> {
        Ok(Self {
            task: new.task_definition.get()? != old.task_definition.get()?,
            count: !new.scaled && (old.scaled || new.desired_count != old.desired_count),
            network: new.subnets != old.subnets
                || new.security_groups != old.security_groups
                || new.assign_public_ip != old.assign_public_ip,
            deployment: new.deployment != old.deployment,
            targets: new.load_balancers != old.load_balancers,
            grace: new.health_check_grace_period_secs != old.health_check_grace_period_secs,
        })
    }

    /// Whether ECS starts a deployment, to be waited for.
    fn rolls_out(self) -> bool {
        self.task || self.count || self.network || self.targets
    }

    /// Whether `UpdateService` is sent at all.
    fn any(self) -> bool {
        self.rolls_out() || self.deployment || self.grace
    }
}

/// A service's grace period as read: meaningful only with load balancers (ECS may keep the old
/// value after they are removed, or give 0); where ECS gives nothing (moto), what was declared.
fn live_grace(live: Option<i32>, balanced: bool, declared: Option<u32>) -> Option<u32> {
    match live {
        _ if !balanced => None,
        Some(g) => u32::try_from(g)
            .ok()
            .filter(|g| *g > 0 || declared == Some(0)),
        None => declared,
    }
}

/// One target as `DescribeTargetHealth` gives it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct TargetSeen {
    /// `IP:PORT`.
    target: String,
    /// `initial`, `healthy`, `unhealthy`, `draining`, `unused`, `unavailable`.
    state: String,
    /// `Target.FailedHealthChecks`, `Target.Timeout`, `Elb.InitialHealthChecking`, ...
    reason: Option<String>,
    /// The balancer's words.
    description: Option<String>,
}

/// How a service's targets stand in its target groups.
#[derive(Debug, PartialEq, Eq)]
enum Targets {
    /// Every registered target is healthy (or draining away), or none is registered: ECS registers
    /// a deployment's targets before it completes it, so a group it left empty has nothing to wait
    /// for (an emulator whose ECS runs no tasks).
    Healthy,
    /// Some are still being checked: how many of how many are healthy.
    Waiting(String),
    /// Some failed their checks: each with its reason.
    Unhealthy(Vec<String>),
}

impl Targets {
    fn judge(seen: &[TargetSeen]) -> Self {
        let live: Vec<&TargetSeen> = seen.iter().filter(|t| t.state != "draining").collect();
        let failed: Vec<String> = live
            .iter()
            .filter(|t| matches!(t.state.as_str(), "unhealthy" | "unavailable"))
            .map(|t| {
                format!(
                    "target {} {}: {}{}",
                    t.target,
                    t.state,
                    t.reason.as_deref().unwrap_or("no reason given"),
                    t.description
                        .as_deref()
                        .map(|d| format!(" ({d})"))
                        .unwrap_or_default()
                )
            })
            .collect();
        if !failed.is_empty() {
            return Self::Unhealthy(failed);
        }
        let healthy = live.iter().filter(|t| t.state == "healthy").count();
        if healthy == live.len() {
            Self::Healthy
        } else {
            Self::Waiting(format!("{healthy} of {} healthy", live.len()))
        }
    }
}

/// A failure's words with the targets' health, when some are not healthy.
fn with_targets(why: String, targets: Targets) -> String {
    match targets {
        Targets::Healthy => why,
        Targets::Waiting(what) => format!("{why}; targets: {what}"),
        Targets::Unhealthy(reasons) => format!("{why}; targets: {}", reasons.join("; ")),
    }
}

/// Where a deployment stands.
#[derive(Debug, PartialEq, Eq)]
enum Rollout {
    Completed,
    InProgress,
    /// Failed or rolled back, and why.
    Failed(String),
}

/// The id of the primary deployment of `service` (the one a create or update just started).
fn primary_deployment(service: &aws_sdk_ecs::types::Service) -> Option<String> {
    service
        .deployments()
        .iter()
        .find(|d| d.status() == Some("PRIMARY"))
        .and_then(|d| d.id())
        .map(str::to_owned)
}

/// Where deployment `ours` (or, unknown, the primary one) of `service`, for task definition `task`,
/// stands, from the fields ECS gives: `rolloutState` and `rolloutStateReason` of each deployment,
/// `status` `PRIMARY` for the one ECS is rolling out now.
fn rollout(service: &aws_sdk_ecs::types::Service, ours: Option<&str>, task: &str) -> Rollout {
    let deployments = service.deployments();
    let primary = deployments.iter().find(|d| d.status() == Some("PRIMARY"));
    let mine = match ours {
        Some(id) => deployments.iter().find(|d| d.id() == Some(id)),
        None => primary,
    };
    let reason = |d: &aws_sdk_ecs::types::Deployment| {
        d.rollout_state_reason()
            .map(|r| format!(": {r}"))
            .unwrap_or_default()
    };
    if let Some(d) = mine
        && d.rollout_state() == Some(&aws_sdk_ecs::types::DeploymentRolloutState::Failed)
    {
        return Rollout::Failed(format!(
            "deployment {} failed{}",
            d.id().unwrap_or("?"),
            reason(d)
        ));
    }
    // Rolled back: ECS made another deployment primary, of another task definition (when which
    // deployment is ours is not known, the primary one is taken as ours unless it runs another
    // task definition).
    if let Some(p) = primary
        && p.id() != ours
        && p.task_definition() != Some(task)
    {
        let to = p.task_definition().unwrap_or("another task definition");
        return Rollout::Failed(match ours {
            Some(id) => format!("deployment {id} was rolled back to {to}{}", reason(p)),
            None => format!(
                "the service was rolled back to {to}, not {task}{}",
                reason(p)
            ),
        });
    }
    let Some(d) = mine else {
        return Rollout::InProgress;
    };
    match d.rollout_state() {
        Some(aws_sdk_ecs::types::DeploymentRolloutState::Completed) => Rollout::Completed,
        Some(_) => Rollout::InProgress,
        // No rollout state (a deployment controller other than ECS): steady when it is the only
        // deployment and runs as many tasks as desired.
        None if deployments.len() == 1 && d.running_count() == d.desired_count() => {
            Rollout::Completed
        }
        None => Rollout::InProgress,
    }
}

/// A failed deployment, said whole: what ECS said, why tasks stopped, the latest service events.
fn failure_report(
    name: &str,
    why: &str,
    stopped: &[String],
    service: &aws_sdk_ecs::types::Service,
) -> String {
    let mut report = format!("service {name}: {why}");
    if !stopped.is_empty() {
        report.push_str("; stopped tasks: ");
        report.push_str(&stopped.join("; "));
    }
    let events: Vec<&str> = service
        .events()
        .iter()
        .take(3)
        .filter_map(|e| e.message())
        .collect();
    if !events.is_empty() {
        report.push_str("; latest events: ");
        report.push_str(&events.join(" | "));
    }
    report
}

#[cfg(test)]
mod tests {
    use aws_sdk_ecs::types::{Deployment as Dep, DeploymentRolloutState as State, Service};

    use super::{
        Changes, Deployment, Rollout, ServiceTarget, TargetSeen, Targets, failure_report,
        live_grace, primary_deployment, rollout, with_targets,
    };
    use crate::TargetGroupArn;
    use platform_core::Input;

    const TD2: &str = "arn:aws:ecs:us-east-1:1:task-definition/frontend:2";
    const TD1: &str = "arn:aws:ecs:us-east-1:1:task-definition/frontend:1";

    fn dep(id: &str, status: &str, td: &str, state: Option<State>) -> Dep {
        Dep::builder()
            .id(id)
            .status(status)
            .task_definition(td)
            .set_rollout_state(state)
            .rollout_state_reason(format!("reason of {id}"))
            .running_count(1)
            .desired_count(1)
            .build()
    }

    fn service(deployments: Vec<Dep>) -> Service {
        Service::builder()
            .set_deployments(Some(deployments))
            .build()
    }

    #[test]
    fn a_completed_deployment_of_ours_completes() {
        let s = service(vec![dep("d2", "PRIMARY", TD2, Some(State::Completed))]);
        assert_eq!(rollout(&s, Some("d2"), TD2), Rollout::Completed);
        assert_eq!(rollout(&s, None, TD2), Rollout::Completed);
    }

    #[test]
    fn a_deployment_in_progress_is_waited_for() {
        let s = service(vec![
            dep("d2", "PRIMARY", TD2, Some(State::InProgress)),
            dep("d1", "ACTIVE", TD1, Some(State::Completed)),
        ]);
        assert_eq!(rollout(&s, Some("d2"), TD2), Rollout::InProgress);
    }

    #[test]
    fn a_failed_deployment_fails_with_ecs_reason() {
        let s = service(vec![dep("d2", "PRIMARY", TD2, Some(State::Failed))]);
        let Rollout::Failed(why) = rollout(&s, Some("d2"), TD2) else {
            panic!("not failed")
        };
        assert_eq!(why, "deployment d2 failed: reason of d2");
    }

    #[test]
    fn a_rollback_to_another_task_definition_fails_known_or_not_which_deployment_was_ours() {
        let s = service(vec![dep("d3", "PRIMARY", TD1, Some(State::Completed))]);
        let Rollout::Failed(why) = rollout(&s, Some("d2"), TD2) else {
            panic!("not failed")
        };
        assert_eq!(
            why,
            format!("deployment d2 was rolled back to {TD1}: reason of d3")
        );
        let Rollout::Failed(why) = rollout(&s, None, TD2) else {
            panic!("not failed")
        };
        assert!(why.starts_with(&format!("the service was rolled back to {TD1}, not {TD2}")));
    }

    #[test]
    fn without_rollout_states_one_deployment_running_all_tasks_completes() {
        let mut d = dep("d2", "PRIMARY", TD2, None);
        let s = service(vec![d.clone()]);
        assert_eq!(rollout(&s, Some("d2"), TD2), Rollout::Completed);
        d = Dep::builder()
            .id("d2")
            .status("PRIMARY")
            .task_definition(TD2)
            .running_count(0)
            .desired_count(1)
            .build();
        let s = service(vec![d, dep("d1", "ACTIVE", TD1, None)]);
        assert_eq!(rollout(&s, Some("d2"), TD2), Rollout::InProgress);
        // Ours runs all its tasks, but the old deployment is not drained yet.
        let s = service(vec![
            dep("d2", "PRIMARY", TD2, None),
            dep("d1", "ACTIVE", TD1, None),
        ]);
        assert_eq!(rollout(&s, Some("d2"), TD2), Rollout::InProgress);
    }

    #[test]
    fn the_primary_deployment_is_the_one_ecs_rolls_out_now() {
        let s = service(vec![
            dep("d1", "ACTIVE", TD1, Some(State::Completed)),
            dep("d2", "PRIMARY", TD2, Some(State::InProgress)),
        ]);
        assert_eq!(primary_deployment(&s).as_deref(), Some("d2"));
        let s = service(vec![dep("d1", "ACTIVE", TD1, Some(State::Completed))]);
        assert_eq!(primary_deployment(&s), None);
    }

    #[test]
    fn another_primary_deployment_of_the_same_task_definition_is_no_rollback() {
        // ECS started another deployment of our revision (a forced new deployment): ours is
        // still rolling out, nothing was rolled back.
        let s = service(vec![
            dep("d3", "PRIMARY", TD2, Some(State::InProgress)),
            dep("d2", "ACTIVE", TD2, Some(State::InProgress)),
        ]);
        assert_eq!(rollout(&s, Some("d2"), TD2), Rollout::InProgress);
    }

    fn seen(target: &str, state: &str, reason: Option<&str>) -> TargetSeen {
        TargetSeen {
            target: target.into(),
            state: state.into(),
            reason: reason.map(str::to_owned),
            description: reason.map(|_| "said".to_owned()),
        }
    }

    #[test]
    fn targets_are_healthy_when_all_are_or_none_is_registered_and_draining_ones_do_not_count() {
        assert_eq!(Targets::judge(&[]), Targets::Healthy);
        let healthy = seen("10.0.1.1:80", "healthy", None);
        let draining = seen(
            "10.0.1.2:80",
            "draining",
            Some("Target.DeregistrationInProgress"),
        );
        assert_eq!(
            Targets::judge(&[healthy.clone(), draining.clone()]),
            Targets::Healthy
        );
        let initial = seen("10.0.1.3:80", "initial", Some("Elb.InitialHealthChecking"));
        assert_eq!(
            Targets::judge(&[healthy.clone(), initial.clone(), draining]),
            Targets::Waiting("1 of 2 healthy".into())
        );
        let failed = seen("10.0.1.4:80", "unhealthy", Some("Target.Timeout"));
        let unavailable = seen("10.0.1.5:80", "unavailable", None);
        assert_eq!(
            Targets::judge(&[healthy, initial, failed, unavailable]),
            Targets::Unhealthy(vec![
                "target 10.0.1.4:80 unhealthy: Target.Timeout (said)".into(),
                "target 10.0.1.5:80 unavailable: no reason given".into(),
            ])
        );
    }

    fn declared(json: serde_json::Value) -> super::Service {
        let mut base = serde_json::json!({"name": "web", "cluster": "arn:c", "task_definition": "td:1",
            "desired_count": 1, "launch": "Fargate", "subnets": ["subnet-1"],
            "security_groups": ["sg-1"], "assign_public_ip": true,
            "steady_state_timeout_secs": null, "tags": {}});
        for (k, v) in json.as_object().unwrap() {
            base[k] = v.clone();
        }
        serde_json::from_value(base).unwrap()
    }

    #[test]
    fn joining_or_leaving_a_target_group_rolls_out_and_a_grace_period_alone_does_not() {
        let old = declared(serde_json::json!({}));
        let target = ServiceTarget {
            target_group_arn: Input::Value(TargetGroupArn::new("arn:tg")),
            container_name: "web".into(),
            container_port: 80,
        };
        let mut joined = old.clone();
        joined.load_balancers = vec![target];
        let c = Changes::between(&joined, &old).unwrap();
        assert_eq!(
            c,
            Changes {
                targets: true,
                ..Changes::default()
            }
        );
        assert!(c.rolls_out() && c.any());
        assert!(Changes::between(&old, &joined).unwrap().rolls_out());
        let mut graced = old.clone();
        graced.health_check_grace_period_secs = Some(90);
        let c = Changes::between(&graced, &old).unwrap();
        assert!(c.grace && c.any() && !c.rolls_out());
        assert_eq!(graced.grace_period(), Some(90));
        assert_eq!(old.grace_period(), None);
        // Each of the others on its own.
        for (field, value, rolls) in [
            ("task_definition", serde_json::json!("td:2"), true),
            ("desired_count", serde_json::json!(2), true),
            ("subnets", serde_json::json!(["subnet-2"]), true),
            ("security_groups", serde_json::json!(["sg-2"]), true),
            ("assign_public_ip", serde_json::json!(false), true),
            (
                "deployment",
                serde_json::json!({"circuit_breaker": false, "rollback": false,
                    "minimum_healthy_percent": 100, "maximum_percent": 200}),
                false,
            ),
        ] {
            let new = declared(serde_json::json!({ field: value }));
            let c = Changes::between(&new, &old).unwrap();
            assert_eq!((c.rolls_out(), c.any()), (rolls, true), "{field}");
        }
        assert!(!Changes::between(&old, &old).unwrap().any());
    }

    #[test]
    fn a_grace_period_is_read_only_with_load_balancers() {
        // Without them: none, whatever ECS kept.
        assert_eq!(live_grace(Some(60), false, None), None);
        assert_eq!(live_grace(Some(60), false, Some(60)), None);
        // With them: ECS's, 0 as none unless 0 was declared; nothing (moto): the declared one.
        assert_eq!(live_grace(Some(60), true, Some(90)), Some(60));
        assert_eq!(live_grace(Some(0), true, None), None);
        assert_eq!(live_grace(Some(0), true, Some(0)), Some(0));
        assert_eq!(live_grace(None, true, Some(90)), Some(90));
        assert_eq!(live_grace(Some(-1), true, Some(90)), None);
    }

    #[test]
    fn a_failure_adds_the_targets_that_are_not_healthy() {
        assert_eq!(with_targets("why".into(), Targets::Healthy), "why");
        assert_eq!(
            with_targets("why".into(), Targets::Waiting("0 of 1 healthy".into())),
            "why; targets: 0 of 1 healthy"
        );
        assert_eq!(
            with_targets(
                "why".into(),
                Targets::Unhealthy(vec!["a".into(), "b".into()])
            ),
            "why; targets: a; b"
        );
    }

    #[test]
    fn a_failure_report_says_why_which_tasks_stopped_and_the_latest_three_events() {
        let events: Vec<_> = (1..=4)
            .map(|i| {
                aws_sdk_ecs::types::ServiceEvent::builder()
                    .message(format!("event {i}"))
                    .build()
            })
            .collect();
        let s = Service::builder().set_events(Some(events)).build();
        let stopped = ["task a: CannotPullContainerError".to_owned()];
        assert_eq!(
            failure_report("web", "deployment d2 failed", &stopped, &s),
            "service web: deployment d2 failed; stopped tasks: task a: CannotPullContainerError; \
             latest events: event 1 | event 2 | event 3"
        );
        assert_eq!(
            failure_report("web", "timed out", &[], &service(vec![])),
            "service web: timed out"
        );
    }

    #[test]
    fn a_deployment_configuration_reads_back_as_declared_and_none_when_ecs_keeps_none() {
        let declared = Deployment {
            circuit_breaker: true,
            rollback: false,
            minimum_healthy_percent: 50,
            maximum_percent: 150,
        };
        assert_eq!(Deployment::of(Some(&declared.sdk())), Some(declared));
        assert_eq!(Deployment::of(None), None);
        let bare = aws_sdk_ecs::types::DeploymentConfiguration::builder().build();
        assert_eq!(
            Deployment::of(Some(&bare)),
            Some(Deployment {
                circuit_breaker: false,
                rollback: false,
                minimum_healthy_percent: 100,
                maximum_percent: 200,
            })
        );
    }
}
