//! Review of ddd6a68 (the spent hold takes a break begun after the hold
//! as unsure; a paused hold neither expires nor runs without quorum).
//!
//! Run: `cargo test -p arbiter --lib review12`

#[allow(unused_imports)]
use super::test_support::*;
#[allow(unused_imports)]
use super::*;
