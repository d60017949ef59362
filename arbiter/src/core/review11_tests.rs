//! Review of 80c03d6 (the hold pauses without quorum; a link that bounced
//! during a hold lands down only by settling; the heartbeat bound of the
//! hold counts from a session's first heartbeat and proves beats - 1
//! intervals).
//!
//! Run: `cargo test -p arbiter --lib review11`

#[allow(unused_imports)]
use super::test_support::*;
#[allow(unused_imports)]
use super::*;
