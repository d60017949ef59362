//! Review of 8a99317 (a hold whose incident healed lands afresh when the
//! verdict drops a member again).
//!
//! Run: `cargo test -p arbiter --lib review13`

#[allow(unused_imports)]
use super::test_support::*;
#[allow(unused_imports)]
use super::*;
