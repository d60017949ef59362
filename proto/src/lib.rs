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

/// A client of etcd's v3 API, the part the arbiter's etcd store uses
/// (`proto/etcd/rpc.proto`): KV with transactions, and leases.
pub mod etcd {
    tonic::include_proto!("etcdserverpb");
}

/// gRPC metadata of a group of arbiters on etcd (see `arbiter::rpc::role`).
pub mod standby {
    /// On a standby's `UNAVAILABLE` refusal: `standby`.
    pub const ROLE: &str = "fence-role";
    /// On a standby's refusal: the leader's URL, when the standby knows it.
    pub const LEADER_URL: &str = "fence-leader-url";
    /// On a request: a standby answers it itself, read-only (status,
    /// history), instead of referring it to the leader.
    pub const NO_FOLLOW: &str = "fence-no-follow";

    /// A standby's refusal: `Some(leader URL if known)`; `None` for any
    /// other status.
    pub fn leader_of(s: &tonic::Status) -> Option<Option<String>> {
        let standby = s.code() == tonic::Code::Unavailable
            && s.metadata()
                .get(ROLE)
                .is_some_and(|v| v.as_bytes() == b"standby");
        standby.then(|| {
            s.metadata()
                .get(LEADER_URL)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        })
    }
}

/// The 64-bit digest of a kernel boot id (`Hello.boot_id`: a UUID, with or
/// without dashes) that the arbiter compares: its two halves xored, never 0.
/// An empty boot id (an agent that does not send one) is 0: not told.
pub fn boot_id_digest(boot_id: &str) -> Result<u64, String> {
    if boot_id.is_empty() {
        return Ok(0);
    }
    let hex: String = boot_id.chars().filter(|&c| c != '-').collect();
    let bits = (hex.len() == 32 && hex.chars().all(|c| c.is_ascii_hexdigit()))
        .then(|| u128::from_str_radix(&hex, 16).ok())
        .flatten()
        .ok_or_else(|| format!("boot id {boot_id:?} is not a UUID (32 hex digits)"))?;
    Ok(((bits >> 64) as u64 ^ bits as u64).max(1))
}

#[cfg(test)]
mod tests {
    use super::boot_id_digest;

    #[test]
    fn boot_ids_digest_to_64_bits_and_bad_ones_are_named() {
        let a = boot_id_digest("e4fa9fa9-97fb-40c3-80e9-f676163b4ee8").unwrap();
        assert_eq!(
            a,
            boot_id_digest("e4fa9fa997fb40c380e9f676163b4ee8").unwrap()
        );
        assert_ne!(
            a,
            boot_id_digest("e4fa9fa9-97fb-40c3-80e9-f676163b4ee9").unwrap()
        );
        assert_eq!(boot_id_digest("").unwrap(), 0);
        assert_eq!(
            boot_id_digest("00000000-0000-0000-0000-000000000000").unwrap(),
            1
        );
        for bad in [
            "x",
            "e4fa9fa9-97fb-40c3-80e9-f676163b4ee",
            "g4fa9fa9-97fb-40c3-80e9-f676163b4ee8",
            "+4fa9fa997fb40c380e9f676163b4ee8",
        ] {
            let e = boot_id_digest(bad).unwrap_err();
            assert!(e.contains(bad), "{e}");
        }
    }
}
