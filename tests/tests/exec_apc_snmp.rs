//! The `exec` driver with the real ClusterLabs `fence_apc_snmp` against a
//! simulated APC PDU (net-snmp `snmpd`) on loopback.

use std::collections::BTreeMap;
use std::time::Duration;

use fence_drivers::exec::ExecDriver;
use fence_drivers::{FenceDriver, FenceError, PowerState, off_and_confirm};
use tests::peers::{Pdu, required};

fn pdu() -> Option<Pdu> {
    required("PDU", Pdu::start("pdu1", 4))
}

async fn driver(p: &Pdu, community_file: &std::path::Path) -> Result<ExecDriver, FenceError> {
    let params: BTreeMap<String, String> = [
        ("ip", "127.0.0.1"),
        ("ipport", p.get("FENCE_PDU_PORT")),
        ("snmp_version", "2c"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    // The SNMP community is a secret: from a file, on stdin only.
    let secrets = [(
        "community".to_string(),
        format!("file:{}", community_file.display()),
    )]
    .into();
    ExecDriver::with_sample_port(
        "pdu1",
        "fence_apc_snmp",
        params,
        secrets,
        Duration::from_secs(30),
        Some("1"),
    )
    .await
}

#[tokio::test]
async fn fence_apc_snmp_switches_an_outlet_off_by_number_and_by_name() {
    let Some(p) = pdu() else { return };
    let dir = tempfile::tempdir().unwrap();
    let community = dir.path().join("community");
    std::fs::write(&community, p.get("FENCE_PDU_COMMUNITY")).unwrap();
    let d = driver(&p, &community).await.expect("valid device");
    assert_eq!(d.status("3").await.unwrap(), PowerState::On);
    off_and_confirm(&d, "3", Duration::from_secs(30), Duration::from_millis(100))
        .await
        .unwrap();
    assert_eq!(p.outlet(3), "off", "the PDU's own outlet state");
    assert_eq!(p.outlet(2), "on", "no other outlet touched");
    // Outlets by name, as operators label them.
    off_and_confirm(
        &d,
        "node2",
        Duration::from_secs(30),
        Duration::from_millis(100),
    )
    .await
    .unwrap();
    assert_eq!(p.outlet(2), "off");
    d.on("3").await.unwrap();
    assert_eq!(p.outlet(3), "on");
    let ports = d.list().await.unwrap();
    assert_eq!(
        ports.iter().map(|x| x.id.as_str()).collect::<Vec<_>>(),
        ["1", "2", "3", "4"]
    );
}

#[tokio::test]
async fn a_stuck_outlet_never_confirms_and_a_wrong_community_fails() {
    let Some(p) = pdu() else { return };
    let dir = tempfile::tempdir().unwrap();
    let community = dir.path().join("community");
    std::fs::write(&community, p.get("FENCE_PDU_COMMUNITY")).unwrap();
    let d = driver(&p, &community).await.expect("valid device");
    std::fs::write(p.dir().join("stuck"), "4").unwrap();
    let r = off_and_confirm(&d, "4", Duration::from_secs(10), Duration::from_millis(200)).await;
    assert!(r.is_err(), "a stuck outlet must not confirm: {r:?}");
    assert_eq!(p.outlet(4), "on");
    let wrong = dir.path().join("wrong");
    std::fs::write(&wrong, "not-the-community").unwrap();
    let bad = driver(&p, &wrong).await;
    let e = match bad {
        Err(e) => e.to_string(),
        Ok(d) => d.status("1").await.unwrap_err().to_string(),
    };
    assert!(!e.contains("not-the-community"), "{e}");
}
