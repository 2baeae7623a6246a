//! # iam-stack
//!
//! The identity stack of the production ECS platform. Today: typed IAM policy documents that compare
//! semantically ([`policy`]). The roles, policies and provider land with the iam-stack issue.

pub mod policy;
