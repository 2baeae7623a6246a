//! `ec2:subnet`: a subnet in one availability zone, with public IPs on launch or not.

use platform_core::resource::{Idempotent, Once};
use std::collections::BTreeMap;

use aws_sdk_ec2::types::{AttributeBooleanValue, ResourceType};
use platform_core::{
    Context, Input, Observed, Resource, ResourceError, ValidationError, resource_outputs,
};
use serde::{Deserialize, Serialize};

use super::zones::available_zones;
use crate::ec2;
use crate::ids::{SubnetId, VpcId};
use crate::validate;

/// Which availability zone a subnet goes to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Az {
    /// The n-th available zone of the region, in name order (0 is the first). Resolved when the subnet
    /// is created; the zone chosen is in the outputs.
    Index(usize),
    /// A zone by name (`us-east-1a`).
    Name(String),
}

/// A subnet. A change of VPC, block or zone replaces it; public IPs on launch and tags change in place.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Subnet {
    /// The VPC.
    pub vpc_id: Input<VpcId>,
    /// The IPv4 block, inside the VPC's.
    pub cidr_block: String,
    /// The zone.
    pub availability_zone: Az,
    /// Whether instances (and Fargate tasks asking for one) get a public IP.
    pub map_public_ip_on_launch: bool,
    /// User tags.
    pub tags: BTreeMap<String, String>,
    /// The region's zones in name order, from an
    /// [`AvailabilityZones`](super::AvailabilityZones) lookup, to resolve [`Az::Index`] with no
    /// call of the subnet's own; `None`: looked up when the subnet is created. Changing it moves
    /// nothing (the zone is in the outputs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone_names: Option<Input<Vec<String>>>,
}

resource_outputs! {
    /// A subnet's outputs.
    pub struct SubnetOutputs / SubnetRefs {
        /// The subnet id.
        pub subnet_id: SubnetId,
        /// The zone it is in.
        pub availability_zone: String,
    }
}

impl Subnet {
    async fn zone(&self, ctx: &Context) -> Result<String, ResourceError> {
        match &self.availability_zone {
            Az::Name(n) => Ok(n.clone()),
            Az::Index(i) => {
                let names = match &self.zone_names {
                    Some(names) => names.get()?.clone(),
                    None => available_zones(ctx).await?,
                };
                let count = names.len();
                names.into_iter().nth(*i).ok_or_else(|| {
                    ValidationError::new(
                        "availability_zone",
                        i,
                        format!("the region has {count} available zones"),
                    )
                    .into()
                })
            }
        }
    }

    async fn set_public_ip(
        &self,
        ctx: &Context,
        client: &aws_sdk_ec2::Client,
        id: &str,
    ) -> Result<(), ResourceError> {
        let v = AttributeBooleanValue::builder()
            .value(self.map_public_ip_on_launch)
            .build();
        ctx.call(
            "ModifySubnetAttribute",
            Idempotent.retrying(|e| e.is_not_found()),
            || {
                client
                    .modify_subnet_attribute()
                    .subnet_id(id)
                    .map_public_ip_on_launch(v.clone())
                    .send()
            },
        )
        .await?;
        Ok(())
    }
}

impl ec2::Ec2Object for Subnet {
    const NOUN: &'static str = "subnet";
    type Described = aws_sdk_ec2::types::Subnet;

    ec2::describe_call!("DescribeSubnets", describe_subnets, set_subnet_ids, subnets);

    fn outputs_of(s: &Self::Described) -> Option<(String, SubnetOutputs)> {
        let id = s.subnet_id()?.to_owned();
        Some((
            id.clone(),
            SubnetOutputs {
                subnet_id: SubnetId::new(id),
                availability_zone: s.availability_zone()?.to_owned(),
            },
        ))
    }
}

impl Resource for Subnet {
    type Outputs = SubnetOutputs;
    const KIND: &'static str = "ec2:subnet";
    const SERVICE: &'static str = "ec2";
    const UPDATES_IN_PLACE: bool = true;

    /// A new VPC, block or zone is a new subnet. Blocks may not overlap in a VPC
    /// (`CreateSubnet` answers `InvalidSubnet.Conflict`): a replacement in the same VPC whose block
    /// overlaps the old one (the same block in another zone included) deletes the old subnet first.
    fn force_new(&self, previous: &Self) -> platform_core::ForceNew {
        let overlaps = match (
            self.cidr_block.parse::<ipnet::Ipv4Net>(),
            previous.cidr_block.parse::<ipnet::Ipv4Net>(),
        ) {
            (Ok(new), Ok(old)) => new.contains(&old) || old.contains(&new),
            // Not a block (refused by `validate`): as if it overlapped, the safe order.
            _ => true,
        };
        platform_core::force_new!(self, previous; vpc_id, cidr_block, availability_zone)
            .delete_first(self.vpc_id == previous.vpc_id && overlaps)
    }

    fn validate(&self) -> Result<(), ValidationError> {
        validate::block("cidr_block", &self.cidr_block)?;
        if let Az::Name(n) = &self.availability_zone {
            validate::name("availability_zone", n, 64)?;
        }
        validate::tags("tags", &self.tags)
    }

    async fn create(&self, ctx: &Context) -> Result<SubnetOutputs, ResourceError> {
        let client = ec2::client(ctx)?;
        let zone = self.zone(ctx).await?;
        let vpc = self.vpc_id.get()?;
        let out = ctx
            .call("CreateSubnet", Once.retrying(|e| e.is_not_found()), || {
                client
                    .create_subnet()
                    .vpc_id(vpc.as_str())
                    .cidr_block(&self.cidr_block)
                    .availability_zone(&zone)
                    .tag_specifications(ec2::tag_spec(ctx, ResourceType::Subnet, &self.tags))
                    .send()
            })
            .await?;
        let id = out
            .subnet()
            .and_then(|s| s.subnet_id())
            .ok_or_else(|| ResourceError::missing("CreateSubnet", "a subnet id"))?
            .to_owned();
        let outputs = SubnetOutputs {
            subnet_id: SubnetId::new(id),
            availability_zone: zone,
        };
        // Route table associations and services need the subnet, not its public-IP setting.
        ctx.publish(&outputs).await?;
        if self.map_public_ip_on_launch {
            self.set_public_ip(ctx, &client, outputs.subnet_id.as_str())
                .await?;
        }
        Ok(outputs)
    }

    async fn read(
        &self,
        ctx: &Context,
        outputs: &SubnetOutputs,
    ) -> Result<Option<Observed<Self>>, ResourceError> {
        let id = outputs.subnet_id.as_str();
        let Some(s) = ec2::describe_id::<Subnet>(ctx, id).await? else {
            return Ok(None);
        };
        let zone = s.availability_zone().unwrap_or_default().to_owned();
        // A zone chosen by index stays recorded as that index while the subnet is in the zone it got.
        let availability_zone = match &self.availability_zone {
            Az::Index(i) if zone == outputs.availability_zone => Az::Index(*i),
            _ => Az::Name(zone.clone()),
        };
        Ok(Some(Observed {
            inputs: Subnet {
                vpc_id: Input::Value(VpcId::new(s.vpc_id().unwrap_or_default().to_owned())),
                cidr_block: s.cidr_block().unwrap_or_default().to_owned(),
                availability_zone,
                map_public_ip_on_launch: s.map_public_ip_on_launch().unwrap_or(false),
                tags: ec2::user_tags(s.tags()),
                zone_names: self.zone_names.clone(),
            },
            outputs: SubnetOutputs {
                subnet_id: outputs.subnet_id.clone(),
                availability_zone: zone,
            },
        }))
    }

    async fn update(
        &self,
        ctx: &Context,
        previous: &Self,
        outputs: &SubnetOutputs,
    ) -> Result<SubnetOutputs, ResourceError> {
        let client = ec2::client(ctx)?;
        let id = outputs.subnet_id.as_str();
        if self.map_public_ip_on_launch != previous.map_public_ip_on_launch {
            self.set_public_ip(ctx, &client, id).await?;
        }
        ec2::update_tags(ctx, id, &previous.tags, &self.tags).await?;
        Ok(outputs.clone())
    }

    async fn delete(&self, ctx: &Context, outputs: &SubnetOutputs) -> Result<(), ResourceError> {
        let client = ec2::client(ctx)?;
        let id = outputs.subnet_id.as_str();
        // DependencyViolation while network interfaces of stopped tasks are released.
        ec2::delete_when_free(ctx, "DeleteSubnet", ec2::delete_budget::SUBNET, || {
            client.delete_subnet().subnet_id(id).send()
        })
        .await
    }

    platform_core::lookups!(ec2);
}
