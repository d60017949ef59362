//! What can go wrong with one resource, and with a group.

use std::fmt;
use std::time::Duration;

use crate::resource::Health;

/// An action on one resource failed. `resource` names it as
/// `<group>-<index> (<label>)`, e.g. `web-1 (ocf:heartbeat:Dummy)`.
#[derive(Debug, thiserror::Error)]
pub enum ResourceError {
    /// The spec does not describe a resource that can run (see
    /// [`crate::ResourceSpec::validate`]).
    #[error("{resource}: invalid spec: {problems}")]
    Invalid { resource: String, problems: String },
    /// The program could not be started at all.
    #[error("{resource}: {action}: cannot run {program}: {source}")]
    Spawn {
        resource: String,
        action: &'static str,
        program: String,
        #[source]
        source: std::io::Error,
    },
    /// The action did not finish in time; its process group was killed.
    #[error("{resource}: {action} did not finish within {} (its process group was killed)", humantime::format_duration(*.timeout))]
    Timeout {
        resource: String,
        action: &'static str,
        timeout: Duration,
    },
    /// An OCF agent exited with a code other than success.
    #[error("{resource}: {action} failed: OCF exit code {code} ({meaning}): {detail}")]
    Ocf {
        resource: String,
        action: &'static str,
        code: i32,
        meaning: &'static str,
        detail: String,
    },
    /// Any other failure of the action, with the reason.
    #[error("{resource}: {action} failed: {reason}")]
    Failed {
        resource: String,
        action: &'static str,
        reason: String,
    },
}

/// One resource that failed to stop.
#[derive(Debug)]
pub struct StopFailure {
    /// Its index in the group.
    pub index: usize,
    /// Its label (see [`crate::ResourceSpec::label`]).
    pub label: String,
    /// Why.
    pub error: ResourceError,
}

impl fmt::Display for StopFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "resources[{}] ({}): {}",
            self.index, self.label, self.error
        )
    }
}

/// An action on a group failed.
#[derive(Debug, thiserror::Error)]
pub enum GroupError {
    /// A resource did not start; the ones started before it were stopped
    /// again, in reverse order, successfully.
    #[error("group {group}: resources[{index}] ({label}) did not start: {source}")]
    StartFailed {
        group: String,
        index: usize,
        label: String,
        #[source]
        source: Box<ResourceError>,
    },
    /// At least one resource did not stop (the others were stopped all the
    /// same). `during_start` holds the start failure this stop was undoing,
    /// if it was one.
    #[error("group {group}: {} resource(s) did not stop: {}{}", .failures.len(), join(.failures), .during_start.as_ref().map(|e| format!(" (while undoing a failed start: {e})")).unwrap_or_default())]
    StopFailed {
        group: String,
        failures: Vec<StopFailure>,
        during_start: Option<Box<GroupError>>,
    },
    /// A resource's monitor says it is not running.
    #[error("group {group}: resources[{index}] ({label}) is {health}")]
    Unhealthy {
        group: String,
        index: usize,
        label: String,
        health: Health,
    },
    /// A resource's monitor could not tell (it could not run, or timed out).
    #[error("group {group}: monitor of resources[{index}] ({label}) failed: {source}")]
    MonitorFailed {
        group: String,
        index: usize,
        label: String,
        #[source]
        source: Box<ResourceError>,
    },
    /// A resource's spec is invalid: the group cannot be built.
    #[error("group {group}: resources[{index}]: {source}")]
    Invalid {
        group: String,
        index: usize,
        #[source]
        source: Box<ResourceError>,
    },
}

fn join(failures: &[StopFailure]) -> String {
    failures
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}
