//! `cargo bench`: deploy time against the critical path, calls made, planning at scale.
fn main() {}
