//! [`Context`]: what a resource operation gets from the engine: its identity (stack, resource,
//! instance), the engine's tags and ownership rules, AWS clients and extensions, early outputs,
//! events and cancellation.

use crate::sync::Locked;
use std::any::{Any, TypeId};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_smithy_runtime_api::client::interceptors::SharedInterceptor;
use aws_types::SdkConfig;
use serde::Serialize;
use serde_json::Value;

use super::{INSTANCE_TAG, RESOURCE_TAG, RetryPolicy, STACK_TAG};
use crate::error::ResourceError;
use crate::events::{Event, EventSink};

type AnyBox = Box<dyn Any + Send + Sync>;

pub(crate) struct Shared {
    pub(crate) sdk_config: Option<SdkConfig>,
    pub(crate) interceptors: Vec<SharedInterceptor>,
    pub(crate) extensions: HashMap<TypeId, Arc<dyn Any + Send + Sync>>,
    pub(crate) clients: Mutex<HashMap<TypeId, AnyBox>>,
    pub(crate) events: EventSink,
    pub(crate) retry: RetryPolicy,
    /// How long an interrupted create's instance is looked for (see
    /// [`EngineBuilder::settle_window`](crate::EngineBuilder::settle_window)).
    pub(crate) settle_window: Duration,
    /// The account and region the engine applies to, once it has resolved them (before any step).
    pub(crate) identity: tokio::sync::OnceCell<crate::ProviderInfo>,
}

/// What a resource operation gets from the engine: its identity, AWS clients, retries, events.
#[derive(Clone)]
pub struct Context {
    pub(super) shared: Arc<Shared>,
    pub(super) stack: Arc<str>,
    pub(super) resource: Arc<str>,
    instance: Option<Arc<str>>,
    pub(super) cancel: super::CancellationToken,
    /// In a create: where [`publish`](Context::publish) sends the outputs (with the answer's way back).
    publisher: Option<Publisher>,
    /// Until when AWS may not show the instance yet (made within the settle window): a not-found
    /// answer about it is asked again until then, not believed.
    pub(super) unseen_until: Option<tokio::time::Instant>,
}

/// A create's early outputs, sent to the engine with a way to tell the create they are recorded.
pub(crate) type Published = (Value, tokio::sync::oneshot::Sender<Result<(), String>>);

/// The engine's end of [`Context::publish`].
pub(crate) type Publisher = tokio::sync::mpsc::UnboundedSender<Published>;

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context")
            .field("stack", &self.stack)
            .field("resource", &self.resource)
            .field("instance", &self.instance)
            .finish()
    }
}

impl Context {
    pub(crate) fn new(
        shared: Arc<Shared>,
        stack: &str,
        resource: &str,
        cancel: crate::resource::CancellationToken,
    ) -> Self {
        Self {
            shared,
            stack: stack.into(),
            resource: resource.into(),
            instance: None,
            cancel,
            publisher: None,
            unseen_until: None,
        }
    }

    /// This context for an instance that AWS may not show until `until` (made within the settle
    /// window): every call's not-found answer is asked again until then. A delete that read the
    /// instance first and found nothing would otherwise leave it behind.
    pub(crate) fn unseen_until(mut self, until: Option<tokio::time::Instant>) -> Self {
        self.unseen_until = until;
        self
    }

    /// This context for instance `token` of the resource (a create, or the find that settles one).
    pub(crate) fn for_instance(mut self, token: Option<&str>) -> Self {
        self.instance = token.map(Into::into);
        self
    }

    /// This context for a create whose [`publish`](Self::publish) goes to `publisher`.
    pub(crate) fn publishing_to(mut self, publisher: Publisher) -> Self {
        self.publisher = Some(publisher);
        self
    }

    /// In a [`Resource::create`]: the resource exists and `outputs` are its final outputs; what the
    /// create still has to do is configuration that the resources using these outputs do not need
    /// (a VPC's DNS attributes, a subnet's public-IP setting, a security group's rules, a route
    /// table's routes). The engine records the outputs, with that configuration marked pending,
    /// and starts the dependents now, while the create goes on.
    ///
    /// The create must return the same outputs. If it fails or the process dies after this, the
    /// resource is recorded as existing with its configuration unfinished: the next run reads it
    /// and updates what differs, as after an interrupted update. Outside a create (an update, a
    /// settle), or a second time, this does nothing.
    ///
    /// # Errors
    /// When the outputs could not be recorded (the state store failed): the create should stop.
    pub async fn publish<O: Serialize>(&self, outputs: &O) -> Result<(), ResourceError> {
        let Some(publisher) = &self.publisher else {
            return Ok(());
        };
        let value = serde_json::to_value(outputs).map_err(|e| ResourceError::Failed {
            message: format!("the outputs of {} do not serialize: {e}", self.resource),
        })?;
        let (ack, recorded) = tokio::sync::oneshot::channel();
        if publisher.send((value, ack)).is_err() {
            return Ok(());
        }
        match recorded.await {
            Ok(Err(message)) => Err(ResourceError::Failed { message }),
            // Recorded, or the engine no longer listens (the outputs are recorded at the end).
            Ok(Ok(())) | Err(_) => Ok(()),
        }
    }

    /// The account and region being applied to, as the engine resolved them before the run's first
    /// step (`None` outside a run, as in a unit test's context). A resource can build an ARN from
    /// it that a call would otherwise have to read back.
    pub fn provider(&self) -> Option<&crate::ProviderInfo> {
        self.shared.identity.get()
    }

    /// Cancelled when the run is (Ctrl-C): long waits end early with [`ResourceError::Cancelled`].
    pub fn cancellation(&self) -> &crate::resource::CancellationToken {
        &self.cancel
    }

    /// Sleeps `d`, or returns [`ResourceError::Cancelled`] as soon as the run is cancelled.
    ///
    /// # Errors
    /// [`ResourceError::Cancelled`].
    pub async fn sleep(&self, d: Duration) -> Result<(), ResourceError> {
        tokio::select! {
            () = self.cancel.cancelled() => Err(ResourceError::Cancelled),
            () = tokio::time::sleep(d) => Ok(()),
        }
    }

    /// The stack being applied.
    pub fn stack(&self) -> &str {
        &self.stack
    }

    /// The resource's logical name.
    pub fn resource(&self) -> &str {
        &self.resource
    }

    /// The tags every created resource carries: its stack, its logical name and, for a create (and
    /// the find that settles it), its instance token.
    pub fn tags(&self) -> Vec<(&'static str, String)> {
        let mut tags = vec![
            (STACK_TAG, self.stack.to_string()),
            (RESOURCE_TAG, self.resource.to_string()),
        ];
        if let Some(token) = &self.instance {
            tags.push((INSTANCE_TAG, token.to_string()));
        }
        tags
    }

    /// The tags a create sends: `user`'s plus the engine's ([`tags`](Self::tags)), the engine's
    /// winning a key both name.
    ///
    /// ```
    /// # use std::collections::BTreeMap;
    /// # use platform_core::testing::context;
    /// let ctx = context("network", "vpc");
    /// let user = BTreeMap::from([("team".to_owned(), "web".to_owned())]);
    /// let all = ctx.tags_with(&user);
    /// assert_eq!(all["team"], "web");
    /// assert_eq!(all["platform:stack"], "network");
    /// ```
    pub fn tags_with(&self, user: &BTreeMap<String, String>) -> BTreeMap<String, String> {
        let mut tags = user.clone();
        tags.extend(self.tags().into_iter().map(|(k, v)| (k.to_owned(), v)));
        tags
    }

    /// Whether `tags` (as AWS answered them) carry every tag of this context, the instance token
    /// included when it has one: what [`Resource::find`](super::Resource::find) looks for where AWS
    /// cannot filter by tag.
    pub fn carries_own_tags<'t>(&self, tags: impl IntoIterator<Item = (&'t str, &'t str)>) -> bool {
        let tags: Vec<(&str, &str)> = tags.into_iter().collect();
        self.tags()
            .iter()
            .all(|(k, v)| tags.iter().any(|(tk, tv)| tk == k && tv == v))
    }

    /// The instance token of the create in progress (32 hex characters, fits every AWS idempotency
    /// field: EC2 `ClientToken` up to 64, ECS `clientToken` up to 36): pass it as the API's own
    /// idempotency token where there is one.
    pub fn instance_token(&self) -> Option<&str> {
        self.instance.as_deref()
    }

    /// Decides whether a resource found by its natural key (a name) may be adopted: only when its
    /// tags name this stack and this resource, and, for a create (a context with an instance
    /// token), only when it carries no other instance token. Nobody else's resource is ever taken,
    /// nor the instance a replacement deletes.
    ///
    /// ```
    /// # use platform_core::testing::context;
    /// let ctx = context("network", "vpc");
    /// assert!(ctx.claim("VPC vpc-1", [("platform:stack", "network"), ("platform:resource", "vpc")]).is_ok());
    /// let err = ctx.claim("VPC vpc-2", [("platform:stack", "other"), ("platform:resource", "vpc")]);
    /// assert!(err.unwrap_err().to_string().contains("belongs to stack other, resource vpc"));
    /// ```
    ///
    /// # Errors
    /// [`ResourceError::NotOurs`], naming the owner its tags give (or that it has none);
    /// [`ResourceError::OtherInstance`] for another instance of this resource.
    pub fn claim<'t>(
        &self,
        what: &str,
        tags: impl IntoIterator<Item = (&'t str, &'t str)>,
    ) -> Result<(), ResourceError> {
        let (mut stack, mut resource, mut instance) = (None, None, None);
        for (k, v) in tags {
            match k {
                STACK_TAG => stack = Some(v),
                RESOURCE_TAG => resource = Some(v),
                INSTANCE_TAG => instance = Some(v),
                _ => {}
            }
        }
        if stack == Some(&*self.stack) && resource == Some(&*self.resource) {
            return match (self.instance.as_deref(), instance) {
                (Some(token), Some(other)) if token != other => Err(ResourceError::OtherInstance {
                    what: what.to_owned(),
                    other: other.to_owned(),
                    token: token.to_owned(),
                }),
                _ => Ok(()),
            };
        }
        let owner = match (stack, resource) {
            (None, None) => "nobody this engine knows (it has no platform:stack tag)".to_owned(),
            (s, r) => format!(
                "stack {}, resource {}",
                s.unwrap_or("(none)"),
                r.unwrap_or("(none)")
            ),
        };
        Err(ResourceError::NotOurs {
            what: what.to_owned(),
            owner,
        })
    }

    /// The AWS configuration the engine was built with.
    ///
    /// # Errors
    /// [`ResourceError::NotConfigured`] when the engine has none.
    pub fn sdk_config(&self) -> Result<&SdkConfig, ResourceError> {
        self.shared
            .sdk_config
            .as_ref()
            .ok_or_else(|| ResourceError::NotConfigured {
                what: "an AWS SdkConfig (EngineBuilder::aws)".into(),
            })
    }

    /// An AWS service client, built once per engine by `make` from the engine's `SdkConfig` and the
    /// interceptors every client must carry (the engine's call recorder among them), then shared.
    ///
    /// ```no_run
    /// # use platform_core::{Context, ResourceError};
    /// # fn ec2(ctx: &Context) -> Result<(), ResourceError> {
    /// // with aws-sdk-ec2:
    /// // let client = ctx.client(|config, interceptors| {
    /// //     let mut b = aws_sdk_ec2::config::Builder::from(config);
    /// //     for i in interceptors { b.push_interceptor(i.clone()); }
    /// //     aws_sdk_ec2::Client::from_conf(b.build())
    /// // })?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`ResourceError::NotConfigured`] when the engine has no `SdkConfig`.
    pub fn client<C>(
        &self,
        make: impl FnOnce(&SdkConfig, &[SharedInterceptor]) -> C,
    ) -> Result<C, ResourceError>
    where
        C: Clone + Send + Sync + 'static,
    {
        let mut clients = self.shared.clients.locked();
        if let Some(c) = clients
            .get(&TypeId::of::<C>())
            .and_then(|c| c.downcast_ref::<C>())
        {
            return Ok(c.clone());
        }
        let client = make(self.sdk_config()?, &self.shared.interceptors);
        clients.insert(TypeId::of::<C>(), Box::new(client.clone()));
        Ok(client)
    }

    /// A value given to the engine with [`EngineBuilder::extension`](crate::EngineBuilder::extension)
    /// (a fake cloud in tests, a custom client).
    ///
    /// # Errors
    /// [`ResourceError::NotConfigured`] when no value of that type was given.
    pub fn extension<T: Send + Sync + 'static>(&self) -> Result<Arc<T>, ResourceError> {
        self.shared
            .extensions
            .get(&TypeId::of::<T>())
            .and_then(|v| v.clone().downcast::<T>().ok())
            .ok_or_else(|| ResourceError::NotConfigured {
                what: format!("extension {}", std::any::type_name::<T>()),
            })
    }

    /// Sends an event (for progress a resource reports itself, e.g. waiting for steady state).
    pub fn emit(&self, event: Event) {
        self.shared.events.emit(event);
    }

    /// Reports progress on long work as an [`Event::Progress`] for this resource.
    pub fn progress(&self, message: impl Into<String>) {
        self.emit(Event::Progress {
            stack: self.stack.to_string(),
            resource: self.resource.to_string(),
            message: message.into(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> Context {
        crate::testing::context("net", "vpc")
    }

    #[test]
    fn tags_and_token_name_the_instance_being_created() {
        let c = ctx();
        assert_eq!((c.stack(), c.resource()), ("net", "vpc"));
        assert_eq!(c.instance_token(), None);
        assert_eq!(
            c.tags(),
            [
                (STACK_TAG, "net".to_owned()),
                (RESOURCE_TAG, "vpc".to_owned())
            ]
        );
        let c = c.for_instance(Some("0123abcd"));
        assert_eq!(c.instance_token(), Some("0123abcd"));
        assert_eq!(c.tags()[2], (INSTANCE_TAG, "0123abcd".to_owned()));
    }

    #[test]
    fn claim_adopts_only_what_names_this_stack_and_resource() {
        let c = ctx();
        let ok = c.claim(
            "VPC vpc-1",
            [
                (STACK_TAG, "net"),
                (RESOURCE_TAG, "vpc"),
                (INSTANCE_TAG, "old"),
                ("team", "x"),
            ],
        );
        assert!(ok.is_ok());
        let owner = |tags: &[(&str, &str)]| match c.claim("VPC vpc-1", tags.iter().copied()) {
            Err(ResourceError::NotOurs { what, owner }) => {
                assert_eq!(what, "VPC vpc-1");
                owner
            }
            other => panic!("{other:?}"),
        };
        assert_eq!(
            owner(&[(STACK_TAG, "other"), (RESOURCE_TAG, "vpc")]),
            "stack other, resource vpc"
        );
        assert_eq!(
            owner(&[(STACK_TAG, "net"), (RESOURCE_TAG, "subnet")]),
            "stack net, resource subnet"
        );
        assert_eq!(owner(&[(STACK_TAG, "net")]), "stack net, resource (none)");
        assert_eq!(
            owner(&[(RESOURCE_TAG, "vpc")]),
            "stack (none), resource vpc"
        );
        assert!(owner(&[("team", "x")]).starts_with("nobody"));
    }

    #[test]
    fn a_create_claims_no_other_instance_of_its_resource() {
        let c = ctx().for_instance(Some("new"));
        let ours = [(STACK_TAG, "net"), (RESOURCE_TAG, "vpc")];
        let with = |token| ours.into_iter().chain([(INSTANCE_TAG, token)]);
        assert!(c.claim("VPC vpc-1", with("new")).is_ok());
        // Made before instance tokens: adopted.
        assert!(c.claim("VPC vpc-1", ours).is_ok());
        match c.claim("VPC vpc-1", with("old")) {
            Err(e @ ResourceError::OtherInstance { .. }) => assert_eq!(
                e.to_string(),
                "VPC vpc-1 holds the name and is another instance of this resource (old), not the \
                 one being created (new): it is not adopted"
            ),
            other => panic!("{other:?}"),
        }
        // Another owner is named as such, whatever its token.
        let foreign = [
            (STACK_TAG, "x"),
            (RESOURCE_TAG, "vpc"),
            (INSTANCE_TAG, "old"),
        ];
        assert!(matches!(
            c.claim("VPC vpc-1", foreign),
            Err(ResourceError::NotOurs { .. })
        ));
    }
}
