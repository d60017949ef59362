//! The quorum arbiter: its pure core (`core`), and the shell around it:
//! configuration, durable store, fence execution, gRPC services.

pub mod config;
pub mod core;
pub mod store;
