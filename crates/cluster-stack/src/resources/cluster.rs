//! `ecs:cluster`: the ECS cluster and its Container Insights setting.

use platform_core::resource::Idempotent;
use std::collections::BTreeMap;

use aws_sdk_ecs::types::{ClusterField, ClusterSetting, ClusterSettingName};
use platform_core::{
    Context, Observed, Resource, ResourceError, ValidationError, error::GoneExt, resource_outputs,
};
use serde::{Deserialize, Serialize};

use crate::aws;
use crate::validate;

/// CloudWatch Container Insights for the cluster.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContainerInsights {
    /// Off (no extra CloudWatch cost).
    #[default]
    Disabled,
    /// Standard metrics.
    Enabled,
    /// Enhanced observability (per-container metrics).
    Enhanced,
}

impl ContainerInsights {
    fn as_str(self) -> &'static str {
        match self {
            Self::Disabled => "disabled",
            Self::Enabled => "enabled",
            Self::Enhanced => "enhanced",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "enabled" => Self::Enabled,
            "enhanced" => Self::Enhanced,
            _ => Self::Disabled,
        }
    }
}

/// An ECS cluster. A name change replaces it; Container Insights and tags change in place.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Cluster {
    /// The cluster's name (`my-ecs-cluster`).
    pub name: String,
    /// Container Insights.
    pub container_insights: ContainerInsights,
    /// User tags (the engine adds its own).
    pub tags: BTreeMap<String, String>,
}

resource_outputs! {
    /// A cluster's outputs.
    pub struct EcsClusterOutputs / EcsClusterRefs {
        /// The cluster's name.
        pub name: String,
        /// The cluster's ARN.
        pub arn: crate::ClusterArn,
    }
}

fn insights_setting(value: ContainerInsights) -> ClusterSetting {
    ClusterSetting::builder()
        .name(ClusterSettingName::ContainerInsights)
        .value(value.as_str())
        .build()
}

async fn describe(
    ctx: &Context,
    client: &aws_sdk_ecs::Client,
    cluster: &str,
) -> Result<Option<aws_sdk_ecs::types::Cluster>, ResourceError> {
    let out = ctx
        .call("DescribeClusters", Idempotent, || {
            client
                .describe_clusters()
                .clusters(cluster)
                .include(ClusterField::Settings)
                .include(ClusterField::Tags)
                .send()
        })
        .await
        .gone_is_none()?;
    // A deleted cluster stays visible for a while as INACTIVE.
    Ok(out.and_then(|o| {
        o.clusters()
            .iter()
            .find(|c| c.status() != Some("INACTIVE"))
            .cloned()
    }))
}

/// What a described cluster's settings and user tags are, as inputs.
fn observed(c: &aws_sdk_ecs::types::Cluster, outputs: &EcsClusterOutputs) -> Cluster {
    let insights = c
        .settings()
        .iter()
        .find(|s| s.name() == Some(&ClusterSettingName::ContainerInsights))
        .and_then(|s| s.value())
        .map_or(ContainerInsights::Disabled, ContainerInsights::parse);
    Cluster {
        name: c.cluster_name().unwrap_or(&outputs.name).to_owned(),
        container_insights: insights,
        tags: platform_core::resource::user_tags(aws::pairs(c.tags())),
    }
}

impl Resource for Cluster {
    type Outputs = EcsClusterOutputs;
    const KIND: &'static str = "ecs:cluster";
    const SERVICE: &'static str = "ecs";
    const UPDATES_IN_PLACE: bool = true;
    const DELETE_BEFORE_REPLACE: bool = true;

    fn force_new(&self, previous: &Self) -> platform_core::ForceNew {
        platform_core::force_new!(self, previous; name)
    }

    fn validate(&self) -> Result<(), ValidationError> {
        validate::ecs_name("name", &self.name)?;
        validate::tags("tags", &self.tags)
    }

    /// `CreateCluster` is idempotent by name: for a name that exists, AWS answers with that cluster,
    /// unchanged, and no error. So the name is looked up first: a cluster that is not this
    /// resource's (by its tags) is refused, naming whose it is; this resource's own (an earlier
    /// create whose answer was lost) is brought to the declared settings and tags.
    async fn create(&self, ctx: &Context) -> Result<EcsClusterOutputs, ResourceError> {
        let client = aws::ecs(ctx)?;
        if let Some(existing) = describe(ctx, &client, &self.name).await? {
            ctx.claim(
                &format!("ECS cluster {}", self.name),
                aws::pairs(existing.tags()),
            )?;
            let arn = existing
                .cluster_arn()
                .ok_or_else(|| ResourceError::missing("DescribeClusters", "a cluster ARN"))?;
            let outputs = EcsClusterOutputs {
                name: self.name.clone(),
                arn: crate::ClusterArn::new(arn),
            };
            let live = observed(&existing, &outputs);
            return self.update(ctx, &live, &outputs).await;
        }
        let tags = aws::ecs_tags(&ctx.tags_with(&self.tags));
        let out = ctx
            .call("CreateCluster", Idempotent, || {
                client
                    .create_cluster()
                    .cluster_name(&self.name)
                    .settings(insights_setting(self.container_insights))
                    .set_tags(Some(tags.clone()))
                    .send()
            })
            .await?;
        let arn = out
            .cluster()
            .and_then(|c| c.cluster_arn())
            .ok_or_else(|| ResourceError::missing("CreateCluster", "a cluster ARN"))?;
        Ok(EcsClusterOutputs {
            name: self.name.clone(),
            arn: crate::ClusterArn::new(arn),
        })
    }

    async fn read(
        &self,
        ctx: &Context,
        outputs: &EcsClusterOutputs,
    ) -> Result<Option<Observed<Self>>, ResourceError> {
        let client = aws::ecs(ctx)?;
        let Some(c) = describe(ctx, &client, &outputs.arn).await? else {
            return Ok(None);
        };
        Ok(Some(Observed {
            inputs: observed(&c, outputs),
            outputs: outputs.clone(),
        }))
    }

    async fn update(
        &self,
        ctx: &Context,
        previous: &Self,
        outputs: &EcsClusterOutputs,
    ) -> Result<EcsClusterOutputs, ResourceError> {
        let client = aws::ecs(ctx)?;
        if self.container_insights != previous.container_insights {
            ctx.call("UpdateClusterSettings", Idempotent, || {
                client
                    .update_cluster_settings()
                    .cluster(&outputs.arn)
                    .settings(insights_setting(self.container_insights))
                    .send()
            })
            .await?;
        }
        aws::update_ecs_tags(ctx, &client, &outputs.arn, &previous.tags, &self.tags).await?;
        Ok(outputs.clone())
    }

    /// Retries while the cluster's services are still draining (ECS deletes services
    /// asynchronously), within the engine's retry bound.
    async fn delete(
        &self,
        ctx: &Context,
        outputs: &EcsClusterOutputs,
    ) -> Result<(), ResourceError> {
        let client = aws::ecs(ctx)?;
        ctx.call(
            "DeleteCluster",
            Idempotent.retrying(|e| {
                e.has_code("ClusterContainsServicesException")
                    || e.has_code("ClusterContainsTasksException")
                    || e.has_code("UpdateInProgressException")
            }),
            || client.delete_cluster().cluster(&outputs.arn).send(),
        )
        .await
        .gone_is_ok()
    }

    /// By cluster name or ARN.
    async fn import(
        &self,
        ctx: &Context,
        id: &str,
    ) -> Result<Option<EcsClusterOutputs>, ResourceError> {
        let client = aws::ecs(ctx)?;
        let Some(c) = describe(ctx, &client, id).await? else {
            return Ok(None);
        };
        let (Some(name), Some(arn)) = (c.cluster_name(), c.cluster_arn()) else {
            return Ok(None);
        };
        aws::tag_ecs_as_ours(ctx, &client, arn).await?;
        Ok(Some(EcsClusterOutputs {
            name: name.to_owned(),
            arn: crate::ClusterArn::new(arn),
        }))
    }

    async fn find(&self, ctx: &Context) -> Result<Option<EcsClusterOutputs>, ResourceError> {
        let client = aws::ecs(ctx)?;
        let Some(c) = describe(ctx, &client, &self.name).await? else {
            return Ok(None);
        };
        ctx.claim(&format!("ECS cluster {}", self.name), aws::pairs(c.tags()))?;
        Ok(c.cluster_arn().map(|arn| EcsClusterOutputs {
            name: self.name.clone(),
            arn: crate::ClusterArn::new(arn),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::ContainerInsights;

    #[test]
    fn container_insights_read_back_as_written_and_anything_else_is_off() {
        for v in [
            ContainerInsights::Disabled,
            ContainerInsights::Enabled,
            ContainerInsights::Enhanced,
        ] {
            assert_eq!(ContainerInsights::parse(v.as_str()), v);
        }
        assert_eq!(ContainerInsights::Enabled.as_str(), "enabled");
        assert_eq!(ContainerInsights::Enhanced.as_str(), "enhanced");
        assert_eq!(ContainerInsights::Disabled.as_str(), "disabled");
        assert_eq!(ContainerInsights::parse(""), ContainerInsights::Disabled);
    }
}
