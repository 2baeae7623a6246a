//! The IAM stack's typed ARNs: a role's ARN is not a policy's, and does not compile where one is
//! wanted.

platform_core::aws_id! {
    /// An IAM role's ARN (`arn:aws:iam::123456789012:role/frontend-role`).
    pub RoleArn
}

platform_core::aws_id! {
    /// An IAM managed policy's ARN (`arn:aws:iam::123456789012:policy/frontend-policy`).
    pub PolicyArn
}

platform_core::aws_id! {
    /// An IAM instance profile's ARN.
    pub InstanceProfileArn
}
