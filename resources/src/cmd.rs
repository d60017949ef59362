//! Run one command to completion under a deadline, in its own process
//! group, killed whole when the deadline passes.

use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::AsyncReadExt;

/// Keep at most this much of each output stream.
const MAX_OUTPUT: usize = 64 * 1024;
/// After the command exited, how long to read what it left in its pipes
/// (something it started in the background may hold them open forever).
const DRAIN_GRACE: Duration = Duration::from_millis(200);

/// A finished command.
#[derive(Debug)]
pub(crate) struct Outcome {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    /// The most telling line of the output: the last non-empty line of
    /// stderr, else of stdout, else "no output".
    pub fn last_line(&self) -> String {
        last_line(&self.stderr)
            .or_else(|| last_line(&self.stdout))
            .unwrap_or("no output")
            .to_owned()
    }

    /// "exit code 3" or "killed by signal 9".
    pub fn describe_status(&self) -> String {
        describe_status(self.status)
    }
}

pub(crate) fn describe_status(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(sig)) => match Signal::try_from(sig) {
            Ok(s) => format!("killed by signal {sig} ({s})"),
            Err(_) => format!("killed by signal {sig}"),
        },
        _ => format!("{status}"),
    }
}

fn last_line(s: &str) -> Option<&str> {
    s.lines().rev().map(str::trim).find(|l| !l.is_empty())
}

/// Why a command gave no [`Outcome`].
#[derive(Debug)]
pub(crate) enum RunError {
    Spawn(std::io::Error),
    Wait(std::io::Error),
    Timeout,
}

/// Run `program args` with `envs` added to the environment, stdin from
/// /dev/null, under `timeout`. On timeout the whole process group is
/// SIGKILLed and reaped.
pub(crate) async fn run(
    program: &str,
    args: &[String],
    envs: &[(String, String)],
    timeout: Duration,
) -> Result<Outcome, RunError> {
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .envs(envs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        // Its own process group, so a timeout kills what it started too.
        .process_group(0);
    let mut child = cmd.spawn().map_err(RunError::Spawn)?;
    let pgid = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .map(Pid::from_raw);
    let (out_buf, out_task) = drain(child.stdout.take());
    let (err_buf, err_task) = drain(child.stderr.take());
    let result = tokio::time::timeout(timeout, child.wait()).await;
    let status = match result {
        Ok(Ok(status)) => status,
        Ok(Err(e)) => {
            out_task.abort();
            err_task.abort();
            return Err(RunError::Wait(e));
        }
        Err(_) => {
            if let Some(pg) = pgid {
                let _ = killpg(pg, Signal::SIGKILL);
            }
            let _ = child.start_kill();
            let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
            out_task.abort();
            err_task.abort();
            return Err(RunError::Timeout);
        }
    };
    let (mut out_task, mut err_task) = (out_task, err_task);
    let _ = tokio::time::timeout(DRAIN_GRACE, async {
        let _ = (&mut out_task).await;
        let _ = (&mut err_task).await;
    })
    .await;
    out_task.abort();
    err_task.abort();
    Ok(Outcome {
        status,
        stdout: take(&out_buf),
        stderr: take(&err_buf),
    })
}

type Buf = Arc<Mutex<Vec<u8>>>;

/// Read a pipe into a shared buffer, so that what was read so far is there
/// even if the reading is given up. (A std Mutex: never held across an
/// await.)
fn drain<R>(pipe: Option<R>) -> (Buf, tokio::task::JoinHandle<()>)
where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
{
    let buf: Buf = Arc::default();
    let sink = Arc::clone(&buf);
    let task = tokio::spawn(async move {
        let Some(mut pipe) = pipe else { return };
        let mut chunk = [0u8; 4096];
        loop {
            match pipe.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let mut b = sink.lock().unwrap_or_else(|e| e.into_inner());
                    let room = MAX_OUTPUT.saturating_sub(b.len());
                    b.extend_from_slice(&chunk[..n.min(room)]);
                }
            }
        }
    });
    (buf, task)
}

fn take(buf: &Buf) -> String {
    let b = buf.lock().unwrap_or_else(|e| e.into_inner());
    String::from_utf8_lossy(&b).into_owned()
}
