//! Typed AWS ids: a `Ref<VpcId>` cannot be given where a subnet id is expected.

use std::fmt;

use serde::{Deserialize, Serialize};

macro_rules! id_type {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl $name {
            /// The id as AWS writes it.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self(s.to_owned())
            }
        }
    };
}

id_type!(
    /// A VPC id (`vpc-...`).
    VpcId
);
id_type!(
    /// A subnet id (`subnet-...`).
    SubnetId
);
id_type!(
    /// An internet gateway id (`igw-...`).
    InternetGatewayId
);
id_type!(
    /// A route table id (`rtb-...`).
    RouteTableId
);
id_type!(
    /// A route table association id (`rtbassoc-...`).
    AssociationId
);
id_type!(
    /// A security group id (`sg-...`).
    SecurityGroupId
);
