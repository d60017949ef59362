//! Driver benchmarks against the reference tools, on the same simulated
//! devices in the same run (`bench drivers`). Each timed run is an `off`
//! that ends confirmed (ours) or the tool's own success; the device is
//! put back on, untimed, before every run.

use std::process::{Command, Stdio};
use std::time::Duration;

use fence_drivers::params::Params;
use fence_drivers::{FenceDriver, off_and_confirm};
use tokio::time::Instant;

use crate::peers::Bmc;

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
    make: &dyn Fn() -> Result<Box<dyn FenceDriver>, String>,
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
    let make = || -> Result<Box<dyn FenceDriver>, String> {
        fence_drivers::ipmi::IpmiDriver::from_params("bench", &p)
            .map(|d| Box::new(d) as Box<dyn FenceDriver>)
            .map_err(|e| e.to_string())
    };
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
