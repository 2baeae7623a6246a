//! `elbv2:listener`: a port of the load balancer (HTTP, or HTTPS with a certificate) and what it
//! answers when no rule matches.

use std::collections::BTreeMap;

use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, Certificate, FixedResponseActionConfig, ProtocolEnum,
    RedirectActionConfig, RedirectActionStatusCodeEnum,
};
use platform_core::resource::{Idempotent, Once};
use platform_core::{
    Context, Input, Observed, Resource, ResourceError, ValidationError, error::GoneExt,
    resource_outputs,
};
use serde::{Deserialize, Serialize};

use crate::elb;
use crate::{ListenerArn, LoadBalancerArn};

/// What a listener answers when none of its rules matches.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ListenerDefault {
    /// `404 Not Found`, as text.
    NotFound,
    /// A permanent redirect to HTTPS on this port (HTTP's listener when HTTPS is on).
    RedirectToHttps(u16),
    /// Something else, found on a live listener (never declared): replaced by the next update.
    Other(String),
}

impl ListenerDefault {
    fn action(&self) -> Action {
        match self {
            Self::RedirectToHttps(port) => Action::builder()
                .r#type(ActionTypeEnum::Redirect)
                .redirect_config(
                    RedirectActionConfig::builder()
                        .protocol("HTTPS")
                        .port(port.to_string())
                        .status_code(RedirectActionStatusCodeEnum::Http301)
                        .build(),
                )
                .build(),
            Self::NotFound | Self::Other(_) => Action::builder()
                .r#type(ActionTypeEnum::FixedResponse)
                .fixed_response_config(
                    FixedResponseActionConfig::builder()
                        .status_code("404")
                        .content_type("text/plain")
                        .message_body("Not Found")
                        .build(),
                )
                .build(),
        }
    }

    fn of(actions: &[Action]) -> Self {
        let Some(a) = actions.first() else {
            return Self::Other("none".into());
        };
        match a.r#type() {
            Some(ActionTypeEnum::FixedResponse)
                if a.fixed_response_config().and_then(|c| c.status_code()) == Some("404") =>
            {
                Self::NotFound
            }
            Some(ActionTypeEnum::Redirect) => {
                let c = a.redirect_config();
                match (
                    c.and_then(|c| c.protocol()),
                    c.and_then(|c| c.port()?.parse().ok()),
                ) {
                    (Some("HTTPS"), Some(port)) => Self::RedirectToHttps(port),
                    _ => Self::Other("redirect".into()),
                }
            }
            t => Self::Other(t.map_or("none", |t| t.as_str()).to_owned()),
        }
    }
}

/// A listener: HTTP, or HTTPS when it has a certificate. A new balancer or port replaces it; the
/// certificate, default answer and tags change in place.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Listener {
    /// The balancer.
    pub load_balancer_arn: Input<LoadBalancerArn>,
    /// The port (80, 443).
    pub port: u16,
    /// An ACM certificate's ARN: HTTPS with it; none: HTTP.
    pub certificate_arn: Option<String>,
    /// What it answers when no rule matches.
    pub default_action: ListenerDefault,
    /// User tags.
    pub tags: BTreeMap<String, String>,
}

resource_outputs! {
    /// A listener's outputs.
    pub struct ListenerOutputs / ListenerRefs {
        /// Its ARN.
        pub arn: ListenerArn,
    }
}

type Described = aws_sdk_elasticloadbalancingv2::types::Listener;

impl Listener {
    /// Checks that `arn`, when set, is an ACM certificate's ARN.
    ///
    /// # Errors
    /// Naming `field` and the value.
    pub fn validate_certificate(field: &str, arn: Option<&str>) -> Result<(), ValidationError> {
        match arn {
            Some(arn) if !(arn.starts_with("arn:") && arn.contains(":certificate/")) => {
                Err(ValidationError::new(
                    field,
                    arn,
                    "an ACM certificate ARN (arn:aws:acm:REGION:ACCOUNT:certificate/ID)",
                ))
            }
            _ => Ok(()),
        }
    }

    fn protocol(&self) -> ProtocolEnum {
        if self.certificate_arn.is_some() {
            ProtocolEnum::Https
        } else {
            ProtocolEnum::Http
        }
    }

    fn certificates(&self) -> Option<Vec<Certificate>> {
        self.certificate_arn
            .as_ref()
            .map(|arn| vec![Certificate::builder().certificate_arn(arn).build()])
    }

    /// The balancer's listener on this port, if any.
    async fn on_port(&self, ctx: &Context) -> Result<Option<Described>, ResourceError> {
        let client = elb::client(ctx)?;
        let lb = self.load_balancer_arn.get()?;
        let out = ctx
            .call("DescribeListeners", Idempotent, || {
                client
                    .describe_listeners()
                    .load_balancer_arn(lb.as_str())
                    .send()
            })
            .await
            .gone_is_none()?;
        Ok(out.and_then(|o| {
            o.listeners()
                .iter()
                .find(|l| l.port() == Some(i32::from(self.port)))
                .cloned()
        }))
    }
}

fn outputs_of(l: &Described) -> Result<ListenerOutputs, ResourceError> {
    let arn = l
        .listener_arn()
        .ok_or_else(|| ResourceError::missing("DescribeListeners", "a listener ARN"))?;
    Ok(ListenerOutputs {
        arn: ListenerArn::new(arn),
    })
}

impl elb::Lookup for Listener {
    fn what(&self) -> String {
        format!("listener on port {}", self.port)
    }

    fn arn(outputs: &ListenerOutputs) -> &str {
        outputs.arn.as_str()
    }

    async fn natural(&self, ctx: &Context) -> Result<Option<ListenerOutputs>, ResourceError> {
        self.on_port(ctx)
            .await?
            .as_ref()
            .map(outputs_of)
            .transpose()
    }

    async fn by_id(ctx: &Context, id: &str) -> Result<Option<ListenerOutputs>, ResourceError> {
        describe(ctx, id)
            .await?
            .as_ref()
            .map(outputs_of)
            .transpose()
    }
}

async fn describe(ctx: &Context, arn: &str) -> Result<Option<Described>, ResourceError> {
    let client = elb::client(ctx)?;
    let out = ctx
        .call("DescribeListeners", Idempotent, || {
            client.describe_listeners().listener_arns(arn).send()
        })
        .await
        .gone_is_none()?;
    Ok(out.and_then(|o| o.listeners().first().cloned()))
}

impl Resource for Listener {
    type Outputs = ListenerOutputs;
    const KIND: &'static str = "elbv2:listener";
    const SERVICE: &'static str = "elasticloadbalancing";
    const UPDATES_IN_PLACE: bool = true;
    /// A port has one listener: a replacement on the same port deletes the old one first.
    const DELETE_BEFORE_REPLACE: bool = true;

    fn force_new(&self, previous: &Self) -> platform_core::ForceNew {
        platform_core::force_new!(self, previous; load_balancer_arn, port)
    }

    fn validate(&self) -> Result<(), ValidationError> {
        crate::validate::port("port", self.port)?;
        Self::validate_certificate("certificate_arn", self.certificate_arn.as_deref())?;
        crate::validate::tags("tags", &self.tags)
    }

    /// `CreateListener` is idempotent: for a port that has a listener with the same settings AWS
    /// answers with it. So the port is looked up first, and its listener is taken only when its
    /// tags say it is this resource's, then brought to the declared settings. The create is sent
    /// once: a lost answer is settled by looking again (AWS answers a repeat with the same one; an
    /// emulator may make a second).
    async fn create(&self, ctx: &Context) -> Result<ListenerOutputs, ResourceError> {
        if let Some(adopted) = elb::adopt(self, ctx).await? {
            return Ok(adopted);
        }
        let client = elb::client(ctx)?;
        let lb = self.load_balancer_arn.get()?;
        let tags = elb::elb_tags(&ctx.tags_with(&self.tags));
        let out = ctx
            .call(
                "CreateListener",
                Once.retrying(|e| e.is_not_found()),
                || {
                    client
                        .create_listener()
                        .load_balancer_arn(lb.as_str())
                        .port(i32::from(self.port))
                        .protocol(self.protocol())
                        .set_certificates(self.certificates())
                        .default_actions(self.default_action.action())
                        .set_tags(Some(tags.clone()))
                        .send()
                },
            )
            .await?;
        let arn = out
            .listeners()
            .first()
            .and_then(|l| l.listener_arn())
            .ok_or_else(|| ResourceError::missing("CreateListener", "a listener ARN"))?;
        Ok(ListenerOutputs {
            arn: ListenerArn::new(arn),
        })
    }

    async fn read(
        &self,
        ctx: &Context,
        outputs: &ListenerOutputs,
    ) -> Result<Option<Observed<Self>>, ResourceError> {
        let arn = outputs.arn.as_str();
        let Some(l) = describe(ctx, arn).await? else {
            return Ok(None);
        };
        let tags = elb::tags_of(ctx, arn).await?.unwrap_or_default();
        Ok(Some(Observed {
            inputs: Self {
                load_balancer_arn: Input::Value(LoadBalancerArn::new(
                    l.load_balancer_arn().unwrap_or_default(),
                )),
                port: l.port().and_then(|p| u16::try_from(p).ok()).unwrap_or(0),
                certificate_arn: l
                    .certificates()
                    .first()
                    .and_then(|c| c.certificate_arn())
                    .map(str::to_owned),
                default_action: ListenerDefault::of(l.default_actions()),
                tags: platform_core::resource::user_tags(tags),
            },
            outputs: outputs.clone(),
        }))
    }

    async fn update(
        &self,
        ctx: &Context,
        previous: &Self,
        outputs: &ListenerOutputs,
    ) -> Result<ListenerOutputs, ResourceError> {
        let arn = outputs.arn.as_str();
        if self.certificate_arn != previous.certificate_arn
            || self.default_action != previous.default_action
        {
            let client = elb::client(ctx)?;
            ctx.call("ModifyListener", Idempotent, || {
                client
                    .modify_listener()
                    .listener_arn(arn)
                    .protocol(self.protocol())
                    .set_certificates(self.certificates())
                    .default_actions(self.default_action.action())
                    .send()
            })
            .await?;
        }
        elb::update_tags(ctx, arn, &previous.tags, &self.tags).await?;
        Ok(outputs.clone())
    }

    async fn delete(&self, ctx: &Context, outputs: &ListenerOutputs) -> Result<(), ResourceError> {
        let client = elb::client(ctx)?;
        ctx.call("DeleteListener", Idempotent, || {
            client
                .delete_listener()
                .listener_arn(outputs.arn.as_str())
                .send()
        })
        .await
        .gone_is_ok()
    }

    /// By ARN.
    async fn import(
        &self,
        ctx: &Context,
        id: &str,
    ) -> Result<Option<ListenerOutputs>, ResourceError> {
        elb::import::<Self>(ctx, id).await
    }

    /// The balancer's listener on this port, when its tags say it is this resource's.
    async fn find(&self, ctx: &Context) -> Result<Option<ListenerOutputs>, ResourceError> {
        elb::find(self, ctx).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_needs_an_acm_certificate_arn_and_makes_the_listener_https() {
        let mut l = Listener {
            load_balancer_arn: Input::Value(LoadBalancerArn::new("arn:lb")),
            port: 443,
            certificate_arn: None,
            default_action: ListenerDefault::NotFound,
            tags: BTreeMap::new(),
        };
        assert_eq!(l.protocol(), ProtocolEnum::Http);
        assert!(l.certificates().is_none());
        l.certificate_arn = Some("arn:aws:acm:us-east-1:1:certificate/abc".into());
        assert!(l.validate().is_ok());
        assert_eq!(l.protocol(), ProtocolEnum::Https);
        assert_eq!(l.certificates().unwrap().len(), 1);
        for bad in ["abc", "arn:aws:iam::1:role/x", "certificate/abc"] {
            l.certificate_arn = Some(bad.into());
            assert_eq!(l.validate().unwrap_err().value, bad);
        }
        l.certificate_arn = None;
        l.port = 0;
        assert_eq!(l.validate().unwrap_err().field, "port");
    }

    #[test]
    fn a_default_answer_reads_back_as_written_and_anything_else_is_other() {
        for d in [
            ListenerDefault::NotFound,
            ListenerDefault::RedirectToHttps(443),
        ] {
            assert_eq!(ListenerDefault::of(&[d.action()]), d);
        }
        let forward = Action::builder()
            .r#type(ActionTypeEnum::Forward)
            .target_group_arn("arn:tg")
            .build();
        assert_eq!(
            ListenerDefault::of(&[forward]),
            ListenerDefault::Other("forward".into())
        );
        assert_eq!(
            ListenerDefault::of(&[]),
            ListenerDefault::Other("none".into())
        );
        let unavailable = Action::builder()
            .r#type(ActionTypeEnum::FixedResponse)
            .fixed_response_config(
                FixedResponseActionConfig::builder()
                    .status_code("503")
                    .build(),
            )
            .build();
        assert_eq!(
            ListenerDefault::of(&[unavailable]),
            ListenerDefault::Other("fixed-response".into())
        );
        let http = Action::builder()
            .r#type(ActionTypeEnum::Redirect)
            .redirect_config(
                RedirectActionConfig::builder()
                    .protocol("HTTP")
                    .port("80")
                    .build(),
            )
            .build();
        assert_eq!(
            ListenerDefault::of(&[http]),
            ListenerDefault::Other("redirect".into())
        );
    }
}
