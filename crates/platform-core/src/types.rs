//! Small types every part of the crate shares: the provider an account and region is, who holds a
//! lock, what an action is and how many there are, a boxed future. This module uses nothing else of
//! the crate, so that any module can use it without a cycle.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use serde::{Deserialize, Serialize};

/// A boxed, sendable future.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// An AWS account and region.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ProviderInfo {
    /// The 12-digit account id.
    pub account_id: String,
    /// The region, e.g. `us-east-1`.
    pub region: String,
}

impl ProviderInfo {
    /// The ARN partition of the region: `aws-cn` for China, `aws-us-gov` for GovCloud, `aws`
    /// elsewhere.
    pub fn partition(&self) -> &'static str {
        if self.region.starts_with("cn-") {
            "aws-cn"
        } else if self.region.starts_with("us-gov-") {
            "aws-us-gov"
        } else {
            "aws"
        }
    }

    /// The ARN of `resource` (`log-group:/ecs/frontend`) of `service` in this account and region.
    pub fn arn(&self, service: &str, resource: &str) -> String {
        format!(
            "arn:{}:{service}:{}:{}:{resource}",
            self.partition(),
            self.region,
            self.account_id
        )
    }
}

impl fmt::Display for ProviderInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "account {} in {}", self.account_id, self.region)
    }
}

/// Who holds a stack's lock: written by the holder when it takes the lock.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockInfo {
    /// A random id of this holding, so that a holder knows its own lock again.
    pub id: String,
    /// The holder's host name.
    pub host: String,
    /// The holder's process id.
    pub pid: u32,
    /// The process's start time in clock ticks after boot (Linux), so that another process that
    /// was given the same pid later is not taken for the holder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid_start: Option<u64>,
    /// The user the holder runs as.
    pub user: String,
    /// What it is doing: `up`, `destroy`, `refresh`, ...
    pub operation: String,
    /// When it took the lock (RFC 3339).
    pub since: String,
}

impl LockInfo {
    /// This process, taking a lock for `operation` now.
    pub fn current(operation: &str) -> Self {
        let pid = std::process::id();
        Self {
            id: format!("{:032x}", fastrand::u128(..)),
            host: this_host(),
            pid,
            pid_start: process_start(pid),
            user: std::env::var("USER")
                .or_else(|_| std::env::var("USERNAME"))
                .unwrap_or_else(|_| "unknown".into()),
            operation: operation.to_owned(),
            since: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        }
    }

    /// Whether the holder is certainly gone: it ran on this host and no process with its pid (and
    /// start time) runs now. Only Linux can tell; elsewhere, and for another host, never.
    ///
    /// A container with the same host name in another pid namespace looks gone from here: taking
    /// such a lock over is left to the caller's choice ([`S3StateStore::take_over_dead_locks`](crate::S3StateStore::take_over_dead_locks)).
    pub fn is_provably_dead(&self) -> bool {
        if self.host != this_host() || !cfg!(target_os = "linux") {
            return false;
        }
        if !std::path::Path::new("/proc/self/stat").exists() {
            return false;
        }
        match process_start(self.pid) {
            None => true,
            Some(start) => self.pid_start.is_some_and(|s| s != start),
        }
    }

    /// The holder as shown to a user, with `; that process is gone` when [provably
    /// dead](Self::is_provably_dead).
    pub fn describe(&self) -> String {
        let gone = if self.is_provably_dead() {
            "; that process is gone"
        } else {
            ""
        };
        format!("{self} ({}{gone})", self.since)
    }
}

impl fmt::Display for LockInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} by {}@{} pid {}",
            self.operation, self.user, self.host, self.pid
        )
    }
}

fn this_host() -> String {
    gethostname::gethostname().to_string_lossy().into_owned()
}

/// A process's start time (field 22 of `/proc/PID/stat`), when it runs and this is Linux.
fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count after its end.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// The kind of an [`Action`](crate::plan::Action), without its details.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ActionKind {
    /// See [`Action::Create`](crate::plan::Action::Create).
    Create,
    /// See [`Action::Update`](crate::plan::Action::Update).
    Update,
    /// See [`Action::Replace`](crate::plan::Action::Replace).
    Replace,
    /// See [`Action::Delete`](crate::plan::Action::Delete) and [`Action::DeleteDeposed`](crate::plan::Action::DeleteDeposed).
    Delete,
    /// See [`Action::Same`](crate::plan::Action::Same).
    Same,
}

impl fmt::Display for ActionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Create => "create",
            Self::Update => "update",
            Self::Replace => "replace",
            Self::Delete => "delete",
            Self::Same => "same",
        })
    }
}

/// How many resources each action touches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Creates.
    pub create: usize,
    /// In-place updates.
    pub update: usize,
    /// Replacements.
    pub replace: usize,
    /// Deletes (deposed instances included).
    pub delete: usize,
    /// Unchanged.
    pub same: usize,
}

impl Counts {
    /// Whether anything changes.
    pub fn has_changes(&self) -> bool {
        self.changes() > 0
    }

    /// How many resources change (every action but `same`).
    pub fn changes(&self) -> usize {
        self.create + self.update + self.replace + self.delete
    }

    /// Adds another count to this one.
    pub fn add(&mut self, other: &Counts) {
        self.create += other.create;
        self.update += other.update;
        self.replace += other.replace;
        self.delete += other.delete;
        self.same += other.same;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_arn_is_in_the_regions_partition() {
        let p = |region: &str| ProviderInfo {
            account_id: "123456789012".into(),
            region: region.into(),
        };
        assert_eq!(
            p("us-east-1").arn("logs", "log-group:/ecs/x"),
            "arn:aws:logs:us-east-1:123456789012:log-group:/ecs/x"
        );
        assert_eq!(p("cn-north-1").partition(), "aws-cn");
        assert_eq!(p("us-gov-west-1").partition(), "aws-us-gov");
        assert_eq!(p("eu-west-1").partition(), "aws");
    }
}
