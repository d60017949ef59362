//! The Debian packages, as an operator gets them: `xtask debs` (cargo-deb)
//! builds fence-arbiter, fence-agent and fencectl from the release binaries;
//! the test reads every package's files, control fields, conffiles,
//! maintainer scripts and unit, runs the packaged binaries on the packaged
//! default configurations, and, as root on a machine with dpkg and no
//! /etc/fence of its own, installs them, checks the unit with
//! `systemd-analyze verify`, the `fence-arbiter` user, `--check-config` as
//! that user, and purges them again.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tests::e2e::binaries;
use tests::peers::in_ci;

fn run(cmd: &mut Command) -> Output {
    let what = format!("{cmd:?}");
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"))
}

fn ok(cmd: &mut Command) -> String {
    let what = format!("{cmd:?}");
    let o = run(cmd);
    assert!(
        o.status.success(),
        "{what} failed ({}):\n{}{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The three packages, built once into a temporary directory.
fn build_debs(out: &Path) -> Option<[PathBuf; 3]> {
    let has_cargo_deb = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args(["deb", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_cargo_deb || !have("dpkg-deb") {
        assert!(
            !in_ci(),
            "cargo-deb and dpkg-deb must be installed under CI (scripts/test installs cargo-deb)"
        );
        eprintln!("skipped: cargo-deb or dpkg-deb is not installed");
        return None;
    }
    let xtask = binaries().join("xtask");
    assert!(
        xtask.is_file(),
        "{} is missing: cargo build --release --workspace --all-targets",
        xtask.display()
    );
    let listed = ok(Command::new(&xtask)
        .args(["debs", "--no-build", "--out"])
        .arg(out));
    let find = |name: &str| {
        let p = out.join(format!("{name}_{}-1_amd64.deb", env!("CARGO_PKG_VERSION")));
        assert!(
            p.is_file(),
            "{} not built; xtask said:\n{listed}",
            p.display()
        );
        p
    };
    Some([find("fence-arbiter"), find("fence-agent"), find("fencectl")])
}

fn contents(deb: &Path) -> Vec<String> {
    ok(Command::new("dpkg-deb").arg("-c").arg(deb))
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .map(|p| p.trim_start_matches('.').to_string())
        .collect()
}

fn field(deb: &Path, name: &str) -> String {
    ok(Command::new("dpkg-deb").arg("-f").arg(deb).arg(name))
        .trim()
        .to_string()
}

fn control_file(deb: &Path, file: &str, dir: &Path) -> String {
    let d = dir.join(format!(
        "control-{}",
        deb.file_stem().unwrap().to_string_lossy()
    ));
    ok(Command::new("dpkg-deb").arg("-e").arg(deb).arg(&d));
    std::fs::read_to_string(d.join(file)).unwrap_or_default()
}

fn assert_has(files: &[String], want: &[&str], deb: &Path) {
    for w in want {
        assert!(
            files.iter().any(|f| f == w),
            "{} lacks {w}; it holds:\n{}",
            deb.display(),
            files.join("\n")
        );
    }
}

/// A unit's `Key=value` lines.
fn unit_has(unit: &str, lines: &[&str], what: &str) {
    for l in lines {
        assert!(
            unit.lines().any(|u| u.trim() == *l),
            "{what} lacks `{l}`:\n{unit}"
        );
    }
}

const HARDENING: [&str; 8] = [
    "NoNewPrivileges=yes",
    "CapabilityBoundingSet=",
    "ProtectSystem=strict",
    "ProtectHome=yes",
    "PrivateTmp=yes",
    "PrivateDevices=yes",
    "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK",
    "SystemCallArchitectures=native",
];

/// Certificates for the default configurations' cluster, made by the
/// packaged fencectl, and the BMC password files they name, under `etc`;
/// returns the default config rewritten to point there.
fn materials(fencectl: &Path, etc: &Path, default_conf: &str) -> String {
    if !etc.join("pki/ca.pem").exists() {
        ok(Command::new(fencectl)
            .args([
                "certs",
                "--cluster",
                "example",
                "--nodes",
                "node1,node2",
                "--dir",
            ])
            .arg(etc.join("pki")));
        for n in ["bmc-node1", "bmc-node2"] {
            std::fs::write(etc.join(format!("{n}.pass")), "secret\n").unwrap();
        }
    }
    default_conf.replace("/etc/fence/", &format!("{}/", etc.display()))
}

#[test]
fn the_packages_hold_what_an_operator_needs_and_install() {
    let dir = tempfile::tempdir().unwrap();
    let Some([arbiter, agent, ctl]) = build_debs(&dir.path().join("debs")) else {
        return;
    };

    // What each package holds.
    let a = contents(&arbiter);
    assert_has(
        &a,
        &[
            "/usr/bin/fence-arbiter",
            "/usr/lib/systemd/system/fence-arbiter.service",
            "/usr/lib/sysusers.d/fence-arbiter.conf",
            "/etc/fence/arbiter.toml",
            "/usr/share/man/man8/fence-arbiter.8.gz",
            "/usr/share/bash-completion/completions/fence-arbiter",
            "/usr/share/zsh/vendor-completions/_fence-arbiter",
            "/usr/share/fish/vendor_completions.d/fence-arbiter.fish",
            "/usr/share/doc/fence-arbiter/examples/arbiter.toml",
            "/usr/share/doc/fence-arbiter/copyright",
        ],
        &arbiter,
    );
    let g = contents(&agent);
    assert_has(
        &g,
        &[
            "/usr/bin/fence-agent",
            "/usr/lib/systemd/system/fence-agent.service",
            "/etc/fence/agent.toml",
            "/usr/share/man/man8/fence-agent.8.gz",
            "/usr/share/bash-completion/completions/fence-agent",
        ],
        &agent,
    );
    let c = contents(&ctl);
    assert_has(
        &c,
        &[
            "/usr/bin/fencectl",
            "/usr/share/man/man8/fencectl.8.gz",
            "/usr/share/man/man8/fencectl-confirm.8.gz",
            "/usr/share/man/man8/fencectl-maintenance.8.gz",
            "/usr/share/man/man8/fencectl-driver-test.8.gz",
            "/usr/share/bash-completion/completions/fencectl",
            "/usr/share/zsh/vendor-completions/_fencectl",
            "/usr/share/fish/vendor_completions.d/fencectl.fish",
        ],
        &ctl,
    );
    assert!(
        !c.iter().any(|f| f.contains("-help")),
        "clap's help subcommand got man pages: {c:?}"
    );

    // Control fields and maintainer scripts.
    assert_eq!(field(&arbiter, "Package"), "fence-arbiter");
    assert_eq!(field(&agent, "Package"), "fence-agent");
    assert_eq!(field(&ctl, "Package"), "fencectl");
    let depends = field(&arbiter, "Depends");
    assert!(
        depends.contains("libc6") && depends.contains("systemd | systemd-standalone-sysusers"),
        "fence-arbiter Depends: {depends}"
    );
    let cd = dir.path();
    assert_eq!(
        control_file(&arbiter, "conffiles", cd).trim(),
        "/etc/fence/arbiter.toml"
    );
    assert_eq!(
        control_file(&agent, "conffiles", cd).trim(),
        "/etc/fence/agent.toml"
    );
    let postinst = control_file(&arbiter, "postinst", cd);
    assert!(
        postinst.contains("systemd-sysusers") && postinst.contains("fence-arbiter.conf"),
        "the arbiter's postinst must make its user:\n{postinst}"
    );
    // Installed, neither enabled nor started: an unconfigured arbiter must
    // not run; an upgrade must not restart an agent (its node's services
    // would stop).
    for (deb, unit) in [(&arbiter, "fence-arbiter"), (&agent, "fence-agent")] {
        let p = control_file(deb, "postinst", cd);
        assert!(
            !p.contains(&format!("deb-systemd-invoke start {unit}"))
                && !p.contains(&format!(
                    "deb-systemd-helper enable {unit}.service >/dev/null || true\n\tfi\n\tfi"
                )),
            "{unit} must not be started at install:\n{p}"
        );
    }
    let agent_postinst = control_file(&agent, "postinst", cd);
    assert!(
        !agent_postinst.contains("try-restart") && !agent_postinst.contains("restart fence-agent"),
        "an upgrade must not restart the agent:\n{agent_postinst}"
    );

    // The files themselves: extract both packages side by side.
    let root = dir.path().join("root");
    for d in [&arbiter, &agent, &ctl] {
        ok(Command::new("dpkg-deb").arg("-x").arg(d).arg(&root));
    }
    let unit =
        std::fs::read_to_string(root.join("usr/lib/systemd/system/fence-arbiter.service")).unwrap();
    unit_has(
        &unit,
        &[
            "Type=notify",
            "User=fence-arbiter",
            "StateDirectory=fence-arbiter",
            "ExecStart=/usr/bin/fence-arbiter --config /etc/fence/arbiter.toml",
            "ExecStartPre=/usr/bin/fence-arbiter --config /etc/fence/arbiter.toml --check-config",
        ],
        "fence-arbiter.service",
    );
    unit_has(&unit, &HARDENING, "fence-arbiter.service");
    assert!(
        unit.lines().any(|l| l.starts_with("WatchdogSec=")),
        "fence-arbiter.service: no WatchdogSec"
    );
    let agent_unit =
        std::fs::read_to_string(root.join("usr/lib/systemd/system/fence-agent.service")).unwrap();
    unit_has(
        &agent_unit,
        &[
            "Type=notify",
            "RestartPreventExitStatus=3",
            "RuntimeDirectoryPreserve=yes",
        ],
        "fence-agent.service",
    );
    let sysusers =
        std::fs::read_to_string(root.join("usr/lib/sysusers.d/fence-arbiter.conf")).unwrap();
    assert!(
        sysusers.lines().any(|l| l.starts_with("u fence-arbiter ")),
        "sysusers: {sysusers}"
    );
    // The state directory of the default config is the unit's.
    let conf = std::fs::read_to_string(root.join("etc/fence/arbiter.toml")).unwrap();
    assert!(
        conf.contains("state_dir = \"/var/lib/fence-arbiter\""),
        "{conf}"
    );

    // Man pages are gzipped roff naming their command; completions parse.
    let page = ok(Command::new("sh").arg("-c").arg(format!(
        "gzip -dc {}",
        root.join("usr/share/man/man8/fencectl-confirm.8.gz")
            .display()
    )));
    assert!(
        page.starts_with(".ie") || page.contains(".TH"),
        "not roff: {page}"
    );
    assert!(
        page.contains("fencectl\\-confirm") || page.contains("fencectl-confirm"),
        "{page}"
    );
    assert!(
        page.contains("\\-\\-yes") || page.contains("--yes"),
        "confirm's page lacks --yes: {page}"
    );
    for f in ["fence-arbiter", "fence-agent", "fencectl"] {
        ok(Command::new("bash")
            .arg("-n")
            .arg(root.join("usr/share/bash-completion/completions").join(f)));
    }
    let bash = ok(Command::new("bash").arg("-c").arg(format!(
        "source {}; complete -p fencectl",
        root.join("usr/share/bash-completion/completions/fencectl")
            .display()
    )));
    assert!(
        bash.contains("fencectl"),
        "bash completion not registered: {bash}"
    );

    // The packaged binaries on the packaged default configurations, with
    // certificates made by the packaged fencectl.
    let bin = root.join("usr/bin");
    assert!(
        ok(Command::new(bin.join("fence-arbiter")).arg("--version"))
            .contains(env!("CARGO_PKG_VERSION"))
    );
    let etc = dir.path().join("etc-fence");
    std::fs::create_dir_all(&etc).unwrap();
    let arb_conf = etc.join("arbiter.toml");
    std::fs::write(&arb_conf, materials(&bin.join("fencectl"), &etc, &conf)).unwrap();
    ok(Command::new(bin.join("fence-arbiter"))
        .arg("--config")
        .arg(&arb_conf)
        .arg("--check-config"));
    let agent_conf = etc.join("agent.toml");
    let default_agent = std::fs::read_to_string(root.join("etc/fence/agent.toml")).unwrap();
    std::fs::write(
        &agent_conf,
        materials(&bin.join("fencectl"), &etc, &default_agent),
    )
    .unwrap();
    ok(Command::new(bin.join("fence-agent"))
        .arg("--config")
        .arg(&agent_conf)
        .arg("--check-config"));
    // Without its certificates the default config is refused, by name.
    let bare = etc.join("bare.toml");
    std::fs::write(
        &bare,
        conf.replace("/etc/fence/pki/", &format!("{}/nowhere/", etc.display())),
    )
    .unwrap();
    let o = run(Command::new(bin.join("fence-arbiter"))
        .arg("--config")
        .arg(&bare)
        .arg("--check-config"));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(64), "{err}");
    assert!(err.contains("arbiter.tls.ca: cannot read"), "{err}");

    install([&arbiter, &agent, &ctl]);
}

/// Removes what `install` put on the machine, even when it fails halfway.
struct Purge {
    made_etc: bool,
}

impl Drop for Purge {
    fn drop(&mut self) {
        let _ = Command::new("dpkg")
            .args(["--purge", "fence-arbiter", "fence-agent", "fencectl"])
            .output();
        if self.made_etc {
            let _ = std::fs::remove_dir_all("/etc/fence");
        }
    }
}

fn install(debs: [&PathBuf; 3]) {
    let root = nix::unistd::geteuid().is_root();
    let etc_free = !Path::new("/etc/fence").exists();
    let installed_before = Command::new("dpkg")
        .args(["-s", "fence-arbiter"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !root || !have("dpkg") || !have("systemd-sysusers") || !etc_free || installed_before {
        let why = format!(
            "root {root}, dpkg {}, systemd-sysusers {}, /etc/fence absent {etc_free}, fence-arbiter installed before {installed_before}",
            have("dpkg"),
            have("systemd-sysusers")
        );
        assert!(!in_ci(), "the packages must install under CI: {why}");
        eprintln!("skipped: installing the packages ({why})");
        return;
    }
    let _purge = Purge { made_etc: true };
    ok(Command::new("dpkg").arg("-i").args(debs));
    for f in [
        "/usr/bin/fence-arbiter",
        "/usr/bin/fence-agent",
        "/usr/bin/fencectl",
        "/etc/fence/arbiter.toml",
        "/etc/fence/agent.toml",
        "/usr/share/man/man8/fencectl-fence.8.gz",
    ] {
        assert!(Path::new(f).exists(), "{f} not installed");
    }
    let user = ok(Command::new("getent").args(["passwd", "fence-arbiter"]));
    assert!(user.contains(":/var/lib/fence-arbiter:"), "{user}");
    let uid = nix::unistd::User::from_name("fence-arbiter")
        .ok()
        .flatten()
        .expect("the fence-arbiter user");
    assert!(
        uid.uid.as_raw() > 0 && uid.uid.as_raw() < 1000,
        "not a system user: {user}"
    );
    if have("systemd-analyze") {
        for u in ["fence-arbiter", "fence-agent"] {
            ok(Command::new("systemd-analyze")
                .args(["verify", "--man=no"])
                .arg(format!("/usr/lib/systemd/system/{u}.service")));
        }
    }

    // As the operator would: the installed default, refused until its
    // certificates exist; then valid, read as the service's own user once
    // its key and password files are its own.
    let check = |as_user: bool| {
        let mut c = if as_user {
            let mut c = Command::new("setpriv");
            c.args([
                "--reuid=fence-arbiter",
                "--regid=fence-arbiter",
                "--clear-groups",
                "/usr/bin/fence-arbiter",
            ]);
            c
        } else {
            Command::new("/usr/bin/fence-arbiter")
        };
        c.args(["--config", "/etc/fence/arbiter.toml", "--check-config"]);
        run(&mut c)
    };
    let o = check(false);
    assert_eq!(o.status.code(), Some(64));
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains("arbiter.tls.ca: cannot read /etc/fence/pki/ca.pem"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let default_conf = std::fs::read_to_string("/etc/fence/arbiter.toml").unwrap();
    assert_eq!(
        materials(
            Path::new("/usr/bin/fencectl"),
            Path::new("/etc/fence"),
            &default_conf
        ),
        default_conf
    );
    let o = check(true);
    assert_eq!(o.status.code(), Some(64), "the key is root's until chowned");
    ok(Command::new("chown").args([
        "fence-arbiter",
        "/etc/fence/pki/arbiter.key",
        "/etc/fence/bmc-node1.pass",
        "/etc/fence/bmc-node2.pass",
    ]));
    let o = check(true);
    assert!(
        o.status.success(),
        "as fence-arbiter: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    ok(Command::new("/usr/bin/fence-agent").args([
        "--config",
        "/etc/fence/agent.toml",
        "--check-config",
    ]));
    ok(Command::new("dpkg").args(["--purge", "fence-arbiter", "fence-agent", "fencectl"]));
    assert!(!Path::new("/usr/bin/fence-arbiter").exists());
    assert!(
        !Path::new("/etc/fence/arbiter.toml").exists(),
        "purge leaves the conffile"
    );
}
