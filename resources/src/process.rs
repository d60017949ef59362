//! A service the agent runs itself, in its own process group (and cgroup,
//! on cgroup v2).

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::time::Instant;

use crate::cmd::describe_status;
use crate::env::RunEnv;
use crate::error::ResourceError;
use crate::resource::Health;

/// The cgroup v2 mount.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";
/// The directory under [`CGROUP_ROOT`] that holds one cgroup per process resource.
pub const CGROUP_PARENT: &str = "fence-agent";
/// A command that exits this soon after it was spawned failed to start.
pub const START_SETTLE: Duration = Duration::from_millis(100);
/// How long a SIGKILLed process may take to be reaped before stop gives up.
const REAP_AFTER_KILL: Duration = Duration::from_secs(5);

/// Whether `root` is a cgroup v2 hierarchy (it has `cgroup.controllers`).
pub fn cgroup_v2_available(root: &Path) -> bool {
    root.join("cgroup.controllers").exists()
}

#[derive(Debug)]
pub(crate) struct Process {
    resource: String,
    instance: String,
    command: Vec<String>,
    stop_timeout: Duration,
    cgroup_root: PathBuf,
    /// Where the pid of each process started is recorded (per node), so
    /// that the stop of a later agent process kills what a killed one left
    /// running; `None`: not recorded, nothing left over is looked for.
    state_root: Option<PathBuf>,
    /// The cluster, in the cgroup path (with a state root).
    scope: String,
    running: Option<Running>,
}

#[derive(Debug)]
struct Running {
    child: tokio::process::Child,
    pid: Pid,
    cgroup: Option<PathBuf>,
    /// Set once the leader has exited (and been reaped).
    exited: Option<ExitStatus>,
    last_stderr: Arc<Mutex<String>>,
}

impl Process {
    pub fn new(
        resource: String,
        instance: String,
        command: Vec<String>,
        stop_timeout: Duration,
    ) -> Self {
        Self {
            resource,
            instance,
            command,
            stop_timeout,
            cgroup_root: PathBuf::from(CGROUP_ROOT),
            state_root: None,
            scope: String::new(),
            running: None,
        }
    }

    pub fn set_cgroup_root(&mut self, root: PathBuf) {
        self.cgroup_root = root;
    }

    /// Record pids under `root` (`node<id>/<instance>.pid`) and put the
    /// cgroups under `fence-agent/<scope>/node<id>/`.
    pub fn set_state(&mut self, root: PathBuf, scope: &str) {
        self.state_root = Some(root);
        self.scope = scope.to_owned();
    }

    /// `<state root>/node<id>/<instance>.pid`.
    fn pid_file(&self, env: &RunEnv) -> Option<PathBuf> {
        self.state_root.as_ref().map(|r| {
            r.join(format!("node{}", env.node_id))
                .join(format!("{}.pid", self.instance))
        })
    }

    /// Record the pid and its start time (so a reused pid is not taken
    /// for it).
    fn record_pid(&self, env: &RunEnv, pid: Pid) {
        let Some(path) = self.pid_file(env) else {
            return;
        };
        let Some(start) = start_time(pid) else {
            return;
        };
        let write = path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::write(&path, format!("{} {start}\n", pid.as_raw())));
        if let Err(e) = write {
            tracing::warn!(resource = %self.resource, file = %path.display(), error = %e,
                           "cannot record the pid: a later agent process could not stop it if this one is killed");
        }
    }

    /// What an earlier agent process (killed, so it could not stop it) left
    /// running: its recorded process group and its cgroup are killed.
    async fn stop_leftover(&self, env: &RunEnv) -> Result<(), ResourceError> {
        let Some(path) = self.pid_file(env) else {
            return Ok(());
        };
        kill_recorded(&path, &self.resource)
            .await
            .map_err(|reason| self.failed("stop", reason))?;
        kill_cgroup(&self.cgroup_dir(env), &self.resource)
            .await
            .map_err(|reason| self.failed("stop", reason))
    }

    /// `<cgroup root>/fence-agent/[<scope>/]node<id>/<instance>`: one per
    /// cluster and node, as several agents may share a machine.
    fn cgroup_dir(&self, env: &RunEnv) -> PathBuf {
        node_cgroups(&self.cgroup_root, &self.scope, env.node_id).join(&self.instance)
    }

    /// The pid (= process group id) of the running process, if any.
    pub fn pid(&self) -> Option<u32> {
        self.running
            .as_ref()
            .filter(|r| r.exited.is_none())
            .and_then(|r| u32::try_from(r.pid.as_raw()).ok())
    }

    fn failed(&self, action: &'static str, reason: impl Into<String>) -> ResourceError {
        ResourceError::Failed {
            resource: self.resource.clone(),
            action,
            reason: reason.into(),
        }
    }

    /// Make `<cgroup root>/fence-agent/<instance>` where cgroup v2 is there
    /// and writable; `None` (process group only) otherwise.
    fn prepare_cgroup(&self, env: &RunEnv) -> Option<PathBuf> {
        if !cgroup_v2_available(&self.cgroup_root) {
            tracing::debug!(resource = %self.resource, root = %self.cgroup_root.display(), "no cgroup v2: process group only");
            return None;
        }
        let dir = self.cgroup_dir(env);
        match std::fs::create_dir_all(&dir) {
            Ok(()) if dir.join("cgroup.procs").exists() => Some(dir),
            Ok(()) => {
                tracing::warn!(resource = %self.resource, cgroup = %dir.display(), "created, but it has no cgroup.procs: process group only");
                None
            }
            Err(e) => {
                tracing::warn!(resource = %self.resource, cgroup = %dir.display(), error = %e, "cannot create the cgroup: process group only");
                None
            }
        }
    }

    pub async fn start(&mut self, env: &RunEnv) -> Result<(), ResourceError> {
        if let Some(r) = &mut self.running {
            if r.exited.is_none() && matches!(r.child.try_wait(), Ok(None)) {
                tracing::debug!(resource = %self.resource, pid = r.pid.as_raw(), "already running");
                return Ok(());
            }
            // A leftover of an exited run: clean it up first.
            self.stop(env, true).await?;
        }
        let Some((program, args)) = self.command.split_first() else {
            return Err(self.failed("start", "the command is empty"));
        };
        let cgroup = self.prepare_cgroup(env);
        let mut cmd = match &cgroup {
            // The shell moves itself into the cgroup, then execs the
            // command: nothing it starts can escape the cgroup.
            Some(dir) => {
                let mut c = tokio::process::Command::new("/bin/sh");
                c.arg("-c")
                    .arg("echo $$ > \"$0\" && exec \"$@\"")
                    .arg(dir.join("cgroup.procs"))
                    .arg(program)
                    .args(args);
                c
            }
            None => {
                let mut c = tokio::process::Command::new(program);
                c.args(args);
                c
            }
        };
        cmd.envs(env.vars())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let mut child = cmd.spawn().map_err(|source| ResourceError::Spawn {
            resource: self.resource.clone(),
            action: "start",
            program: program.clone(),
            source,
        })?;
        let Some(pid) = child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .map(Pid::from_raw)
        else {
            return Err(self.failed("start", "the process exited before its pid could be read"));
        };
        let last_stderr = Arc::new(Mutex::new(String::new()));
        log_lines(child.stdout.take(), &self.resource, "stdout", None);
        log_lines(
            child.stderr.take(),
            &self.resource,
            "stderr",
            Some(Arc::clone(&last_stderr)),
        );
        tracing::info!(resource = %self.resource, pid = pid.as_raw(), cgroup = ?cgroup, "process started");
        self.record_pid(env, pid);
        self.running = Some(Running {
            child,
            pid,
            cgroup,
            exited: None,
            last_stderr,
        });
        tokio::time::sleep(START_SETTLE).await;
        if let Health::Failed(why) = self.monitor(env).await? {
            let _ = self.stop(env, true).await;
            return Err(self.failed("start", why));
        }
        Ok(())
    }

    pub async fn monitor(&mut self, _env: &RunEnv) -> Result<Health, ResourceError> {
        let Some(r) = &mut self.running else {
            return Ok(Health::Stopped);
        };
        if r.exited.is_none() {
            match r.child.try_wait() {
                Ok(None) => return Ok(Health::Running),
                Ok(Some(status)) => {
                    tracing::warn!(resource = %self.resource, pid = r.pid.as_raw(), status = %describe_status(status), "process exited");
                    r.exited = Some(status);
                }
                Err(e) => {
                    return Err(ResourceError::Failed {
                        resource: self.resource.clone(),
                        action: "monitor",
                        reason: format!("cannot check process {}: {e}", r.pid),
                    });
                }
            }
        }
        let status = r.exited.map(describe_status).unwrap_or_default();
        let last = r
            .last_stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        Ok(Health::Failed(if last.is_empty() {
            format!("process {} exited with {status}", r.pid)
        } else {
            format!(
                "process {} exited with {status}; last stderr line: {last}",
                r.pid
            )
        }))
    }

    pub async fn stop(&mut self, env: &RunEnv, urgent: bool) -> Result<(), ResourceError> {
        let Some(mut r) = self.running.take() else {
            return self.stop_leftover(env).await;
        };
        let pg = r.pid;
        if r.exited.is_none()
            && let Ok(Some(status)) = r.child.try_wait()
        {
            r.exited = Some(status);
        }
        let deadline = Instant::now() + self.stop_timeout;
        if !urgent {
            tracing::info!(resource = %self.resource, pid = pg.as_raw(), timeout = %humantime::format_duration(self.stop_timeout), "stopping: SIGTERM to the process group");
            // To what is left of the group even if the leader is gone (its
            // pgid cannot be reused while members are left; once none are,
            // only a wrap of the whole pid space in between could reuse it).
            if killpg(pg, Signal::SIGTERM) == Err(Errno::ESRCH) && r.exited.is_none() {
                // It left its process group: at least the process itself.
                let _ = kill(pg, Signal::SIGTERM);
            }
            if r.exited.is_none() {
                match tokio::time::timeout_at(deadline, r.child.wait()).await {
                    Ok(Ok(status)) => r.exited = Some(status),
                    Ok(Err(e)) => {
                        tracing::warn!(resource = %self.resource, pid = pg.as_raw(), error = %e, "waiting for the process");
                    }
                    Err(_) => {
                        tracing::warn!(resource = %self.resource, pid = pg.as_raw(), "still running after the stop timeout: SIGKILL to the process group");
                    }
                }
            }
            if r.exited.is_some() {
                // The leader is gone; what is left of its group gets the
                // rest of the stop timeout.
                while killpg(pg, None).is_ok() && Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
        if urgent {
            tracing::info!(resource = %self.resource, pid = pg.as_raw(), "urgent stop: SIGKILL to the process group");
        }
        let _ = killpg(pg, Signal::SIGKILL);
        if r.exited.is_none() {
            let _ = r.child.start_kill();
        }
        if let Some(dir) = &r.cgroup
            && let Err(e) = std::fs::write(dir.join("cgroup.kill"), "1")
        {
            tracing::warn!(resource = %self.resource, cgroup = %dir.display(), error = %e, "cgroup.kill");
        }
        if r.exited.is_none() {
            match tokio::time::timeout(REAP_AFTER_KILL, r.child.wait()).await {
                Ok(Ok(status)) => r.exited = Some(status),
                Ok(Err(e)) => {
                    let reason = format!("cannot reap process {pg}: {e}");
                    self.running = Some(r);
                    return Err(self.failed("stop", reason));
                }
                Err(_) => {
                    let reason = format!(
                        "process {pg} is still there {} after SIGKILL (uninterruptible sleep?)",
                        humantime::format_duration(REAP_AFTER_KILL)
                    );
                    self.running = Some(r);
                    return Err(self.failed("stop", reason));
                }
            }
        }
        if let Some(dir) = &r.cgroup {
            remove_cgroup(&self.resource, dir).await;
        }
        if let Some(path) = self.pid_file(env) {
            let _ = std::fs::remove_file(path);
        }
        tracing::info!(resource = %self.resource, pid = pg.as_raw(), status = %r.exited.map(describe_status).unwrap_or_default(), "process stopped");
        Ok(())
    }
}

/// `<cgroup root>/fence-agent/[<scope>/]node<id>`.
fn node_cgroups(cgroup_root: &Path, scope: &str, node_id: u32) -> PathBuf {
    let mut dir = cgroup_root.join(CGROUP_PARENT);
    if !scope.is_empty() {
        dir = dir.join(scope);
    }
    dir.join(format!("node{node_id}"))
}

/// Is a member of process group `pgid` alive (not a zombie)?
fn group_alive(pgid: Pid) -> bool {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return killpg(pgid, None).is_ok();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .any(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|st| {
                    let rest = st.rsplit_once(')')?.1.to_owned();
                    let mut f = rest.split_whitespace();
                    let state = f.next()?.to_owned();
                    // Fields 4 (ppid) and 5 (pgrp).
                    let pgrp = f.nth(1)?.parse::<i32>().ok()?;
                    Some(pgrp == pgid.as_raw() && state != "Z" && state != "X")
                })
                .unwrap_or(false)
        })
}

/// Kill what the pid record at `path` names, if it is still that process
/// (its start time), or if its leader is gone but members of its group
/// live on (a process group id is not reused while members are left);
/// then remove the record.
async fn kill_recorded(path: &Path, label: &str) -> Result<(), String> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok(());
    };
    let mut f = text.split_whitespace();
    let pid = f
        .next()
        .and_then(|p| p.parse::<i32>().ok())
        .map(Pid::from_raw);
    let start = f.next().and_then(|s| s.parse::<u64>().ok());
    if let (Some(pid), Some(start)) = (pid, start) {
        let leader = start_time(pid);
        let ours = leader == Some(start) || (leader.is_none() && group_alive(pid));
        if ours {
            tracing::warn!(
                resource = label,
                pid = pid.as_raw(),
                "a process an earlier agent left running: SIGKILL to its process group"
            );
            let _ = killpg(pid, Signal::SIGKILL);
            if leader.is_some() {
                let _ = kill(pid, Signal::SIGKILL);
            }
            let deadline = Instant::now() + REAP_AFTER_KILL;
            while start_time(pid) == Some(start) || group_alive(pid) {
                if Instant::now() >= deadline {
                    return Err(format!(
                        "process group {pid} left by an earlier agent is still there after SIGKILL"
                    ));
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    let _ = std::fs::remove_file(path);
    Ok(())
}

/// Kill what cgroup `dir` still holds (cgroup v2) and remove it.
async fn kill_cgroup(dir: &Path, label: &str) -> Result<(), String> {
    if !dir.join("cgroup.procs").exists() {
        return Ok(());
    }
    let busy = |d: &Path| {
        std::fs::read_to_string(d.join("cgroup.procs")).is_ok_and(|p| !p.trim().is_empty())
    };
    if busy(dir) {
        tracing::warn!(resource = label, cgroup = %dir.display(),
                       "processes an earlier agent left running: cgroup.kill");
        let _ = std::fs::write(dir.join("cgroup.kill"), "1");
        let deadline = Instant::now() + REAP_AFTER_KILL;
        while busy(dir) {
            if Instant::now() >= deadline {
                return Err(format!(
                    "cgroup {} still has processes after cgroup.kill",
                    dir.display()
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    remove_cgroup(label, dir).await;
    Ok(())
}

/// Everything an earlier agent process of node `node_id` recorded under
/// `state_root` (`node<id>/*.pid`) and every cgroup it left under
/// `fence-agent/<scope>/node<id>/`, whatever group it belonged to: killed,
/// at the start of an agent that has started nothing yet. Returns what it
/// killed or removed.
pub async fn sweep_leftovers(
    state_root: &Path,
    cgroup_root: &Path,
    scope: &str,
    node_id: u32,
) -> Result<Vec<String>, String> {
    let mut done = Vec::new();
    let records = state_root.join(format!("node{node_id}"));
    if let Ok(dir) = std::fs::read_dir(&records) {
        for e in dir.flatten() {
            let path = e.path();
            if path.extension().is_some_and(|x| x == "pid") {
                kill_recorded(&path, &path.display().to_string()).await?;
                done.push(path.display().to_string());
            }
        }
    }
    let cgroups = node_cgroups(cgroup_root, scope, node_id);
    if let Ok(dir) = std::fs::read_dir(&cgroups) {
        for e in dir.flatten() {
            let path = e.path();
            if path.is_dir() {
                kill_cgroup(&path, &path.display().to_string()).await?;
                done.push(path.display().to_string());
            }
        }
    }
    Ok(done)
}

/// A process's start time (field 22 of `/proc/<pid>/stat`, in clock
/// ticks since boot); `None` if it is gone (or a zombie).
fn start_time(pid: Pid) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid.as_raw())).ok()?;
    let rest = stat.rsplit_once(')')?.1;
    let mut f = rest.split_whitespace();
    if f.next()? == "Z" {
        return None;
    }
    // After the state (field 3) comes field 4; the start time is field 22.
    f.nth(18)?.parse().ok()
}

/// Remove the (now empty) cgroup; it may take a moment for killed
/// processes to leave it.
async fn remove_cgroup(resource: &str, dir: &Path) {
    for _ in 0..50 {
        match std::fs::remove_dir(dir) {
            Ok(()) => return,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            // Busy: killed processes are still leaving it.
            Err(e) if e.raw_os_error() == Some(Errno::EBUSY as i32) => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => {
                tracing::warn!(resource, cgroup = %dir.display(), error = %e, "cannot remove the cgroup");
                return;
            }
        }
    }
    tracing::warn!(resource, cgroup = %dir.display(), "cannot remove the cgroup: still busy after 1 s");
}

/// Log each line of a child's output; keep the last one in `last`.
fn log_lines<R>(
    pipe: Option<R>,
    resource: &str,
    stream: &'static str,
    last: Option<Arc<Mutex<String>>>,
) where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
{
    let Some(pipe) = pipe else { return };
    let resource = resource.to_owned();
    tokio::spawn(async move {
        let mut lines = BufReader::new(pipe).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            tracing::info!(resource = %resource, stream, "{line}");
            if let Some(last) = &last
                && !line.trim().is_empty()
            {
                *last.lock().unwrap_or_else(|e| e.into_inner()) = line;
            }
        }
    });
}
