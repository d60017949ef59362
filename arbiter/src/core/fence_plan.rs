//! The fencing orchestration of one node, as a state machine.
//!
//! A job walks the node's topology level by level (a level is a set of
//! devices that must all confirm the node off). A failed or timed-out level
//! falls to the next; after the last one the round is recorded as failed, an
//! alert is raised and the job retries from level 0 after a backoff that
//! doubles up to a cap. A job ends only with a confirmed fence: a failed
//! fence is never treated as success.

use std::time::Duration;

use super::NodeId;
use super::spec::Timing;

/// Where a fence job stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobState {
    /// A level is running; the shell will report `FenceFinished` for
    /// `attempt`, or the core gives up on it at `deadline`.
    Running {
        level: usize,
        attempt: u64,
        deadline: Duration,
    },
    /// Every level failed; start again at `retry_at`.
    Backoff { retry_at: Duration },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FenceJob {
    pub node: NodeId,
    pub intent: u64,
    pub levels: usize,
    /// Completed failed rounds (every level tried).
    pub rounds_failed: u32,
    pub state: JobState,
    /// When the job began (for `fencectl status`: failing since when).
    pub since: Duration,
    /// The last error of each level (`None`: it has not failed yet), and
    /// when the last level failure was.
    pub errors: Vec<Option<String>>,
    pub last_failure: Option<Duration>,
}

/// What the job wants next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobStep {
    /// Run this level.
    RunLevel { level: usize, attempt: u64 },
    /// The round failed at every level; retry later.
    RoundFailed { retry_at: Duration },
    /// Nothing to do now.
    Wait,
}

impl FenceJob {
    /// A new job; the caller emits `RunLevel { level: 0, attempt }`.
    pub fn start(
        node: NodeId,
        intent: u64,
        levels: usize,
        attempt: u64,
        now: Duration,
        t: &Timing,
    ) -> Self {
        FenceJob {
            node,
            intent,
            levels: levels.max(1),
            rounds_failed: 0,
            state: JobState::Running {
                level: 0,
                attempt,
                deadline: now + core_deadline(t),
            },
            since: now,
            errors: vec![None; levels.max(1)],
            last_failure: None,
        }
    }

    /// The running level has no deadline: the core settles it (the
    /// watchdog rule, which may need longer than a device).
    pub fn without_deadline(&mut self) {
        if let JobState::Running { deadline, .. } = &mut self.state {
            *deadline = Duration::MAX;
        }
    }

    /// Is `attempt` the level currently running?
    pub fn is_current(&self, attempt: u64) -> bool {
        matches!(self.state, JobState::Running { attempt: a, .. } if a == attempt)
    }

    /// Record why the running level failed (before `level_failed`).
    pub fn note_error(&mut self, now: Duration, detail: &str) {
        if let JobState::Running { level, .. } = self.state
            && let Some(e) = self.errors.get_mut(level)
        {
            *e = Some(detail.to_string());
            self.last_failure = Some(now);
        }
    }

    /// The level running now, if one is.
    pub fn level(&self) -> Option<usize> {
        match self.state {
            JobState::Running { level, .. } => Some(level),
            JobState::Backoff { .. } => None,
        }
    }

    /// The current level failed (error, timeout, or unconfirmed status).
    /// `next_attempt` is a fresh attempt id should another level run.
    pub fn level_failed(&mut self, now: Duration, next_attempt: u64, t: &Timing) -> JobStep {
        let JobState::Running { level, .. } = self.state else {
            return JobStep::Wait;
        };
        if level + 1 < self.levels {
            self.state = JobState::Running {
                level: level + 1,
                attempt: next_attempt,
                deadline: now + core_deadline(t),
            };
            JobStep::RunLevel {
                level: level + 1,
                attempt: next_attempt,
            }
        } else {
            let shift = self.rounds_failed.min(16);
            self.rounds_failed += 1;
            let backoff = t
                .fence_retry_min
                .saturating_mul(1u32 << shift)
                .min(t.fence_retry_max);
            let retry_at = now + backoff;
            self.state = JobState::Backoff { retry_at };
            JobStep::RoundFailed { retry_at }
        }
    }

    /// Timers: a level past its deadline fails; a backoff that ran out
    /// starts a new round at level 0.
    pub fn on_tick(&mut self, now: Duration, next_attempt: u64, t: &Timing) -> Option<JobStep> {
        match self.state {
            JobState::Running { deadline, .. } if now >= deadline => {
                self.note_error(now, "no result within the level's deadline");
                Some(self.level_failed(now, next_attempt, t))
            }
            JobState::Backoff { retry_at } if now >= retry_at => {
                self.state = JobState::Running {
                    level: 0,
                    attempt: next_attempt,
                    deadline: now + core_deadline(t),
                };
                Some(JobStep::RunLevel {
                    level: 0,
                    attempt: next_attempt,
                })
            }
            _ => None,
        }
    }
}

/// The shell enforces `fence_timeout` per level; the core waits a little
/// longer before it gives up on a result that never came.
fn core_deadline(t: &Timing) -> Duration {
    t.fence_timeout + t.fence_timeout / 2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn falls_through_levels_then_backs_off_doubling_to_the_cap() {
        let t = Timing {
            fence_retry_min: Duration::from_millis(100),
            fence_retry_max: Duration::from_millis(300),
            ..Timing::default()
        };
        let now = Duration::from_secs(1);
        let mut job = FenceJob::start(3, 7, 2, 1, now, &t);
        assert_eq!(
            job.level_failed(now, 2, &t),
            JobStep::RunLevel {
                level: 1,
                attempt: 2
            }
        );
        assert!(job.is_current(2) && !job.is_current(1));
        assert_eq!(
            job.level_failed(now, 3, &t),
            JobStep::RoundFailed {
                retry_at: now + Duration::from_millis(100)
            }
        );
        assert_eq!(job.on_tick(now + Duration::from_millis(99), 4, &t), None);
        assert_eq!(
            job.on_tick(now + Duration::from_millis(100), 4, &t),
            Some(JobStep::RunLevel {
                level: 0,
                attempt: 4
            })
        );
        job.level_failed(now, 5, &t);
        assert_eq!(
            job.level_failed(now, 6, &t),
            JobStep::RoundFailed {
                retry_at: now + Duration::from_millis(200)
            }
        );
        job.on_tick(now + Duration::from_secs(1), 7, &t);
        job.level_failed(now, 8, &t);
        assert_eq!(
            job.level_failed(now, 9, &t),
            JobStep::RoundFailed {
                retry_at: now + Duration::from_millis(300)
            }
        );
    }

    #[test]
    fn a_level_without_result_times_out() {
        let t = Timing::default();
        let mut job = FenceJob::start(1, 1, 1, 1, Duration::ZERO, &t);
        assert_eq!(job.on_tick(t.fence_timeout, 2, &t), None);
        assert!(matches!(
            job.on_tick(t.fence_timeout * 2, 2, &t),
            Some(JobStep::RoundFailed { .. })
        ));
    }
}
