//! # iam-stack
//!
//! The identity stack of the production ECS platform: least-privilege roles (the cluster's, the
//! instances', one per ECS service: the seed's three with its one `frontend`), one
//! customer-managed policy per role, the instance profile of the instance role, and the provider (the
//! account and region the stack is bound to).
//!
//! | role | trusted by | what its policy allows |
//! |---|---|---|
//! | cluster role | `ecs.amazonaws.com` | register tasks as targets in the platform's load balancers |
//! | instance role (+ instance profile) | `ec2.amazonaws.com` | join the cluster, ECR pulls |
//! | a role per service (`frontend`) | `ecs-tasks.amazonaws.com` | its own log group's streams and events, its own secrets, ECR pulls, S3 reads under its prefix |
//!
//! Every statement's reason is written next to it in [`permissions`]; [`permissions::audit`] checks
//! the documents for least privilege and the tests run it on every one.
//!
//! ```no_run
//! use iam_stack::{IamConfig, IamOutputs, IamStack};
//! use platform_core::{Engine, LocalStateStore};
//! # async fn run(config: aws_types::SdkConfig) -> Result<(), platform_core::Error> {
//! let engine = Engine::builder(LocalStateStore::open(".platform/state")?).aws(config).build();
//! let identity = engine.identity().await?;
//! let iam: IamOutputs = engine.up(&IamStack::new(IamConfig::default().bound_to(&identity))).await?;
//! println!("frontend role {:?}", iam.service_role_arn("frontend"));
//! # Ok(()) }
//! ```

mod iam;
mod ids;
pub mod permissions;
pub mod policy;
pub mod resources;
pub mod validate;

pub use ids::{InstanceProfileArn, PolicyArn, RoleArn};

use std::collections::BTreeMap;

use platform_core::{
    Error, Input, ProviderInfo, Ref, ResourceOutputs, Scope, Stack, ValidationError,
    resource::Registry, stack::Declared,
};
use serde::{Deserialize, Serialize};

use policy::PolicyDocument;
use resources::{
    InstanceProfile, ManagedPolicy, Provider, Role, RoleOutputs, RolePolicyAttachment,
};

/// An S3 location a service may read.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct AssetsLocation {
    /// The bucket.
    pub bucket: String,
    /// The key prefix (`frontend/`); reads are limited to keys under it.
    pub prefix: String,
}

impl AssetsLocation {
    /// Keys under `prefix` in `bucket`.
    pub fn new(bucket: &str, prefix: &str) -> Self {
        Self {
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
        }
    }
}

/// One ECS service's role and what it may touch: the role is the service's task role and its
/// execution role (trusted by `ecs-tasks.amazonaws.com`), named `PREFIX-NAME-role`, with one policy,
/// `PREFIX-NAME-policy`, that allows exactly its own log group, its own secrets, ECR pulls and its
/// own S3 assets.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServiceAccess {
    /// The service's name (`frontend`): lowercase letters, digits and `-`.
    pub name: String,
    /// Its log group (`/ecs/frontend`): the only one its containers' logs may go to.
    pub log_group: String,
    /// The secrets ECS injects into its container at start (full ARNs of Secrets Manager secrets
    /// and SSM parameters): its execution role may read these and no other.
    pub secrets: Vec<String>,
    /// What it may read from S3, if anything.
    pub assets: Option<AssetsLocation>,
}

impl ServiceAccess {
    /// Service `name` writing to `log_group`, with no secrets and no S3 access.
    pub fn new(name: &str, log_group: &str) -> Self {
        Self {
            name: name.to_owned(),
            log_group: log_group.to_owned(),
            secrets: Vec::new(),
            assets: None,
        }
    }

    /// The seed's frontend: `/ecs/frontend`, reads under `frontend/` in `my-ecs-frontend-assets`.
    pub fn frontend() -> Self {
        Self::new("frontend", "/ecs/frontend").with_assets(Some(AssetsLocation::new(
            "my-ecs-frontend-assets",
            "frontend/",
        )))
    }

    /// The secrets its execution role may read.
    #[must_use]
    pub fn with_secrets(mut self, arns: impl IntoIterator<Item = String>) -> Self {
        self.secrets = arns.into_iter().collect();
        self
    }

    /// What it may read from S3.
    #[must_use]
    pub fn with_assets(mut self, assets: Option<AssetsLocation>) -> Self {
        self.assets = assets;
        self
    }

    /// Its role's purpose, as the role's description says it.
    fn purpose(&self) -> String {
        let assets = if self.assets.is_some() {
            ", S3 reads of its assets"
        } else {
            ""
        };
        format!(
            "{} task and execution role: its logs, ECR pulls{assets}",
            self.name
        )
    }
}

/// The IAM stack's typed config. `Default` reproduces the seed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct IamConfig {
    /// The stack's name in the state store (default `iam`).
    pub stack_name: String,
    /// Prefix of every name (default `ecs`: `ecs-cluster-role`, `ecs-instance-role`, ...).
    pub name_prefix: String,
    /// The IAM path of the roles, policies and profile (default `/`).
    pub path: String,
    /// The account the policies' ARNs name; `None` writes `*` (any account: set it to pin).
    pub account_id: Option<String>,
    /// The region the policies' ARNs name; `None` writes `*`.
    pub region: Option<String>,
    /// The partition (default `aws`).
    pub partition: String,
    /// The ECS cluster the instances join (default `my-ecs-cluster`).
    pub cluster_name: String,
    /// One role per ECS service, each with its own least-privilege policy (default: the seed's
    /// [`frontend`](ServiceAccess::frontend)).
    pub services: Vec<ServiceAccess>,
    /// The ECR repositories the roles may pull from, a name or pattern (default `*`: any repository
    /// of the account).
    pub ecr_repositories: String,
    /// Tags on every role, policy and profile, besides the engine's own.
    pub tags: BTreeMap<String, String>,
}

impl Default for IamConfig {
    fn default() -> Self {
        Self {
            stack_name: "iam".into(),
            name_prefix: "ecs".into(),
            path: "/".into(),
            account_id: None,
            region: None,
            partition: "aws".into(),
            cluster_name: "my-ecs-cluster".into(),
            services: vec![ServiceAccess::frontend()],
            ecr_repositories: "*".into(),
            tags: BTreeMap::new(),
        }
    }
}

impl IamConfig {
    /// Pins the stack to `provider`'s account and region: the policies' ARNs name them, and applying
    /// with credentials for another account or region is refused.
    #[must_use]
    pub fn bound_to(mut self, provider: &ProviderInfo) -> Self {
        self.account_id = Some(provider.account_id.clone());
        self.region = Some(provider.region.clone());
        self
    }

    /// Records the stack under `name`.
    #[must_use]
    pub fn with_stack_name(mut self, name: &str) -> Self {
        self.stack_name = name.to_owned();
        self
    }

    /// Prefix of every name.
    #[must_use]
    pub fn with_name_prefix(mut self, prefix: &str) -> Self {
        self.name_prefix = prefix.to_owned();
        self
    }

    /// The ECS services that get a role, each with its own policy (instead of the seed's frontend).
    #[must_use]
    pub fn with_services(mut self, services: impl IntoIterator<Item = ServiceAccess>) -> Self {
        self.services = services.into_iter().collect();
        self
    }

    /// The service called `name`, if the stack makes its role.
    pub fn service(&self, name: &str) -> Option<&ServiceAccess> {
        self.services.iter().find(|s| s.name == name)
    }

    /// The ECS cluster the instances join.
    #[must_use]
    pub fn with_cluster_name(mut self, name: &str) -> Self {
        self.cluster_name = name.to_owned();
        self
    }

    /// A tag on every role, policy and profile.
    #[must_use]
    pub fn with_tag(mut self, key: &str, value: &str) -> Self {
        self.tags.insert(key.to_owned(), value.to_owned());
        self
    }

    /// Checks the config before any AWS call.
    ///
    /// # Errors
    /// The first problem, naming the field and the value.
    pub fn validate(&self) -> Result<(), ValidationError> {
        validate::name("stack_name", &self.stack_name, 64)?;
        // The longest derived name is `{prefix}-instance-profile` (17 more characters) in a role's 64.
        validate::name("name_prefix", &self.name_prefix, 64 - 17)?;
        validate::path("path", &self.path)?;
        if !["aws", "aws-cn", "aws-us-gov"].contains(&self.partition.as_str()) {
            return Err(ValidationError::new(
                "partition",
                &self.partition,
                "must be aws, aws-cn or aws-us-gov",
            ));
        }
        if let Some(a) = &self.account_id
            && !(a.len() == 12 && a.chars().all(|c| c.is_ascii_digit()))
        {
            return Err(ValidationError::new("account_id", a, "must be 12 digits"));
        }
        if let Some(r) = &self.region
            && (r.is_empty()
                || !r
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'))
        {
            return Err(ValidationError::new(
                "region",
                r,
                "not a region name (us-east-1)",
            ));
        }
        validate::name("cluster_name", &self.cluster_name, 255)?;
        let mut seen = std::collections::BTreeSet::new();
        for (i, service) in self.services.iter().enumerate() {
            self.validate_service(&format!("services[{i}]"), service)?;
            if !seen.insert(service.name.as_str()) {
                return Err(ValidationError::new(
                    format!("services[{i}].name"),
                    &service.name,
                    "another service has this name",
                ));
            }
        }
        validate::tags("tags", &self.tags)
    }

    /// Where the policies' ARNs point.
    fn validate_service(
        &self,
        field: &str,
        service: &ServiceAccess,
    ) -> Result<(), ValidationError> {
        let name = &service.name;
        // No length of its own: its role name's 64 characters bound it below.
        if !platform_core::resource::is_lowercase_name(name, usize::MAX) {
            return Err(ValidationError::new(
                format!("{field}.name"),
                name,
                "a service name is lowercase letters, digits and -, not starting with -",
            ));
        }
        if ["cluster", "instance"].contains(&name.as_str()) {
            return Err(ValidationError::new(
                format!("{field}.name"),
                name,
                "the cluster and instance roles have this name: choose another",
            ));
        }
        let role = format!("{}-{name}-role", self.name_prefix);
        if role.len() > 64 {
            return Err(ValidationError::new(
                format!("{field}.name"),
                name,
                format!(
                    "its role {role} would be {} characters, IAM allows 64",
                    role.len()
                ),
            ));
        }
        let log_group = &service.log_group;
        if log_group.is_empty() || log_group.len() > 512 || log_group.contains('*') {
            return Err(ValidationError::new(
                format!("{field}.log_group"),
                log_group,
                "a log group name is 1 to 512 characters, without '*'",
            ));
        }
        if let Some(a) = &service.assets {
            let ok = (3..=63).contains(&a.bucket.len())
                && a.bucket
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
            if !ok {
                return Err(ValidationError::new(
                    format!("{field}.assets.bucket"),
                    &a.bucket,
                    "an S3 bucket name is 3 to 63 lowercase letters, digits, '-' or '.'",
                ));
            }
            if a.prefix.contains('*') {
                return Err(ValidationError::new(
                    format!("{field}.assets.prefix"),
                    &a.prefix,
                    "a prefix has no '*': reads are limited to keys under it",
                ));
            }
        }
        Ok(())
    }

    /// Where the policies' ARNs point.
    pub fn scope(&self) -> permissions::Scope {
        permissions::Scope {
            partition: self.partition.clone(),
            region: self.region.clone().unwrap_or_else(|| "*".into()),
            account: self.account_id.clone().unwrap_or_else(|| "*".into()),
            cluster_name: self.cluster_name.clone(),
            ecr_repositories: self.ecr_repositories.clone(),
            load_balancer_prefix: self.name_prefix.clone(),
        }
    }
}

/// A role's name and ARN.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleInfo {
    /// The role's name.
    pub name: String,
    /// The role's ARN.
    pub arn: RoleArn,
}

/// What the IAM stack gives the cluster stack (and anyone else), recorded in state.
///
/// Read it in the same process from [`Engine::up`](platform_core::Engine::up), or from another
/// process with [`StackRef<IamStack>`](platform_core::StackRef):
///
/// ```no_run
/// # async fn f(store: &dyn platform_core::StateStore, here: &platform_core::ProviderInfo) -> Result<(), platform_core::Error> {
/// use iam_stack::{IamOutputs, IamStack};
/// let iam: IamOutputs = platform_core::StackRef::<IamStack>::new("iam").read(store, here).await?.outputs;
/// println!("{} in {}: frontend role {:?}", iam.account_id, iam.region, iam.service_role_arn("frontend"));
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "OutputsRecord")]
pub struct IamOutputs {
    /// The account the stack is bound to (the provider).
    pub account_id: String,
    /// The region the stack is bound to (the provider).
    pub region: String,
    /// The ECS cluster role.
    pub cluster_role: RoleInfo,
    /// The ECS instance role.
    pub instance_role: RoleInfo,
    /// The cluster role's policy.
    pub cluster_policy_arn: PolicyArn,
    /// The instance role's policy.
    pub instance_policy_arn: PolicyArn,
    /// The instance profile carrying the instance role.
    pub instance_profile_name: String,
    /// Its ARN.
    pub instance_profile_arn: InstanceProfileArn,
    /// Each service's role (its task role and execution role) and policy, by service name.
    pub services: BTreeMap<String, ServiceRole>,
}

/// A service's role and its policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceRole {
    /// The role: the service's task role and execution role.
    pub role: RoleInfo,
    /// Its policy.
    pub policy_arn: PolicyArn,
}

impl IamOutputs {
    /// The role service `name`'s containers run as, and ECS pulls its image and writes its logs
    /// with; `None` when the stack makes no role for it.
    pub fn service_role_arn(&self, name: &str) -> Option<&RoleArn> {
        self.services.get(name).map(|s| &s.role.arn)
    }
}

/// `IamOutputs` as any schema-1 producer recorded them: before services had roles of their own, the
/// frontend's were `frontend_role` and `frontend_policy_arn`.
#[derive(Deserialize)]
struct OutputsRecord {
    account_id: String,
    region: String,
    cluster_role: RoleInfo,
    instance_role: RoleInfo,
    cluster_policy_arn: PolicyArn,
    instance_policy_arn: PolicyArn,
    instance_profile_name: String,
    instance_profile_arn: InstanceProfileArn,
    #[serde(default)]
    services: BTreeMap<String, ServiceRole>,
    frontend_role: Option<RoleInfo>,
    frontend_policy_arn: Option<PolicyArn>,
}

impl From<OutputsRecord> for IamOutputs {
    fn from(r: OutputsRecord) -> Self {
        let mut services = r.services;
        if let (Some(role), Some(policy_arn)) = (r.frontend_role, r.frontend_policy_arn) {
            services
                .entry("frontend".into())
                .or_insert(ServiceRole { role, policy_arn });
        }
        Self {
            account_id: r.account_id,
            region: r.region,
            cluster_role: r.cluster_role,
            instance_role: r.instance_role,
            cluster_policy_arn: r.cluster_policy_arn,
            instance_policy_arn: r.instance_policy_arn,
            instance_profile_name: r.instance_profile_name,
            instance_profile_arn: r.instance_profile_arn,
            services,
        }
    }
}

/// Typed references to the IAM stack's roles, for a stack applied together with it in a
/// [`StackGroup`](platform_core::StackGroup): a resource given one of these starts as soon as that
/// role exists, not when the whole IAM stack is done (its policy is attached alongside). Applied
/// alone, the consumer reads them from the IAM stack's recorded state.
#[derive(Clone, Debug)]
pub struct IamExports {
    /// The IAM stack's name.
    pub stack: String,
    /// Each service's role ARN (its task role and execution role), by service name.
    pub service_roles: BTreeMap<String, Ref<RoleArn>>,
}

/// The IAM stack.
#[derive(Clone, Debug)]
pub struct IamStack {
    config: IamConfig,
}

impl IamStack {
    /// The stack for `config`.
    pub fn new(config: IamConfig) -> Self {
        Self { config }
    }

    /// Its config.
    pub fn config(&self) -> &IamConfig {
        &self.config
    }

    /// Typed references to its roles, for the stacks built on it (see [`IamExports`]).
    pub fn exports(&self) -> IamExports {
        let stack = &self.config.stack_name;
        IamExports {
            stack: stack.clone(),
            service_roles: self
                .config
                .services
                .iter()
                .map(|svc| {
                    let key = format!("{}-role", svc.name);
                    (
                        svc.name.clone(),
                        RoleOutputs::refs(&key).arn.in_stack(stack),
                    )
                })
                .collect(),
        }
    }
}

impl Stack for IamStack {
    type Outputs = IamOutputs;

    fn name(&self) -> &str {
        &self.config.stack_name
    }

    fn register(registry: &mut Registry) {
        registry
            .add::<Provider>()
            .add::<Role>()
            .add::<ManagedPolicy>()
            .add::<RolePolicyAttachment>()
            .add::<InstanceProfile>();
    }

    fn declare(&self, s: &mut Scope) -> Result<Declared<IamOutputs>, Error> {
        let c = &self.config;
        c.validate()
            .map_err(|source| Error::invalid_config(&c.stack_name, source))?;
        let scope = c.scope();
        let p = &c.name_prefix;
        let provider = s.add(
            "provider",
            Provider {
                account_id: c.account_id.clone(),
                region: c.region.clone(),
            },
        );

        let mut role_with_policy = |key: &str, service: &str, what: &str, doc: PolicyDocument| {
            let mut role = Role::for_service(&format!("{p}-{key}-role"), service, what);
            role.path = c.path.clone();
            role.tags = c.tags.clone();
            let role = s.add(format!("{key}-role"), role);
            let policy = s.add(
                format!("{key}-policy"),
                ManagedPolicy {
                    name: format!("{p}-{key}-policy"),
                    path: c.path.clone(),
                    description: format!("Permissions of {p}-{key}-role: {what}"),
                    document: doc,
                    tags: c.tags.clone(),
                },
            );
            s.add(
                format!("{key}-policy-attachment"),
                RolePolicyAttachment {
                    role_name: Input::from(&role.name),
                    policy_arn: Input::from(&policy.arn),
                },
            );
            (role, policy)
        };
        let (cluster_role, cluster_policy) = role_with_policy(
            "cluster",
            "ecs.amazonaws.com",
            "ECS cluster operations and load balancer registration",
            scope.cluster_policy(),
        );
        let (instance_role, instance_policy) = role_with_policy(
            "instance",
            "ec2.amazonaws.com",
            "ECS container instance registration and ECR pulls",
            scope.instance_policy(),
        );
        // One role per service (the seed's frontend keeps its keys: `frontend-role`, ...).
        let services: Vec<_> = c
            .services
            .iter()
            .map(|svc| {
                let (role, policy) = role_with_policy(
                    &svc.name,
                    "ecs-tasks.amazonaws.com",
                    &svc.purpose(),
                    scope.service_policy(svc),
                );
                (svc.name.clone(), role, policy)
            })
            .collect();
        let profile = s.add(
            "instance-profile",
            InstanceProfile {
                name: format!("{p}-instance-profile"),
                path: c.path.clone(),
                role_name: Input::from(&instance_role.name),
                other_roles: Vec::new(),
                tags: c.tags.clone(),
            },
        );

        Ok(s.outputs(move |o| {
            let role = |h: &platform_core::Handle<Role>| -> Result<RoleInfo, platform_core::ResourceError> {
                Ok(RoleInfo {
                    name: o.get(&h.name)?,
                    arn: o.get(&h.arn)?,
                })
            };
            Ok(IamOutputs {
                account_id: o.get(&provider.account_id)?,
                region: o.get(&provider.region)?,
                cluster_role: role(&cluster_role)?,
                instance_role: role(&instance_role)?,
                cluster_policy_arn: o.get(&cluster_policy.arn)?,
                instance_policy_arn: o.get(&instance_policy.arn)?,
                instance_profile_name: o.get(&profile.name)?,
                instance_profile_arn: o.get(&profile.arn)?,
                services: services
                    .iter()
                    .map(|(name, r, policy)| {
                        let service = ServiceRole {
                            role: role(r)?,
                            policy_arn: o.get(&policy.arn)?,
                        };
                        Ok((name.clone(), service))
                    })
                    .collect::<Result<_, platform_core::ResourceError>>()?,
            })
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_config_is_valid_and_unpinned() {
        let c = IamConfig::default();
        c.validate().unwrap();
        assert_eq!(c.scope().account, "*");
        let pinned = c.bound_to(&ProviderInfo {
            account_id: "123456789012".into(),
            region: "eu-west-1".into(),
        });
        assert_eq!(pinned.scope().account, "123456789012");
        assert!(
            pinned
                .scope()
                .service_policy(pinned.service("frontend").unwrap())
                .to_json()
                .contains("arn:aws:logs:eu-west-1:123456789012:log-group:/ecs/frontend:*")
        );
    }

    #[test]
    fn a_service_roles_description_says_what_it_may_do() {
        assert_eq!(
            ServiceAccess::frontend().purpose(),
            "frontend task and execution role: its logs, ECR pulls, S3 reads of its assets"
        );
        assert_eq!(
            ServiceAccess::new("api", "/ecs/api").purpose(),
            "api task and execution role: its logs, ECR pulls"
        );
    }

    #[test]
    fn bad_configs_name_the_field_and_value() {
        let c = IamConfig {
            account_id: Some("12345".into()),
            ..IamConfig::default()
        };
        assert_eq!(
            c.validate().unwrap_err().to_string(),
            "invalid account_id = 12345: must be 12 digits"
        );
        let c =
            IamConfig::default()
                .with_services([ServiceAccess::frontend()
                    .with_assets(Some(AssetsLocation::new("My_Bucket", "x/")))]);
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .starts_with("invalid services[0].assets.bucket = My_Bucket")
        );
        let api = || ServiceAccess::new("api", "/ecs/api");
        for (services, error) in [
            (
                vec![api(), api()],
                "invalid services[1].name = api: another service has this name",
            ),
            (
                vec![ServiceAccess::new("cluster", "/ecs/c")],
                "invalid services[0].name = cluster: the cluster and instance roles have this name: choose another",
            ),
            (
                vec![ServiceAccess::new("Api", "/ecs/api")],
                "invalid services[0].name = Api: a service name is lowercase letters, digits and -, not starting with -",
            ),
            (
                vec![api(), ServiceAccess::new("w", "/ecs/*")],
                "invalid services[1].log_group = /ecs/*: a log group name is 1 to 512 characters, without '*'",
            ),
        ] {
            let c = IamConfig::default().with_services(services);
            assert_eq!(c.validate().unwrap_err().to_string(), error);
        }
        // At the limits: a role name of exactly 64 characters, a log group of exactly 512.
        let group = format!("/{}", "g".repeat(511));
        IamConfig::default()
            .with_services([
                ServiceAccess::new(&"s".repeat(55), "/ecs/x"),
                ServiceAccess::new("order-api-2", &group),
            ])
            .validate()
            .unwrap();
        for bad in [String::new(), format!("{group}g")] {
            let c = IamConfig::default().with_services([ServiceAccess::new("api", &bad)]);
            assert!(
                c.validate()
                    .unwrap_err()
                    .to_string()
                    .starts_with("invalid services[0].log_group = "),
                "{bad}"
            );
        }
        let long = "s".repeat(56);
        let c = IamConfig::default().with_services([ServiceAccess::new(&long, "/ecs/x")]);
        assert_eq!(
            c.validate().unwrap_err().to_string(),
            format!(
                "invalid services[0].name = {long}: its role ecs-{long}-role would be 65 characters, IAM allows 64"
            )
        );
        let c = IamConfig::default().with_name_prefix("bad prefix");
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .starts_with("invalid name_prefix = \"bad prefix\"")
        );
    }
}

/// The compatibility rule of [`Stack::OUTPUTS_SCHEMA`](platform_core::Stack::OUTPUTS_SCHEMA): what a
/// producer of schema 1 recorded stays readable by this build (a field added without a default,
/// or renamed, fails here).
#[cfg(test)]
mod outputs_compatibility {
    use super::*;

    /// `IamOutputs` as schema 1 recorded them.
    const SCHEMA_1: &str = r#"{
        "account_id": "123456789012", "region": "us-east-1",
        "cluster_role": {"name": "ecs-cluster-role", "arn": "arn:aws:iam::123456789012:role/ecs-cluster-role"},
        "instance_role": {"name": "ecs-instance-role", "arn": "arn:aws:iam::123456789012:role/ecs-instance-role"},
        "frontend_role": {"name": "frontend-role", "arn": "arn:aws:iam::123456789012:role/frontend-role"},
        "cluster_policy_arn": "arn:aws:iam::123456789012:policy/ecs-cluster-policy",
        "instance_policy_arn": "arn:aws:iam::123456789012:policy/ecs-instance-policy",
        "frontend_policy_arn": "arn:aws:iam::123456789012:policy/frontend-policy",
        "instance_profile_name": "ecs-instance-profile",
        "instance_profile_arn": "arn:aws:iam::123456789012:instance-profile/ecs-instance-profile"
    }"#;

    #[test]
    fn outputs_recorded_by_schema_1_are_read_by_this_build() {
        let read: IamOutputs = serde_json::from_str(SCHEMA_1).unwrap();
        assert_eq!(
            read.service_role_arn("frontend").unwrap(),
            "arn:aws:iam::123456789012:role/frontend-role"
        );
        assert_eq!(
            read.services["frontend"].policy_arn,
            "arn:aws:iam::123456789012:policy/frontend-policy"
        );
        // Written by this build, read back the same (the frontend is under `services`).
        let json = serde_json::to_string(&read).unwrap();
        assert!(!json.contains("frontend_role"), "{json}");
        assert_eq!(serde_json::from_str::<IamOutputs>(&json).unwrap(), read);
        assert_eq!(<IamStack as Stack>::OUTPUTS_SCHEMA, 1);
    }
}
