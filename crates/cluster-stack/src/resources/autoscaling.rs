//! `application-autoscaling:ecs-service`: an ECS service's task count kept between a minimum and a
//! maximum by Application Auto Scaling, tracking the service's average CPU.
//!
//! Two calls make it, both upserts keyed by the service (AWS's API reference: `RegisterScalableTarget`
//! "registers or updates" the target named by namespace, resource id and dimension;
//! `PutScalingPolicy` "creates or updates" the policy of that name on it). Repeating either after a
//! lost answer or a kill changes nothing, so the kind needs no instance token: it is found by the
//! service it scales. Deregistering the target deletes its policies on AWS; the policy is deleted
//! first anyway, which the emulator needs.

use aws_sdk_applicationautoscaling::Client;
use aws_sdk_applicationautoscaling::types::{
    MetricType, PolicyType, PredefinedMetricSpecification, ScalableDimension, ScalableTarget,
    ServiceNamespace, TargetTrackingScalingPolicyConfiguration,
};
use platform_core::resource::Idempotent;
use platform_core::{
    Context, Input, Observed, Resource, ResourceError, ValidationError, error::GoneExt,
    resource_outputs,
};
use serde::{Deserialize, Serialize};

use crate::ids::ClusterArn;

/// The name of the one policy the kind puts on its target (policy names are the target's own).
const POLICY_NAME: &str = "cpu-target-tracking";

/// Target tracking on an ECS service's desired count. Another service or cluster replaces it; the
/// bounds and the CPU target change in place.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServiceScaling {
    /// The service's cluster.
    pub cluster: Input<ClusterArn>,
    /// The service's name.
    pub service: Input<String>,
    /// The fewest tasks (0 to 10000).
    pub min: i32,
    /// The most tasks (`min` to 10000).
    pub max: i32,
    /// The average CPU utilisation to keep, in percent (1 to 100).
    pub target_cpu_percent: u32,
}

resource_outputs! {
    /// A service scaling's outputs.
    pub struct ServiceScalingOutputs / ServiceScalingRefs {
        /// The scalable target's resource id: `service/CLUSTER/SERVICE`.
        pub resource_id: String,
        /// The target tracking policy's ARN.
        pub policy_arn: String,
    }
}

fn client(ctx: &Context) -> Result<Client, ResourceError> {
    platform_core::aws_client!(ctx, aws_sdk_applicationautoscaling)
}

/// `service/CLUSTER/SERVICE`, the id Application Auto Scaling knows an ECS service by.
fn resource_id(cluster: &ClusterArn, service: &str) -> String {
    let cluster = cluster
        .as_str()
        .rsplit_once(":cluster/")
        .map_or(cluster.as_str(), |(_, name)| name);
    format!("service/{cluster}/{service}")
}

/// `resource_id`'s cluster and service names.
fn names_of(resource_id: &str) -> Option<(&str, &str)> {
    let rest = resource_id.strip_prefix("service/")?;
    let (cluster, service) = rest.split_once('/')?;
    (!cluster.is_empty() && !service.is_empty() && !service.contains('/'))
        .then_some((cluster, service))
}

async fn target(
    ctx: &Context,
    client: &Client,
    id: &str,
) -> Result<Option<ScalableTarget>, ResourceError> {
    let out = ctx
        .call("DescribeScalableTargets", Idempotent, || {
            client
                .describe_scalable_targets()
                .service_namespace(ServiceNamespace::Ecs)
                .scalable_dimension(ScalableDimension::EcsServiceDesiredCount)
                .resource_ids(id)
                .send()
        })
        .await?;
    Ok(out
        .scalable_targets()
        .iter()
        .find(|t| t.resource_id() == id)
        .cloned())
}

/// The policy's ARN and target value, if the target has the policy.
async fn policy(
    ctx: &Context,
    client: &Client,
    id: &str,
) -> Result<Option<(String, f64)>, ResourceError> {
    let out = ctx
        .call("DescribeScalingPolicies", Idempotent, || {
            client
                .describe_scaling_policies()
                .service_namespace(ServiceNamespace::Ecs)
                .scalable_dimension(ScalableDimension::EcsServiceDesiredCount)
                .resource_id(id)
                .policy_names(POLICY_NAME)
                .send()
        })
        .await?;
    Ok(out
        .scaling_policies()
        .iter()
        .find(|p| p.policy_name() == POLICY_NAME)
        .map(|p| {
            let value = p
                .target_tracking_scaling_policy_configuration()
                .map_or(0.0, TargetTrackingScalingPolicyConfiguration::target_value);
            (p.policy_arn().to_owned(), value)
        }))
}

impl ServiceScaling {
    /// Checks a minimum, a maximum and a CPU target, naming `min`, `max` or `target_cpu_percent`.
    ///
    /// # Errors
    /// The first value out of its range.
    pub fn bounds(min: i32, max: i32, target_cpu_percent: u32) -> Result<(), ValidationError> {
        if !(0..=10_000).contains(&min) {
            return Err(ValidationError::new("min", min, "must be 0 to 10000"));
        }
        if !(min..=10_000).contains(&max) {
            return Err(ValidationError::new(
                "max",
                max,
                format!("must be min ({min}) to 10000"),
            ));
        }
        if !(1..=100).contains(&target_cpu_percent) {
            return Err(ValidationError::new(
                "target_cpu_percent",
                target_cpu_percent,
                "must be 1 to 100",
            ));
        }
        Ok(())
    }

    fn resource_id(&self) -> Result<String, ResourceError> {
        Ok(resource_id(self.cluster.get()?, self.service.get()?))
    }

    async fn register(
        &self,
        ctx: &Context,
        client: &Client,
        id: &str,
    ) -> Result<(), ResourceError> {
        ctx.call("RegisterScalableTarget", Idempotent, || {
            client
                .register_scalable_target()
                .service_namespace(ServiceNamespace::Ecs)
                .scalable_dimension(ScalableDimension::EcsServiceDesiredCount)
                .resource_id(id)
                .min_capacity(self.min)
                .max_capacity(self.max)
                .send()
        })
        .await?;
        Ok(())
    }

    async fn put_policy(
        &self,
        ctx: &Context,
        client: &Client,
        id: &str,
    ) -> Result<String, ResourceError> {
        let metric = PredefinedMetricSpecification::builder()
            .predefined_metric_type(MetricType::EcsServiceAverageCpuUtilization)
            .build()
            .map_err(|e| crate::aws::build_error("the CPU metric", e))?;
        let config = TargetTrackingScalingPolicyConfiguration::builder()
            .target_value(f64::from(self.target_cpu_percent))
            .predefined_metric_specification(metric)
            .build()
            .map_err(|e| crate::aws::build_error("the target tracking", e))?;
        let out = ctx
            .call("PutScalingPolicy", Idempotent, || {
                client
                    .put_scaling_policy()
                    .policy_name(POLICY_NAME)
                    .service_namespace(ServiceNamespace::Ecs)
                    .scalable_dimension(ScalableDimension::EcsServiceDesiredCount)
                    .resource_id(id)
                    .policy_type(PolicyType::TargetTrackingScaling)
                    .target_tracking_scaling_policy_configuration(config.clone())
                    .send()
            })
            .await?;
        Ok(out.policy_arn().to_owned())
    }

    /// What is live for `id`, as outputs (the policy's ARN empty when it has none).
    async fn live(
        ctx: &Context,
        client: &Client,
        id: &str,
    ) -> Result<Option<ServiceScalingOutputs>, ResourceError> {
        if target(ctx, client, id).await?.is_none() {
            return Ok(None);
        }
        let policy_arn = policy(ctx, client, id)
            .await?
            .map(|(arn, _)| arn)
            .unwrap_or_default();
        Ok(Some(ServiceScalingOutputs {
            resource_id: id.to_owned(),
            policy_arn,
        }))
    }
}

impl Resource for ServiceScaling {
    type Outputs = ServiceScalingOutputs;
    const KIND: &'static str = "application-autoscaling:ecs-service";
    const SERVICE: &'static str = "application-autoscaling";
    const UPDATES_IN_PLACE: bool = true;

    fn force_new(&self, previous: &Self) -> platform_core::ForceNew {
        platform_core::force_new!(self, previous; cluster, service)
    }

    fn validate(&self) -> Result<(), ValidationError> {
        Self::bounds(self.min, self.max, self.target_cpu_percent)
    }

    async fn create(&self, ctx: &Context) -> Result<ServiceScalingOutputs, ResourceError> {
        let client = client(ctx)?;
        let id = self.resource_id()?;
        self.register(ctx, &client, &id).await?;
        let policy_arn = self.put_policy(ctx, &client, &id).await?;
        Ok(ServiceScalingOutputs {
            resource_id: id,
            policy_arn,
        })
    }

    async fn read(
        &self,
        ctx: &Context,
        outputs: &ServiceScalingOutputs,
    ) -> Result<Option<Observed<Self>>, ResourceError> {
        let client = client(ctx)?;
        let Some(live) = target(ctx, &client, &outputs.resource_id).await? else {
            return Ok(None);
        };
        let policy = policy(ctx, &client, &outputs.resource_id).await?;
        // A policy deleted by hand reads as a target of 0%: a drift the next `up` puts back.
        let (policy_arn, value) = policy.unwrap_or_default();
        Ok(Some(Observed {
            inputs: ServiceScaling {
                cluster: self.cluster.clone(),
                service: self.service.clone(),
                min: live.min_capacity(),
                max: live.max_capacity(),
                // Percentages are whole numbers here; AWS keeps a float.
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                target_cpu_percent: value.round().clamp(0.0, 100.0) as u32,
            },
            outputs: ServiceScalingOutputs {
                resource_id: outputs.resource_id.clone(),
                policy_arn,
            },
        }))
    }

    async fn update(
        &self,
        ctx: &Context,
        previous: &Self,
        outputs: &ServiceScalingOutputs,
    ) -> Result<ServiceScalingOutputs, ResourceError> {
        let client = client(ctx)?;
        let id = &outputs.resource_id;
        if (self.min, self.max) != (previous.min, previous.max) {
            self.register(ctx, &client, id).await?;
        }
        let mut outputs = outputs.clone();
        if self.target_cpu_percent != previous.target_cpu_percent || outputs.policy_arn.is_empty() {
            outputs.policy_arn = self.put_policy(ctx, &client, id).await?;
        }
        Ok(outputs)
    }

    async fn delete(
        &self,
        ctx: &Context,
        outputs: &ServiceScalingOutputs,
    ) -> Result<(), ResourceError> {
        let client = client(ctx)?;
        let id = &outputs.resource_id;
        // A policy or target that is not there is a ValidationException on the emulator (AWS says
        // ObjectNotFoundException, a not-found): look before each delete.
        if policy(ctx, &client, id).await?.is_some() {
            ctx.call("DeleteScalingPolicy", Idempotent, || {
                client
                    .delete_scaling_policy()
                    .policy_name(POLICY_NAME)
                    .service_namespace(ServiceNamespace::Ecs)
                    .scalable_dimension(ScalableDimension::EcsServiceDesiredCount)
                    .resource_id(id)
                    .send()
            })
            .await
            .gone_is_ok()?;
        }
        if target(ctx, &client, id).await?.is_none() {
            return Ok(());
        }
        ctx.call("DeregisterScalableTarget", Idempotent, || {
            client
                .deregister_scalable_target()
                .service_namespace(ServiceNamespace::Ecs)
                .scalable_dimension(ScalableDimension::EcsServiceDesiredCount)
                .resource_id(id)
                .send()
        })
        .await
        .gone_is_ok()
    }

    /// By the service it scales: one target per service, and the service is this stack's.
    async fn find(&self, ctx: &Context) -> Result<Option<ServiceScalingOutputs>, ResourceError> {
        let client = client(ctx)?;
        Self::live(ctx, &client, &self.resource_id()?).await
    }

    /// By resource id, `service/CLUSTER/SERVICE`.
    async fn import(
        &self,
        ctx: &Context,
        id: &str,
    ) -> Result<Option<ServiceScalingOutputs>, ResourceError> {
        if names_of(id).is_none() {
            return Err(ResourceError::Invalid(ValidationError::new(
                "id",
                id,
                "a scalable target is imported by its resource id, service/CLUSTER/SERVICE",
            )));
        }
        let client = client(ctx)?;
        Self::live(ctx, &client, id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_resource_id_is_the_clusters_name_and_the_services() {
        let arn = ClusterArn::new("arn:aws:ecs:us-east-1:123456789012:cluster/my-ecs-cluster");
        let id = resource_id(&arn, "frontend-service");
        assert_eq!(id, "service/my-ecs-cluster/frontend-service");
        assert_eq!(names_of(&id), Some(("my-ecs-cluster", "frontend-service")));
        for bad in [
            "frontend",
            "service/c",
            "service//s",
            "service/c/",
            "service/c/s/x",
        ] {
            assert_eq!(names_of(bad), None, "{bad}");
        }
    }

    #[test]
    fn bounds_and_target_are_checked() {
        let s = |min, max, target| ServiceScaling {
            cluster: Input::Value(ClusterArn::new("c")),
            service: Input::Value("s".into()),
            min,
            max,
            target_cpu_percent: target,
        };
        s(1, 4, 60).validate().unwrap();
        s(0, 0, 100).validate().unwrap();
        assert_eq!(
            s(3, 2, 60).validate().unwrap_err().to_string(),
            "invalid max = 2: must be min (3) to 10000"
        );
        assert_eq!(
            s(-1, 2, 60).validate().unwrap_err().to_string(),
            "invalid min = -1: must be 0 to 10000"
        );
        assert_eq!(
            s(1, 10_001, 60).validate().unwrap_err().to_string(),
            "invalid max = 10001: must be min (1) to 10000"
        );
        for target in [0, 101] {
            assert_eq!(
                s(1, 2, target).validate().unwrap_err().to_string(),
                format!("invalid target_cpu_percent = {target}: must be 1 to 100")
            );
        }
    }
}
