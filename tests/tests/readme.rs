//! The README's configuration examples stay valid: both are checked by the
//! real daemons' `--check-config`, with certificates from `fencectl certs`.

use std::process::Command;

use tests::e2e::binaries;

#[test]
fn readme_configuration_examples_pass_check_config() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let blocks: Vec<&str> = readme
        .split("```toml\n")
        .skip(1)
        .map(|b| b.split("```").next().unwrap())
        .collect();
    assert!(blocks.len() >= 2, "README lost its TOML examples");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    let bin = binaries();
    let out = Command::new(bin.join("fencectl"))
        .args([
            "certs",
            "--dir",
            &format!("{d}/pki"),
            "--cluster",
            "prod",
            "--nodes",
            "db1,db2",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let fix = |t: &str| {
        t.replace("/etc/fence/pki", &format!("{d}/pki"))
            .replace("/var/lib/", &format!("{d}/"))
    };
    for (i, (daemon, block)) in [("fence-arbiter", blocks[0]), ("fence-agent", blocks[1])]
        .into_iter()
        .enumerate()
    {
        let path = dir.path().join(format!("example{i}.toml"));
        std::fs::write(&path, fix(block)).unwrap();
        let out = Command::new(bin.join(daemon))
            .args(["--config", path.to_str().unwrap(), "--check-config"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{daemon}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
