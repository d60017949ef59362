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
    // The etcd example's TLS files (any valid PEM passes --check-config).
    for (from, to) in [
        ("ca.pem", "etcd-ca.pem"),
        ("arbiter.pem", "etcd-client.pem"),
        ("arbiter.key", "etcd-client.key"),
    ] {
        std::fs::copy(format!("{d}/pki/{from}"), format!("{d}/pki/{to}")).unwrap();
    }
    let fix = |t: &str| {
        t.replace("/etc/fence/pki", &format!("{d}/pki"))
            .replace("/var/lib/", &format!("{d}/"))
    };
    // The arbiter's example, with the resource groups' example added to its
    // cluster; the agent's example.
    let groups: String = blocks
        .iter()
        .filter(|b| b.contains("[[cluster.group]]"))
        .copied()
        .collect();
    assert!(!groups.is_empty(), "README lost its resource group example");
    let arbiter = format!("{}\n{groups}", blocks[0]);
    let agent = blocks
        .iter()
        .skip(1)
        .find(|b| !b.contains("[[cluster") && !b.contains("[arbiter"))
        .expect("the agent's example");
    // The arbiter group on etcd: its [arbiter] part with the clusters of
    // the first example.
    let etcd = blocks
        .iter()
        .find(|b| b.contains("\n[arbiter.etcd]"))
        .expect("the etcd example");
    let clusters = &blocks[0][blocks[0].find("[[cluster]]").expect("a cluster")..];
    let on_etcd = format!("{etcd}\n{clusters}");
    for (i, (daemon, block)) in [
        ("fence-arbiter", arbiter.as_str()),
        ("fence-agent", agent),
        ("fence-arbiter", on_etcd.as_str()),
    ]
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

/// The README's fence driver example validates (every device's parameters
/// against its driver; no device is contacted).
#[test]
fn readme_driver_examples_validate() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let block = readme
        .split("```toml\n")
        .skip(1)
        .map(|b| b.split("```").next().unwrap())
        .find(|b| b.contains("driver = \"ipmi\""))
        .expect("README lost its driver examples");
    let text = format!(
        "[arbiter]\nstate_dir = \"/tmp/unused\"\ninsecure_plaintext = true\n\n[[cluster]]\nname = \"prod\"\n{block}\n\
         [[cluster.node]]\nid = 2\nname = \"db2\"\naddress = \"127.0.0.1:7502\"\nfence = [[\"rf-db2:\"], [\"cloud:db2\"]]\n"
    );
    let plan = arbiter::config::Config::from_toml(&text)
        .and_then(|c| c.validate())
        .unwrap_or_else(|e| panic!("{e:?}"));
    let devices = &plan.clusters["prod"].devices;
    for d in ["ipmi", "snmp", "redfish", "ssh", "plugin", "exec"] {
        assert!(devices.values().any(|x| x.driver == d), "no {d} example");
    }
}
