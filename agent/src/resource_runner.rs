//! The imperative shell of [`crate::groups`]: runs the starts, stops and
//! monitors of the resource groups the arbiter defines, in tasks of one
//! owner, and keeps the report every heartbeat carries.
//!
//! The session feeds it (Welcome, every Ack, the lease's end); the report
//! (the acknowledgement applied last and each group's state) is updated in
//! the same step as the keeper, so a heartbeat never says "applied" before
//! the stop that acknowledgement asked for has begun.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proto::v1 as pb;
use resources::{Group, ResourceSpec, RunEnv};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use crate::groups::{GroupInput, GroupKeeper, GroupOutput, GroupRun};

/// What heartbeats report.
#[derive(Debug, Clone, Default)]
pub struct GroupReport {
    pub applied_seq: u64,
    pub states: Vec<(String, GroupRun)>,
    /// Every group known and stopped ([`GroupKeeper::at_rest`]).
    pub at_rest: bool,
    /// The longest a group may take to stop once the lease ends (what
    /// holds it then, and its urgent stop: `ResourceSpec::group_lapse_bound`),
    /// and that group.
    pub stop_bound: (Duration, String),
}

enum Msg {
    Define {
        node_name: String,
        groups: Vec<pb::GroupDefinition>,
    },
    Ack {
        seq: u64,
        leased: bool,
        epoch: u64,
        grants: Vec<(String, bool)>,
    },
    LeaseLost,
    Done(GroupInput),
    /// A group whose resources cannot run here (a missing OCF agent or
    /// program, an unknown parameter, no such interface): starts fail.
    Unusable {
        group: String,
    },
}

/// The session's handle on the runner.
#[derive(Clone)]
pub struct RunnerHandle {
    tx: mpsc::UnboundedSender<Msg>,
    report: Arc<Mutex<GroupReport>>,
    /// Cancelled once the runner stopped every group and ended.
    finished: CancellationToken,
}

impl RunnerHandle {
    pub fn define(&self, node_name: String, groups: Vec<pb::GroupDefinition>) {
        let _ = self.tx.send(Msg::Define { node_name, groups });
    }

    pub fn ack(&self, seq: u64, leased: bool, epoch: u64, grants: Vec<(String, bool)>) {
        let _ = self.tx.send(Msg::Ack {
            seq,
            leased,
            epoch,
            grants,
        });
    }

    pub fn lease_lost(&self) {
        let _ = self.tx.send(Msg::LeaseLost);
    }

    /// Resolves once the runner has ended (after its shutdown's stops).
    pub fn finished(&self) -> tokio_util::sync::WaitForCancellationFutureOwned {
        self.finished.clone().cancelled_owned()
    }

    pub fn report(&self) -> GroupReport {
        self.report.lock().expect("group report lock").clone()
    }
}

/// One group's runtime: its resources and its restart policy.
struct Running {
    group: Option<Arc<tokio::sync::Mutex<Group>>>,
    monitor_interval: Duration,
    max_restarts: u32,
    restart_window: Duration,
    /// Cancels its monitor while it runs.
    monitor: Option<CancellationToken>,
    /// False once the local check found a problem: it never starts here.
    usable: bool,
}

/// Start the runner; it ends when `token` is cancelled, after stopping
/// every group it runs.
/// `state`: where `process` resources record their pids, and the cluster
/// (their cgroups' scope); `None`: not recorded.
pub fn spawn(
    node_id: u32,
    state: Option<(std::path::PathBuf, String)>,
    tracker: &TaskTracker,
    token: CancellationToken,
) -> RunnerHandle {
    let (tx, rx) = mpsc::unbounded_channel();
    let report = Arc::new(Mutex::new(GroupReport::default()));
    let finished = CancellationToken::new();
    let handle = RunnerHandle {
        tx: tx.clone(),
        report: report.clone(),
        finished: finished.clone(),
    };
    let runner = Runner {
        stop_bound: (Duration::ZERO, String::new()),
        state,
        node_id,
        node_name: format!("node{node_id}"),
        keeper: GroupKeeper::new(),
        groups: BTreeMap::new(),
        epoch: 0,
        tx,
        report,
        tracker: tracker.clone(),
        token: token.clone(),
    };
    tracker.spawn(async move {
        runner.run(rx).await;
        finished.cancel();
    });
    handle
}

struct Runner {
    /// See [`GroupReport::stop_bound`].
    stop_bound: (Duration, String),
    state: Option<(std::path::PathBuf, String)>,
    node_id: u32,
    node_name: String,
    keeper: GroupKeeper,
    groups: BTreeMap<String, Running>,
    epoch: u64,
    tx: mpsc::UnboundedSender<Msg>,
    report: Arc<Mutex<GroupReport>>,
    tracker: TaskTracker,
    token: CancellationToken,
}

impl Runner {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Msg>) {
        loop {
            let msg = tokio::select! {
                _ = self.token.cancelled() => break,
                m = rx.recv() => match m { Some(m) => m, None => break },
            };
            self.handle(msg);
        }
        self.shut_down(rx).await;
    }

    /// The agent stops: every group it runs is stopped (gracefully: the
    /// agent gives its lease up) before it exits.
    async fn shut_down(mut self, mut rx: mpsc::UnboundedReceiver<Msg>) {
        let outs = self.keeper.step(GroupInput::Ack {
            seq: u64::MAX,
            leased: true,
            grants: vec![],
        });
        for o in outs {
            self.execute(o, false);
        }
        self.publish();
        // (Starts under way finish first; their stop follows.)
        let deadline = Instant::now() + Duration::from_secs(120);
        while self.keeper.busy() {
            let Ok(Some(msg)) = tokio::time::timeout_at(deadline, rx.recv()).await else {
                warn!(
                    node.id = self.node_id,
                    "shutting down before every group stopped"
                );
                return;
            };
            if let Msg::Done(input) = msg {
                for o in self.keeper.step(input) {
                    self.execute(o, false);
                }
                self.publish();
            }
        }
    }

    fn handle(&mut self, msg: Msg) {
        let input = match msg {
            Msg::Define { node_name, groups } => {
                if !node_name.is_empty() {
                    self.node_name = node_name;
                }
                let names = groups.iter().map(|g| g.name.clone()).collect();
                for d in groups {
                    if self.groups.contains_key(&d.name) {
                        continue;
                    }
                    let group = match serde_json::from_str::<Vec<ResourceSpec>>(&d.resources_json)
                        .map_err(|e| e.to_string())
                        .and_then(|specs| {
                            Group::new(d.name.clone(), specs)
                                .map(|g| match &self.state {
                                    Some((dir, scope)) => g.with_state(dir.clone(), scope),
                                    None => g,
                                })
                                .map_err(|e| e.to_string())
                        }) {
                        Ok(g) => {
                            // Checked here, as the arbiter checks its fence
                            // agents: OCF meta-data and parameters,
                            // programs, interfaces.
                            let specs: Vec<ResourceSpec> =
                                g.resources.iter().map(|r| r.spec().clone()).collect();
                            let bound = ResourceSpec::group_lapse_bound(&specs);
                            if bound > self.stop_bound.0 {
                                self.stop_bound = (bound, d.name.clone());
                            }
                            let (tx, name, node) = (self.tx.clone(), d.name.clone(), self.node_id);
                            self.tracker.spawn(async move {
                                let mut problems = Vec::new();
                                for (k, r) in specs.iter().enumerate() {
                                    for p in r.check_installed().await {
                                        problems.push(format!("resources[{k}] ({}): {p}", r.label()));
                                    }
                                }
                                if !problems.is_empty() {
                                    error!(node.id = node, group = %name, problems = ?problems,
                                           "this group cannot run on this node: it will fail here and move");
                                    let _ = tx.send(Msg::Unusable { group: name });
                                }
                            });
                            Some(Arc::new(tokio::sync::Mutex::new(g)))
                        }
                        Err(e) => {
                            error!(node.id = self.node_id, group = %d.name, error = %e,
                                   "the arbiter sent resources this agent cannot read; the group cannot run here");
                            None
                        }
                    };
                    self.groups.insert(
                        d.name.clone(),
                        Running {
                            group,
                            monitor_interval: Duration::from_millis(d.monitor_interval_ms.max(100)),
                            max_restarts: d.max_restarts,
                            restart_window: Duration::from_millis(d.restart_window_ms),
                            monitor: None,
                            usable: true,
                        },
                    );
                }
                GroupInput::Defined { groups: names }
            }
            Msg::Ack {
                seq,
                leased,
                epoch,
                grants,
            } => {
                self.epoch = self.epoch.max(epoch);
                GroupInput::Ack {
                    seq,
                    leased,
                    grants,
                }
            }
            Msg::LeaseLost => GroupInput::LeaseLost,
            Msg::Done(input) => input,
            Msg::Unusable { group } => {
                if let Some(r) = self.groups.get_mut(&group) {
                    r.usable = false;
                }
                return;
            }
        };
        if let GroupInput::StartDone { group, ok: true } = &input {
            self.watch(group);
        }
        let outs = self.keeper.step(input);
        // Published before anything runs: the watchdog is never fed "at
        // rest" while a start is under way.
        self.publish();
        for o in outs {
            let urgent = matches!(o, GroupOutput::Stop { urgent: true, .. });
            self.execute(o, urgent);
        }
    }

    fn publish(&self) {
        let (applied_seq, states) = self.keeper.report();
        *self.report.lock().expect("group report lock") = GroupReport {
            applied_seq,
            states,
            at_rest: self.keeper.at_rest(),
            stop_bound: self.stop_bound.clone(),
        };
    }

    fn env(&self, group: &str) -> RunEnv {
        RunEnv {
            epoch: self.epoch,
            group: group.to_string(),
            node: self.node_name.clone(),
            node_id: self.node_id,
        }
    }

    fn execute(&mut self, o: GroupOutput, urgent: bool) {
        let (name, start) = match &o {
            GroupOutput::Start { group } => (group.clone(), true),
            GroupOutput::Stop { group, .. } => (group.clone(), false),
        };
        let env = self.env(&name);
        let tx = self.tx.clone();
        let Some(r) = self.groups.get_mut(&name) else {
            return;
        };
        if !start && let Some(m) = r.monitor.take() {
            m.cancel();
        }
        if start && !r.usable {
            let _ = tx.send(Msg::Done(GroupInput::StartDone {
                group: name,
                ok: false,
            }));
            return;
        }
        let Some(group) = r.group.clone() else {
            // Unreadable: a start fails; a stop cannot be done either (what
            // an earlier agent ran may still run): as a failed stop.
            let _ = tx.send(Msg::Done(if start {
                GroupInput::StartDone {
                    group: name,
                    ok: false,
                }
            } else {
                GroupInput::StopDone {
                    group: name,
                    ok: false,
                }
            }));
            return;
        };
        let node = self.node_id;
        self.tracker.spawn(async move {
            let mut g = group.lock().await;
            let done = if start {
                info!(node.id = node, group = %name, lease.epoch = env.epoch, "starting resource group");
                let t = Instant::now();
                let r = g.start(&env).await;
                match &r {
                    Ok(()) => info!(node.id = node, group = %name, took_ms = t.elapsed().as_millis() as u64, "resource group started"),
                    Err(e) => error!(node.id = node, group = %name, error = %e, "resource group did not start"),
                }
                match r {
                    Err(resources::GroupError::StopFailed { .. }) => {
                        GroupInput::StartUndoFailed { group: name }
                    }
                    r => GroupInput::StartDone { group: name, ok: r.is_ok() },
                }
            } else {
                info!(node.id = node, group = %name, urgent, "stopping resource group");
                let t = Instant::now();
                let r = g.stop(&env, urgent).await;
                match &r {
                    Ok(()) => info!(node.id = node, group = %name, took_ms = t.elapsed().as_millis() as u64, "resource group stopped"),
                    Err(e) => error!(node.id = node, group = %name, error = %e,
                                     "resource group did not stop: this node cannot be trusted and will be fenced"),
                }
                GroupInput::StopDone { group: name, ok: r.is_ok() }
            };
            let _ = tx.send(Msg::Done(done));
        });
    }

    /// Monitor a group that started: a failure restarts it in place (stop,
    /// start) up to `max_restarts` times within `restart_window`; beyond
    /// that, or when the restart fails, it gives up (the group moves).
    fn watch(&mut self, name: &str) {
        let env = self.env(name);
        let tx = self.tx.clone();
        let node = self.node_id;
        let Some(r) = self.groups.get_mut(name) else {
            return;
        };
        let Some(group) = r.group.clone() else {
            return;
        };
        let stop = self.token.child_token();
        if let Some(old) = r.monitor.replace(stop.clone()) {
            old.cancel();
        }
        let (every, max, window) = (r.monitor_interval, r.max_restarts, r.restart_window);
        let name = name.to_string();
        self.tracker.spawn(async move {
            let mut restarts: Vec<Instant> = Vec::new();
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(every) => {}
                }
                let mut g = group.lock().await;
                if stop.is_cancelled() {
                    return;
                }
                let Err(e) = g.monitor(&env).await else {
                    continue;
                };
                restarts.retain(|t| t.elapsed() < window);
                if restarts.len() as u32 >= max {
                    error!(node.id = node, group = %name, error = %e, restarts = restarts.len(),
                           "resource group failed beyond its restart limit: it moves");
                    let _ = tx.send(Msg::Done(GroupInput::MonitorGaveUp { group: name }));
                    return;
                }
                restarts.push(Instant::now());
                warn!(node.id = node, group = %name, error = %e, "resource group failed its monitor: restarting it in place");
                let restarted = match g.stop(&env, false).await {
                    Ok(()) => g.start(&env).await.map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                };
                if let Err(e) = restarted {
                    error!(node.id = node, group = %name, error = %e, "restart in place failed: it moves");
                    let _ = tx.send(Msg::Done(GroupInput::MonitorGaveUp { group: name }));
                    return;
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(name: &str, resources: &str) -> pb::GroupDefinition {
        pb::GroupDefinition {
            name: name.into(),
            resources_json: resources.into(),
            monitor_interval_ms: 100,
            max_restarts: 1,
            restart_window_ms: 60_000,
        }
    }

    async fn state_of(h: &RunnerHandle, group: &str, want: GroupRun) -> bool {
        for _ in 0..200 {
            let r = h.report();
            let s = r
                .states
                .iter()
                .find(|(g, _)| g == group)
                .map_or(GroupRun::Stopped, |(_, s)| *s);
            if s == want {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    #[tokio::test]
    async fn a_group_that_cannot_run_here_fails_and_an_unreadable_one_cannot_be_stopped() {
        let tracker = TaskTracker::new();
        let token = CancellationToken::new();
        let h = spawn(1, None, &tracker, token.clone());
        let dir = std::env::temp_dir().join(format!("runner-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let marker = dir.join("ran");
        let ok = format!(
            r#"[{{"kind":"exec","start":["/bin/sh","-c","touch {m}"],"stop":["/bin/rm","-f","{m}"]}}]"#,
            m = marker.display()
        );
        h.define(
            "node1".into(),
            vec![
                def("good", &ok),
                def(
                    "missing",
                    r#"[{"kind":"exec","start":["/no/such/program"],"stop":["/bin/true"]}]"#,
                ),
                def("garbled", r#"[{"kind":"teleport"}]"#),
            ],
        );
        // The clean-up stop of an unreadable group cannot be done.
        assert!(state_of(&h, "garbled", GroupRun::StopFailed).await);
        // (A failed stop stops every start: use a fresh runner for the rest.)
        token.cancel();
        tracker.close();
        tracker.wait().await;

        let tracker = TaskTracker::new();
        let token = CancellationToken::new();
        let h = spawn(1, None, &tracker, token.clone());
        h.define(
            "node1".into(),
            vec![
                def("good", &ok),
                def(
                    "missing",
                    r#"[{"kind":"exec","start":["/no/such/program"],"stop":["/bin/true"]}]"#,
                ),
            ],
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        h.ack(
            1,
            true,
            7,
            vec![("good".into(), true), ("missing".into(), true)],
        );
        assert!(state_of(&h, "good", GroupRun::Running).await);
        assert!(marker.exists(), "the good group ran its start");
        assert!(
            state_of(&h, "missing", GroupRun::Failed).await,
            "{:?}",
            h.report()
        );
        // Moved away: stopped, and the report says which ack was applied.
        h.ack(2, true, 7, vec![]);
        assert!(state_of(&h, "good", GroupRun::Stopped).await);
        assert!(!marker.exists(), "the good group ran its stop");
        assert_eq!(h.report().applied_seq, 2);
        token.cancel();
        tracker.close();
        tracker.wait().await;
        let _ = std::fs::remove_dir_all(&dir);
    }
}
