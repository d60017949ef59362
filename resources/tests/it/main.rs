//! The crate's integration tests, in one binary: real agents, processes,
//! network namespaces; no mocks.

mod address;
mod common;
mod exec;
mod group;
mod ocf;
mod process;
mod spec;
