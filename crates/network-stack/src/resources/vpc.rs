//! `ec2:vpc`: the VPC, its DNS attributes and tags.

use platform_core::resource::{Idempotent, Once};
use std::collections::BTreeMap;

use aws_sdk_ec2::types::{AttributeBooleanValue, ResourceType, VpcAttributeName};
use platform_core::{
    Context, Observed, Resource, ResourceError, ValidationError, resource_outputs,
};
use serde::{Deserialize, Serialize};

use crate::ec2;
use crate::ids::VpcId;
use crate::validate;

/// A VPC. A CIDR change replaces it (AWS cannot change a VPC's primary block); DNS attributes and
/// tags change in place.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Vpc {
    /// The primary IPv4 block, /16 to /28.
    pub cidr_block: String,
    /// Amazon DNS server on (AWS default: on).
    pub enable_dns_support: bool,
    /// Public DNS hostnames for instances (AWS default for non-default VPCs: off).
    pub enable_dns_hostnames: bool,
    /// User tags (the engine adds its own).
    pub tags: BTreeMap<String, String>,
}

resource_outputs! {
    /// A VPC's outputs.
    pub struct VpcOutputs / VpcRefs {
        /// The VPC id.
        pub vpc_id: VpcId,
        /// The primary IPv4 block.
        pub cidr_block: String,
    }
}

async fn set_attribute(
    ctx: &Context,
    client: &aws_sdk_ec2::Client,
    id: &str,
    attribute: VpcAttributeName,
    value: bool,
) -> Result<(), ResourceError> {
    let v = AttributeBooleanValue::builder().value(value).build();
    // A VPC just created may not be visible to every EC2 endpoint yet.
    ctx.call(
        "ModifyVpcAttribute",
        Idempotent.retrying(|e| e.is_not_found()),
        || {
            let b = client.modify_vpc_attribute().vpc_id(id);
            match attribute {
                VpcAttributeName::EnableDnsHostnames => b.enable_dns_hostnames(v.clone()),
                _ => b.enable_dns_support(v.clone()),
            }
            .send()
        },
    )
    .await?;
    Ok(())
}

async fn get_attribute(
    ctx: &Context,
    client: &aws_sdk_ec2::Client,
    id: &str,
    attribute: VpcAttributeName,
) -> Result<bool, ResourceError> {
    let out = ctx
        .call("DescribeVpcAttribute", Idempotent, || {
            client
                .describe_vpc_attribute()
                .vpc_id(id)
                .attribute(attribute.clone())
                .send()
        })
        .await?;
    let v = match attribute {
        VpcAttributeName::EnableDnsHostnames => out.enable_dns_hostnames(),
        _ => out.enable_dns_support(),
    };
    Ok(v.and_then(|v| v.value()).unwrap_or(false))
}

impl ec2::Ec2Object for Vpc {
    const NOUN: &'static str = "VPC";
    type Described = aws_sdk_ec2::types::Vpc;

    ec2::describe_call!("DescribeVpcs", describe_vpcs, set_vpc_ids, vpcs);

    fn outputs_of(v: &Self::Described) -> Option<(String, VpcOutputs)> {
        let id = v.vpc_id()?.to_owned();
        Some((
            id.clone(),
            VpcOutputs {
                vpc_id: VpcId::new(id),
                cidr_block: v.cidr_block()?.to_owned(),
            },
        ))
    }
}

impl Resource for Vpc {
    type Outputs = VpcOutputs;
    const KIND: &'static str = "ec2:vpc";
    const SERVICE: &'static str = "ec2";
    const UPDATES_IN_PLACE: bool = true;

    fn force_new(&self, previous: &Self) -> platform_core::ForceNew {
        platform_core::force_new!(self, previous; cidr_block)
    }

    fn validate(&self) -> Result<(), ValidationError> {
        validate::block("cidr_block", &self.cidr_block)?;
        validate::tags("tags", &self.tags)
    }

    async fn create(&self, ctx: &Context) -> Result<VpcOutputs, ResourceError> {
        let client = ec2::client(ctx)?;
        let out = ctx
            .call("CreateVpc", Once, || {
                client
                    .create_vpc()
                    .cidr_block(&self.cidr_block)
                    .tag_specifications(ec2::tag_spec(ctx, ResourceType::Vpc, &self.tags))
                    .send()
            })
            .await?;
        let id = out
            .vpc()
            .and_then(|v| v.vpc_id())
            .ok_or_else(|| ResourceError::missing("CreateVpc", "a VPC id"))?
            .to_owned();
        let outputs = VpcOutputs {
            vpc_id: VpcId::new(id),
            cidr_block: self.cidr_block.clone(),
        };
        // Subnets, gateways, route tables and groups need the VPC, not its DNS attributes.
        ctx.publish(&outputs).await?;
        self.converge_attributes(ctx, &client, outputs.vpc_id.as_str(), true, false)
            .await?;
        Ok(outputs)
    }

    async fn read(
        &self,
        ctx: &Context,
        outputs: &VpcOutputs,
    ) -> Result<Option<Observed<Self>>, ResourceError> {
        let client = ec2::client(ctx)?;
        let id = outputs.vpc_id.as_str();
        let Some(vpc) = ec2::describe_id::<Vpc>(ctx, id).await? else {
            return Ok(None);
        };
        let cidr = vpc.cidr_block().unwrap_or_default().to_owned();
        Ok(Some(Observed {
            inputs: Vpc {
                cidr_block: cidr.clone(),
                enable_dns_support: get_attribute(
                    ctx,
                    &client,
                    id,
                    VpcAttributeName::EnableDnsSupport,
                )
                .await?,
                enable_dns_hostnames: get_attribute(
                    ctx,
                    &client,
                    id,
                    VpcAttributeName::EnableDnsHostnames,
                )
                .await?,
                tags: ec2::user_tags(vpc.tags()),
            },
            outputs: VpcOutputs {
                vpc_id: outputs.vpc_id.clone(),
                cidr_block: cidr,
            },
        }))
    }

    async fn update(
        &self,
        ctx: &Context,
        previous: &Self,
        outputs: &VpcOutputs,
    ) -> Result<VpcOutputs, ResourceError> {
        let client = ec2::client(ctx)?;
        let id = outputs.vpc_id.as_str();
        self.converge_attributes(
            ctx,
            &client,
            id,
            previous.enable_dns_support,
            previous.enable_dns_hostnames,
        )
        .await?;
        ec2::update_tags(ctx, id, &previous.tags, &self.tags).await?;
        Ok(outputs.clone())
    }

    async fn delete(&self, ctx: &Context, outputs: &VpcOutputs) -> Result<(), ResourceError> {
        let client = ec2::client(ctx)?;
        let id = outputs.vpc_id.as_str();
        // DependencyViolation while subnets, gateways and ENIs of dependents are still going away.
        ec2::delete_when_free(ctx, "DeleteVpc", ec2::delete_budget::VPC, || {
            client.delete_vpc().vpc_id(id).send()
        })
        .await
    }

    platform_core::lookups!(ec2);
}

impl Vpc {
    /// Sets the DNS attributes that differ from `support` / `hostnames` (the current values).
    async fn converge_attributes(
        &self,
        ctx: &Context,
        client: &aws_sdk_ec2::Client,
        id: &str,
        support: bool,
        hostnames: bool,
    ) -> Result<(), ResourceError> {
        // Support must be on before hostnames can be turned on, and hostnames off before support off.
        if self.enable_dns_support && !support {
            set_attribute(ctx, client, id, VpcAttributeName::EnableDnsSupport, true).await?;
        }
        if self.enable_dns_hostnames != hostnames {
            set_attribute(
                ctx,
                client,
                id,
                VpcAttributeName::EnableDnsHostnames,
                self.enable_dns_hostnames,
            )
            .await?;
        }
        if !self.enable_dns_support && support {
            set_attribute(ctx, client, id, VpcAttributeName::EnableDnsSupport, false).await?;
        }
        Ok(())
    }
}
