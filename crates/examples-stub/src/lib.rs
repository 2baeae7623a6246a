//! Stands in for `crates/examples` while that crate, `network-stack` and `cluster-stack` are outside
//! the workspace (see README.md, "Status"): it carries the `production` example that says so.
