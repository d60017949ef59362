//! The node agent: its pure lease core (`lease`) and the shell around it.

pub mod lease;
