//! Assertions every driver test makes against its peer.

use std::time::Duration;

use fence_drivers::{FenceDriver, FenceError, PowerState, off_and_confirm};

/// The device answers `off` but stays on (a lying device): the fence must
/// end unconfirmed, with the device last seen on.
pub async fn assert_never_confirmed(d: &dyn FenceDriver, port: &str, within: Duration) {
    let e = off_and_confirm(d, port, within, Duration::from_millis(50))
        .await
        .expect_err("a device that stays on confirmed a fence");
    assert!(
        matches!(
            e,
            FenceError::NotConfirmed {
                last: PowerState::On,
                ..
            }
        ),
        "{e}"
    );
}

/// The device refuses `off`: an error of kind Refused whose text says
/// `why`.
pub async fn assert_off_refused(d: &dyn FenceDriver, port: &str, why: &str) {
    let e = d.off(port).await.expect_err("a refusing device succeeded");
    assert!(matches!(e, FenceError::Refused { .. }), "{e}");
    assert!(e.to_string().contains(why), "{e}");
}
