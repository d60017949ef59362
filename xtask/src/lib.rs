//! Release tasks, run as `cargo xtask <task>` (an alias in
//! `.cargo/config.toml`):
//!
//! - `docs --out DIR`: man pages (section 8) and bash, zsh and fish
//!   completions of `fence-arbiter`, `fence-agent` and `fencectl`, generated
//!   from their clap definitions (`<crate>::cli`), so they never drift from
//!   the binaries.
//! - `debs --out DIR`: the three Debian packages, built by cargo-deb from
//!   each crate's `[package.metadata.deb]` with the units, sysusers file and
//!   default configs under `packaging/`, and the generated pages and
//!   completions.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

use clap::CommandFactory;
use clap_complete::Shell;

/// The packaged binaries and their command lines.
pub fn commands() -> Vec<clap::Command> {
    vec![
        arbiter::cli::Args::command(),
        agent::cli::Args::command(),
        fencectl::cli::Cli::command(),
    ]
}

/// The crates packaged, in the order `debs` builds them.
pub const PACKAGES: [&str; 3] = ["arbiter", "agent", "fencectl"];

#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("cannot run {what}: {source}")]
    Spawn { what: String, source: io::Error },
    #[error("{what} failed ({status})")]
    Failed {
        what: String,
        status: std::process::ExitStatus,
    },
    #[error(
        "cargo-deb is not installed: `cargo install cargo-deb --locked` (scripts/test does it as root)"
    )]
    NoCargoDeb,
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> TaskError + '_ {
    move |source| TaskError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn write(path: PathBuf, bytes: &[u8], written: &mut Vec<PathBuf>) -> Result<(), TaskError> {
    fs::write(&path, bytes).map_err(io_at(&path))?;
    written.push(path);
    Ok(())
}

/// A man page for `cmd` and one per subcommand, recursively
/// (`fencectl-driver-test.8`), each naming its full command line.
fn man_pages(
    cmd: &clap::Command,
    prefix: &str,
    dir: &Path,
    written: &mut Vec<PathBuf>,
) -> Result<(), TaskError> {
    let name = if prefix.is_empty() {
        cmd.get_name().to_string()
    } else {
        format!("{prefix}-{}", cmd.get_name())
    };
    let page = cmd
        .clone()
        .display_name(name.clone())
        .bin_name(name.replace('-', " "));
    let mut out = Vec::new();
    let path = dir.join(format!("{name}.8"));
    clap_mangen::Man::new(page)
        .section("8")
        .manual("fence")
        .render(&mut out)
        .map_err(io_at(&path))?;
    write(path, &out, written)?;
    for sub in cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        man_pages(sub, &name, dir, written)?;
    }
    Ok(())
}

/// Writes `DIR/man/*.8` and `DIR/completions/{bash,zsh,fish}/...` (the
/// file names each shell looks for) and returns every file written.
pub fn write_docs(out: &Path) -> Result<Vec<PathBuf>, TaskError> {
    let mut written = Vec::new();
    let man = out.join("man");
    fs::create_dir_all(&man).map_err(io_at(&man))?;
    for mut cmd in commands() {
        cmd.build();
        man_pages(&cmd, "", &man, &mut written)?;
        let bin = cmd.get_name().to_string();
        for (shell, file) in [
            (Shell::Bash, bin.clone()),
            (Shell::Zsh, format!("_{bin}")),
            (Shell::Fish, format!("{bin}.fish")),
        ] {
            let dir = out.join("completions").join(shell.to_string());
            fs::create_dir_all(&dir).map_err(io_at(&dir))?;
            let mut buf = Vec::new();
            clap_complete::generate(shell, &mut cmd.clone(), bin.clone(), &mut buf);
            write(dir.join(file), &buf, &mut written)?;
        }
    }
    Ok(written)
}

/// `target/<profile>` of this executable: where cargo-deb's
/// `target/release/...` asset paths point.
pub fn profile_dir() -> Result<PathBuf, TaskError> {
    let exe = std::env::current_exe().map_err(io_at(Path::new("/proc/self/exe")))?;
    Ok(exe
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(".")))
}

fn run(what: &str, cmd: &mut Command) -> Result<(), TaskError> {
    let status = cmd.status().map_err(|source| TaskError::Spawn {
        what: what.to_string(),
        source,
    })?;
    if status.success() {
        Ok(())
    } else {
        Err(TaskError::Failed {
            what: what.to_string(),
            status,
        })
    }
}

/// Builds the three `.deb` files into `out` and returns their paths.
/// `build`: compile the release binaries first (else they must be there).
pub fn build_debs(workspace: &Path, out: &Path, build: bool) -> Result<Vec<PathBuf>, TaskError> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let has_deb = Command::new(&cargo)
        .args(["deb", "--version"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !has_deb {
        return Err(TaskError::NoCargoDeb);
    }
    let out = &std::path::absolute(out).map_err(io_at(out))?;
    let release = profile_dir()?;
    // cargo-deb maps `target/release/` to the real target directory; it
    // must be the one this xtask was built in.
    let target = release.parent().unwrap_or(&release).to_path_buf();
    if build {
        let mut c = Command::new(&cargo);
        c.current_dir(workspace)
            .env("CARGO_TARGET_DIR", &target)
            .args(["build", "--release", "--locked", "--bins"]);
        for p in PACKAGES {
            c.args(["-p", p]);
        }
        run("cargo build --release", &mut c)?;
    }
    let assets = release.join("assets");
    let _ = fs::remove_dir_all(&assets);
    // Debian policy: man pages gzipped (-n: no name or time stamp, so the
    // package is reproducible). cargo-deb compresses only files it did not
    // find under target/.
    let pages: Vec<PathBuf> = write_docs(&assets)?
        .into_iter()
        .filter(|p| p.extension().is_some_and(|x| x == "8"))
        .collect();
    run(
        "gzip the man pages",
        Command::new("gzip").arg("-9nf").args(&pages),
    )?;
    fs::create_dir_all(out).map_err(io_at(out))?;
    let mut debs = Vec::new();
    for p in PACKAGES {
        run(
            &format!("cargo deb -p {p}"),
            Command::new(&cargo)
                .current_dir(workspace)
                .env("CARGO_TARGET_DIR", &target)
                .args([
                    "deb",
                    "--no-build",
                    "--locked",
                    "--strip",
                    "-p",
                    p,
                    "--output",
                ])
                .arg(out),
        )?;
    }
    for e in fs::read_dir(out).map_err(io_at(out))? {
        let path = e.map_err(io_at(out))?.path();
        if path.extension().is_some_and(|x| x == "deb") {
            debs.push(path);
        }
    }
    debs.sort();
    Ok(debs)
}
