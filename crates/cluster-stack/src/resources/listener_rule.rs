//! `elbv2:listener-rule`: requests for a path or a host, forwarded to one service's target group.

use std::collections::BTreeMap;

use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, HostHeaderConditionConfig, PathPatternConditionConfig, RuleCondition,
};
use platform_core::resource::{Idempotent, Once};
use platform_core::{
    Context, Input, Observed, Resource, ResourceError, ValidationError, error::GoneExt,
    resource_outputs,
};
use serde::{Deserialize, Serialize};

use crate::elb;
use crate::{ListenerArn, ListenerRuleArn, TargetGroupArn};

/// A rule of a listener: requests whose path matches `path` and whose host is `host` (either or
/// both) go to a target group. A new listener or priority replaces it; its conditions, target
/// group and tags change in place.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ListenerRule {
    /// The listener.
    pub listener_arn: Input<ListenerArn>,
    /// Its priority on the listener (1 to 50000, lowest first), unique there.
    pub priority: u32,
    /// A path pattern (`/api/*`; `*` and `?` are wildcards).
    pub path: Option<String>,
    /// A host name (`api.example.com`, `*.example.com`).
    pub host: Option<String>,
    /// Where matching requests go.
    pub target_group_arn: Input<TargetGroupArn>,
    /// User tags.
    pub tags: BTreeMap<String, String>,
}

resource_outputs! {
    /// A listener rule's outputs.
    pub struct ListenerRuleOutputs / ListenerRuleRefs {
        /// Its ARN.
        pub arn: ListenerRuleArn,
        /// The target group it forwards to: what an ECS service registers in, once a listener
        /// forwards to it (ECS refuses a group no balancer uses).
        pub target_group_arn: TargetGroupArn,
    }
}

type Described = aws_sdk_elasticloadbalancingv2::types::Rule;

const PATH: &str = "path-pattern";
const HOST: &str = "host-header";

impl ListenerRule {
    fn conditions(&self) -> Vec<RuleCondition> {
        let mut out = Vec::new();
        if let Some(p) = &self.path {
            out.push(
                RuleCondition::builder()
                    .field(PATH)
                    .path_pattern_config(PathPatternConditionConfig::builder().values(p).build())
                    .build(),
            );
        }
        if let Some(h) = &self.host {
            out.push(
                RuleCondition::builder()
                    .field(HOST)
                    .host_header_config(HostHeaderConditionConfig::builder().values(h).build())
                    .build(),
            );
        }
        out
    }

    fn forward(&self) -> Result<Action, ResourceError> {
        Ok(Action::builder()
            .r#type(ActionTypeEnum::Forward)
            .target_group_arn(self.target_group_arn.get()?.as_str())
            .build())
    }

    /// The listener's rule at this priority, if any.
    async fn at_priority(&self, ctx: &Context) -> Result<Option<Described>, ResourceError> {
        let client = elb::client(ctx)?;
        let listener = self.listener_arn.get()?;
        let out = ctx
            .call("DescribeRules", Idempotent, || {
                client
                    .describe_rules()
                    .listener_arn(listener.as_str())
                    .send()
            })
            .await
            .gone_is_none()?;
        let priority = self.priority.to_string();
        Ok(out.and_then(|o| {
            o.rules()
                .iter()
                .find(|r| r.priority() == Some(&priority))
                .cloned()
        }))
    }
}

/// A rule's outputs: its ARN and the target group it forwards to.
fn outputs_of(r: &Described) -> Result<ListenerRuleOutputs, ResourceError> {
    let arn = r
        .rule_arn()
        .ok_or_else(|| ResourceError::missing("DescribeRules", "a rule ARN"))?;
    Ok(ListenerRuleOutputs {
        arn: ListenerRuleArn::new(arn),
        target_group_arn: TargetGroupArn::new(target_of(r)),
    })
}

/// The target group a rule forwards to.
fn target_of(r: &Described) -> &str {
    r.actions()
        .iter()
        .find_map(|a| a.target_group_arn())
        .unwrap_or_default()
}

impl elb::Lookup for ListenerRule {
    fn what(&self) -> String {
        format!("listener rule at priority {}", self.priority)
    }

    fn arn(outputs: &ListenerRuleOutputs) -> &str {
        outputs.arn.as_str()
    }

    async fn natural(&self, ctx: &Context) -> Result<Option<ListenerRuleOutputs>, ResourceError> {
        self.at_priority(ctx)
            .await?
            .as_ref()
            .map(outputs_of)
            .transpose()
    }

    async fn by_id(ctx: &Context, id: &str) -> Result<Option<ListenerRuleOutputs>, ResourceError> {
        describe(ctx, id)
            .await?
            .as_ref()
            .map(outputs_of)
            .transpose()
    }
}

/// The first value of condition `field` of a rule.
fn condition(r: &Described, field: &str) -> Option<String> {
    let c = r.conditions().iter().find(|c| c.field() == Some(field))?;
    let configured = match field {
        PATH => c
            .path_pattern_config()
            .map(PathPatternConditionConfig::values),
        _ => c
            .host_header_config()
            .map(HostHeaderConditionConfig::values),
    };
    configured
        .and_then(<[String]>::first)
        .or_else(|| c.values().first())
        .cloned()
}

/// The listener a rule belongs to, from the rule's ARN (`...:listener-rule/app/LB/ID/LISTENER/RULE`
/// is a rule of `...:listener/app/LB/ID/LISTENER`).
fn listener_of(rule_arn: &str) -> String {
    let listener = rule_arn.replacen(":listener-rule/", ":listener/", 1);
    listener
        .rsplit_once('/')
        .map_or(listener.clone(), |(head, _)| head.to_owned())
}

async fn describe(ctx: &Context, arn: &str) -> Result<Option<Described>, ResourceError> {
    let client = elb::client(ctx)?;
    let out = ctx
        .call("DescribeRules", Idempotent, || {
            client.describe_rules().rule_arns(arn).send()
        })
        .await
        .gone_is_none()?;
    Ok(out.and_then(|o| o.rules().first().cloned()))
}

impl Resource for ListenerRule {
    type Outputs = ListenerRuleOutputs;
    const KIND: &'static str = "elbv2:listener-rule";
    const SERVICE: &'static str = "elasticloadbalancing";
    const UPDATES_IN_PLACE: bool = true;
    /// A priority has one rule: a replacement at the same priority deletes the old one first.
    const DELETE_BEFORE_REPLACE: bool = true;

    fn force_new(&self, previous: &Self) -> platform_core::ForceNew {
        platform_core::force_new!(self, previous; listener_arn, priority)
    }

    fn validate(&self) -> Result<(), ValidationError> {
        if !(1..=50_000).contains(&self.priority) {
            return Err(ValidationError::new(
                "priority",
                self.priority,
                "is 1 to 50000",
            ));
        }
        if self.path.is_none() && self.host.is_none() {
            return Err(ValidationError::new(
                "path",
                "none",
                "a rule matches a path, a host or both",
            ));
        }
        if let Some(p) = &self.path
            && (!p.starts_with('/') || p.len() > 128)
        {
            return Err(ValidationError::new(
                "path",
                p,
                "a path pattern starts with / and has at most 128 characters",
            ));
        }
        if let Some(h) = &self.host
            && (h.is_empty()
                || h.len() > 128
                || !h
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.*?".contains(&b)))
        {
            return Err(ValidationError::new(
                "host",
                h,
                "a host name is 1 to 128 letters, digits, -, ., * and ?",
            ));
        }
        crate::validate::tags("tags", &self.tags)
    }

    /// `CreateRule` is not idempotent, and a priority holds one rule (`PriorityInUse`): the
    /// priority is looked up first, and its rule taken only when its tags say it is this
    /// resource's (a create whose answer was lost), then brought to the declared conditions.
    async fn create(&self, ctx: &Context) -> Result<ListenerRuleOutputs, ResourceError> {
        if let Some(adopted) = elb::adopt(self, ctx).await? {
            return Ok(adopted);
        }
        let client = elb::client(ctx)?;
        let listener = self.listener_arn.get()?;
        let action = self.forward()?;
        let tags = elb::elb_tags(&ctx.tags_with(&self.tags));
        let out = ctx
            .call("CreateRule", Once.retrying(|e| e.is_not_found()), || {
                client
                    .create_rule()
                    .listener_arn(listener.as_str())
                    .priority(i32::try_from(self.priority).unwrap_or(i32::MAX))
                    .set_conditions(Some(self.conditions()))
                    .actions(action.clone())
                    .set_tags(Some(tags.clone()))
                    .send()
            })
            .await?;
        let arn = out
            .rules()
            .first()
            .and_then(|r| r.rule_arn())
            .ok_or_else(|| ResourceError::missing("CreateRule", "a rule ARN"))?;
        Ok(ListenerRuleOutputs {
            arn: ListenerRuleArn::new(arn),
            target_group_arn: self.target_group_arn.get()?.clone(),
        })
    }

    async fn read(
        &self,
        ctx: &Context,
        outputs: &ListenerRuleOutputs,
    ) -> Result<Option<Observed<Self>>, ResourceError> {
        let arn = outputs.arn.as_str();
        let Some(r) = describe(ctx, arn).await? else {
            return Ok(None);
        };
        let tags = elb::tags_of(ctx, arn).await?.unwrap_or_default();
        let target = target_of(&r);
        Ok(Some(Observed {
            inputs: Self {
                listener_arn: Input::Value(ListenerArn::new(listener_of(arn))),
                priority: r
                    .priority()
                    .and_then(|p| p.parse().ok())
                    .unwrap_or_default(),
                path: condition(&r, PATH),
                host: condition(&r, HOST),
                target_group_arn: Input::Value(TargetGroupArn::new(target)),
                tags: platform_core::resource::user_tags(tags),
            },
            outputs: ListenerRuleOutputs {
                arn: outputs.arn.clone(),
                target_group_arn: TargetGroupArn::new(target),
            },
        }))
    }

    async fn update(
        &self,
        ctx: &Context,
        previous: &Self,
        outputs: &ListenerRuleOutputs,
    ) -> Result<ListenerRuleOutputs, ResourceError> {
        let arn = outputs.arn.as_str();
        if (&self.path, &self.host, &self.target_group_arn)
            != (&previous.path, &previous.host, &previous.target_group_arn)
        {
            let client = elb::client(ctx)?;
            let action = self.forward()?;
            ctx.call("ModifyRule", Idempotent, || {
                client
                    .modify_rule()
                    .rule_arn(arn)
                    .set_conditions(Some(self.conditions()))
                    .actions(action.clone())
                    .send()
            })
            .await?;
        }
        elb::update_tags(ctx, arn, &previous.tags, &self.tags).await?;
        Ok(ListenerRuleOutputs {
            arn: outputs.arn.clone(),
            target_group_arn: self.target_group_arn.get()?.clone(),
        })
    }

    async fn delete(
        &self,
        ctx: &Context,
        outputs: &ListenerRuleOutputs,
    ) -> Result<(), ResourceError> {
        let client = elb::client(ctx)?;
        ctx.call("DeleteRule", Idempotent, || {
            client.delete_rule().rule_arn(outputs.arn.as_str()).send()
        })
        .await
        .gone_is_ok()
    }

    /// By ARN.
    async fn import(
        &self,
        ctx: &Context,
        id: &str,
    ) -> Result<Option<ListenerRuleOutputs>, ResourceError> {
        elb::import::<Self>(ctx, id).await
    }

    /// The listener's rule at this priority, when its tags say it is this resource's.
    async fn find(&self, ctx: &Context) -> Result<Option<ListenerRuleOutputs>, ResourceError> {
        elb::find(self, ctx).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rules_conditions_read_back_from_their_configs_or_their_values() {
        let r = ListenerRule {
            listener_arn: Input::Value(ListenerArn::new("arn:l")),
            priority: 10,
            path: Some("/api/*".into()),
            host: Some("api.example.com".into()),
            target_group_arn: Input::Value(TargetGroupArn::new("arn:tg")),
            tags: BTreeMap::new(),
        };
        let described = Described::builder()
            .set_conditions(Some(r.conditions()))
            .build();
        assert_eq!(condition(&described, PATH).as_deref(), Some("/api/*"));
        assert_eq!(
            condition(&described, HOST).as_deref(),
            Some("api.example.com")
        );
        // The older shape: the values on the condition itself.
        let legacy = Described::builder()
            .conditions(
                RuleCondition::builder()
                    .field(HOST)
                    .values("a.example.com")
                    .build(),
            )
            .build();
        assert_eq!(condition(&legacy, HOST).as_deref(), Some("a.example.com"));
        assert_eq!(condition(&legacy, PATH), None);
    }

    #[test]
    fn a_rule_names_its_listener_in_its_arn() {
        assert_eq!(
            listener_of(
                "arn:aws:elasticloadbalancing:us-east-1:1:listener-rule/app/lb/50dc/f2f7/9683"
            ),
            "arn:aws:elasticloadbalancing:us-east-1:1:listener/app/lb/50dc/f2f7"
        );
    }

    #[test]
    fn a_rule_needs_a_condition_and_sane_patterns() {
        let r = |path: Option<&str>, host: Option<&str>, priority: u32| ListenerRule {
            listener_arn: Input::Value(ListenerArn::new("arn:l")),
            priority,
            path: path.map(str::to_owned),
            host: host.map(str::to_owned),
            target_group_arn: Input::Value(TargetGroupArn::new("arn:tg")),
            tags: BTreeMap::new(),
        };
        let e = |rule: ListenerRule| rule.validate().unwrap_err().to_string();
        assert!(e(r(None, None, 1)).contains("a path, a host or both"));
        assert!(e(r(Some("api/*"), None, 1)).starts_with("invalid path = api/*"));
        assert!(e(r(None, Some("a b"), 1)).starts_with("invalid host = a b"));
        let long_path = format!("/{}", "a".repeat(127));
        assert!(r(Some(&long_path), None, 1).validate().is_ok());
        assert!(e(r(Some(&format!("{long_path}a")), None, 1)).starts_with("invalid path"));
        let long_host = "a".repeat(128);
        assert!(r(None, Some(&long_host), 1).validate().is_ok());
        assert!(e(r(None, Some(&format!("{long_host}a")), 1)).starts_with("invalid host"));
        assert!(e(r(None, Some(""), 1)).starts_with("invalid host"));
        assert!(r(Some("/a"), None, 50_000).validate().is_ok());
        assert!(e(r(Some("/a"), None, 50_001)).starts_with("invalid priority"));
        assert!(e(r(Some("/api/*"), None, 0)).starts_with("invalid priority = 0"));
        assert!(
            r(Some("/api/*"), Some("*.example.com"), 10)
                .validate()
                .is_ok()
        );
        let two = r(Some("/api/*"), Some("api.example.com"), 1).conditions();
        assert_eq!(two.len(), 2);
        assert_eq!(two[0].field(), Some(PATH));
        assert_eq!(two[1].field(), Some(HOST));
    }
}
