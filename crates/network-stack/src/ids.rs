//! Typed AWS ids: a `Ref<VpcId>` cannot be given where a subnet id is expected.

platform_core::aws_id! {
    /// A VPC id (`vpc-...`).
    pub VpcId
}

platform_core::aws_id! {
    /// A subnet id (`subnet-...`).
    pub SubnetId
}

platform_core::aws_id! {
    /// An internet gateway id (`igw-...`).
    pub InternetGatewayId
}

platform_core::aws_id! {
    /// A route table id (`rtb-...`).
    pub RouteTableId
}

platform_core::aws_id! {
    /// A route table association id (`rtbassoc-...`).
    pub AssociationId
}

platform_core::aws_id! {
    /// A security group id (`sg-...`).
    pub SecurityGroupId
}
