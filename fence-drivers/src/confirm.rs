//! Confirmation: after `off`, poll `status` until the device reports off.

use std::time::Duration;

use crate::{FenceDriver, FenceError, PowerState};

/// Poll `status` every `poll` until it reports off, or fail after `timeout`
/// with the last state seen. Errors from `status` are retried until the
/// deadline; the last one is returned if nothing better was seen.
pub async fn confirm_off<D: FenceDriver + ?Sized>(
    driver: &D,
    port: &str,
    timeout: Duration,
    poll: Duration,
) -> Result<(), FenceError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last = PowerState::Unknown;
    let mut last_err = None;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(left, driver.status(port)).await {
            Ok(Ok(PowerState::Off)) => return Ok(()),
            Ok(Ok(s)) => {
                last = s;
                last_err = None;
            }
            Ok(Err(e)) => last_err = Some(e),
            Err(_) => {}
        }
        if tokio::time::Instant::now() + poll >= deadline {
            return Err(last_err.unwrap_or(FenceError::NotConfirmed {
                device: driver.device().to_string(),
                port: port.to_string(),
                timeout,
                last,
            }));
        }
        tokio::time::sleep(poll).await;
    }
}

/// `off`, then [`confirm_off`], within one overall `timeout`.
pub async fn off_and_confirm<D: FenceDriver + ?Sized>(
    driver: &D,
    port: &str,
    timeout: Duration,
    poll: Duration,
) -> Result<(), FenceError> {
    let start = tokio::time::Instant::now();
    match tokio::time::timeout(timeout, driver.off(port)).await {
        Ok(r) => r?,
        Err(_) => {
            return Err(FenceError::Timeout {
                device: driver.device().to_string(),
                timeout,
            });
        }
    }
    let left = timeout.saturating_sub(start.elapsed());
    confirm_off(driver, port, left.max(poll), poll).await
}
