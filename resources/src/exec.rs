//! A resource made of start, stop and (optionally) monitor commands.

use std::time::Duration;

use crate::cmd::{self, Outcome, RunError};
use crate::env::RunEnv;
use crate::error::ResourceError;
use crate::resource::Health;

/// Monitor exit code meaning "stopped" (the OCF convention).
pub const EXIT_NOT_RUNNING: i32 = 7;

#[derive(Debug)]
pub(crate) struct Exec {
    resource: String,
    start: Vec<String>,
    stop: Vec<String>,
    monitor: Option<Vec<String>>,
    timeout: Duration,
    /// Without a monitor command: what the last start or stop did.
    started: bool,
}

impl Exec {
    pub fn new(
        resource: String,
        start: Vec<String>,
        stop: Vec<String>,
        monitor: Option<Vec<String>>,
        timeout: Duration,
    ) -> Self {
        Self {
            resource,
            start,
            stop,
            monitor,
            timeout,
            started: false,
        }
    }

    async fn run(
        &self,
        action: &'static str,
        command: &[String],
        env: &RunEnv,
    ) -> Result<Outcome, ResourceError> {
        let Some((program, args)) = command.split_first() else {
            return Err(ResourceError::Failed {
                resource: self.resource.clone(),
                action,
                reason: "the command is empty".to_owned(),
            });
        };
        tracing::debug!(resource = %self.resource, action, program = %program, "running command");
        match cmd::run(program, args, &env.vars(), self.timeout).await {
            Ok(out) => Ok(out),
            Err(RunError::Spawn(source) | RunError::Wait(source)) => Err(ResourceError::Spawn {
                resource: self.resource.clone(),
                action,
                program: program.clone(),
                source,
            }),
            Err(RunError::Timeout) => Err(ResourceError::Timeout {
                resource: self.resource.clone(),
                action,
                timeout: self.timeout,
            }),
        }
    }

    fn failed(&self, action: &'static str, out: &Outcome) -> ResourceError {
        ResourceError::Failed {
            resource: self.resource.clone(),
            action,
            reason: format!("{}: {}", out.describe_status(), out.last_line()),
        }
    }

    pub async fn start(&mut self, env: &RunEnv) -> Result<(), ResourceError> {
        let out = self.run("start", &self.start, env).await?;
        if !out.status.success() {
            return Err(self.failed("start", &out));
        }
        self.started = true;
        Ok(())
    }

    pub async fn stop(&mut self, env: &RunEnv) -> Result<(), ResourceError> {
        let out = self.run("stop", &self.stop, env).await?;
        if !out.status.success() {
            return Err(self.failed("stop", &out));
        }
        self.started = false;
        Ok(())
    }

    pub async fn monitor(&mut self, env: &RunEnv) -> Result<Health, ResourceError> {
        let Some(monitor) = &self.monitor else {
            return Ok(if self.started {
                Health::Running
            } else {
                Health::Stopped
            });
        };
        let out = self.run("monitor", monitor, env).await?;
        Ok(match out.status.code() {
            Some(0) => Health::Running,
            Some(EXIT_NOT_RUNNING) => Health::Stopped,
            _ => Health::Failed(format!(
                "monitor {}: {}",
                out.describe_status(),
                out.last_line()
            )),
        })
    }
}
