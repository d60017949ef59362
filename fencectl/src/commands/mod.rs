//! One module per command family.

pub mod status;
pub mod watch;
