use std::path::{Path, PathBuf};
use std::time::Duration;

use resources::RunEnv;

pub fn env(epoch: u64) -> RunEnv {
    RunEnv {
        epoch,
        group: "g".to_owned(),
        node: "n1".to_owned(),
        node_id: 3,
    }
}

/// Write an executable script.
pub fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, body).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// `sh -c <script>` as a command vector.
pub fn sh(script: &str) -> Vec<String> {
    vec!["/bin/sh".to_owned(), "-c".to_owned(), script.to_owned()]
}

/// The process exists and is not a zombie.
pub fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        // The state follows the ")" that closes the command name.
        s.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X")
    })
}

/// Wait for a file to hold a pid; panics after 5 s.
pub async fn read_pid(path: &Path) -> i32 {
    for _ in 0..250 {
        if let Ok(s) = std::fs::read_to_string(path)
            && let Ok(pid) = s.trim().parse()
        {
            return pid;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no pid in {} after 5 s", path.display());
}

/// Gone within `within` (a killed process may take a moment to be reaped).
pub async fn gone_within(pid: i32, within: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if !alive(pid) {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Whether the tests that need something of the host (root, an installed
/// package) must run: `true` if it is there; if not, `false` with a printed
/// reason, or a panic under `CI=true`, where nothing may be skipped.
pub fn require(what: &str, present: bool) -> bool {
    if present {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("CI=true and {what} is missing: this test must not be skipped in CI");
    }
    eprintln!("SKIPPED: {what} is missing");
    false
}
