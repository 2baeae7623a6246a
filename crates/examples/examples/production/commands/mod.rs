//! One module per command: each takes the [`Session`](crate::Session) that `main` set up (the
//! checked config, the engine, the state store, the output mode) and returns the exit code.

pub(crate) mod destroy;
pub(crate) mod envs;
pub(crate) mod graph;
pub(crate) mod import;
pub(crate) mod init;
pub(crate) mod outputs;
pub(crate) mod preview;
pub(crate) mod refresh;
pub(crate) mod unlock;
pub(crate) mod up;
