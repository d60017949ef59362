//! Driver benchmarks against the reference tools, on the same simulated
//! devices in the same run (`bench drivers`). Each timed run is an `off`
//! that ends confirmed (ours) or the tool's own success; the device is
//! put back on, untimed, before every run.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use fence_drivers::params::Params;
use fence_drivers::{FenceDriver, off_and_confirm};
use tokio::time::Instant;

use crate::peers::{Bmc, Pdu, Redfish};

/// One measured line of the table.
pub struct Row {
    pub label: String,
    pub ms: Vec<f64>,
}

impl Row {
    pub fn median(&self) -> f64 {
        let mut v = self.ms.clone();
        v.sort_by(|a, b| a.partial_cmp(b).expect("finite"));
        if v.is_empty() {
            return f64::NAN;
        }
        v[v.len() / 2]
    }
}

/// A native driver named "bench".
fn build(driver: &str, p: &Params) -> Result<Arc<dyn FenceDriver>, String> {
    fence_drivers::native::build(driver, "bench", p).map_err(|e| e.to_string())
}

/// Time `runs` runs of an external command; `reset` runs untimed first.
/// A failed run is an error: a benchmark of failures means nothing.
fn time_command(label: &str, runs: u32, reset: &dyn Fn(), argv: &[String]) -> Result<Row, String> {
    let mut ms = Vec::new();
    for _ in 0..runs {
        reset();
        let t = Instant::now();
        let st = Command::new(&argv[0])
            .args(&argv[1..])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .env("PYTHONWARNINGS", "ignore")
            .status()
            .map_err(|e| format!("{}: {e}", argv[0]))?;
        ms.push(t.elapsed().as_secs_f64() * 1e3);
        if !st.success() {
            return Err(format!("{label}: {} exited with {st}", argv.join(" ")));
        }
    }
    Ok(Row {
        label: label.into(),
        ms,
    })
}

async fn time_driver(
    label: &str,
    runs: u32,
    reset: &dyn Fn(),
    make: &dyn Fn() -> Result<Arc<dyn FenceDriver>, String>,
    warm: bool,
    port: &str,
) -> Result<Row, String> {
    let mut ms = Vec::new();
    let kept = make()?;
    if warm {
        kept.status(port).await.map_err(|e| e.to_string())?;
    }
    for _ in 0..runs {
        reset();
        let fresh;
        let d: &dyn FenceDriver = if warm {
            kept.as_ref()
        } else {
            fresh = make()?;
            fresh.as_ref()
        };
        let t = Instant::now();
        off_and_confirm(d, port, Duration::from_secs(10), Duration::from_millis(5))
            .await
            .map_err(|e| format!("{label}: {e}"))?;
        ms.push(t.elapsed().as_secs_f64() * 1e3);
        if !warm {
            d.close().await;
        }
    }
    kept.close().await;
    Ok(Row {
        label: label.into(),
        ms,
    })
}

/// Native `ipmi` (warm session and cold login) against `ipmitool chassis
/// power off` and `fence_ipmilan -o off --power-wait=0`.
pub async fn ipmi(runs: u32) -> Result<Vec<Row>, String> {
    let b = Bmc::start("bench")?;
    let state = b.get("FENCE_IPMI_POWER_STATE_FILE").to_string();
    let reset = move || {
        let _ = std::fs::write(&state, "on\n");
    };
    let mut p = Params::default();
    for (k, v) in [
        ("ip", "127.0.0.1"),
        ("ipport", b.get("FENCE_IPMI_PORT")),
        ("username", b.get("FENCE_IPMI_USER")),
        ("cipher", "3"),
    ] {
        p.values.insert(k.into(), v.into());
    }
    p.secrets.insert(
        "password".into(),
        format!("file:{}", b.get("FENCE_IPMI_PASSWORD_FILE")),
    );
    let make = || build("ipmi", &p);
    let s = |v: &str| v.to_string();
    let ipmitool = vec![
        s("ipmitool"),
        s("-I"),
        s("lanplus"),
        s("-C"),
        s("3"),
        s("-H"),
        s("127.0.0.1"),
        s("-p"),
        s(b.get("FENCE_IPMI_PORT")),
        s("-U"),
        s(b.get("FENCE_IPMI_USER")),
        s("-f"),
        s(b.get("FENCE_IPMI_PASSWORD_FILE")),
        s("chassis"),
        s("power"),
        s("off"),
    ];
    let fence_ipmilan = vec![
        s("fence_ipmilan"),
        s("--ip=127.0.0.1"),
        format!("--ipport={}", b.get("FENCE_IPMI_PORT")),
        format!("--username={}", b.get("FENCE_IPMI_USER")),
        format!("--password-script={}", b.get("FENCE_IPMI_PASSWORD_SCRIPT")),
        s("--lanplus"),
        s("--cipher=3"),
        s("--power-wait=0"),
        s("-o"),
        s("off"),
    ];
    Ok(vec![
        time_driver(
            "native ipmi: off + confirmed off, warm session",
            runs,
            &reset,
            &make,
            true,
            "",
        )
        .await?,
        time_driver(
            "native ipmi: login + off + confirmed off (cold)",
            runs,
            &reset,
            &make,
            false,
            "",
        )
        .await?,
        time_command(
            "ipmitool -I lanplus -C 3 chassis power off (off only)",
            runs,
            &reset,
            &ipmitool,
        )?,
        time_command(
            "fence_ipmilan --lanplus --cipher=3 --power-wait=0 -o off",
            runs,
            &reset,
            &fence_ipmilan,
        )?,
    ])
}

/// Native `snmp` (v2c and v3 authPriv, warm) against one `snmpset` (off
/// only) and `fence_apc_snmp -o off` (v2c and v3), on outlet 3.
pub async fn snmp(runs: u32) -> Result<Vec<Row>, String> {
    let p = Pdu::start("bench", 8)?;
    let state = std::path::PathBuf::from(p.get("FENCE_PDU_OUTLETS_DIR")).join("3.state");
    let reset = move || {
        let _ = std::fs::write(&state, "on\n");
    };
    let read = |k: &str| {
        std::fs::read_to_string(p.get(k))
            .unwrap_or_default()
            .trim()
            .to_string()
    };
    let (auth, privacy) = (
        read("FENCE_PDU_V3_AUTH_PASS_FILE"),
        read("FENCE_PDU_V3_PRIV_PASS_FILE"),
    );
    let community_file = p.dir().join("bench-community");
    std::fs::write(&community_file, p.get("FENCE_PDU_COMMUNITY")).map_err(|e| e.to_string())?;
    let base = |version: &str| {
        let mut params = Params::default();
        for (k, v) in [
            ("ip", "127.0.0.1"),
            ("ipport", p.get("FENCE_PDU_PORT")),
            ("version", version),
        ] {
            params.values.insert(k.into(), v.into());
        }
        params
    };
    let mut v2 = base("2c");
    v2.secrets.insert(
        "community".into(),
        format!("file:{}", community_file.display()),
    );
    let mut v3 = base("3");
    v3.values
        .insert("username".into(), p.get("FENCE_PDU_V3_USER").into());
    v3.secrets.insert(
        "auth_password".into(),
        format!("file:{}", p.get("FENCE_PDU_V3_AUTH_PASS_FILE")),
    );
    v3.secrets.insert(
        "priv_password".into(),
        format!("file:{}", p.get("FENCE_PDU_V3_PRIV_PASS_FILE")),
    );
    let make = |params: &Params| {
        let params = params.clone();
        move || build("snmp", &params)
    };
    let host = format!("127.0.0.1:{}", p.get("FENCE_PDU_PORT"));
    let s = |v: &str| v.to_string();
    let snmpset = vec![
        s("snmpset"),
        s("-m"),
        s(""),
        s("-v2c"),
        s("-c"),
        s(p.get("FENCE_PDU_COMMUNITY")),
        host.clone(),
        s(".1.3.6.1.4.1.318.1.1.12.3.3.1.1.4.3"),
        s("i"),
        s("2"),
    ];
    let apc = |extra: &[String]| {
        let mut v = vec![
            s("fence_apc_snmp"),
            s("--ip=127.0.0.1"),
            format!("--ipport={}", p.get("FENCE_PDU_PORT")),
            s("--plug=3"),
        ];
        v.extend_from_slice(extra);
        v.extend([s("-o"), s("off")]);
        v
    };
    let apc_v2 = apc(&[
        s("--snmp-version=2c"),
        format!("--community={}", p.get("FENCE_PDU_COMMUNITY")),
    ]);
    let apc_v3 = apc(&[
        s("--snmp-version=3"),
        format!("--username={}", p.get("FENCE_PDU_V3_USER")),
        format!("--password={auth}"),
        s("--snmp-auth-prot=SHA"),
        s("--snmp-sec-level=authPriv"),
        s("--snmp-priv-prot=AES"),
        format!("--snmp-priv-passwd={privacy}"),
    ]);
    Ok(vec![
        time_driver(
            "native snmp v2c: off + confirmed off, warm",
            runs,
            &reset,
            &make(&v2),
            true,
            "3",
        )
        .await?,
        time_driver(
            "native snmp v3 authPriv: off + confirmed off, warm engine",
            runs,
            &reset,
            &make(&v3),
            true,
            "3",
        )
        .await?,
        time_driver(
            "native snmp v3 authPriv: discovery + off + confirmed off (cold)",
            runs,
            &reset,
            &make(&v3),
            false,
            "3",
        )
        .await?,
        time_command(
            "snmpset -v2c rPDUOutletControlOutletCommand.3 i 2 (off only)",
            runs,
            &reset,
            &snmpset,
        )?,
        time_command(
            "fence_apc_snmp --snmp-version=2c -o off",
            runs,
            &reset,
            &apc_v2,
        )?,
        time_command(
            "fence_apc_snmp --snmp-version=3 authPriv SHA/AES -o off",
            runs,
            &reset,
            &apc_v3,
        )?,
    ])
}

/// Native `redfish` (warm, pooled HTTPS) against one `curl` POST of the
/// ForceOff (off only) and `fence_redfish -o off --power-wait=0`.
pub async fn redfish(runs: u32) -> Result<Vec<Row>, String> {
    let b = Redfish::start("bench")?;
    let pw = std::fs::read_to_string(b.get("FENCE_REDFISH_PASSWORD_FILE"))
        .map_err(|e| e.to_string())?
        .trim()
        .to_string();
    let s = |v: &str| v.to_string();
    let target = format!(
        "{}{}/Actions/ComputerSystem.Reset",
        b.get("FENCE_REDFISH_URL"),
        b.get("FENCE_REDFISH_SYSTEM_URI")
    );
    let curl = |kind: &str| {
        vec![
            s("curl"),
            s("-fsS"),
            s("--cacert"),
            s(b.get("FENCE_REDFISH_CA")),
            s("-u"),
            format!("{}:{pw}", b.get("FENCE_REDFISH_USER")),
            s("-H"),
            s("Content-Type: application/json"),
            s("-d"),
            format!("{{\"ResetType\":\"{kind}\"}}"),
            target.clone(),
        ]
    };
    let on = curl("On");
    let reset = move || {
        let _ = Command::new(&on[0])
            .args(&on[1..])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    };
    let mut p = Params::default();
    for (k, v) in [
        ("ip", "127.0.0.1"),
        ("ipport", b.get("FENCE_REDFISH_PORT")),
        ("username", b.get("FENCE_REDFISH_USER")),
        ("ca", b.get("FENCE_REDFISH_CA")),
    ] {
        p.values.insert(k.into(), v.into());
    }
    p.secrets.insert(
        "password".into(),
        format!("file:{}", b.get("FENCE_REDFISH_PASSWORD_FILE")),
    );
    let make = || build("redfish", &p);
    let fence_redfish = vec![
        s("fence_redfish"),
        s("--ip=127.0.0.1"),
        format!("--ipport={}", b.get("FENCE_REDFISH_PORT")),
        format!("--username={}", b.get("FENCE_REDFISH_USER")),
        format!(
            "--password-script={}",
            b.get("FENCE_REDFISH_PASSWORD_SCRIPT")
        ),
        s("--ssl-insecure"),
        format!("--systems-uri={}", b.get("FENCE_REDFISH_SYSTEM_URI")),
        s("--power-wait=0"),
        s("-o"),
        s("off"),
    ];
    Ok(vec![
        time_driver(
            "native redfish: off + confirmed off, warm (pooled HTTPS)",
            runs,
            &reset,
            &make,
            true,
            "",
        )
        .await?,
        time_driver(
            "native redfish: TLS + system lookup + off + confirmed off (cold)",
            runs,
            &reset,
            &make,
            false,
            "",
        )
        .await?,
        time_command(
            "curl POST ResetType ForceOff (off only)",
            runs,
            &reset,
            &curl("ForceOff"),
        )?,
        time_command(
            "fence_redfish --ssl-insecure --power-wait=0 -o off",
            runs,
            &reset,
            &fence_redfish,
        )?,
    ])
}

/// A markdown table; ratios are each row's median over the first row's.
pub fn table(rows: &[Row]) -> String {
    let base = rows.first().map_or(f64::NAN, Row::median);
    let mut out = String::from(
        "| what | runs | median | min | max | × our warm median |\n|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let min = r.ms.iter().copied().fold(f64::INFINITY, f64::min);
        let max = r.ms.iter().copied().fold(0.0, f64::max);
        out += &format!(
            "| {} | {} | {:.2} ms | {:.2} ms | {:.2} ms | {:.1}× |\n",
            r.label,
            r.ms.len(),
            r.median(),
            min,
            max,
            r.median() / base
        );
    }
    out
}
