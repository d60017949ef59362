//! Whole-cluster tests: the deterministic simulation ([`sim`]) with its
//! safety checker, and helpers for end-to-end tests and benchmarks.

pub mod blackhole;
pub mod bmc_cluster;
pub mod driver_bench;
pub mod driver_checks;
pub mod e2e;
pub mod etcd_bench;
pub mod etcd_peer;
pub mod heartbeat_load;
pub mod netns;
pub mod peers;
pub mod sim;
pub mod standin;
pub mod store_bench;
pub mod watchdog_bench;
