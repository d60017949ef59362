//! Wire types of the fencing arbiter: the agent session, peer probes and the
//! admin API, generated from `proto/fence/v1/*.proto` at build time.
//!
//! **API boundary:** these types never enter the pure cores (`arbiter::core`,
//! `agent::lease`); the shells convert by hand.

#![allow(clippy::all)]

pub mod v1 {
    tonic::include_proto!("fence.v1");
}

pub use v1::*;

/// The fence driver plugin contract (`proto/fence/v1/driver.proto`).
pub mod driver {
    tonic::include_proto!("fence.driver.v1");
}
