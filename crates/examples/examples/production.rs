//! `cargo run --example production`: the platform's command-line tool.
//!
//! Not built yet: it lands with the stacks (see README.md, "Status").

use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!(
        "production: the iam, network and cluster stacks are not implemented yet, so there is nothing \
         to deploy. The engine (platform-core) and the local cloud (local-cloud) are ready: see README.md."
    );
    ExitCode::FAILURE
}
