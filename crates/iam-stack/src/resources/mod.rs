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

/// Each kind's replacement rule: what its `force_new` names, and that the fields changed in place
/// are not among them.
#[cfg(test)]
mod force_new {
    use platform_core::ForceNew;
    use platform_core::testing::{forced_by as forced, inputs as sample, replaces};
    use serde_json::json;

    use super::*;
    use crate::policy::PolicyDocument;

    #[test]
    fn a_role_is_replaced_for_its_name_or_path() {
        let r = Role::for_service("app", "ecs-tasks.amazonaws.com", "the app");
        assert_eq!(forced(&r, "name", json!("app-2")), replaces("name"));
        assert_eq!(forced(&r, "path", json!("/svc/")), replaces("path"));
        assert_eq!(forced(&r, "description", json!("other")), ForceNew::none());
        assert_eq!(
            forced(&r, "max_session_duration", json!(7200)),
            ForceNew::none()
        );
    }

    #[test]
    fn a_policy_is_replaced_for_its_name_path_or_description() {
        let document = PolicyDocument::trust("ecs-tasks.amazonaws.com").to_value();
        let p: ManagedPolicy = sample(json!({"name": "p", "path": "/", "description": "d",
            "document": document, "tags": {}}));
        assert_eq!(forced(&p, "name", json!("q")), replaces("name"));
        assert_eq!(forced(&p, "path", json!("/x/")), replaces("path"));
        assert_eq!(
            forced(&p, "description", json!("e")),
            replaces("description")
        );
        assert_eq!(forced(&p, "tags", json!({"a": "b"})), ForceNew::none());
    }

    #[test]
    fn an_instance_profile_is_replaced_for_its_name_or_path_not_its_role() {
        let p: InstanceProfile =
            sample(json!({"name": "p", "path": "/", "role_name": "r", "tags": {}}));
        assert_eq!(forced(&p, "name", json!("q")), replaces("name"));
        assert_eq!(forced(&p, "path", json!("/x/")), replaces("path"));
        assert_eq!(forced(&p, "role_name", json!("s")), ForceNew::none());
    }

    #[test]
    fn an_attachment_and_the_provider_are_never_changed_in_place() {
        let a: RolePolicyAttachment =
            sample(json!({"role_name": "r", "policy_arn": "arn:aws:iam::1:policy/p"}));
        assert_eq!(forced(&a, "role_name", json!("s")), ForceNew::any_change());
        let p: Provider = sample(json!({"account_id": null, "region": null}));
        assert_eq!(
            forced(&p, "region", json!("eu-west-1")),
            ForceNew::any_change()
        );
    }
}
