//! A resource group: resources started in order, stopped in reverse.

use futures_util::future::join_all;

use crate::env::RunEnv;
use crate::error::{GroupError, StopFailure};
use crate::resource::{Health, Resource};
use crate::spec::ResourceSpec;

/// The resources of one group, in their start order.
#[derive(Debug)]
pub struct Group {
    pub name: String,
    pub resources: Vec<Resource>,
}

impl Group {
    /// Build every resource (`<name>-<index>`); fails on the first invalid spec.
    pub fn new(name: impl Into<String>, specs: Vec<ResourceSpec>) -> Result<Self, GroupError> {
        let name = name.into();
        let resources = specs
            .into_iter()
            .enumerate()
            .map(|(index, spec)| {
                Resource::new(spec, &name, index).map_err(|source| GroupError::Invalid {
                    group: name.clone(),
                    index,
                    source: Box::new(source),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { name, resources })
    }

    /// Record the pids of `process` resources under `root` (per node), so
    /// that a later agent process's stop kills what a killed one left
    /// running (see [`Resource::with_state`]).
    pub fn with_state(mut self, root: impl Into<std::path::PathBuf>, scope: &str) -> Self {
        let root = root.into();
        self.resources = self
            .resources
            .into_iter()
            .map(|r| r.with_state(root.clone(), scope))
            .collect();
        self
    }

    /// Start every resource in order. If resource k fails, resources
    /// 0..k are stopped again in reverse order and the error names k
    /// ([`GroupError::StartFailed`]); if one of those stops fails too, the
    /// error is [`GroupError::StopFailed`] holding the start failure.
    #[tracing::instrument(skip_all, fields(group = %self.name, epoch = env.epoch))]
    pub async fn start(&mut self, env: &RunEnv) -> Result<(), GroupError> {
        for k in 0..self.resources.len() {
            let r = &mut self.resources[k];
            if let Err(source) = r.start(env).await {
                let failed = GroupError::StartFailed {
                    group: self.name.clone(),
                    index: k,
                    label: r.label().to_owned(),
                    source: Box::new(source),
                };
                tracing::error!(error = %failed, "start failed: stopping what was started");
                // (A kind cleans up its own half-done start: a process
                // that exited at once is reaped, an address is not added.)
                let mut failures = Vec::new();
                for r in self.resources[..k].iter_mut().rev() {
                    if let Err(error) = r.stop(env, false).await {
                        failures.push(StopFailure {
                            index: r.index(),
                            label: r.label().to_owned(),
                            error,
                        });
                    }
                }
                if failures.is_empty() {
                    return Err(failed);
                }
                return Err(GroupError::StopFailed {
                    group: self.name.clone(),
                    failures,
                    during_start: Some(Box::new(failed)),
                });
            }
        }
        tracing::info!("group started");
        Ok(())
    }

    /// Stop every resource in reverse order; a failing stop does not keep
    /// the others from stopping. `urgent` (the lease lapsed): addresses
    /// first, then every other resource at once, processes SIGKILLed.
    #[tracing::instrument(skip_all, fields(group = %self.name, epoch = env.epoch, urgent))]
    pub async fn stop(&mut self, env: &RunEnv, urgent: bool) -> Result<(), GroupError> {
        let mut failures = Vec::new();
        let mut record = |r: &Resource, result: Result<(), crate::ResourceError>| {
            if let Err(error) = result {
                tracing::error!(error = %error, "stop failed");
                failures.push(StopFailure {
                    index: r.index(),
                    label: r.label().to_owned(),
                    error,
                });
            }
        };
        if urgent {
            for r in self.resources.iter_mut().rev().filter(|r| r.is_address()) {
                let result = r.stop(env, true).await;
                record(r, result);
            }
            let others: Vec<&mut Resource> = self
                .resources
                .iter_mut()
                .rev()
                .filter(|r| !r.is_address())
                .collect();
            let results = join_all(others.into_iter().map(|r| async move {
                let result = r.stop(env, true).await;
                (r, result)
            }))
            .await;
            for (r, result) in results {
                record(r, result);
            }
        } else {
            for r in self.resources.iter_mut().rev() {
                let result = r.stop(env, false).await;
                record(r, result);
            }
        }
        if failures.is_empty() {
            tracing::info!("group stopped");
            Ok(())
        } else {
            failures.sort_by_key(|f| std::cmp::Reverse(f.index));
            Err(GroupError::StopFailed {
                group: self.name.clone(),
                failures,
                during_start: None,
            })
        }
    }

    /// Monitor every resource in order; the first that is not running (or
    /// whose monitor could not tell) is the error.
    pub async fn monitor(&mut self, env: &RunEnv) -> Result<(), GroupError> {
        for r in &mut self.resources {
            match r.monitor(env).await {
                Ok(Health::Running) => {}
                Ok(health) => {
                    return Err(GroupError::Unhealthy {
                        group: self.name.clone(),
                        index: r.index(),
                        label: r.label().to_owned(),
                        health,
                    });
                }
                Err(source) => {
                    return Err(GroupError::MonitorFailed {
                        group: self.name.clone(),
                        index: r.index(),
                        label: r.label().to_owned(),
                        source: Box::new(source),
                    });
                }
            }
        }
        Ok(())
    }

    /// Wait until every address's first burst of announcements is sent.
    pub async fn announced(&mut self) {
        for r in &mut self.resources {
            r.announced().await;
        }
    }
}
