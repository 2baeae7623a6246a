//! The platform's config file (TOML): what an operator changes without editing Rust.
//!
//! Every key is optional; a missing one keeps the seed's value. Unknown keys are refused. Values are
//! checked by the stacks' own validation before any AWS call, and an error names the key as written
//! in the file with the value and the reason (`cluster.cpu = 300: Fargate CPU is one of 256, ...`).
//! [`template`] is the default file, a comment per key (`production init` writes it).

use std::path::{Path, PathBuf};

use std::collections::BTreeMap;
use std::sync::Arc;

use cluster_stack::{Autoscaling, HealthCheck, LoadBalancerConfig, Route, ServiceConfig};
use network_stack::resources::{Peer, PortRange, Protocol, SgRule};
use network_stack::{BalancerAccess, SubnetSpec};
use platform_core::ValidationError;
use platform_core::policy::{Enforcement, Policies, RegoPolicy};
use serde::{Deserialize, Serialize};

use crate::Platform;

/// The file: one section per stack.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlatformConfig {
    /// The IAM stack.
    #[serde(default)]
    pub iam: IamSection,
    /// The network stack.
    #[serde(default)]
    pub network: NetworkSection,
    /// The cluster stack.
    #[serde(default)]
    pub cluster: ClusterSection,
    /// `[load_balancer]`: an Application Load Balancer in front of the services that set a `path`
    /// or `host` (none without the table).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<LoadBalancerSection>,
    /// `[[service]]`: the services the cluster runs, one table each (none: the seed's `frontend`,
    /// or the one `[cluster]`'s per-service keys describe).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub service: Vec<ServiceSection>,
    /// Tags on every taggable resource of the three stacks (as the AWS provider's `default_tags`).
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// The policies every plan is checked against.
    #[serde(default)]
    pub policy: PolicySection,
    /// `[env.NAME]`: per environment, the keys that differ from the file's (a scalar replaces, a
    /// table merges key by key, a list replaces the whole list). See [`environment`](Self::environment).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, toml::Table>,
    /// The environment this config is for (`None`: the file as written, i.e. `production`).
    #[serde(skip)]
    pub environment: Option<String>,
}

/// The environment a platform is in unless `--env` names another: it keeps the seed's stack and AWS
/// names.
pub const DEFAULT_ENV: &str = "production";

/// `[policy]`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySection {
    /// Tag keys every taggable resource must carry (the `required-tags` rule).
    #[serde(default)]
    pub required_tags: Vec<String>,
    /// A rule's enforcement instead of its own: `{ image-pinned = "mandatory", log-retention = "off" }`.
    #[serde(default)]
    pub rules: BTreeMap<String, Enforcement>,
    /// Rego files or directories (conftest's `deny` / `warn` rules in `package main`), relative
    /// to the config file.
    #[serde(default)]
    pub paths: Vec<PathBuf>,
}

/// One extra inbound rule of the service security group: `{ protocol = "tcp", port = 22, cidr = "203.0.113.0/24" }`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngressRule {
    /// `tcp` (the default), `udp` or `all`.
    #[serde(default = "tcp")]
    pub protocol: Protocol,
    /// The port (TCP and UDP), or the first of a range.
    pub port: Option<u16>,
    /// The last port of a range (default: `port`).
    pub to_port: Option<u16>,
    /// The peer's IPv4 block.
    pub cidr: String,
}

fn tcp() -> Protocol {
    Protocol::Tcp
}

impl IngressRule {
    fn rule(&self) -> SgRule {
        SgRule {
            protocol: self.protocol,
            ports: self.port.map(|from| PortRange {
                from,
                to: self.to_port.unwrap_or(from),
            }),
            peer: Peer::Cidr(self.cidr.clone()),
        }
    }
}

/// `[iam]`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IamSection {
    /// The stack's name in the state store.
    pub stack_name: Option<String>,
    /// Prefix of every role, policy and profile name.
    pub name_prefix: Option<String>,
    /// The IAM path of the roles, policies and profile.
    pub path: Option<String>,
}

/// `[network]`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkSection {
    /// The stack's name in the state store.
    pub stack_name: Option<String>,
    /// Prefix of the `Name` tags.
    pub name_prefix: Option<String>,
    /// The VPC's block.
    pub vpc_cidr: Option<String>,
    /// The public subnets' blocks, one subnet per zone, in order.
    pub public_subnets: Option<Vec<String>>,
    /// Inbound rules of the service security group besides the service's own port.
    #[serde(default)]
    pub ingress: Vec<IngressRule>,
}

/// `[cluster]`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSection {
    /// The stack's name in the state store.
    pub stack_name: Option<String>,
    /// The ECS cluster's name.
    pub cluster_name: Option<String>,
    /// The ECS service's name.
    pub service_name: Option<String>,
    /// The task definition family.
    pub family: Option<String>,
    /// The container's name.
    pub container_name: Option<String>,
    /// The container image.
    pub image: Option<String>,
    /// CPU units (Fargate sizes).
    pub cpu: Option<u32>,
    /// Memory in MiB (allowed with that CPU).
    pub memory: Option<u32>,
    /// How many tasks to run.
    pub desired_count: Option<i32>,
    /// The port the container listens on.
    pub container_port: Option<u16>,
    /// The log group.
    pub log_group: Option<String>,
    /// Days to keep logs (one of CloudWatch's values).
    pub log_retention_days: Option<i32>,
    /// Variables set from secrets at start: name to the full ARN of a Secrets Manager secret or an
    /// SSM parameter (the execution role may read exactly these).
    pub secrets: Option<BTreeMap<String, String>>,
    /// The container's health check.
    pub health_check: Option<HealthCheckSection>,
}

/// `[[service]]`: one ECS service with its own task definition, log group (`/ecs/NAME`), role and
/// least-privilege policy. A missing key keeps [`ServiceConfig::new`]'s value.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSection {
    /// The service's short name (`api`): the ECS service `NAME-service`, the family `NAME`, the log
    /// group `/ecs/NAME`, the role `PREFIX-NAME-role`.
    pub name: String,
    /// The container image.
    pub image: Option<String>,
    /// CPU units (Fargate sizes).
    pub cpu: Option<u32>,
    /// Memory in MiB (allowed with that CPU).
    pub memory: Option<u32>,
    /// How many tasks to run.
    pub desired_count: Option<i32>,
    /// The port the container listens on (the security group admits it).
    pub container_port: Option<u16>,
    /// Environment variables of the container.
    pub environment: Option<BTreeMap<String, String>>,
    /// Variables set from secrets at start: name to the full ARN of a Secrets Manager secret or an
    /// SSM parameter (its execution role may read exactly these).
    pub secrets: Option<BTreeMap<String, String>>,
    /// The container's health check.
    pub health_check: Option<HealthCheckSection>,
    /// Days to keep its logs (one of CloudWatch's values).
    pub log_retention_days: Option<i32>,
    /// Target tracking of its task count on CPU (Application Auto Scaling). While it is on, the
    /// count is the scaler's: the service starts at `min`, and `desired_count` is refused.
    pub autoscaling: Option<AutoscalingSection>,
    /// Behind the load balancer: requests whose path matches this pattern (`/api/*`).
    pub path: Option<String>,
    /// Behind the load balancer: requests for this host name.
    pub host: Option<String>,
    /// The path the balancer's health check asks (default `/`).
    pub health_check_path: Option<String>,
    /// Seconds between the balancer's health checks (5 to 300, default 30).
    pub health_check_interval_secs: Option<u32>,
    /// Successes in a row that make a task healthy (2 to 10, default 5).
    pub healthy_threshold: Option<u32>,
    /// Failures in a row that make it unhealthy (2 to 10, default 2).
    pub unhealthy_threshold: Option<u32>,
    /// Seconds ECS ignores a new task's failing balancer health checks (default 60).
    pub health_check_grace_period_secs: Option<u32>,
}

/// `[load_balancer]`: an internet-facing Application Load Balancer over the public subnets (two
/// zones at least), HTTP on 80, and HTTPS on 443 with a certificate (80 then redirects there).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadBalancerSection {
    /// Its name (default: the cluster's name and `-alb`).
    pub name: Option<String>,
    /// An ACM certificate ARN: HTTPS on 443.
    pub certificate_arn: Option<String>,
    /// Seconds a connection may stay idle (1 to 4000).
    pub idle_timeout_secs: Option<u32>,
    /// Seconds a task leaving a target group keeps its connections (0 to 3600).
    pub deregistration_delay_secs: Option<u32>,
}

impl LoadBalancerSection {
    fn config(&self) -> LoadBalancerConfig {
        let mut c = LoadBalancerConfig::default();
        c.name.clone_from(&self.name);
        c.certificate_arn.clone_from(&self.certificate_arn);
        set(&mut c.idle_timeout_secs, &self.idle_timeout_secs);
        set(
            &mut c.deregistration_delay_secs,
            &self.deregistration_delay_secs,
        );
        c
    }
}

/// `autoscaling = { min = 1, max = 4, target_cpu_percent = 60 }`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AutoscalingSection {
    /// The fewest tasks (the service starts with this many).
    pub min: i32,
    /// The most tasks.
    pub max: i32,
    /// The average CPU utilisation to keep, in percent (1 to 100).
    pub target_cpu_percent: u32,
}

impl ServiceSection {
    fn service(&self) -> ServiceConfig {
        let mut s = ServiceConfig::new(&self.name);
        set(&mut s.image, &self.image);
        set(&mut s.cpu, &self.cpu);
        set(&mut s.memory, &self.memory);
        set(&mut s.desired_count, &self.desired_count);
        set(&mut s.container_port, &self.container_port);
        set(&mut s.environment, &self.environment);
        set(&mut s.secrets, &self.secrets);
        if let Some(days) = self.log_retention_days {
            s.log_retention_days = Some(days);
        }
        s.health_check = self.health_check.as_ref().map(HealthCheckSection::check);
        s.autoscaling = self
            .autoscaling
            .map(|a| Autoscaling::new(a.min, a.max, a.target_cpu_percent));
        s.route = self.route();
        s
    }

    /// Its route through the balancer: set by `path` or `host`, or by any health check key (which
    /// the route's validation then refuses without a path or host).
    fn route(&self) -> Option<Route> {
        let keys = [
            self.health_check_path.is_some(),
            self.health_check_interval_secs.is_some(),
            self.healthy_threshold.is_some(),
            self.unhealthy_threshold.is_some(),
            self.health_check_grace_period_secs.is_some(),
        ];
        if self.path.is_none() && self.host.is_none() && !keys.contains(&true) {
            return None;
        }
        let mut r = Route::path("/");
        r.path.clone_from(&self.path);
        r.host.clone_from(&self.host);
        let h = &mut r.health_check;
        set(&mut h.path, &self.health_check_path);
        set(&mut h.interval_secs, &self.health_check_interval_secs);
        set(&mut h.healthy_threshold, &self.healthy_threshold);
        set(&mut h.unhealthy_threshold, &self.unhealthy_threshold);
        set(
            &mut r.health_check_grace_period_secs,
            &self.health_check_grace_period_secs,
        );
        Some(r)
    }
}

/// `[cluster.health_check]`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckSection {
    /// `["CMD-SHELL", "curl -f http://localhost/ || exit 1"]`.
    pub command: Vec<String>,
    /// Seconds between checks (default 30).
    pub interval_secs: Option<i32>,
    /// Failures in a row before unhealthy (default 3).
    pub retries: Option<i32>,
}

impl HealthCheckSection {
    fn check(&self) -> HealthCheck {
        let mut check = HealthCheck::new(self.command.clone());
        set(&mut check.interval_secs, &self.interval_secs);
        set(&mut check.retries, &self.retries);
        check
    }
}

impl ClusterSection {
    /// The per-service keys set, as `cluster.KEY` (the one-service shorthand of `[[service]]`).
    fn service_keys(&self) -> Vec<&'static str> {
        [
            ("service_name", self.service_name.is_some()),
            ("family", self.family.is_some()),
            ("container_name", self.container_name.is_some()),
            ("image", self.image.is_some()),
            ("cpu", self.cpu.is_some()),
            ("memory", self.memory.is_some()),
            ("desired_count", self.desired_count.is_some()),
            ("container_port", self.container_port.is_some()),
            ("log_group", self.log_group.is_some()),
            ("log_retention_days", self.log_retention_days.is_some()),
            ("secrets", self.secrets.is_some()),
            ("health_check", self.health_check.is_some()),
        ]
        .into_iter()
        .filter_map(|(key, set)| set.then_some(key))
        .collect()
    }
}

/// Why a config file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// It cannot be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// It is not TOML of this shape (an unknown key, a wrong type).
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message, naming the key and the line.
        message: String,
    },
    /// A Rego policy that cannot be read or does not parse.
    #[error("{0}")]
    Policy(#[from] platform_core::policy::RegoError),
    /// A value the stacks refuse.
    #[error("{path}: {key} = {value}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The key as written in the file (`cluster.cpu`).
        key: String,
        /// The value.
        value: String,
        /// Why.
        reason: String,
    },
}

impl PlatformConfig {
    /// Reads and parses `path` (unknown keys refused).
    ///
    /// # Errors
    /// [`ConfigError::Read`], [`ConfigError::Parse`].
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Parses `text`, read from `path`.
    ///
    /// # Errors
    /// [`ConfigError::Parse`].
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let config: Self = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        // Every environment's keys are checked now, whichever one runs.
        for name in config.env.keys() {
            config.environment(path, name)?;
        }
        Ok(config)
    }

    /// This config for environment `name`: the file's keys with `[env.NAME]`'s over them (a scalar
    /// replaces, a table merges key by key, a list replaces the whole list). Applied to a platform,
    /// an environment other than [`DEFAULT_ENV`] names its stacks `NAME-iam`, `NAME-network`,
    /// `NAME-cluster` and prefixes every AWS name it makes with `NAME-`, so environments live side
    /// by side in one account and region.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] for a name that is not 1 to 20 lowercase letters, digits and `-`;
    /// [`ConfigError::Parse`] for an `[env.NAME]` key the file does not have, or of another type.
    pub fn environment(&self, path: &Path, name: &str) -> Result<Self, ConfigError> {
        if !platform_core::resource::is_lowercase_name(name, 20) {
            return Err(ConfigError::Invalid {
                path: path.to_owned(),
                key: "env".into(),
                value: name.to_owned(),
                reason: "an environment is 1 to 20 lowercase letters, digits and -, not starting with - (it prefixes stack and AWS names)".into(),
            });
        }
        let mut base = self.clone();
        base.env.clear();
        base.environment = None;
        let mut merged = toml::Table::try_from(&base).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        if let Some(over) = self.env.get(name) {
            merge(&mut merged, over);
        }
        let mut config: Self =
            toml::Value::Table(merged)
                .try_into()
                .map_err(|e: toml::de::Error| ConfigError::Parse {
                    path: path.to_owned(),
                    message: format!("[env.{name}]: {}", e.to_string().trim_end()),
                })?;
        config.environment = Some(name.to_owned());
        Ok(config)
    }

    /// Sets `platform`'s stacks from the file and validates them, as `up` would before any call.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the first key whose value a stack refuses.
    pub fn apply(&self, path: &Path, platform: &mut Platform) -> Result<(), ConfigError> {
        let (iam, net, cluster) = (&self.iam, &self.network, &self.cluster);
        let i = &mut platform.iam;
        set(&mut i.stack_name, &iam.stack_name);
        set(&mut i.name_prefix, &iam.name_prefix);
        set(&mut i.path, &iam.path);
        let n = &mut platform.network;
        set(&mut n.stack_name, &net.stack_name);
        set(&mut n.name_prefix, &net.name_prefix);
        set(&mut n.vpc_cidr, &net.vpc_cidr);
        if let Some(subnets) = &net.public_subnets {
            n.public_subnets = subnets
                .iter()
                .enumerate()
                .map(|(zone, cidr)| SubnetSpec::public(cidr, zone))
                .collect();
        }
        if let (Some(key), false) = (cluster.service_keys().first(), self.service.is_empty()) {
            return Err(ConfigError::Invalid {
                path: path.to_owned(),
                key: format!("cluster.{key}"),
                value: "set".into(),
                reason: "[cluster]'s per-service keys describe the one service of a file without [[service]] tables, and this file has both: keep the [[service]] tables (move the key into them) or remove them".into(),
            });
        }
        let c = &mut platform.cluster;
        set(&mut c.stack_name, &cluster.stack_name);
        set(&mut c.cluster_name, &cluster.cluster_name);
        if self.service.is_empty() {
            let first = &mut c.services[0];
            set(&mut first.service_name, &cluster.service_name);
            set(&mut first.family, &cluster.family);
            set(&mut first.container_name, &cluster.container_name);
            set(&mut first.image, &cluster.image);
            set(&mut first.cpu, &cluster.cpu);
            set(&mut first.memory, &cluster.memory);
            set(&mut first.desired_count, &cluster.desired_count);
            set(&mut first.container_port, &cluster.container_port);
            set(&mut first.log_group, &cluster.log_group);
            if let Some(days) = cluster.log_retention_days {
                first.log_retention_days = Some(days);
            }
            set(&mut first.secrets, &cluster.secrets);
            if let Some(h) = &cluster.health_check {
                first.health_check = Some(h.check());
            }
        } else {
            for (i, s) in self.service.iter().enumerate() {
                if let (Some(count), Some(_)) = (s.desired_count, s.autoscaling) {
                    return Err(ConfigError::Invalid {
                        path: path.to_owned(),
                        key: format!("service[{i}].desired_count"),
                        value: count.to_string(),
                        reason: "with autoscaling the count is the scaler's (the service starts at autoscaling.min): remove desired_count".into(),
                    });
                }
            }
            c.services = self.service.iter().map(ServiceSection::service).collect();
        }
        if let Some(env) = self.environment.as_deref().filter(|e| *e != DEFAULT_ENV) {
            c.stack_name = in_env(env, &c.stack_name);
            c.cluster_name = in_env(env, &c.cluster_name);
            for s in &mut c.services {
                for name in [&mut s.service_name, &mut s.family, &mut s.log_group] {
                    *name = in_env(env, name);
                }
            }
            let i = &mut platform.iam;
            i.stack_name = in_env(env, &i.stack_name);
            i.name_prefix = in_env(env, &i.name_prefix);
            let n = &mut platform.network;
            n.stack_name = in_env(env, &n.stack_name);
            n.name_prefix = in_env(env, &n.name_prefix);
        }
        // The service security group admits every service's port (from anywhere, as the seed's
        // port 80; a service behind the balancer from the balancer's group only), then the file's
        // own rules.
        let env = self.environment.as_deref().filter(|e| *e != DEFAULT_ENV);
        c.load_balancer = self.load_balancer.as_ref().map(|section| {
            let mut lb = section.config();
            if let (Some(env), Some(name)) = (env, &mut lb.name) {
                *name = in_env(env, name);
            }
            lb
        });
        let behind_balancer = |s: &ServiceConfig| s.route.is_some() && c.load_balancer.is_some();
        let ports = |behind: bool| -> Vec<u16> {
            let mut p: Vec<u16> = c
                .services
                .iter()
                .filter(|s| behind_balancer(s) == behind)
                .map(|s| s.container_port)
                .collect();
            p.sort_unstable();
            p.dedup();
            p
        };
        let (direct, behind) = (ports(false), ports(true));
        platform.network.balancer = c
            .load_balancer
            .as_ref()
            .map(|lb| BalancerAccess::new(lb.listener_ports(), behind.clone()));
        platform.network.ingress = direct
            .into_iter()
            .map(|port| SgRule::tcp(port, "0.0.0.0/0"))
            .collect();
        platform
            .network
            .ingress
            .extend(net.ingress.iter().map(IngressRule::rule));
        for (k, v) in &self.tags {
            platform.iam.tags.insert(k.clone(), v.clone());
            platform.network.tags.insert(k.clone(), v.clone());
            platform.cluster.tags.insert(k.clone(), v.clone());
        }
        platform.policies = self.policies(path)?;
        // The IAM policies name the cluster and the log group the cluster stack makes.
        platform
            .iam
            .cluster_name
            .clone_from(&platform.cluster.cluster_name);
        let services = !self.service.is_empty();
        let invalid = |section: &str, e: ValidationError| ConfigError::Invalid {
            path: path.to_owned(),
            key: config_key(section, &e.field, services),
            value: e.value,
            reason: e.reason,
        };
        // Stack names become file and object names: the engine's rule, checked here first.
        for (section, name) in [
            ("iam", &platform.iam.stack_name),
            ("network", &platform.network.stack_name),
            ("cluster", &platform.cluster.stack_name),
        ] {
            platform_core::state::validate_stack_name(name).map_err(|e| {
                invalid(
                    section,
                    ValidationError::new("stack_name", e.value, e.reason),
                )
            })?;
        }
        // Each service's role, as the platform applies it.
        platform
            .iam_config()
            .validate()
            .map_err(|e| invalid("iam", e))?;
        platform
            .network
            .validate()
            .map_err(|e| invalid("network", e))?;
        if platform.cluster.load_balancer.is_some() && platform.network.public_subnets.len() < 2 {
            return Err(ConfigError::Invalid {
                path: path.to_owned(),
                key: "network.public_subnets".into(),
                value: format!("{} subnet(s)", platform.network.public_subnets.len()),
                reason: "[load_balancer] needs public subnets in at least two zones (an Application Load Balancer spans two or more): list two blocks".into(),
            });
        }
        platform
            .cluster
            .validate()
            .map_err(|e| invalid("cluster", e))?;
        Ok(())
    }
}

impl PlatformConfig {
    /// The built-in rules with `[policy]`'s required tags, the Rego policies of `[policy] paths`
    /// (relative to `path`'s directory), and `[policy] rules`' enforcements.
    ///
    /// # Errors
    /// [`ConfigError::Policy`] for a Rego file that cannot be read or parsed;
    /// [`ConfigError::Invalid`] for a rule id that names no policy.
    pub fn policies(&self, path: &Path) -> Result<Policies, ConfigError> {
        let mut policies = crate::policies::builtin(&self.policy.required_tags);
        let dir = path.parent().unwrap_or(Path::new(""));
        let paths: Vec<PathBuf> = self.policy.paths.iter().map(|p| dir.join(p)).collect();
        for p in RegoPolicy::load(&paths)? {
            policies.add(Arc::new(p));
        }
        for (id, enforcement) in &self.policy.rules {
            policies
                .enforce(id, *enforcement)
                .map_err(|e| ConfigError::Invalid {
                    path: path.to_owned(),
                    key: format!("policy.rules.{id}"),
                    value: enforcement.to_string(),
                    reason: e.reason,
                })?;
        }
        Ok(policies)
    }
}

/// `over`'s keys over `base`'s: a table merges key by key, anything else (a scalar, a list)
/// replaces.
fn merge(base: &mut toml::Table, over: &toml::Table) {
    for (k, v) in over {
        match (base.get_mut(k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            _ => {
                base.insert(k.clone(), v.clone());
            }
        }
    }
}

/// `name` in environment `env`: `env-name` (the last segment of a path-like name, so that a log
/// group `/ecs/frontend` is `/ecs/staging-frontend`).
fn in_env(env: &str, name: &str) -> String {
    match name.rsplit_once('/') {
        Some((dir, last)) => format!("{dir}/{env}-{last}"),
        None => format!("{env}-{name}"),
    }
}

fn set<T: Clone>(target: &mut T, value: &Option<T>) {
    if let Some(v) = value {
        target.clone_from(v);
    }
}

/// A stack's field name as the file's key: `public_subnets[1].cidr` is `public_subnets[1]`; a
/// service's `services[1].cpu` is `service[1].cpu` in a file with `[[service]]` tables, `cluster.cpu`
/// in one without.
fn config_key(section: &str, field: &str, services: bool) -> String {
    let field = field.strip_suffix(".cidr").unwrap_or(field);
    match field.strip_prefix("services[") {
        Some(rest) if services => format!("service[{rest}"),
        Some(rest) => format!(
            "cluster.{}",
            rest.split_once("].").map_or(rest, |(_, key)| key)
        ),
        None => format!("{section}.{field}"),
    }
}

/// The seed's platform on an engine that needs no AWS (a fixed account, state in memory), with
/// `text` applied for environment `env`: what the library's tests plan against.
#[cfg(test)]
pub(crate) fn offline(text: &str, env: &str) -> Platform {
    let engine = platform_core::Engine::builder(platform_core::MemoryStateStore::new())
        .provider(platform_core::ProviderInfo {
            account_id: "123456789012".into(),
            region: "eu-west-1".into(),
        })
        .build();
    let mut p = Platform::new(engine);
    let path = Path::new("platform.toml");
    PlatformConfig::parse(path, text)
        .unwrap()
        .environment(path, env)
        .unwrap()
        .apply(path, &mut p)
        .unwrap();
    p
}

/// The default file: every key with the seed's value and a comment saying what it is.
pub fn template() -> String {
    let i = iam_stack::IamConfig::default();
    let n = network_stack::NetworkConfig::default();
    let c = cluster_stack::ClusterConfig::default();
    let f = &c.services[0];
    let subnets: Vec<String> = n
        .public_subnets
        .iter()
        .map(|s| format!("{:?}", s.cidr))
        .collect();
    format!(
        r#"# The production platform's config (`production --config FILE`). Every key is optional: a
# missing one keeps the value shown. Unknown keys are refused.

[iam]
# The stack's name in the state store (letters, digits, - and _).
stack_name = {iam_stack:?}
# Prefix of every role, policy and instance profile name (PREFIX-cluster-role, ...).
name_prefix = {iam_prefix:?}
# The IAM path of the roles, policies and profile.
path = {iam_path:?}

[network]
# The stack's name in the state store.
stack_name = {net_stack:?}
# Prefix of the Name tags (PREFIX-vpc, PREFIX-public-0, ...).
name_prefix = {net_prefix:?}
# The VPC's block.
vpc_cidr = {vpc:?}
# The public subnets' blocks inside the VPC's, one subnet per availability zone, in zone order.
public_subnets = [{subnets}]
# Inbound rules of the service security group besides TCP 80 from anywhere (protocol tcp, udp or
# all; port, or port and to_port for a range). The policies refuse SSH / RDP, and any port no
# service listens on, from 0.0.0.0/0: admit your own block.
# ingress = [{{ protocol = "tcp", port = 22, cidr = "203.0.113.0/24" }}]

[cluster]
# The stack's name in the state store.
stack_name = {c_stack:?}
# The ECS cluster's name (the IAM policies name it too).
cluster_name = {cluster:?}
# The ECS service's name.
service_name = {service:?}
# The task definition family.
family = {family:?}
# The container's name.
container_name = {container:?}
# The container image.
image = {image:?}
# CPU units: 256, 512, 1024, 2048, 4096, 8192 or 16384 (Fargate).
cpu = {cpu}
# Memory in MiB, one of the values Fargate allows with that CPU (512 to 2048 with 256 CPU).
memory = {memory}
# How many tasks the service runs.
desired_count = {count}
# The port the container listens on (the security group admits it from anywhere).
container_port = {port}
# The frontend's log group (the IAM policies name it too).
log_group = {log_group:?}
# Days to keep its logs: 1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, ... (CloudWatch's values).
log_retention_days = {retention}
# Variables ECS sets from secrets at start (full ARNs; the execution role may read exactly these):
# secrets = {{ DB_PASSWORD = "arn:aws:secretsmanager:REGION:ACCOUNT:secret:db-AbCdEf" }}
# The container's health check (interval 5 to 300 s, retries 1 to 10):
# health_check = {{ command = ["CMD-SHELL", "curl -f http://localhost/ || exit 1"], interval_secs = 30, retries = 3 }}

# More than one service: a [[service]] table each, instead of [cluster]'s per-service keys above
# (a file with both is refused). Each gets its own task definition, log group /ecs/NAME, ECS
# service NAME-service and role PREFIX-NAME-role, whose policy allows exactly its own log group
# and secrets; the security group admits every service's container_port. Keys: name, image, cpu,
# memory, desired_count, container_port, environment, secrets, health_check, log_retention_days,
# autoscaling (target tracking on CPU; the count is then the scaler's, desired_count is refused).
# [[service]]
# name = "frontend"
# [[service]]
# name = "api"
# image = "public.ecr.aws/nginx/nginx:1.27"
# container_port = 8080
# environment = {{ MODE = "api" }}
# autoscaling = {{ min = 1, max = 4, target_cpu_percent = 60 }}

# Tags on every taggable resource of the three stacks (as the AWS provider's default_tags).
# [tags]
# team = "platform"

# The policies every plan is checked against before any change (README, "Policies").
# [policy]
# Tag keys every taggable resource must carry (rule required-tags).
# required_tags = ["team"]
# A rule's enforcement: mandatory (up changes nothing, exit 3), advisory (reported) or off.
# rules = {{ image-pinned = "mandatory", log-retention = "off" }}
# Rego files or directories (deny / warn rules in package main), relative to this file.
# paths = ["policies"]

# Per environment (`production --env staging`), the keys that differ: a scalar replaces, a table
# merges, a list replaces. Another environment's stacks and AWS names start with its name.
# [env.staging.cluster]
# log_retention_days = 7
"#,
        iam_stack = i.stack_name,
        iam_prefix = i.name_prefix,
        iam_path = i.path,
        net_stack = n.stack_name,
        net_prefix = n.name_prefix,
        vpc = n.vpc_cidr,
        subnets = subnets.join(", "),
        c_stack = c.stack_name,
        cluster = c.cluster_name,
        service = f.service_name,
        family = f.family,
        container = f.container_name,
        image = f.image,
        cpu = f.cpu,
        memory = f.memory,
        count = f.desired_count,
        port = f.container_port,
        log_group = f.log_group,
        retention = f.log_retention_days.unwrap_or(30),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn platform() -> Platform {
        let engine = platform_core::Engine::builder(platform_core::MemoryStateStore::new()).build();
        Platform::new(engine)
    }

    #[test]
    fn the_template_parses_to_the_seed_and_changes_nothing() {
        let path = Path::new("platform.toml");
        let file = PlatformConfig::parse(path, &template()).unwrap();
        let mut p = platform();
        file.apply(path, &mut p).unwrap();
        let seed = platform();
        assert_eq!(format!("{:?}", p.iam), format!("{:?}", seed.iam));
        assert_eq!(format!("{:?}", p.network), format!("{:?}", seed.network));
        assert_eq!(format!("{:?}", p.cluster), format!("{:?}", seed.cluster));
        // Every key is in the template, with a comment above it.
        let text = template();
        let lines: Vec<&str> = text.lines().collect();
        for (i, l) in lines.iter().enumerate() {
            if l.contains(" = ") && !l.starts_with('#') {
                assert!(lines[i - 1].starts_with("# "), "no comment for {l}");
            }
        }
        let keys = lines
            .iter()
            .filter(|l| l.contains(" = ") && !l.starts_with('#'))
            .count();
        assert_eq!(keys, 3 + 4 + 12);
    }

    #[test]
    fn values_are_applied_to_the_stacks_and_the_names_they_share() {
        let path = Path::new("p.toml");
        let file = PlatformConfig::parse(
            path,
            r#"
            [network]
            public_subnets = ["10.0.1.0/24", "10.0.2.0/24"]
            [cluster]
            image = "nginx:1.27"
            desired_count = 2
            cluster_name = "shop"
            log_group = "/ecs/shop"
            log_retention_days = 7
            "#,
        )
        .unwrap();
        let mut p = platform();
        file.apply(path, &mut p).unwrap();
        let f = &p.cluster.services[0];
        assert_eq!(f.image, "nginx:1.27");
        assert_eq!(f.desired_count, 2);
        assert_eq!(f.log_retention_days, Some(7));
        assert_eq!(p.network.public_subnets.len(), 2);
        assert_eq!(p.network.public_subnets[1].cidr, "10.0.2.0/24");
        assert_eq!(
            p.network.public_subnets[1],
            SubnetSpec::public("10.0.2.0/24", 1)
        );
        assert_eq!(p.iam.cluster_name, "shop");
        assert_eq!(p.iam_config().services[0].log_group, "/ecs/shop");
    }

    #[test]
    fn an_invalid_value_names_the_key_the_value_and_the_reason() {
        let path = Path::new("p.toml");
        let cases = [
            (
                "[cluster]\ncpu = 300",
                "p.toml: cluster.cpu = 300: Fargate CPU is one of 256, 512, 1024, 2048, 4096, 8192, 16384",
            ),
            (
                "[cluster]\nmemory = 4096",
                "p.toml: cluster.memory = 4096: with cpu 256, Fargate memory is one of 512, 1024, 2048",
            ),
            (
                "[network]\npublic_subnets = [\"10.0.1.0/24\", \"10.9.0.0/24\"]",
                "p.toml: network.public_subnets[1] = 10.9.0.0/24: not inside the VPC block 10.0.0.0/16",
            ),
            (
                "[iam]\nstack_name = \"../iam\"",
                "p.toml: iam.stack_name = ",
            ),
        ];
        for (text, expected) in cases {
            let file = PlatformConfig::parse(path, text).unwrap();
            let err = file.apply(path, &mut platform()).unwrap_err().to_string();
            assert!(err.starts_with(expected), "{text}: {err}");
        }
    }

    const TWO_ENVS: &str = r#"
        [cluster]
        image = "nginx:1.27"
        log_retention_days = 30
        [network]
        public_subnets = ["10.0.1.0/24", "10.0.2.0/24"]
        [env.staging.cluster]
        log_retention_days = 7
        [env.staging.network]
        public_subnets = ["10.0.1.0/24"]
        [env.staging.tags]
        env = "staging"
        "#;

    #[test]
    fn an_environment_overrides_its_keys_and_prefixes_every_name() {
        let path = Path::new("p.toml");
        let file = PlatformConfig::parse(path, TWO_ENVS).unwrap();
        let mut prod = platform();
        file.environment(path, DEFAULT_ENV)
            .unwrap()
            .apply(path, &mut prod)
            .unwrap();
        assert_eq!(prod.stack_names(), ["iam", "network", "cluster"]);
        assert_eq!(prod.cluster.cluster_name, "my-ecs-cluster");
        assert_eq!(prod.network.public_subnets.len(), 2);
        assert_eq!(prod.cluster.services[0].log_retention_days, Some(30));

        let mut staging = platform();
        file.environment(path, "staging")
            .unwrap()
            .apply(path, &mut staging)
            .unwrap();
        assert_eq!(
            staging.stack_names(),
            ["staging-iam", "staging-network", "staging-cluster"]
        );
        let f = &staging.cluster.services[0];
        assert_eq!(
            (
                staging.cluster.cluster_name.as_str(),
                f.service_name.as_str(),
                f.family.as_str(),
                f.log_group.as_str()
            ),
            (
                "staging-my-ecs-cluster",
                "staging-frontend-service",
                "staging-frontend",
                "/ecs/staging-frontend"
            )
        );
        assert_eq!(
            f.image, "nginx:1.27",
            "a key the environment does not set is the file's"
        );
        assert_eq!(f.log_retention_days, Some(7), "a scalar replaces");
        assert_eq!(
            staging.network.public_subnets.len(),
            1,
            "a list replaces the whole list"
        );
        assert_eq!(staging.network.name_prefix, "staging-ecs");
        assert_eq!(staging.iam.name_prefix, "staging-ecs");
        assert_eq!(staging.cluster.tags["env"], "staging", "a table merges");
        // The IAM policies name the environment's own cluster and log group.
        assert_eq!(staging.iam.cluster_name, "staging-my-ecs-cluster");
        assert_eq!(
            staging.iam_config().services[0].log_group,
            "/ecs/staging-frontend"
        );
        // An environment the file does not mention: the file's values, its own names.
        let mut qa = platform();
        file.environment(path, "qa")
            .unwrap()
            .apply(path, &mut qa)
            .unwrap();
        assert_eq!(qa.stack_names(), ["qa-iam", "qa-network", "qa-cluster"]);
        assert_eq!(qa.network.public_subnets.len(), 2);
    }

    #[test]
    fn a_bad_environment_name_or_key_is_refused_naming_it() {
        let path = Path::new("p.toml");
        let file = PlatformConfig::parse(path, TWO_ENVS).unwrap();
        for bad in ["", "Staging", "-x", "a_b", "twenty-one-characters"] {
            let err = file.environment(path, bad).unwrap_err().to_string();
            assert!(
                err.starts_with(&format!("p.toml: env = {bad}: an environment is")),
                "{err}"
            );
        }
        let err = PlatformConfig::parse(path, "[env.staging.cluster]\nreplicas = 2\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("[env.staging]") && err.contains("replicas"),
            "{err}"
        );
        let err = PlatformConfig::parse(path, "[env.staging.cluster]\ncpu = \"big\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("[env.staging]"), "{err}");
        // A name made too long by the prefix is refused naming the key and the limit.
        let long = PlatformConfig::parse(
            path,
            &format!("[iam]\nname_prefix = \"{}\"", "p".repeat(40)),
        )
        .unwrap()
        .environment(path, "staging-eu-west")
        .unwrap();
        let err = long.apply(path, &mut platform()).unwrap_err().to_string();
        assert!(
            err.starts_with("p.toml: iam.name_prefix = \"staging-eu-west-ppp"),
            "{err}"
        );
        assert!(err.ends_with("must be 1 to 47 characters"), "{err}");
    }

    const TWO_SERVICES: &str = r#"
        [[service]]
        name = "frontend"
        [[service]]
        name = "api"
        image = "nginx:1.27"
        container_port = 8080
        desired_count = 2
        environment = { MODE = "api" }
        secrets = { TOKEN = "arn:aws:ssm:eu-west-1:123456789012:parameter/api/token" }
        [network]
        ingress = [{ port = 22, cidr = "203.0.113.0/24" }]
        "#;

    #[test]
    fn each_service_gets_its_resources_its_role_and_its_port() {
        let p = offline(TWO_SERVICES, DEFAULT_ENV);
        let names: Vec<(&str, &str, &str, &str)> = p
            .cluster
            .services
            .iter()
            .map(|s| {
                (
                    s.name.as_str(),
                    s.service_name.as_str(),
                    s.family.as_str(),
                    s.log_group.as_str(),
                )
            })
            .collect();
        assert_eq!(
            names,
            [
                ("frontend", "frontend-service", "frontend", "/ecs/frontend"),
                ("api", "api-service", "api", "/ecs/api"),
            ]
        );
        let api = &p.cluster.services[1];
        assert_eq!(
            (api.image.as_str(), api.container_port, api.desired_count),
            ("nginx:1.27", 8080, 2)
        );
        assert_eq!(api.environment["MODE"], "api");
        // The security group admits both ports from anywhere, then the file's own rule.
        assert_eq!(
            p.network.ingress,
            [
                SgRule::tcp(80, "0.0.0.0/0"),
                SgRule::tcp(8080, "0.0.0.0/0"),
                SgRule::tcp(22, "203.0.113.0/24"),
            ]
        );
        // One role each: its own log group, its own secrets, the frontend's assets stay its own.
        let iam = p.iam_config();
        let scope = iam.scope();
        let docs: Vec<String> = iam
            .services
            .iter()
            .map(|s| {
                let doc = scope.service_policy(s);
                assert!(iam_stack::permissions::audit(&doc).is_empty());
                doc.to_json()
            })
            .collect();
        assert!(docs[0].contains("log-group:/ecs/frontend:*"), "{}", docs[0]);
        assert!(docs[0].contains("s3:GetObject"), "{}", docs[0]);
        assert!(!docs[0].contains("ssm:"), "{}", docs[0]);
        assert!(docs[1].contains("log-group:/ecs/api:*"), "{}", docs[1]);
        assert!(docs[1].contains("parameter/api/token"), "{}", docs[1]);
        assert!(
            !docs[1].contains("frontend") && !docs[1].contains("s3:"),
            "{}",
            docs[1]
        );

        // In staging every name is the environment's.
        let staging = offline(TWO_SERVICES, "staging");
        let api = &staging.cluster.services[1];
        assert_eq!(
            (
                api.service_name.as_str(),
                api.family.as_str(),
                api.log_group.as_str()
            ),
            ("staging-api-service", "staging-api", "/ecs/staging-api")
        );
        assert_eq!(staging.iam_config().name_prefix, "staging-ecs");
    }

    const BALANCED: &str = r#"
        [network]
        public_subnets = ["10.0.1.0/24", "10.0.2.0/24"]
        [load_balancer]
        deregistration_delay_secs = 10
        [[service]]
        name = "frontend"
        path = "/*"
        [[service]]
        name = "api"
        container_port = 8080
        path = "/api/*"
        health_check_path = "/healthz"
        healthy_threshold = 2
        [[service]]
        name = "worker"
        container_port = 9000
        "#;

    #[test]
    fn a_load_balancer_routes_services_and_only_its_group_reaches_their_ports() {
        let p = offline(BALANCED, DEFAULT_ENV);
        let lb = p.cluster.load_balancer.as_ref().unwrap();
        assert_eq!(lb.deregistration_delay_secs, 10);
        assert_eq!(lb.name_for(&p.cluster.cluster_name), "my-ecs-cluster-alb");
        let api = p.cluster.services[1].route.as_ref().unwrap();
        assert_eq!(api.path.as_deref(), Some("/api/*"));
        assert_eq!(api.health_check.path, "/healthz");
        assert_eq!(api.health_check.healthy_threshold, 2);
        assert!(p.cluster.services[2].route.is_none());
        // The balancer's group takes 80 from anywhere and reaches 80 and 8080; the services' group
        // admits only the unrouted worker's port from anywhere.
        let access = p.network.balancer.as_ref().unwrap();
        assert_eq!(
            (access.listener_ports.clone(), access.service_ports.clone()),
            (vec![80], vec![80, 8080])
        );
        assert_eq!(p.network.ingress, [SgRule::tcp(9000, "0.0.0.0/0")]);

        // One subnet: refused before any call, saying why.
        let one = BALANCED.replace(r#"["10.0.1.0/24", "10.0.2.0/24"]"#, r#"["10.0.1.0/24"]"#);
        let path = Path::new("p.toml");
        let err = PlatformConfig::parse(path, &one)
            .unwrap()
            .apply(path, &mut platform())
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("p.toml: network.public_subnets = 1 subnet(s): [load_balancer] needs public subnets in at least two zones"),
            "{err}"
        );
        // A route without a balancer, and a bad health check key, are named.
        let no_lb = BALANCED.replace(
            "[load_balancer]\n        deregistration_delay_secs = 10\n",
            "",
        );
        let err = PlatformConfig::parse(path, &no_lb)
            .unwrap()
            .apply(path, &mut platform())
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(
                "p.toml: service[0].path = set: a route needs the cluster's load balancer"
            ),
            "{err}"
        );
        let bad = BALANCED.replace("healthy_threshold = 2", "healthy_threshold = 1");
        let err = PlatformConfig::parse(path, &bad)
            .unwrap()
            .apply(path, &mut platform())
            .unwrap_err()
            .to_string();
        assert_eq!(err, "p.toml: service[1].healthy_threshold = 1: is 2 to 10");
    }

    #[tokio::test]
    async fn a_balanced_platform_declares_the_balancer_its_listener_and_a_group_and_rule_per_route()
    {
        let doc = offline(BALANCED, DEFAULT_ENV).declared().await.unwrap();
        use cluster_stack::resources::{Listener, ListenerRule, LoadBalancer, TargetGroup};
        assert_eq!(doc.of_kind::<LoadBalancer>().count(), 1);
        let listeners: Vec<u16> = doc.of_kind::<Listener>().map(|(_, l)| l.port).collect();
        assert_eq!(listeners, [80]);
        let groups: Vec<(String, u16, String)> = doc
            .of_kind::<TargetGroup>()
            .map(|(_, g)| (g.name, g.port, g.health_check.path))
            .collect();
        assert_eq!(
            groups,
            [
                ("my-ecs-cluster-frontend".to_owned(), 80, "/".to_owned()),
                ("my-ecs-cluster-api".to_owned(), 8080, "/healthz".to_owned()),
            ]
        );
        let mut rules: Vec<(u32, Option<String>)> = doc
            .of_kind::<ListenerRule>()
            .map(|(_, r)| (r.priority, r.path))
            .collect();
        rules.sort();
        assert_eq!(
            rules,
            [(10, Some("/*".into())), (20, Some("/api/*".into()))]
        );
    }

    #[tokio::test]
    async fn the_policies_take_the_listener_ports_as_declared_when_no_container_listens_there() {
        // No container on 80 or 443: the balancer's group opens them to the internet, as listeners.
        let text = BALANCED
            .replace(
                "name = \"frontend\"\n",
                "name = \"frontend\"\n        container_port = 3000\n",
            )
            .replace(
                "deregistration_delay_secs = 10",
                "certificate_arn = \"arn:aws:acm:eu-west-1:123456789012:certificate/abc\"",
            );
        let p = offline(&text, DEFAULT_ENV);
        let doc = p.declared().await.unwrap();
        let mandatory: Vec<_> = p
            .policies
            .check(&doc)
            .into_iter()
            .filter(|v| v.enforcement == platform_core::policy::Enforcement::Mandatory)
            .collect();
        assert!(mandatory.is_empty(), "{mandatory:?}");
        // With a certificate: 80 redirects to 443, where the rules are.
        use cluster_stack::resources::{Listener, ListenerDefault, ListenerRule};
        let listeners: Vec<(u16, ListenerDefault, bool)> = doc
            .of_kind::<Listener>()
            .map(|(_, l)| (l.port, l.default_action, l.certificate_arn.is_some()))
            .collect();
        assert_eq!(
            listeners,
            [
                (80, ListenerDefault::RedirectToHttps(443), false),
                (443, ListenerDefault::NotFound, true),
            ]
        );
        let on: Vec<String> = doc
            .of_kind::<ListenerRule>()
            .map(|(_, r)| format!("{:?}", r.listener_arn))
            .collect();
        assert!(on.iter().all(|l| l.contains("listener-443")), "{on:?}");
        assert_eq!(
            p.network.balancer.as_ref().unwrap().listener_ports,
            [80, 443]
        );
        // A name ELB would refuse is refused before any call.
        let long = BALANCED.replace(
            "[load_balancer]\n",
            "[load_balancer]\n        name = \"a-name-longer-than-elb-allows-it-to-be\"\n",
        );
        let path = Path::new("p.toml");
        let err = PlatformConfig::parse(path, &long)
            .unwrap()
            .apply(path, &mut platform())
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("p.toml: cluster.load_balancer.name = a-name-longer-than-elb-allows-it-to-be: an Elastic Load Balancing name is 1 to 32 characters"),
            "{err}"
        );
    }

    #[test]
    fn one_frontend_table_is_the_seed() {
        let table = offline("[[service]]\nname = \"frontend\"\n", DEFAULT_ENV);
        let seed = offline("", DEFAULT_ENV);
        assert_eq!(table.cluster, seed.cluster);
        assert_eq!(table.iam_config(), seed.iam_config());
        assert_eq!(table.network.ingress, seed.network.ingress);
    }

    #[test]
    fn service_tables_are_refused_beside_the_shorthand_and_their_keys_are_named() {
        let path = Path::new("p.toml");
        let apply = |text: &str, env: &str| {
            PlatformConfig::parse(path, text)
                .unwrap()
                .environment(path, env)
                .unwrap()
                .apply(path, &mut platform())
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            apply(
                "[cluster]\nimage = \"nginx:1.27\"\n[[service]]\nname = \"api\"",
                DEFAULT_ENV
            ),
            "p.toml: cluster.image = set: [cluster]'s per-service keys describe the one service of a file without [[service]] tables, and this file has both: keep the [[service]] tables (move the key into them) or remove them"
        );
        assert_eq!(
            apply(
                "[[service]]\nname = \"web\"\n[[service]]\nname = \"api\"\ncpu = 300",
                DEFAULT_ENV
            ),
            "p.toml: service[1].cpu = 300: Fargate CPU is one of 256, 512, 1024, 2048, 4096, 8192, 16384"
        );
        assert_eq!(
            apply(
                "[[service]]\nname = \"api\"\n[[service]]\nname = \"api\"",
                DEFAULT_ENV
            ),
            "p.toml: service[1].name = api: another service has this name"
        );
        // The shorthand's keys keep their names.
        assert_eq!(
            apply("[cluster]\ncpu = 300", DEFAULT_ENV),
            "p.toml: cluster.cpu = 300: Fargate CPU is one of 256, 512, 1024, 2048, 4096, 8192, 16384"
        );
        // A role name over IAM's 64 characters once the environment prefixes it.
        let long = "a".repeat(50);
        assert_eq!(
            apply(&format!("[[service]]\nname = \"{long}\""), "staging"),
            format!(
                "p.toml: service[0].name = {long}: its role staging-ecs-{long}-role would be 67 characters, IAM allows 64"
            )
        );
        assert!(
            PlatformConfig::parse(path, &format!("[[service]]\nname = \"{long}\""))
                .unwrap()
                .apply(path, &mut platform())
                .is_ok(),
            "63 characters in production"
        );
        // `[[env.NAME.service]]` replaces the whole list.
        let file = PlatformConfig::parse(
            path,
            "[[service]]\nname = \"web\"\n[[env.staging.service]]\nname = \"api\"\n",
        )
        .unwrap();
        let mut staging = platform();
        file.environment(path, "staging")
            .unwrap()
            .apply(path, &mut staging)
            .unwrap();
        let names: Vec<&str> = staging
            .cluster
            .services
            .iter()
            .map(|s| s.name.as_str())
            .collect();
        assert_eq!(names, ["api"]);
    }

    #[test]
    fn secrets_and_a_health_check_reach_the_container_and_the_execution_roles_policy() {
        let path = Path::new("p.toml");
        let arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:db-AbCdEf";
        let file = PlatformConfig::parse(
            path,
            &format!(
                "[cluster]\nsecrets = {{ DB_PASSWORD = {arn:?} }}\nhealth_check = {{ command = [\"CMD\", \"/check\"], retries = 5 }}\n"
            ),
        )
        .unwrap();
        let mut p = platform();
        file.apply(path, &mut p).unwrap();
        let f = &p.cluster.services[0];
        assert_eq!(f.secrets["DB_PASSWORD"], arn);
        let h = f.health_check.clone().unwrap();
        assert_eq!((h.command.len(), h.interval_secs, h.retries), (2, 30, 5));
        let iam = p.iam_config();
        assert_eq!(iam.services[0].secrets, [arn]);
        let doc = iam.scope().service_policy(&iam.services[0]);
        assert!(iam_stack::permissions::audit(&doc).is_empty());
        assert!(doc.to_json().contains(arn));
        // Refused naming the key: a bad ARN, a health check outside ECS's ranges.
        for (text, expected) in [
            (
                "[cluster]\nsecrets = { DB = \"db-password\" }",
                "p.toml: cluster.secrets.DB = db-password: the full ARN",
            ),
            (
                "[cluster]\nhealth_check = { command = [\"CMD\", \"x\"], interval_secs = 1 }",
                "p.toml: cluster.health_check.interval_secs = 1: must be 5 to 300",
            ),
        ] {
            let err = PlatformConfig::parse(path, text)
                .unwrap()
                .apply(path, &mut platform())
                .unwrap_err()
                .to_string();
            assert!(err.starts_with(expected), "{err}");
        }
    }

    #[test]
    fn unknown_keys_and_wrong_types_are_refused_naming_them() {
        let path = Path::new("p.toml");
        let err = PlatformConfig::parse(path, "[cluster]\ncpus = 512")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `cpus`"), "{err}");
        let err = PlatformConfig::parse(path, "[clusters]\ncpu = 512")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `clusters`"), "{err}");
        let err = PlatformConfig::parse(path, "[cluster]\ncpu = \"big\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("cpu") && err.starts_with("p.toml: "), "{err}");
    }
}
