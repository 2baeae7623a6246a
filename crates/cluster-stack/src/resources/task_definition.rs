//! `ecs:task-definition`: one revision of a Fargate task definition.
//!
//! Revisions are immutable: any change registers a new revision (the engine's create-before-delete
//! replacement), the service is pointed at it, and the old revision is deregistered after.

use platform_core::resource::{Idempotent, Once};
use std::collections::BTreeMap;

use aws_sdk_ecs::types::{
    Compatibility, ContainerDefinition, KeyValuePair, LogConfiguration, LogDriver, NetworkMode,
    PortMapping, Secret, TaskDefinitionField, TaskDefinitionStatus, TransportProtocol,
};
use iam_stack::RoleArn;
use platform_core::{
    Context, Input, Observed, Resource, ResourceError, ValidationError, error::GoneExt,
    resource_outputs,
};
use serde::{Deserialize, Serialize};

use crate::aws;
use crate::validate;

/// One container of the task.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Container {
    /// The container's name (`frontend`).
    pub name: String,
    /// The image (`nginx:latest`).
    pub image: String,
    /// The TCP port it listens on (`80`).
    pub port: u16,
    /// Environment variables.
    pub environment: BTreeMap<String, String>,
    /// The log group its `awslogs` driver writes to.
    pub log_group: Input<String>,
    /// The prefix of its log streams (`frontend`).
    pub log_stream_prefix: String,
    /// Variables ECS sets from secrets when the task starts: name to the ARN of a Secrets Manager
    /// secret or an SSM parameter (the execution role must be allowed to read it).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<String, String>,
    /// The container's health check, run by ECS inside it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,
}

/// A container health check: ECS runs `command` in the container every `interval_secs` and marks
/// the container unhealthy after `retries` failures in a row.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCheck {
    /// The command, as ECS takes it: `["CMD-SHELL", "curl -f http://localhost/ || exit 1"]` or
    /// `["CMD", "/bin/check"]`.
    pub command: Vec<String>,
    /// Seconds between two checks (5 to 300; ECS's default 30).
    pub interval_secs: i32,
    /// Failures in a row before the container is unhealthy (1 to 10; ECS's default 3).
    pub retries: i32,
}

impl HealthCheck {
    /// `command` every 30 seconds, unhealthy after 3 failures (ECS's defaults).
    pub fn new(command: Vec<String>) -> Self {
        Self {
            command,
            interval_secs: 30,
            retries: 3,
        }
    }

    /// Checks the ranges ECS accepts.
    ///
    /// # Errors
    /// A [`ValidationError`] naming `field`'s part, its value and the range.
    pub fn validate(&self, field: &str) -> Result<(), ValidationError> {
        match self.command.first().map(String::as_str) {
            Some("CMD" | "CMD-SHELL") if self.command.len() > 1 => {}
            _ => {
                return Err(ValidationError::new(
                    format!("{field}.command"),
                    format!("{:?}", self.command),
                    "starts with CMD or CMD-SHELL, then the command",
                ));
            }
        }
        if !(5..=300).contains(&self.interval_secs) {
            return Err(ValidationError::new(
                format!("{field}.interval_secs"),
                self.interval_secs,
                "must be 5 to 300",
            ));
        }
        if !(1..=10).contains(&self.retries) {
            return Err(ValidationError::new(
                format!("{field}.retries"),
                self.retries,
                "must be 1 to 10",
            ));
        }
        Ok(())
    }

    fn sdk(&self) -> Result<aws_sdk_ecs::types::HealthCheck, ResourceError> {
        aws_sdk_ecs::types::HealthCheck::builder()
            .set_command(Some(self.command.clone()))
            .interval(self.interval_secs)
            .retries(self.retries)
            .build()
            .map_err(|e| aws::build_error("health check", e))
    }

    fn from_live(h: &aws_sdk_ecs::types::HealthCheck) -> Self {
        Self {
            command: h.command().to_vec(),
            interval_secs: h.interval().unwrap_or(30),
            retries: h.retries().unwrap_or(3),
        }
    }
}

/// A Fargate task definition (network mode `awsvpc`). Every change registers a new revision.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskDefinition {
    /// The family (`frontend`).
    pub family: String,
    /// CPU units (256 = 0.25 vCPU), one of Fargate's sizes.
    pub cpu: u32,
    /// Memory in MiB, allowed with `cpu` on Fargate.
    pub memory: u32,
    /// The role ECS uses to pull the image and write logs.
    pub execution_role_arn: Input<RoleArn>,
    /// The role the containers run as.
    pub task_role_arn: Input<RoleArn>,
    /// The containers (the first is essential).
    pub containers: Vec<Container>,
    /// User tags (the engine adds its own).
    pub tags: BTreeMap<String, String>,
}

resource_outputs! {
    /// A task definition revision's outputs.
    pub struct TaskDefinitionOutputs / TaskDefinitionRefs {
        /// The revision's ARN (`...:task-definition/frontend:3`).
        pub arn: crate::TaskDefinitionArn,
        /// The family.
        pub family: String,
        /// The revision number.
        pub revision: i32,
    }
}

impl TaskDefinition {
    fn container_definitions(
        &self,
        region: &str,
    ) -> Result<Vec<ContainerDefinition>, ResourceError> {
        self.containers
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let logs = LogConfiguration::builder()
                    .log_driver(LogDriver::Awslogs)
                    .options("awslogs-group", c.log_group.get()?)
                    .options("awslogs-region", region)
                    .options("awslogs-stream-prefix", &c.log_stream_prefix)
                    .build()
                    .map_err(|e| aws::build_error("log configuration", e))?;
                Ok(ContainerDefinition::builder()
                    .name(&c.name)
                    .image(&c.image)
                    .essential(i == 0)
                    .port_mappings(
                        PortMapping::builder()
                            .container_port(i32::from(c.port))
                            .protocol(TransportProtocol::Tcp)
                            .build(),
                    )
                    .set_environment(Some(
                        c.environment
                            .iter()
                            .map(|(k, v)| KeyValuePair::builder().name(k).value(v).build())
                            .collect(),
                    ))
                    .set_secrets(
                        (!c.secrets.is_empty())
                            .then(|| {
                                c.secrets
                                    .iter()
                                    .map(|(k, v)| Secret::builder().name(k).value_from(v).build())
                                    .collect::<Result<Vec<_>, _>>()
                            })
                            .transpose()
                            .map_err(|e| aws::build_error("secret", e))?,
                    )
                    .set_health_check(c.health_check.as_ref().map(HealthCheck::sdk).transpose()?)
                    .log_configuration(logs)
                    .build())
            })
            .collect()
    }

    /// The inputs a live revision corresponds to.
    fn from_live(
        def: &aws_sdk_ecs::types::TaskDefinition,
        tags: &[aws_sdk_ecs::types::Tag],
    ) -> Self {
        TaskDefinition {
            family: def.family().unwrap_or_default().to_owned(),
            cpu: def.cpu().and_then(|c| c.parse().ok()).unwrap_or(0),
            memory: def.memory().and_then(|m| m.parse().ok()).unwrap_or(0),
            execution_role_arn: Input::Value(RoleArn::new(
                def.execution_role_arn().unwrap_or_default(),
            )),
            task_role_arn: Input::Value(RoleArn::new(def.task_role_arn().unwrap_or_default())),
            containers: def
                .container_definitions()
                .iter()
                .map(|c| {
                    let option = |k: &str| {
                        c.log_configuration()
                            .and_then(|l| l.options())
                            .and_then(|o| o.get(k))
                            .cloned()
                            .unwrap_or_default()
                    };
                    Container {
                        name: c.name().unwrap_or_default().to_owned(),
                        image: c.image().unwrap_or_default().to_owned(),
                        port: c
                            .port_mappings()
                            .first()
                            .and_then(|p| p.container_port())
                            .and_then(|p| u16::try_from(p).ok())
                            .unwrap_or(0),
                        environment: c
                            .environment()
                            .iter()
                            .filter_map(|kv| Some((kv.name()?.to_owned(), kv.value()?.to_owned())))
                            .collect(),
                        log_group: Input::Value(option("awslogs-group")),
                        log_stream_prefix: option("awslogs-stream-prefix"),
                        secrets: c
                            .secrets()
                            .iter()
                            .map(|s| (s.name().to_owned(), s.value_from().to_owned()))
                            .collect(),
                        health_check: c.health_check().map(HealthCheck::from_live),
                    }
                })
                .collect(),
            tags: platform_core::resource::user_tags(aws::pairs(tags)),
        }
    }

    fn outputs_of(def: &aws_sdk_ecs::types::TaskDefinition) -> Option<TaskDefinitionOutputs> {
        Some(TaskDefinitionOutputs {
            arn: crate::TaskDefinitionArn::new(def.task_definition_arn()?),
            family: def.family()?.to_owned(),
            revision: def.revision(),
        })
    }
}

/// A live revision and its tags.
type LiveRevision = (
    aws_sdk_ecs::types::TaskDefinition,
    Vec<aws_sdk_ecs::types::Tag>,
);

/// The live revision `arn` with its tags; `None` when it is gone or deregistered.
async fn describe(
    ctx: &Context,
    client: &aws_sdk_ecs::Client,
    arn: &str,
) -> Result<Option<LiveRevision>, ResourceError> {
    let out = ctx
        .call("DescribeTaskDefinition", Idempotent, || {
            client
                .describe_task_definition()
                .task_definition(arn)
                .include(TaskDefinitionField::Tags)
                .send()
        })
        .await;
    // ECS answers ClientException ("Unable to describe task definition") for an unknown one.
    let out = match out.gone_is_none() {
        Err(e) if e.aws_code() == Some("ClientException") => return Ok(None),
        other => other?,
    };
    Ok(out.and_then(|o| {
        let def = o.task_definition()?.clone();
        (def.status() != Some(&TaskDefinitionStatus::Inactive)).then(|| (def, o.tags().to_vec()))
    }))
}

impl Resource for TaskDefinition {
    type Outputs = TaskDefinitionOutputs;
    const KIND: &'static str = "ecs:task-definition";
    const SERVICE: &'static str = "ecs";

    fn force_new(&self, _previous: &Self) -> platform_core::ForceNew {
        platform_core::ForceNew::any_change()
    }

    fn validate(&self) -> Result<(), ValidationError> {
        validate::ecs_name("family", &self.family)?;
        validate::fargate_size("", self.cpu, self.memory)?;
        if self.containers.is_empty() {
            return Err(ValidationError::new(
                "containers",
                "[]",
                "a task needs a container",
            ));
        }
        for (i, c) in self.containers.iter().enumerate() {
            validate::ecs_name(&format!("containers[{i}].name"), &c.name)?;
            validate::image(&format!("containers[{i}].image"), &c.image)?;
            validate::port(&format!("containers[{i}].port"), c.port)?;
        }
        validate::tags("tags", &self.tags)
    }

    async fn create(&self, ctx: &Context) -> Result<TaskDefinitionOutputs, ResourceError> {
        let client = aws::ecs(ctx)?;
        let region = ctx
            .sdk_config()?
            .region()
            .map(|r| r.to_string())
            .ok_or_else(|| ResourceError::NotConfigured {
                what: "an AWS region".into(),
            })?;
        let containers = self.container_definitions(&region)?;
        let tags = aws::ecs_tags(&ctx.tags_with(&self.tags));
        let (execution, task) = (self.execution_role_arn.get()?, self.task_role_arn.get()?);
        let out = ctx
            .call(
                "RegisterTaskDefinition",
                Once.retrying(aws::is_role_not_ready),
                || {
                    client
                        .register_task_definition()
                        .family(&self.family)
                        .cpu(self.cpu.to_string())
                        .memory(self.memory.to_string())
                        .network_mode(NetworkMode::Awsvpc)
                        .requires_compatibilities(Compatibility::Fargate)
                        .execution_role_arn(execution)
                        .task_role_arn(task)
                        .set_container_definitions(Some(containers.clone()))
                        .set_tags(Some(tags.clone()))
                        .send()
                },
            )
            .await?;
        out.task_definition()
            .and_then(Self::outputs_of)
            .ok_or_else(|| ResourceError::missing("RegisterTaskDefinition", "a revision"))
    }

    async fn read(
        &self,
        ctx: &Context,
        outputs: &TaskDefinitionOutputs,
    ) -> Result<Option<Observed<Self>>, ResourceError> {
        let client = aws::ecs(ctx)?;
        Ok(describe(ctx, &client, &outputs.arn)
            .await?
            .map(|(def, tags)| Observed {
                inputs: Self::from_live(&def, &tags),
                outputs: outputs.clone(),
            }))
    }

    async fn delete(
        &self,
        ctx: &Context,
        outputs: &TaskDefinitionOutputs,
    ) -> Result<(), ResourceError> {
        let client = aws::ecs(ctx)?;
        if describe(ctx, &client, &outputs.arn).await?.is_none() {
            return Ok(());
        }
        ctx.call("DeregisterTaskDefinition", Idempotent, || {
            client
                .deregister_task_definition()
                .task_definition(&outputs.arn)
                .send()
        })
        .await
        .gone_is_ok()
    }

    /// The family's latest active revision, if it is ours and is exactly this definition (an
    /// interrupted create registered it).
    /// By revision ARN or `family:revision`.
    async fn import(
        &self,
        ctx: &Context,
        id: &str,
    ) -> Result<Option<TaskDefinitionOutputs>, ResourceError> {
        let client = aws::ecs(ctx)?;
        let Some((def, _)) = describe(ctx, &client, id).await? else {
            return Ok(None);
        };
        let Some(arn) = def.task_definition_arn() else {
            return Ok(None);
        };
        aws::tag_ecs_as_ours(ctx, &client, arn).await?;
        Ok(Some(TaskDefinitionOutputs {
            arn: crate::TaskDefinitionArn::new(arn),
            family: def.family().unwrap_or_default().to_owned(),
            revision: def.revision(),
        }))
    }

    /// Every active revision of the family that carries this resource's tags and instance token:
    /// one a lost or killed `RegisterTaskDefinition` registered late, for `destroy` to deregister.
    async fn find_all(&self, ctx: &Context) -> Result<Vec<TaskDefinitionOutputs>, ResourceError> {
        let client = aws::ecs(ctx)?;
        let mut arns = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let page = ctx
                .call("ListTaskDefinitions", Idempotent, || {
                    client
                        .list_task_definitions()
                        .family_prefix(&self.family)
                        .status(TaskDefinitionStatus::Active)
                        .set_next_token(next.clone())
                        .send()
                })
                .await?;
            arns.extend(page.task_definition_arns().iter().cloned());
            next = page.next_token().map(str::to_owned);
            if next.is_none() {
                break;
            }
        }
        let mut found = Vec::new();
        for arn in arns {
            let Some((def, tags)) = describe(ctx, &client, &arn).await? else {
                continue;
            };
            // The prefix also lists longer families (`frontend-canary` for `frontend`).
            if def.family() == Some(self.family.as_str()) && ctx.carries_own_tags(aws::pairs(&tags))
            {
                found.extend(Self::outputs_of(&def));
            }
        }
        Ok(found)
    }

    async fn find(&self, ctx: &Context) -> Result<Option<TaskDefinitionOutputs>, ResourceError> {
        let client = aws::ecs(ctx)?;
        let Some((def, tags)) = describe(ctx, &client, &self.family).await? else {
            return Ok(None);
        };
        let same = Self::from_live(&def, &tags) == *self;
        Ok((same && ctx.carries_own_tags(aws::pairs(&tags)))
            .then(|| Self::outputs_of(&def))
            .flatten())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_health_check_is_refused_outside_ecss_ranges_naming_the_field() {
        let ok = HealthCheck::new(vec!["CMD".into(), "/check".into()]);
        ok.validate("health_check").unwrap();
        let cases = [
            (
                HealthCheck::new(vec!["curl".into()]),
                "health_check.command",
            ),
            (HealthCheck::new(vec!["CMD".into()]), "health_check.command"),
            (
                HealthCheck {
                    interval_secs: 4,
                    ..ok.clone()
                },
                "health_check.interval_secs",
            ),
            (
                HealthCheck {
                    interval_secs: 301,
                    ..ok.clone()
                },
                "health_check.interval_secs",
            ),
            (
                HealthCheck {
                    retries: 0,
                    ..ok.clone()
                },
                "health_check.retries",
            ),
            (
                HealthCheck {
                    retries: 11,
                    ..ok.clone()
                },
                "health_check.retries",
            ),
        ];
        for (h, field) in cases {
            assert_eq!(
                h.validate("health_check").unwrap_err().field,
                field,
                "{h:?}"
            );
        }
        HealthCheck {
            interval_secs: 5,
            retries: 10,
            ..ok.clone()
        }
        .validate("h")
        .unwrap();
        HealthCheck {
            interval_secs: 300,
            retries: 1,
            ..ok
        }
        .validate("h")
        .unwrap();
    }

    fn container(name: &str, port: u16) -> Container {
        Container {
            name: name.into(),
            image: format!("{name}:1"),
            port,
            environment: BTreeMap::from([("MODE".into(), name.into())]),
            log_group: Input::Value("/ecs/frontend".into()),
            log_stream_prefix: name.into(),
            secrets: BTreeMap::new(),
            health_check: None,
        }
    }

    #[test]
    fn what_is_registered_reads_back_as_the_same_inputs_and_only_the_first_container_is_essential()
    {
        let declared = TaskDefinition {
            family: "frontend".into(),
            cpu: 256,
            memory: 512,
            execution_role_arn: Input::Value(RoleArn::new("arn:aws:iam::1:role/exec")),
            task_role_arn: Input::Value(RoleArn::new("arn:aws:iam::1:role/task")),
            containers: vec![
                Container {
                    secrets: BTreeMap::from([(
                        "DB_PASSWORD".into(),
                        "arn:aws:secretsmanager:us-east-1:1:secret:db-AbCdEf".into(),
                    )]),
                    health_check: Some(HealthCheck {
                        command: vec!["CMD-SHELL".into(), "curl -f http://localhost/".into()],
                        interval_secs: 10,
                        retries: 2,
                    }),
                    ..container("web", 80)
                },
                container("sidecar", 9000),
            ],
            tags: BTreeMap::from([("team".into(), "web".into())]),
        };
        let containers = declared.container_definitions("us-east-1").unwrap();
        let essential: Vec<Option<bool>> = containers.iter().map(|c| c.essential()).collect();
        assert_eq!(essential, [Some(true), Some(false)]);
        assert_eq!(
            containers[0].secrets()[0].value_from(),
            "arn:aws:secretsmanager:us-east-1:1:secret:db-AbCdEf"
        );
        assert_eq!(containers[0].health_check().unwrap().interval(), Some(10));
        assert!(containers[1].secrets().is_empty() && containers[1].health_check().is_none());
        let live = aws_sdk_ecs::types::TaskDefinition::builder()
            .task_definition_arn("arn:aws:ecs:us-east-1:1:task-definition/frontend:3")
            .family("frontend")
            .revision(3)
            .cpu("256")
            .memory("512")
            .execution_role_arn("arn:aws:iam::1:role/exec")
            .task_role_arn("arn:aws:iam::1:role/task")
            .set_container_definitions(Some(containers))
            .build();
        let tags = [aws_sdk_ecs::types::Tag::builder()
            .key("team")
            .value("web")
            .build()];
        assert_eq!(TaskDefinition::from_live(&live, &tags), declared);
        let outputs = TaskDefinition::outputs_of(&live).unwrap();
        assert_eq!(
            (
                outputs.arn.as_str(),
                outputs.family.as_str(),
                outputs.revision
            ),
            (
                "arn:aws:ecs:us-east-1:1:task-definition/frontend:3",
                "frontend",
                3
            )
        );
    }
}
