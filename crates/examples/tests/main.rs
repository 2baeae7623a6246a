//! The platform's integration suites, one test binary (each linked binary costs a cold build as long
//! as a pruned SDK client): `cargo test -p examples --test suite kill::` runs one of them.

mod common;

mod cli;
mod faults;
mod kill;
mod late;
mod operator;
mod rollout;
mod team_state;
