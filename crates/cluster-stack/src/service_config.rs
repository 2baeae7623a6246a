//! [`ServiceConfig`]: one ECS service of the cluster, with its task definition and log group.

use std::collections::BTreeMap;

use platform_core::ValidationError;

use crate::balancer::Route;
use crate::resources::HealthCheck;
use crate::validate;

/// One ECS service: its task definition (one container), its log group and the service itself.
/// Its role comes from the IAM stack, under the same [`name`](Self::name).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServiceConfig {
    /// The service's short name (`frontend`): its role in the IAM stack, and its resources' names
    /// in state (`api-service`, `api-task-definition`, `api-log-group`; the seed's `frontend`
    /// keeps `service`, `task-definition`, `log-group`).
    pub name: String,
    /// The ECS service's name (default `NAME-service`).
    pub service_name: String,
    /// The task definition family (default `NAME`).
    pub family: String,
    /// The container's name (default `NAME`).
    pub container_name: String,
    /// The image (default `nginx:latest`).
    pub image: String,
    /// The port it listens on (default 80).
    pub container_port: u16,
    /// Environment variables of the container.
    pub environment: BTreeMap<String, String>,
    /// Variables ECS sets from secrets at start: name to the full ARN of a Secrets Manager secret
    /// or an SSM parameter. The service's execution role reads exactly these (see
    /// `iam_stack::ServiceAccess::secrets`).
    pub secrets: BTreeMap<String, String>,
    /// The container's health check.
    pub health_check: Option<HealthCheck>,
    /// CPU units (default 256).
    pub cpu: u32,
    /// Memory in MiB (default 512).
    pub memory: u32,
    /// How many tasks to run (default 1).
    pub desired_count: i32,
    /// Its log group (default `/ecs/NAME`).
    pub log_group: String,
    /// Days to keep its logs, one of AWS's values (default 30); `None` keeps them forever.
    pub log_retention_days: Option<i32>,
    /// Target tracking of its task count (default none). While it is on, the count is the
    /// scaler's: the service starts at `min`, `desired_count` is not used, and a live count that
    /// differs is not drift.
    pub autoscaling: Option<Autoscaling>,
    /// Its route through the cluster's load balancer (default none: not behind it). Needs
    /// [`ClusterConfig::load_balancer`](crate::ClusterConfig::load_balancer).
    pub route: Option<Route>,
}

/// Application Auto Scaling's target tracking of a service's task count on its average CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Autoscaling {
    /// The fewest tasks (the count the service starts at).
    pub min: i32,
    /// The most tasks.
    pub max: i32,
    /// The average CPU utilisation to keep, in percent.
    pub target_cpu_percent: u32,
}

impl Autoscaling {
    /// Between `min` and `max` tasks, keeping the average CPU at `target_cpu_percent`.
    pub fn new(min: i32, max: i32, target_cpu_percent: u32) -> Self {
        Self {
            min,
            max,
            target_cpu_percent,
        }
    }
}

impl ServiceConfig {
    /// Service `name` with the seed's defaults: `nginx:latest` on port 80, 256 CPU / 512 MiB, one
    /// task, logs in `/ecs/NAME` kept 30 days.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            service_name: format!("{name}-service"),
            family: name.to_owned(),
            container_name: name.to_owned(),
            image: "nginx:latest".into(),
            container_port: 80,
            environment: BTreeMap::new(),
            secrets: BTreeMap::new(),
            health_check: None,
            cpu: 256,
            memory: 512,
            desired_count: 1,
            log_group: format!("/ecs/{name}"),
            log_retention_days: Some(30),
            autoscaling: None,
            route: None,
        }
    }

    /// Behind the cluster's load balancer on `route`.
    #[must_use]
    pub fn with_route(mut self, route: Option<Route>) -> Self {
        self.route = route;
        self
    }

    /// The seed's frontend: `frontend-service` running `nginx:latest`.
    pub fn frontend() -> Self {
        Self::new("frontend")
    }

    /// The image it runs.
    #[must_use]
    pub fn with_image(mut self, image: &str) -> Self {
        self.image = image.to_owned();
        self
    }

    /// How many tasks to run.
    #[must_use]
    pub fn with_desired_count(mut self, n: i32) -> Self {
        self.desired_count = n;
        self
    }

    /// The task size.
    #[must_use]
    pub fn with_size(mut self, cpu: u32, memory: u32) -> Self {
        self.cpu = cpu;
        self.memory = memory;
        self
    }

    /// The port its container listens on.
    #[must_use]
    pub fn with_port(mut self, port: u16) -> Self {
        self.container_port = port;
        self
    }

    /// Target tracking of its task count.
    #[must_use]
    pub fn with_autoscaling(mut self, autoscaling: Option<Autoscaling>) -> Self {
        self.autoscaling = autoscaling;
        self
    }

    /// How many tasks the service is declared with: the scaler's minimum when it scales.
    pub(crate) fn initial_count(&self) -> i32 {
        self.autoscaling.map_or(self.desired_count, |a| a.min)
    }

    /// Log retention in days (`None`: forever).
    #[must_use]
    pub fn with_log_retention(mut self, days: Option<i32>) -> Self {
        self.log_retention_days = days;
        self
    }

    /// The prefix of its resources' names in state: none for the seed's `frontend`.
    pub(crate) fn key(&self, what: &str) -> String {
        if self.name == "frontend" {
            what.to_owned()
        } else {
            format!("{}-{what}", self.name)
        }
    }

    /// The names no two services of a cluster may share, with their keys.
    pub(crate) fn unique_names(&self) -> [(&'static str, &str); 4] {
        [
            ("name", &self.name),
            ("service_name", &self.service_name),
            ("family", &self.family),
            ("log_group", &self.log_group),
        ]
    }

    /// Checks it, naming each field `FIELD.KEY` (`services[1].cpu`).
    ///
    /// # Errors
    /// The first problem, naming the field and the value.
    pub fn validate(&self, field: &str) -> Result<(), ValidationError> {
        let f = |key: &str| format!("{field}.{key}");
        let name = &self.name;
        if !platform_core::resource::is_lowercase_name(name, 64) {
            return Err(ValidationError::new(
                f("name"),
                name,
                "a service name is 1 to 64 lowercase letters, digits and -, not starting with -",
            ));
        }
        for (key, v) in [
            ("family", &self.family),
            ("container_name", &self.container_name),
            ("service_name", &self.service_name),
        ] {
            validate::ecs_name(&f(key), v)?;
        }
        validate::log_group_name(&f("log_group"), &self.log_group)?;
        if let Some(days) = self.log_retention_days {
            validate::retention_days(&f("log_retention_days"), days)?;
        }
        validate::image(&f("image"), &self.image)?;
        validate::port(&f("container_port"), self.container_port)?;
        for (var, arn) in &self.secrets {
            validate::secret(&f(&format!("secrets.{var}")), var, arn)?;
        }
        if let Some(h) = &self.health_check {
            h.validate(&f("health_check"))?;
        }
        validate::fargate_size(&f(""), self.cpu, self.memory)?;
        if !(0..=10_000).contains(&self.desired_count) {
            return Err(ValidationError::new(
                f("desired_count"),
                self.desired_count,
                "must be 0 to 10000",
            ));
        }
        if let Some(r) = &self.route {
            r.validate(field)?;
        }
        if let Some(a) = self.autoscaling {
            crate::resources::ServiceScaling::bounds(a.min, a.max, a.target_cpu_percent).map_err(
                |e| ValidationError::new(f(&format!("autoscaling.{}", e.field)), e.value, e.reason),
            )?;
        }
        Ok(())
    }
}
