//! `elbv2:target-group`: the tasks of one service as a load balancer sees them (type `ip`, HTTP),
//! with the health check that gates its rollouts.

use std::collections::BTreeMap;

use aws_sdk_elasticloadbalancingv2::types::{ProtocolEnum, TargetGroupAttribute, TargetTypeEnum};
use network_stack::VpcId;
use platform_core::resource::{Idempotent, Once};
use platform_core::{
    Context, Input, Observed, Resource, ResourceError, ValidationError, error::GoneExt,
    resource_outputs,
};
use serde::{Deserialize, Serialize};

use crate::TargetGroupArn;
use crate::elb;

/// How the balancer decides a task is healthy: HTTP `GET path` every `interval_secs`, answered
/// 200-399.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetHealthCheck {
    /// The path asked (`/`, `/healthz`).
    pub path: String,
    /// Seconds between checks (5 to 300).
    pub interval_secs: u32,
    /// Successes in a row that make a target healthy (2 to 10).
    pub healthy_threshold: u32,
    /// Failures in a row that make it unhealthy (2 to 10).
    pub unhealthy_threshold: u32,
}

impl Default for TargetHealthCheck {
    /// `GET /` every 30 s; healthy after 5 successes, unhealthy after 2 failures (AWS's defaults).
    fn default() -> Self {
        Self {
            path: "/".into(),
            interval_secs: 30,
            healthy_threshold: 5,
            unhealthy_threshold: 2,
        }
    }
}

impl TargetHealthCheck {
    /// Checks it, naming each field `PREFIX` and the config's key (`services[1].healthy_threshold`,
    /// `services[1].health_check_path`).
    ///
    /// # Errors
    /// The first value out of AWS's bounds.
    pub fn validate(&self, prefix: &str) -> Result<(), ValidationError> {
        if !self.path.starts_with('/') || self.path.len() > 1024 {
            return Err(ValidationError::new(
                format!("{prefix}health_check_path"),
                &self.path,
                "a health check path starts with / and has at most 1024 characters",
            ));
        }
        for (key, v, range) in [
            ("health_check_interval_secs", self.interval_secs, 5..=300),
            ("healthy_threshold", self.healthy_threshold, 2..=10),
            ("unhealthy_threshold", self.unhealthy_threshold, 2..=10),
        ] {
            if !range.contains(&v) {
                return Err(ValidationError::new(
                    format!("{prefix}{key}"),
                    v,
                    format!("is {} to {}", range.start(), range.end()),
                ));
            }
        }
        Ok(())
    }

    /// The check's timeout: AWS's 5 seconds, below the interval.
    fn timeout_secs(&self) -> i32 {
        i32::try_from(self.interval_secs.saturating_sub(1).min(5)).unwrap_or(5)
    }
}

/// A target group of `ip` targets over HTTP. A new name, VPC or port replaces it; the health check,
/// deregistration delay and tags change in place.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TargetGroup {
    /// Its name, unique in the account and region (1 to 32 letters, digits and hyphens).
    pub name: String,
    /// The VPC its targets are in.
    pub vpc_id: Input<VpcId>,
    /// The port traffic is forwarded to (the container's).
    pub port: u16,
    /// The health check.
    pub health_check: TargetHealthCheck,
    /// Seconds a target leaving the group keeps its connections (0 to 3600).
    pub deregistration_delay_secs: u32,
    /// User tags.
    pub tags: BTreeMap<String, String>,
}

resource_outputs! {
    /// A target group's outputs.
    pub struct TargetGroupOutputs / TargetGroupRefs {
        /// Its ARN.
        pub arn: TargetGroupArn,
    }
}

const DEREGISTRATION_DELAY: &str = "deregistration_delay.timeout_seconds";

type Described = aws_sdk_elasticloadbalancingv2::types::TargetGroup;

/// The target group named, or with ARN, `id`; `None` when there is none.
async fn describe(ctx: &Context, id: &str) -> Result<Option<Described>, ResourceError> {
    let client = elb::client(ctx)?;
    let by_arn = id.starts_with("arn:");
    let out = ctx
        .call("DescribeTargetGroups", Idempotent, || {
            let call = client.describe_target_groups();
            if by_arn {
                call.target_group_arns(id).send()
            } else {
                call.names(id).send()
            }
        })
        .await
        .gone_is_none()?;
    Ok(out.and_then(|o| o.target_groups().first().cloned()))
}

fn outputs_of(g: &Described) -> Result<TargetGroupOutputs, ResourceError> {
    let arn = g
        .target_group_arn()
        .ok_or_else(|| ResourceError::missing("DescribeTargetGroups", "a target group ARN"))?;
    Ok(TargetGroupOutputs {
        arn: TargetGroupArn::new(arn),
    })
}

fn secs(v: Option<i32>) -> u32 {
    v.and_then(|v| u32::try_from(v).ok()).unwrap_or_default()
}

fn count(v: u32) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

impl TargetGroup {
    async fn set_deregistration_delay(
        &self,
        ctx: &Context,
        arn: &str,
    ) -> Result<(), ResourceError> {
        let client = elb::client(ctx)?;
        let attribute = TargetGroupAttribute::builder()
            .key(DEREGISTRATION_DELAY)
            .value(self.deregistration_delay_secs.to_string())
            .build();
        ctx.call("ModifyTargetGroupAttributes", Idempotent, || {
            client
                .modify_target_group_attributes()
                .target_group_arn(arn)
                .attributes(attribute.clone())
                .send()
        })
        .await?;
        Ok(())
    }
}

impl Resource for TargetGroup {
    type Outputs = TargetGroupOutputs;
    const KIND: &'static str = "elbv2:target-group";
    const SERVICE: &'static str = "elasticloadbalancing";
    const UPDATES_IN_PLACE: bool = true;
    /// A name is unique in the region: a replacement deletes the old group first.
    const DELETE_BEFORE_REPLACE: bool = true;

    fn force_new(&self, previous: &Self) -> platform_core::ForceNew {
        platform_core::force_new!(self, previous; name, vpc_id, port)
    }

    fn validate(&self) -> Result<(), ValidationError> {
        elb::validate_name("name", &self.name)?;
        crate::validate::port("port", self.port)?;
        self.health_check.validate("")?;
        elb::validate_deregistration_delay(
            "deregistration_delay_secs",
            self.deregistration_delay_secs,
        )?;
        crate::validate::tags("tags", &self.tags)
    }

    /// `CreateTargetGroup` is idempotent by name: for a name that exists with the same settings AWS
    /// answers with that group. So the name is looked up first, and a group of this name is taken
    /// only when its tags say it is this resource's, then brought to the declared settings. The
    /// create is sent once: a lost answer is settled by looking again (AWS answers a repeat with
    /// the same one; an emulator may make a second).
    async fn create(&self, ctx: &Context) -> Result<TargetGroupOutputs, ResourceError> {
        if let Some(adopted) = elb::adopt(self, ctx).await? {
            return Ok(adopted);
        }
        let client = elb::client(ctx)?;
        let vpc = self.vpc_id.get()?;
        let h = &self.health_check;
        let tags = elb::elb_tags(&ctx.tags_with(&self.tags));
        let out = ctx
            .call(
                "CreateTargetGroup",
                Once.retrying(|e| e.is_not_found()),
                || {
                    client
                        .create_target_group()
                        .name(&self.name)
                        .protocol(ProtocolEnum::Http)
                        .port(i32::from(self.port))
                        .vpc_id(vpc.as_str())
                        .target_type(TargetTypeEnum::Ip)
                        .health_check_path(&h.path)
                        .health_check_interval_seconds(count(h.interval_secs))
                        .health_check_timeout_seconds(h.timeout_secs())
                        .healthy_threshold_count(count(h.healthy_threshold))
                        .unhealthy_threshold_count(count(h.unhealthy_threshold))
                        .set_tags(Some(tags.clone()))
                        .send()
                },
            )
            .await?;
        let group = out
            .target_groups()
            .first()
            .ok_or_else(|| ResourceError::missing("CreateTargetGroup", "a target group"))?;
        let outputs = outputs_of(group)?;
        if self.deregistration_delay_secs != 300 {
            self.set_deregistration_delay(ctx, outputs.arn.as_str())
                .await?;
        }
        Ok(outputs)
    }

    async fn read(
        &self,
        ctx: &Context,
        outputs: &TargetGroupOutputs,
    ) -> Result<Option<Observed<Self>>, ResourceError> {
        let arn = outputs.arn.as_str();
        let Some(g) = describe(ctx, arn).await? else {
            return Ok(None);
        };
        let client = elb::client(ctx)?;
        let attributes = ctx
            .call("DescribeTargetGroupAttributes", Idempotent, || {
                client
                    .describe_target_group_attributes()
                    .target_group_arn(arn)
                    .send()
            })
            .await
            .gone_is_none()?;
        let delay = attributes
            .iter()
            .flat_map(|a| a.attributes())
            .find(|a| a.key() == Some(DEREGISTRATION_DELAY))
            .and_then(|a| a.value()?.parse().ok())
            .unwrap_or(300);
        let tags = elb::tags_of(ctx, arn).await?.unwrap_or_default();
        Ok(Some(Observed {
            inputs: Self {
                name: g.target_group_name().unwrap_or_default().to_owned(),
                vpc_id: Input::Value(VpcId::new(g.vpc_id().unwrap_or_default())),
                port: g.port().and_then(|p| u16::try_from(p).ok()).unwrap_or(0),
                health_check: TargetHealthCheck {
                    path: g.health_check_path().unwrap_or("/").to_owned(),
                    interval_secs: secs(g.health_check_interval_seconds()),
                    healthy_threshold: secs(g.healthy_threshold_count()),
                    unhealthy_threshold: secs(g.unhealthy_threshold_count()),
                },
                deregistration_delay_secs: delay,
                tags: platform_core::resource::user_tags(tags),
            },
            outputs: outputs.clone(),
        }))
    }

    async fn update(
        &self,
        ctx: &Context,
        previous: &Self,
        outputs: &TargetGroupOutputs,
    ) -> Result<TargetGroupOutputs, ResourceError> {
        let arn = outputs.arn.as_str();
        let h = &self.health_check;
        if *h != previous.health_check {
            let client = elb::client(ctx)?;
            ctx.call("ModifyTargetGroup", Idempotent, || {
                client
                    .modify_target_group()
                    .target_group_arn(arn)
                    .health_check_path(&h.path)
                    .health_check_interval_seconds(count(h.interval_secs))
                    .health_check_timeout_seconds(h.timeout_secs())
                    .healthy_threshold_count(count(h.healthy_threshold))
                    .unhealthy_threshold_count(count(h.unhealthy_threshold))
                    .send()
            })
            .await?;
        }
        if self.deregistration_delay_secs != previous.deregistration_delay_secs {
            self.set_deregistration_delay(ctx, arn).await?;
        }
        elb::update_tags(ctx, arn, &previous.tags, &self.tags).await?;
        Ok(outputs.clone())
    }

    /// Retries `ResourceInUse` while a listener rule or a service that used it is still letting go,
    /// within the engine's retry bound.
    async fn delete(
        &self,
        ctx: &Context,
        outputs: &TargetGroupOutputs,
    ) -> Result<(), ResourceError> {
        let client = elb::client(ctx)?;
        ctx.call(
            "DeleteTargetGroup",
            Idempotent.retrying(|e| e.has_code("ResourceInUse")),
            || {
                client
                    .delete_target_group()
                    .target_group_arn(outputs.arn.as_str())
                    .send()
            },
        )
        .await
        .gone_is_ok()
    }

    /// By name or ARN.
    async fn import(
        &self,
        ctx: &Context,
        id: &str,
    ) -> Result<Option<TargetGroupOutputs>, ResourceError> {
        elb::import::<Self>(ctx, id).await
    }

    /// By name (unique in the region), when its tags say it is this resource's.
    async fn find(&self, ctx: &Context) -> Result<Option<TargetGroupOutputs>, ResourceError> {
        elb::find(self, ctx).await
    }
}

impl elb::Lookup for TargetGroup {
    fn what(&self) -> String {
        format!("target group {}", self.name)
    }

    fn arn(outputs: &TargetGroupOutputs) -> &str {
        outputs.arn.as_str()
    }

    async fn natural(&self, ctx: &Context) -> Result<Option<TargetGroupOutputs>, ResourceError> {
        Self::by_id(ctx, &self.name).await
    }

    async fn by_id(ctx: &Context, id: &str) -> Result<Option<TargetGroupOutputs>, ResourceError> {
        describe(ctx, id)
            .await?
            .as_ref()
            .map(outputs_of)
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group() -> TargetGroup {
        TargetGroup {
            name: "my-ecs-cluster-api".into(),
            vpc_id: Input::Value(VpcId::new("vpc-1")),
            port: 8080,
            health_check: TargetHealthCheck::default(),
            deregistration_delay_secs: 30,
            tags: BTreeMap::new(),
        }
    }

    #[test]
    fn a_group_and_its_health_check_are_checked_against_aws_bounds() {
        assert!(group().validate().is_ok());
        let refused = |g: TargetGroup| {
            let e = g.validate().unwrap_err();
            (e.field, e.value)
        };
        let mut g = group();
        g.health_check.path = "healthz".into();
        assert_eq!(refused(g), ("health_check_path".into(), "healthz".into()));
        let mut g = group();
        g.health_check.path = format!("/{}", "a".repeat(1023));
        assert!(g.validate().is_ok(), "1024 characters");
        g.health_check.path.push('a');
        assert_eq!(refused(g).0, "health_check_path");
        for (interval, ok) in [(4, false), (5, true), (300, true), (301, false)] {
            let mut g = group();
            g.health_check.interval_secs = interval;
            assert_eq!(g.validate().is_ok(), ok, "{interval}");
        }
        for (n, ok) in [(1, false), (2, true), (10, true), (11, false)] {
            let mut g = group();
            g.health_check.healthy_threshold = n;
            assert_eq!(g.validate().is_ok(), ok, "healthy {n}");
            let mut g = group();
            g.health_check.unhealthy_threshold = n;
            assert_eq!(g.validate().is_ok(), ok, "unhealthy {n}");
        }
        for (delay, ok) in [(0, true), (3600, true), (3601, false)] {
            let mut g = group();
            g.deregistration_delay_secs = delay;
            assert_eq!(g.validate().is_ok(), ok, "{delay}");
        }
        let mut g = group();
        g.port = 0;
        assert_eq!(refused(g).0, "port");
        let mut g = group();
        g.name = "a_b".into();
        assert_eq!(refused(g).0, "name");
    }

    #[test]
    fn the_check_times_out_before_the_next_one_starts() {
        let mut h = TargetHealthCheck::default();
        assert_eq!(h.timeout_secs(), 5);
        h.interval_secs = 5;
        assert_eq!(h.timeout_secs(), 4);
        h.interval_secs = 6;
        assert_eq!(h.timeout_secs(), 5);
        assert_eq!((secs(Some(30)), secs(Some(-1)), secs(None)), (30, 0, 0));
        assert_eq!((count(7), count(u32::MAX)), (7, i32::MAX));
    }
}
