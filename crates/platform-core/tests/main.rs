//! The engine's integration suites against the fake cloud, one test binary (each linked binary costs a
//! cold build as long as a pruned SDK client): `cargo test -p platform-core --test suite faults::` runs
//! one of them.

mod api;
mod approval;
mod engine;
mod faults;
mod group;
mod plan;
mod policy;
mod public_api;
mod publish;
mod recorder;
