//! The IAM stack's resource types, one module each with its create / read / update / delete.

mod attachment;
mod instance_profile;
mod managed_policy;
mod provider;
mod role;

pub use attachment::{AttachmentOutputs, AttachmentRefs, RolePolicyAttachment};
pub use instance_profile::{InstanceProfile, InstanceProfileOutputs, InstanceProfileRefs};
pub use managed_policy::{
    MAX_POLICY_VERSIONS, ManagedPolicy, PolicyOutputs, PolicyRefs, version_to_prune,
};
pub use provider::{Provider, ProviderOutputs, ProviderRefs};
pub use role::{Role, RoleOutputs, RoleRefs};
