//! # examples
//!
//! The production platform as one unit: the three stacks wired together ([`Platform`]), and the
//! diagram of what is deployed ([`graph`]). `cargo run --example production` is built on it; deploy
//! bots and portals can embed it the same way.
//!
//! ```no_run
//! # async fn f(aws: aws_types::SdkConfig) -> Result<(), platform_core::Error> {
//! use platform_core::{Engine, LocalStateStore};
//! let engine = Engine::builder(LocalStateStore::open(".platform/state")?).aws(aws).build();
//! let platform = examples::Platform::new(engine);
//! let report = platform.up().await?;
//! println!("service {}", report.outputs.cluster.service_arn);
//! # Ok(()) }
//! ```

pub mod config;
pub mod graph;
pub mod measure;
mod platform;
pub mod policies;
pub mod promote;
pub mod review;

pub use platform::{Platform, PlatformOutputs, Preview, StackReport, UpSummary};
