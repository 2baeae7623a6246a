//! # platform-core
//!
//! The engine behind the platform's stacks: resources declared into a typed graph, a pure planner, a
//! parallel apply and destroy over the dependency graph, durable state, typed stack references.
//!
//! - A [`Stack`] declares [`Resource`]s into a [`Scope`]. Each declaration returns a [`Handle`] whose
//!   fields are typed [`Ref`]s to the resource's outputs; other resources take them as [`Input`]s, and
//!   the dependency graph is read from those references.
//! - [`plan()`] compares the declared graph with the recorded [`StackState`]: a [`Plan`] of
//!   create / update / replace / delete / same per resource. It does no I/O.
//! - [`Engine::up`] applies a plan over the graph in parallel (bounded overall and per AWS service),
//!   recording an intent before each mutating call and its result after; [`Engine::destroy`] deletes
//!   from state alone, dependents first.
//! - A [`StackGroup`] applies several stacks together: a resource that refers to another stack's
//!   resource ([`Ref::in_stack`]) starts as soon as that resource exists, not when its whole stack is
//!   done; each stack keeps its own state.
//! - State lives behind [`StateStore`]; [`LocalStateStore`] is the embedded default.
//!
//! ```
//! use platform_core::testing::{FakeCloud, FakeStack};
//! use platform_core::{Engine, MemoryStateStore, ProviderInfo};
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let cloud = FakeCloud::new();
//! let engine = Engine::builder(MemoryStateStore::new())
//!     .provider(ProviderInfo { account_id: "000000000000".into(), region: "local".into() })
//!     .extension(cloud.clone())
//!     .build();
//! let stack = FakeStack::chain("demo", 3);
//! let plan = engine.preview(&stack).await.unwrap();
//! assert_eq!(plan.counts().create, 3);
//! engine.up(&stack).await.unwrap();
//! // A second run changes nothing.
//! assert!(!engine.preview(&stack).await.unwrap().has_changes());
//! engine.destroy::<FakeStack>("demo").await.unwrap();
//! assert!(cloud.live().is_empty());
//! # });
//! ```

pub mod engine;
pub mod error;
pub mod events;
mod ids;
pub mod plan;
pub mod policy;
mod provider;
pub mod resource;
pub mod stack;
pub mod state;
mod sync;
mod tags;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
mod types;
mod validate;
mod value;

// The root holds what a stack author and an embedder touch first; the rest is in the modules above.
pub use engine::{Engine, EngineBuilder, StackGroup, UpOptions, UpReport};
pub use error::{Error, ResourceError, Result, ValidationError};
pub use events::Event;
pub use plan::Plan;
pub use resource::{Context, ForceNew, Handle, Observed, Resource, ResourceOutputs};
pub use stack::{Scope, Stack, StackRef};
pub use state::{LocalStateStore, MemoryStateStore, S3StateStore, StateStore};
pub use types::ProviderInfo;
pub use value::{Input, Ref};

/// An AWS SDK client for a resource, built once per engine with the engine's interceptors (the call
/// recorder among them) and shared: `aws_client!(ctx, aws_sdk_ec2)` is an
/// `Result<aws_sdk_ec2::Client, ResourceError>`. Works for every `aws-sdk-*` crate.
///
/// The SDK's own retries are turned off in these clients: whether a failed call is sent again is the
/// engine's decision ([`Context::call`] retries what is safe to repeat, a [`resource::Once`] call never
/// re-sends a create whose outcome is unknown). With the SDK's standard retries a create whose response
/// was lost (a timeout, a closed connection) would be sent again by the SDK before the engine saw the
/// error, and make a twin VPC or answer `EntityAlreadyExists`.
///
/// ```no_run
/// # fn f(ctx: &platform_core::Context) -> Result<(), platform_core::ResourceError> {
/// let sts = platform_core::aws_client!(ctx, aws_sdk_sts)?;
/// # Ok(()) }
/// ```
#[macro_export]
macro_rules! aws_client {
    ($ctx:expr, $sdk:ident) => {
        $ctx.client(|config, interceptors| {
            let mut builder = $sdk::config::Builder::from(config)
                .retry_config($sdk::config::retry::RetryConfig::disabled());
            for interceptor in interceptors {
                builder.push_interceptor(interceptor.clone());
            }
            $sdk::Client::from_conf(builder.build())
        })
    };
}
