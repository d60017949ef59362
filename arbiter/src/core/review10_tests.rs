//! Review of da3efba (a break coming back before it settled is a heal; a
//! spell without quorum ends a hold; the hold runs by heartbeats sent too).
//!
//! Run: `cargo test -p arbiter --lib review10`

#[allow(unused_imports)]
use super::test_support::*;
#[allow(unused_imports)]
use super::*;
