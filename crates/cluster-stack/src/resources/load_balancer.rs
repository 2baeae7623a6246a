//! `elbv2:load-balancer`: an internet-facing Application Load Balancer over the public subnets.

use std::collections::BTreeMap;

use aws_sdk_elasticloadbalancingv2::types::{LoadBalancerAttribute, LoadBalancerSchemeEnum};
use network_stack::{SecurityGroupId, SubnetId};
use platform_core::resource::{Idempotent, Once};
use platform_core::{
    Context, Input, Observed, Resource, ResourceError, ValidationError, error::GoneExt,
    resource_outputs,
};
use serde::{Deserialize, Serialize};

use crate::LoadBalancerArn;
use crate::elb;

/// An internet-facing Application Load Balancer. A new name replaces it; its subnets, security
/// groups, idle timeout and tags change in place.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LoadBalancer {
    /// Its name, unique in the account and region (1 to 32 letters, digits and hyphens).
    pub name: String,
    /// Its subnets: public ones, in at least two zones.
    pub subnets: Vec<Input<SubnetId>>,
    /// Its security groups.
    pub security_groups: Vec<Input<SecurityGroupId>>,
    /// Seconds a connection may stay idle (1 to 4000; AWS's default 60).
    pub idle_timeout_secs: u32,
    /// User tags.
    pub tags: BTreeMap<String, String>,
}

resource_outputs! {
    /// A load balancer's outputs.
    pub struct LoadBalancerOutputs / LoadBalancerRefs {
        /// Its ARN.
        pub arn: LoadBalancerArn,
        /// Its DNS name, what users reach.
        pub dns_name: String,
    }
}

const IDLE_TIMEOUT: &str = "idle_timeout.timeout_seconds";

type Described = aws_sdk_elasticloadbalancingv2::types::LoadBalancer;

/// The load balancer named, or with ARN, `id`; `None` when there is none.
async fn describe(ctx: &Context, id: &str) -> Result<Option<Described>, ResourceError> {
    let client = elb::client(ctx)?;
    let by_arn = id.starts_with("arn:");
    let out = ctx
        .call("DescribeLoadBalancers", Idempotent, || {
            let call = client.describe_load_balancers();
            if by_arn {
                call.load_balancer_arns(id).send()
            } else {
                call.names(id).send()
            }
        })
        .await
        .gone_is_none()?;
    Ok(out.and_then(|o| o.load_balancers().first().cloned()))
}

fn outputs_of(lb: &Described) -> Result<LoadBalancerOutputs, ResourceError> {
    let arn = lb
        .load_balancer_arn()
        .ok_or_else(|| ResourceError::missing("DescribeLoadBalancers", "a load balancer ARN"))?;
    Ok(LoadBalancerOutputs {
        arn: LoadBalancerArn::new(arn),
        dns_name: lb.dns_name().unwrap_or_default().to_owned(),
    })
}

impl LoadBalancer {
    async fn set_idle_timeout(&self, ctx: &Context, arn: &str) -> Result<(), ResourceError> {
        let client = elb::client(ctx)?;
        let attribute = LoadBalancerAttribute::builder()
            .key(IDLE_TIMEOUT)
            .value(self.idle_timeout_secs.to_string())
            .build();
        ctx.call("ModifyLoadBalancerAttributes", Idempotent, || {
            client
                .modify_load_balancer_attributes()
                .load_balancer_arn(arn)
                .attributes(attribute.clone())
                .send()
        })
        .await?;
        Ok(())
    }

    fn ids<T: AsRef<str>>(inputs: &[Input<T>]) -> Result<Vec<String>, ResourceError> {
        inputs
            .iter()
            .map(|i| Ok(i.get()?.as_ref().to_owned()))
            .collect()
    }
}

impl Resource for LoadBalancer {
    type Outputs = LoadBalancerOutputs;
    const KIND: &'static str = "elbv2:load-balancer";
    const SERVICE: &'static str = "elasticloadbalancing";
    const UPDATES_IN_PLACE: bool = true;
    /// A name is unique in the region: a replacement deletes the old balancer first.
    const DELETE_BEFORE_REPLACE: bool = true;

    fn force_new(&self, previous: &Self) -> platform_core::ForceNew {
        platform_core::force_new!(self, previous; name)
    }

    fn validate(&self) -> Result<(), ValidationError> {
        elb::validate_name("name", &self.name)?;
        if self.subnets.len() < 2 {
            return Err(ValidationError::new(
                "subnets",
                self.subnets.len(),
                "an Application Load Balancer needs subnets in at least two zones",
            ));
        }
        elb::validate_idle_timeout("idle_timeout_secs", self.idle_timeout_secs)?;
        crate::validate::tags("tags", &self.tags)
    }

    /// `CreateLoadBalancer` is idempotent by name: for a name that exists with the same settings
    /// AWS answers with that balancer. So the name is looked up first, and a balancer of this name
    /// is taken only when its tags say it is this resource's (an earlier create whose answer was
    /// lost), then brought to the declared settings. The create is sent once: a lost answer is
    /// settled by looking again (AWS answers a repeat with the same one; an emulator may make a
    /// second).
    async fn create(&self, ctx: &Context) -> Result<LoadBalancerOutputs, ResourceError> {
        if let Some(adopted) = elb::adopt(self, ctx).await? {
            return Ok(adopted);
        }
        let client = elb::client(ctx)?;
        let (subnets, groups) = (Self::ids(&self.subnets)?, Self::ids(&self.security_groups)?);
        let tags = elb::elb_tags(&ctx.tags_with(&self.tags));
        let out = ctx
            .call(
                "CreateLoadBalancer",
                Once.retrying(|e| e.is_not_found()),
                || {
                    client
                        .create_load_balancer()
                        .name(&self.name)
                        .scheme(LoadBalancerSchemeEnum::InternetFacing)
                        .set_subnets(Some(subnets.clone()))
                        .set_security_groups(Some(groups.clone()))
                        .set_tags(Some(tags.clone()))
                        .send()
                },
            )
            .await?;
        let lb = out
            .load_balancers()
            .first()
            .ok_or_else(|| ResourceError::missing("CreateLoadBalancer", "a load balancer"))?;
        let outputs = outputs_of(lb)?;
        if self.idle_timeout_secs != 60 {
            self.set_idle_timeout(ctx, outputs.arn.as_str()).await?;
        }
        Ok(outputs)
    }

    async fn read(
        &self,
        ctx: &Context,
        outputs: &LoadBalancerOutputs,
    ) -> Result<Option<Observed<Self>>, ResourceError> {
        let arn = outputs.arn.as_str();
        let Some(lb) = describe(ctx, arn).await? else {
            return Ok(None);
        };
        let client = elb::client(ctx)?;
        let attributes = ctx
            .call("DescribeLoadBalancerAttributes", Idempotent, || {
                client
                    .describe_load_balancer_attributes()
                    .load_balancer_arn(arn)
                    .send()
            })
            .await
            .gone_is_none()?;
        let idle = attributes
            .iter()
            .flat_map(|a| a.attributes())
            .find(|a| a.key() == Some(IDLE_TIMEOUT))
            .and_then(|a| a.value()?.parse().ok())
            .unwrap_or(60);
        let tags = elb::tags_of(ctx, arn).await?.unwrap_or_default();
        let mut subnets: Vec<String> = lb
            .availability_zones()
            .iter()
            .filter_map(|z| z.subnet_id().map(str::to_owned))
            .collect();
        // Declared in config order, answered in AWS's: read back in the declared order.
        let declared = Self::ids(&self.subnets).unwrap_or_default();
        subnets.sort_by_key(|s| declared.iter().position(|d| d == s).unwrap_or(usize::MAX));
        Ok(Some(Observed {
            inputs: Self {
                name: lb.load_balancer_name().unwrap_or_default().to_owned(),
                subnets: subnets
                    .into_iter()
                    .map(|s| Input::Value(SubnetId::new(s)))
                    .collect(),
                security_groups: lb
                    .security_groups()
                    .iter()
                    .map(|g| Input::Value(SecurityGroupId::new(g.clone())))
                    .collect(),
                idle_timeout_secs: idle,
                tags: platform_core::resource::user_tags(tags),
            },
            outputs: outputs_of(&lb)?,
        }))
    }

    async fn update(
        &self,
        ctx: &Context,
        previous: &Self,
        outputs: &LoadBalancerOutputs,
    ) -> Result<LoadBalancerOutputs, ResourceError> {
        let client = elb::client(ctx)?;
        let arn = outputs.arn.as_str();
        let sorted = |mut v: Vec<String>| {
            v.sort();
            v
        };
        let subnets = Self::ids(&self.subnets)?;
        if sorted(subnets.clone()) != sorted(Self::ids(&previous.subnets)?) {
            ctx.call("SetSubnets", Idempotent, || {
                client
                    .set_subnets()
                    .load_balancer_arn(arn)
                    .set_subnets(Some(subnets.clone()))
                    .send()
            })
            .await?;
        }
        let groups = Self::ids(&self.security_groups)?;
        if sorted(groups.clone()) != sorted(Self::ids(&previous.security_groups)?) {
            ctx.call("SetSecurityGroups", Idempotent, || {
                client
                    .set_security_groups()
                    .load_balancer_arn(arn)
                    .set_security_groups(Some(groups.clone()))
                    .send()
            })
            .await?;
        }
        if self.idle_timeout_secs != previous.idle_timeout_secs {
            self.set_idle_timeout(ctx, arn).await?;
        }
        elb::update_tags(ctx, arn, &previous.tags, &self.tags).await?;
        Ok(outputs.clone())
    }

    /// `DeleteLoadBalancer` answers success for a balancer that is gone. Its network interfaces
    /// stay a few minutes after: the network stack's security group delete waits for them.
    async fn delete(
        &self,
        ctx: &Context,
        outputs: &LoadBalancerOutputs,
    ) -> Result<(), ResourceError> {
        let client = elb::client(ctx)?;
        ctx.call("DeleteLoadBalancer", Idempotent, || {
            client
                .delete_load_balancer()
                .load_balancer_arn(outputs.arn.as_str())
                .send()
        })
        .await
        .gone_is_ok()
    }

    /// By name or ARN.
    async fn import(
        &self,
        ctx: &Context,
        id: &str,
    ) -> Result<Option<LoadBalancerOutputs>, ResourceError> {
        elb::import::<Self>(ctx, id).await
    }

    /// By name (unique in the region), when its tags say it is this resource's.
    async fn find(&self, ctx: &Context) -> Result<Option<LoadBalancerOutputs>, ResourceError> {
        elb::find(self, ctx).await
    }
}

impl elb::Lookup for LoadBalancer {
    fn what(&self) -> String {
        format!("load balancer {}", self.name)
    }

    fn arn(outputs: &LoadBalancerOutputs) -> &str {
        outputs.arn.as_str()
    }

    async fn natural(&self, ctx: &Context) -> Result<Option<LoadBalancerOutputs>, ResourceError> {
        Self::by_id(ctx, &self.name).await
    }

    async fn by_id(ctx: &Context, id: &str) -> Result<Option<LoadBalancerOutputs>, ResourceError> {
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

    fn balancer(subnets: usize, idle: u32) -> LoadBalancer {
        LoadBalancer {
            name: "my-ecs-cluster-alb".into(),
            subnets: (0..subnets)
                .map(|i| Input::Value(SubnetId::new(format!("subnet-{i}"))))
                .collect(),
            security_groups: vec![Input::Value(SecurityGroupId::new("sg-1"))],
            idle_timeout_secs: idle,
            tags: BTreeMap::new(),
        }
    }

    #[test]
    fn a_balancer_needs_two_subnets_and_an_idle_timeout_aws_takes() {
        assert!(balancer(2, 60).validate().is_ok());
        let e = balancer(1, 60).validate().unwrap_err();
        assert_eq!((e.field.as_str(), e.value.as_str()), ("subnets", "1"));
        for (idle, ok) in [(0, false), (1, true), (4000, true), (4001, false)] {
            assert_eq!(balancer(2, idle).validate().is_ok(), ok, "{idle}");
        }
        let mut b = balancer(2, 60);
        b.name = "internal-alb".into();
        assert_eq!(b.validate().unwrap_err().field, "name");
        assert_eq!(
            LoadBalancer::ids(&b.subnets).unwrap(),
            ["subnet-0", "subnet-1"]
        );
    }
}
