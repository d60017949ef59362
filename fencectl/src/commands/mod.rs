//! One module per command family.

pub mod control;
pub mod driver;
pub mod history;
pub mod resources;
pub mod status;
pub mod watch;
