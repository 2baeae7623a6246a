//! `logs:log-group`: the CloudWatch Logs group the containers write to, and its retention.

use platform_core::resource::{Idempotent, Once};
use std::collections::{BTreeMap, HashMap};

use platform_core::{
    Context, Observed, Resource, ResourceError, ValidationError, error::GoneExt, resource_outputs,
};
use serde::{Deserialize, Serialize};

use crate::LogGroupArn;

use crate::aws;
use crate::validate;

/// A log group. A name change replaces it (deleting the old one first); retention and tags change
/// in place.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LogGroup {
    /// The group's name (`/ecs/frontend`).
    pub name: String,
    /// Days to keep events, one of AWS's allowed values; `None` keeps them forever.
    pub retention_days: Option<i32>,
    /// User tags (the engine adds its own).
    pub tags: BTreeMap<String, String>,
}

resource_outputs! {
    /// A log group's outputs.
    pub struct LogGroupOutputs / LogGroupRefs {
        /// The group's name.
        pub name: String,
        /// The group's ARN (without the `:*` suffix).
        pub arn: LogGroupArn,
    }
}

/// The live group named exactly `name`, if any.
async fn describe(
    ctx: &Context,
    client: &aws_sdk_cloudwatchlogs::Client,
    name: &str,
) -> Result<Option<aws_sdk_cloudwatchlogs::types::LogGroup>, ResourceError> {
    let out = ctx
        .call("DescribeLogGroups", Idempotent, || {
            client
                .describe_log_groups()
                .log_group_name_prefix(name)
                .send()
        })
        .await
        .gone_is_none()?;
    Ok(out.and_then(|o| {
        o.log_groups()
            .iter()
            .find(|g| g.log_group_name() == Some(name))
            .cloned()
    }))
}

/// The ARN AWS tags by: the group's ARN without the `:*` that `DescribeLogGroups` appends.
fn arn_of(group: &aws_sdk_cloudwatchlogs::types::LogGroup) -> Option<LogGroupArn> {
    group
        .log_group_arn()
        .or(group.arn())
        .map(|a| LogGroupArn::new(a.trim_end_matches(":*")))
}

async fn tags_of(
    ctx: &Context,
    client: &aws_sdk_cloudwatchlogs::Client,
    arn: &str,
) -> Result<HashMap<String, String>, ResourceError> {
    let out = ctx
        .call("ListTagsForResource", Idempotent, || {
            client.list_tags_for_resource().resource_arn(arn).send()
        })
        .await?;
    Ok(out.tags().cloned().unwrap_or_default())
}

impl LogGroup {
    async fn set_retention(
        &self,
        ctx: &Context,
        client: &aws_sdk_cloudwatchlogs::Client,
    ) -> Result<(), ResourceError> {
        match self.retention_days {
            Some(days) => {
                ctx.call("PutRetentionPolicy", Idempotent, || {
                    client
                        .put_retention_policy()
                        .log_group_name(&self.name)
                        .retention_in_days(days)
                        .send()
                })
                .await?;
            }
            None => {
                ctx.call("DeleteRetentionPolicy", Idempotent, || {
                    client
                        .delete_retention_policy()
                        .log_group_name(&self.name)
                        .send()
                })
                .await?;
            }
        }
        Ok(())
    }
}

impl Resource for LogGroup {
    type Outputs = LogGroupOutputs;
    const KIND: &'static str = "logs:log-group";
    const SERVICE: &'static str = "logs";
    const UPDATES_IN_PLACE: bool = true;
    const DELETE_BEFORE_REPLACE: bool = true;

    fn force_new(&self, previous: &Self) -> platform_core::ForceNew {
        platform_core::force_new!(self, previous; name)
    }

    fn validate(&self) -> Result<(), ValidationError> {
        validate::log_group_name("name", &self.name)?;
        if let Some(days) = self.retention_days {
            validate::retention_days("retention_days", days)?;
        }
        validate::tags("tags", &self.tags)
    }

    async fn create(&self, ctx: &Context) -> Result<LogGroupOutputs, ResourceError> {
        let client = aws::logs(ctx)?;
        let tags: HashMap<String, String> = ctx.tags_with(&self.tags).into_iter().collect();
        ctx.call("CreateLogGroup", Once, || {
            client
                .create_log_group()
                .log_group_name(&self.name)
                .set_tags(Some(tags.clone()))
                .send()
        })
        .await?;
        // CreateLogGroup answers nothing, not even the ARN: it is the account's and region's
        // (read back only when the engine has not resolved them, as in a unit test).
        let outputs = match ctx.provider() {
            Some(p) => LogGroupOutputs {
                name: self.name.clone(),
                arn: LogGroupArn::new(p.arn("logs", &format!("log-group:{}", self.name))),
            },
            None => {
                let group = describe(ctx, &client, &self.name)
                    .await?
                    .ok_or_else(|| ResourceError::missing("DescribeLogGroups", "the new group"))?;
                LogGroupOutputs {
                    name: self.name.clone(),
                    arn: arn_of(&group)
                        .ok_or_else(|| ResourceError::missing("DescribeLogGroups", "an ARN"))?,
                }
            }
        };
        // The task definition names the group; its retention is no concern of theirs.
        ctx.publish(&outputs).await?;
        if self.retention_days.is_some() {
            self.set_retention(ctx, &client).await?;
        }
        Ok(outputs)
    }

    async fn read(
        &self,
        ctx: &Context,
        outputs: &LogGroupOutputs,
    ) -> Result<Option<Observed<Self>>, ResourceError> {
        let client = aws::logs(ctx)?;
        let Some(group) = describe(ctx, &client, &outputs.name).await? else {
            return Ok(None);
        };
        let arn = arn_of(&group).unwrap_or_else(|| outputs.arn.clone());
        let tags = tags_of(ctx, &client, &arn).await?;
        Ok(Some(Observed {
            inputs: LogGroup {
                name: outputs.name.clone(),
                retention_days: group.retention_in_days(),
                tags: platform_core::resource::user_tags(tags),
            },
            outputs: LogGroupOutputs {
                name: outputs.name.clone(),
                arn,
            },
        }))
    }

    async fn update(
        &self,
        ctx: &Context,
        previous: &Self,
        outputs: &LogGroupOutputs,
    ) -> Result<LogGroupOutputs, ResourceError> {
        let client = aws::logs(ctx)?;
        if self.retention_days != previous.retention_days {
            self.set_retention(ctx, &client).await?;
        }
        aws::update_log_tags(ctx, &client, &outputs.arn, &previous.tags, &self.tags).await?;
        Ok(outputs.clone())
    }

    async fn delete(&self, ctx: &Context, outputs: &LogGroupOutputs) -> Result<(), ResourceError> {
        let client = aws::logs(ctx)?;
        ctx.call("DeleteLogGroup", Idempotent, || {
            client
                .delete_log_group()
                .log_group_name(&outputs.name)
                .send()
        })
        .await
        .gone_is_ok()
    }

    /// By log group name.
    async fn import(
        &self,
        ctx: &Context,
        id: &str,
    ) -> Result<Option<LogGroupOutputs>, ResourceError> {
        let client = aws::logs(ctx)?;
        let Some(group) = describe(ctx, &client, id).await? else {
            return Ok(None);
        };
        let Some(arn) = arn_of(&group) else {
            return Ok(None);
        };
        let ours = ctx.tags_with(&BTreeMap::new());
        aws::update_log_tags(ctx, &client, &arn, &BTreeMap::new(), &ours).await?;
        Ok(Some(LogGroupOutputs {
            name: id.to_owned(),
            arn,
        }))
    }

    async fn find(&self, ctx: &Context) -> Result<Option<LogGroupOutputs>, ResourceError> {
        let client = aws::logs(ctx)?;
        let Some(group) = describe(ctx, &client, &self.name).await? else {
            return Ok(None);
        };
        let Some(arn) = arn_of(&group) else {
            return Ok(None);
        };
        let tags = tags_of(ctx, &client, &arn).await?;
        ctx.claim(
            &format!("log group {}", self.name),
            tags.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        )?;
        Ok(Some(LogGroupOutputs {
            name: self.name.clone(),
            arn,
        }))
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_cloudwatchlogs::types::LogGroup as Live;

    use super::arn_of;

    #[test]
    fn the_arn_tags_are_read_by_is_the_groups_without_the_trailing_star() {
        let arn = "arn:aws:logs:us-east-1:1:log-group:/ecs/frontend";
        let described = Live::builder().arn(format!("{arn}:*")).build();
        assert_eq!(arn_of(&described).as_deref(), Some(arn));
        let newer = Live::builder()
            .arn(format!("{arn}:*"))
            .log_group_arn(arn)
            .build();
        assert_eq!(arn_of(&newer).as_deref(), Some(arn));
        assert_eq!(arn_of(&Live::builder().build()), None);
    }
}
