//! A three-node cluster whose nodes' first fence level is a real simulated
//! BMC (OpenIPMI `ipmi_sim`), shared by the `exec` (fence_ipmilan) and
//! native driver tests; natively, node 3's first level is an outlet of a
//! simulated APC PDU (net-snmp `snmpd`) over SNMPv3 instead.

use std::time::Duration;

use fencectl::local_cluster::{BmcAccess, ClusterOptions, LocalCluster, PduAccess};

use crate::e2e::{Watcher, binaries, unix_us};
use crate::peers::{Bmc, Pdu, in_ci};

/// The first line of a peer's event log whose columns `col` equal `want`.
fn first_event_us(log: &str, want: &[(usize, &str)]) -> Option<u64> {
    log.lines()
        .find(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            want.iter().all(|(i, w)| f.get(*i) == Some(w))
        })
        .and_then(|l| {
            let secs: f64 = l.split('\t').next()?.parse().ok()?;
            Some((secs * 1e6) as u64)
        })
}

/// The cluster with real BMCs: each node's first fence level is its BMC
/// (through fence_ipmilan, or the native driver; natively node 3 is on a
/// PDU outlet instead), the second the simulated power device. A node cut
/// off is switched off by its BMC (or outlet) before the survivors are
/// told; when a BMC refuses, the arbiter falls through to the second level;
/// the BMC password is in none of our logs or argv.
pub async fn fences_through_bmcs(native: bool) {
    let peer = |r: Result<(), String>| match r {
        Ok(()) => true,
        Err(e) if in_ci() => panic!("the test peers must run under CI: {e}"),
        Err(e) => {
            eprintln!("skipped: {e}");
            false
        }
    };
    let mut bmcs = Vec::new();
    for i in 1..=3 {
        if !peer(Bmc::start(&format!("bmc{i}")).map(|b| bmcs.push(b))) {
            return;
        }
    }
    let mut pdu = None;
    if native && !peer(Pdu::start("pdu1", 4).map(|p| pdu = Some(p))) {
        return;
    }
    let mut opts = ClusterOptions::default();
    if let Some(p) = &pdu {
        opts.pdu_outlets.insert(
            3,
            PduAccess {
                port: p.get("FENCE_PDU_PORT").parse().unwrap(),
                user: p.get("FENCE_PDU_V3_USER").into(),
                auth_file: p.get("FENCE_PDU_V3_AUTH_PASS_FILE").into(),
                priv_file: p.get("FENCE_PDU_V3_PRIV_PASS_FILE").into(),
                outlet: "node3".into(),
            },
        );
    }
    for (i, b) in bmcs.iter().enumerate() {
        opts.bmcs.insert(
            i as u32 + 1,
            BmcAccess {
                port: b.get("FENCE_IPMI_PORT").parse().unwrap(),
                username: b.get("FENCE_IPMI_USER").to_string(),
                password_file: b.get("FENCE_IPMI_PASSWORD_FILE").into(),
                native,
            },
        );
    }
    let c = LocalCluster::start(&binaries(), &opts)
        .await
        .expect("cluster starts");
    c.wait_all_leased(Duration::from_secs(20))
        .await
        .expect("all leased");
    let mut w = Watcher::start(&c.url).await;

    // Node 3 cut off: its BMC switches it off before the survivors hear.
    c.isolate(3).unwrap();
    let told = w
        .wait_for(Duration::from_secs(30), |e| {
            e.kind == "survivors_notified" && e.detail.contains('3')
        })
        .await
        .unwrap_or_else(|| panic!("node 3 not announced: {:?}", w.seen));
    let off = match &pdu {
        Some(p) => {
            assert_eq!(p.outlet(3), "off");
            assert_eq!(bmcs[2].power(), "on", "node 3 is on the PDU, not its BMC");
            let log = std::fs::read_to_string(p.get("FENCE_PDU_EVENTS_LOG")).unwrap_or_default();
            first_event_us(&log, &[(1, "3"), (2, "off")]).expect("the PDU logged outlet 3 off")
        }
        None => {
            assert_eq!(bmcs[2].power(), "off");
            first_event_us(&bmcs[2].events(), &[(1, "power-off")])
                .expect("BMC 3 logged a power-off")
        }
    };
    assert!(
        off <= told.unix_us,
        "node 3 went off at {off}, survivors told at {}",
        told.unix_us
    );
    for b in &bmcs[..2] {
        assert_eq!(
            b.power(),
            "on",
            "a survivor's BMC was touched: {}",
            b.events()
        );
    }

    // Node 2's BMC refuses: the arbiter falls to level 2 (the power device).
    std::fs::write(bmcs[1].dir().join("fail-set"), "").unwrap();
    let t = unix_us();
    c.freeze(2).unwrap();
    let told2 = w
        .wait_for(Duration::from_secs(40), |e| {
            e.kind == "survivors_notified" && e.epoch > told.epoch
        })
        .await
        .unwrap_or_else(|| panic!("node 2 not announced: {:?}", w.seen));
    assert!(
        w.seen
            .iter()
            .any(|e| e.kind == "fence_failed" && e.node == 2 && e.unix_us >= t),
        "{:?}",
        w.seen
    );
    let rec = c.device.events().unwrap();
    let off2 = rec
        .iter()
        .find(|e| e.port == "node2" && e.action == "off" && e.unix_us >= t)
        .expect("level 2 switched node 2 off");
    assert!(off2.unix_us <= told2.unix_us);
    assert_eq!(bmcs[1].power(), "on", "the failing BMC changed nothing");
    assert_eq!(bmcs[0].power(), "on");
    // The secrets (the BMC password; the PDU's SNMPv3 pass phrases) never
    // reached our logs, nor our processes' argv.
    let mut secrets = vec![bmcs[0].get("FENCE_IPMI_PASSWORD_FILE").to_string()];
    if let Some(p) = &pdu {
        secrets.push(p.get("FENCE_PDU_V3_AUTH_PASS_FILE").into());
        secrets.push(p.get("FENCE_PDU_V3_PRIV_PASS_FILE").into());
    }
    for file in secrets {
        let pw = std::fs::read_to_string(&file).unwrap();
        let pw = pw.trim();
        assert!(!pw.is_empty());
        for log in ["arbiter", "agent1", "agent2", "agent3"] {
            assert!(
                !c.log(log).contains(pw),
                "the secret of {file} is in {log}.log"
            );
        }
        for pid in c.pids() {
            let argv = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            assert!(
                !String::from_utf8_lossy(&argv).contains(pw),
                "the secret of {file} is in the argv of {pid}"
            );
        }
    }
}
