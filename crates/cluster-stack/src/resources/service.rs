//! `ecs:service`: the service that keeps the frontend's tasks running, and its wait for steady state.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use aws_sdk_ecs::types::{
    AssignPublicIp, AwsVpcConfiguration, DesiredStatus, LaunchType, NetworkConfiguration,
    ServiceField,
};
use network_stack::{SecurityGroupId, SubnetId};
use platform_core::{
    Context, GoneExt, Input, Observed, Resource, ResourceError, ValidationError, resource_outputs,
};
use serde::{Deserialize, Serialize};

use crate::aws;
use crate::validate;

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

/// An ECS service. A name, cluster or launch type change replaces it; the task definition, desired
/// count and network placement change in place with one `UpdateService`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Service {
    /// The service's name, unique in the cluster.
    pub name: String,
    /// The cluster's ARN.
    pub cluster: Input<String>,
    /// The task definition revision's ARN.
    pub task_definition: Input<String>,
    /// How many tasks to keep running.
    pub desired_count: i32,
    /// Fargate or EC2.
    pub launch: Launch,
    /// The subnets the tasks are placed in.
    pub subnets: Vec<Input<SubnetId>>,
    /// The security groups of the tasks' network interfaces.
    pub security_groups: Vec<Input<SecurityGroupId>>,
    /// Whether the tasks get public IPs (needed in public subnets without a NAT gateway).
    pub assign_public_ip: bool,
    /// After a create or update, wait at most this many seconds for the service to be steady (one
    /// deployment, as many tasks running as desired); `None` does not wait.
    pub steady_state_timeout_secs: Option<u64>,
    /// User tags (the engine adds its own).
    pub tags: BTreeMap<String, String>,
}

resource_outputs! {
    /// A service's outputs.
    pub struct ServiceOutputs / ServiceRefs {
        /// The service's name.
        pub name: String,
        /// The service's ARN.
        pub arn: String,
        /// The cluster's ARN.
        pub cluster_arn: String,
    }
}

async fn describe(
    ctx: &Context,
    client: &aws_sdk_ecs::Client,
    cluster: &str,
    name: &str,
) -> Result<Option<aws_sdk_ecs::types::Service>, ResourceError> {
    let out = ctx
        .call("DescribeServices", || {
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

    /// Waits until the service has one deployment and as many running tasks as desired. On timeout,
    /// fails with the reasons ECS gave for the tasks it stopped.
    async fn wait_steady(
        &self,
        ctx: &Context,
        client: &aws_sdk_ecs::Client,
        cluster: &str,
    ) -> Result<(), ResourceError> {
        let Some(timeout) = self.steady_state_timeout_secs.map(Duration::from_secs) else {
            return Ok(());
        };
        let started = Instant::now();
        let mut delay = Duration::from_millis(500);
        loop {
            let service = describe(ctx, client, cluster, &self.name)
                .await?
                .ok_or_else(|| ResourceError::Failed {
                    message: format!("service {} disappeared while waiting for it", self.name),
                })?;
            let (running, desired) = (service.running_count(), service.desired_count());
            if service.deployments().len() <= 1 && running == desired {
                return Ok(());
            }
            if started.elapsed() >= timeout {
                let reasons = self.stopped_reasons(ctx, client, cluster).await?;
                return Err(ResourceError::Failed {
                    message: format!(
                        "service {} did not reach steady state within {}s ({running} of {desired} tasks running){}",
                        self.name,
                        timeout.as_secs(),
                        if reasons.is_empty() {
                            String::new()
                        } else {
                            format!("; stopped tasks: {}", reasons.join("; "))
                        }
                    ),
                });
            }
            ctx.progress(format!(
                "waiting for steady state: {running} of {desired} tasks running, {} deployment(s)",
                service.deployments().len()
            ));
            // Ctrl-C ends the wait at once (the service stays as it is; the next run waits again).
            ctx.sleep(delay.min(timeout.saturating_sub(started.elapsed())))
                .await?;
            delay = (delay * 2).min(Duration::from_secs(15));
        }
    }

    /// Why ECS stopped the service's recent tasks (`CannotPullContainerError: ...`).
    async fn stopped_reasons(
        &self,
        ctx: &Context,
        client: &aws_sdk_ecs::Client,
        cluster: &str,
    ) -> Result<Vec<String>, ResourceError> {
        let list = ctx
            .call("ListTasks", || {
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
            .call("DescribeTasks", || {
                client
                    .describe_tasks()
                    .cluster(cluster)
                    .set_tasks(Some(list.task_arns().iter().take(10).cloned().collect()))
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
    const REPLACE_ON: &'static [&'static str] = &["name", "cluster", "launch"];
    const DELETE_BEFORE_REPLACE: bool = true;

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
        let tags = aws::ecs_tags(&aws::all_tags(ctx, &self.tags));
        let out = ctx
            .call_retrying("CreateService", aws::is_role_not_ready, || {
                client
                    .create_service()
                    .cluster(cluster)
                    .service_name(&self.name)
                    .task_definition(task)
                    .desired_count(self.desired_count)
                    .launch_type(self.launch.sdk())
                    .network_configuration(network.clone())
                    .set_tags(Some(tags.clone()))
                    // ECS's own idempotency: a repeat with this token answers the same service.
                    .set_client_token(ctx.instance_token().map(str::to_owned))
                    .send()
            })
            .await?;
        let arn = out
            .service()
            .and_then(|s| s.service_arn())
            .ok_or_else(|| ResourceError::missing("CreateService", "a service ARN"))?
            .to_owned();
        self.wait_steady(ctx, &client, cluster).await?;
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
                task_definition: Input::Value(s.task_definition().unwrap_or_default().to_owned()),
                desired_count: s.desired_count(),
                launch: match s.launch_type() {
                    Some(LaunchType::Ec2) => Launch::Ec2,
                    _ => Launch::Fargate,
                },
                subnets: subnets
                    .into_iter()
                    .map(|s| Input::Value(SubnetId(s)))
                    .collect(),
                security_groups: groups
                    .into_iter()
                    .map(|g| Input::Value(SecurityGroupId(g)))
                    .collect(),
                assign_public_ip: vpc.and_then(|v| v.assign_public_ip())
                    == Some(&AssignPublicIp::Enabled),
                steady_state_timeout_secs: self.steady_state_timeout_secs,
                tags: aws::user_ecs_tags(s.tags()),
            },
            outputs: outputs.clone(),
        }))
    }

    async fn update(
        &self,
        ctx: &Context,
        previous: &Self,
        outputs: &ServiceOutputs,
        _changed: &[String],
    ) -> Result<ServiceOutputs, ResourceError> {
        let client = aws::ecs(ctx)?;
        let cluster = outputs.cluster_arn.as_str();
        let task = self.task_definition.get()?;
        let task_changed = task != previous.task_definition.get()?;
        let count_changed = self.desired_count != previous.desired_count;
        let network_changed = self.subnets != previous.subnets
            || self.security_groups != previous.security_groups
            || self.assign_public_ip != previous.assign_public_ip;
        if task_changed || count_changed || network_changed {
            let network = if network_changed {
                Some(self.network()?)
            } else {
                None
            };
            ctx.call_retrying("UpdateService", aws::is_role_not_ready, || {
                client
                    .update_service()
                    .cluster(cluster)
                    .service(&self.name)
                    .set_task_definition(task_changed.then(|| task.clone()))
                    .set_desired_count(count_changed.then_some(self.desired_count))
                    .set_network_configuration(network.clone())
                    .send()
            })
            .await?;
        }
        aws::update_ecs_tags(ctx, &client, &outputs.arn, &previous.tags, &self.tags).await?;
        if task_changed || count_changed || network_changed {
            self.wait_steady(ctx, &client, cluster).await?;
        }
        Ok(outputs.clone())
    }

    /// Deletes with `force` (no need to scale to zero first), then waits, within the engine's retry
    /// bound, until ECS no longer lists it as active.
    async fn delete(&self, ctx: &Context, outputs: &ServiceOutputs) -> Result<(), ResourceError> {
        let client = aws::ecs(ctx)?;
        let cluster = outputs.cluster_arn.as_str();
        ctx.call("DeleteService", || {
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

    async fn find(&self, ctx: &Context) -> Result<Option<ServiceOutputs>, ResourceError> {
        let client = aws::ecs(ctx)?;
        let cluster = self.cluster.get()?;
        let Some(s) = describe(ctx, &client, cluster, &self.name).await? else {
            return Ok(None);
        };
        aws::claim(ctx, &format!("ECS service {}", self.name), s.tags())?;
        Ok(s.service_arn().map(|arn| ServiceOutputs {
            name: self.name.clone(),
            arn: arn.to_owned(),
            cluster_arn: cluster.clone(),
        }))
    }
}
