//! `ec2:availability-zones`: the region's available zones, looked up while the VPC is made, so that
//! a subnet declared by zone index does not look them up after it.

use aws_sdk_ec2::types::Filter;
use platform_core::resource::Idempotent;
use platform_core::{Context, Observed, Resource, ResourceError, resource_outputs};
use serde::{Deserialize, Serialize};

use crate::ec2;

/// A lookup of the region's available zones: nothing is made or deleted in AWS. Its outputs are the
/// zones as they were when it was created, which is what the subnets were placed by.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AvailabilityZones {}

resource_outputs! {
    /// The region's available zones.
    pub struct AvailabilityZonesOutputs / AvailabilityZonesRefs {
        /// Their names, in name order (`Az::Index(0)` is the first).
        pub names: Vec<String>,
    }
}

/// The region's available zones, in name order.
pub(crate) async fn available_zones(ctx: &Context) -> Result<Vec<String>, ResourceError> {
    let client = ec2::client(ctx)?;
    let out = ctx
        .call("DescribeAvailabilityZones", Idempotent, || {
            client
                .describe_availability_zones()
                .filters(Filter::builder().name("state").values("available").build())
                .send()
        })
        .await?;
    let mut names: Vec<String> = out
        .availability_zones()
        .iter()
        .filter_map(|z| z.zone_name().map(str::to_owned))
        .collect();
    names.sort();
    Ok(names)
}

impl Resource for AvailabilityZones {
    type Outputs = AvailabilityZonesOutputs;
    const KIND: &'static str = "ec2:availability-zones";
    const SERVICE: &'static str = "ec2";

    async fn create(&self, ctx: &Context) -> Result<AvailabilityZonesOutputs, ResourceError> {
        Ok(AvailabilityZonesOutputs {
            names: available_zones(ctx).await?,
        })
    }

    /// What was looked up stays: a zone added to the region later moves no subnet.
    async fn read(
        &self,
        _ctx: &Context,
        outputs: &AvailabilityZonesOutputs,
    ) -> Result<Option<Observed<Self>>, ResourceError> {
        Ok(Some(Observed {
            inputs: self.clone(),
            outputs: outputs.clone(),
        }))
    }

    async fn delete(
        &self,
        _ctx: &Context,
        _outputs: &AvailabilityZonesOutputs,
    ) -> Result<(), ResourceError> {
        Ok(())
    }

    /// A lookup is always there to be found again.
    async fn find(&self, ctx: &Context) -> Result<Option<AvailabilityZonesOutputs>, ResourceError> {
        self.create(ctx).await.map(Some)
    }
}
