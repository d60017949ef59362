//! # resources
//!
//! What a node agent runs for a *resource group*: the resources that follow
//! the cluster lease. The node holding the lease starts the group in order;
//! when it loses the lease it stops the group in reverse order (or, when the
//! lease lapsed, at once: see [`Group::stop`]).
//!
//! The operator writes the group in the arbiter's TOML; the arbiter ships it
//! to the agents as JSON ([`ResourceSpec`], tagged by `kind`):
//!
//! ```toml
//! resources = [
//!   { kind = "address", address = "192.0.2.10/24", interface = "eth0" },
//!   { kind = "ocf", agent = "heartbeat:Filesystem", params = { device = "/dev/drbd0", directory = "/srv", fstype = "ext4" } },
//!   { kind = "process", command = ["/usr/sbin/nginx", "-g", "daemon off;"] },
//! ]
//! ```
//!
//! Unknown keys are rejected, naming the key. Durations are humantime
//! strings (`"200ms"`, `"20s"`, `"1m"`).
//!
//! ## Every action's environment
//!
//! Every start, stop and monitor that runs a program (kinds `ocf`, `process`,
//! `exec`) gets, besides the agent's own environment:
//!
//! | variable | value |
//! | --- | --- |
//! | `FENCE_EPOCH` | the lease epoch the group runs under: a shared resource (a SAN reservation, a database row) can use it as a fencing token and refuse a smaller one |
//! | `FENCE_GROUP` | the group's name |
//! | `FENCE_NODE` | this node's name |
//! | `FENCE_NODE_ID` | this node's id |
//!
//! ## Kinds
//!
//! ### `address`: a floating IP address
//!
//! | key | default | meaning |
//! | --- | --- | --- |
//! | `address` | required | `"192.0.2.10/24"` or `"fd00::10/64"`: address and prefix length |
//! | `interface` | required | the interface it goes on, by name (`eth0`) |
//! | `arp_count` | `5` | how many unsolicited ARP requests (IPv4) or neighbour advertisements (IPv6) are sent after the address is added, so that peers and switches learn its new place (`0`: none) |
//! | `arp_interval` | `"200ms"` | the time between two of them |
//! | `refresh` | `"10s"` | while the address is held, one more announcement this often (`"0s"`: never) |
//!
//! Added and removed through netlink (needs root or `CAP_NET_ADMIN`, and
//! `CAP_NET_RAW` for the announcements). Adding an address that is already
//! there and removing one that is not both succeed. IPv6 addresses are added
//! with `IFA_F_NODAD`, so they are usable at once. The IPv4 announcement is
//! an ARP request with sender and target IP both the address, from the
//! interface's MAC to broadcast; the IPv6 one is an ICMPv6 neighbour
//! advertisement to `ff02::1` with the override flag and the target
//! link-layer address option, hop limit 255. Interfaces flagged `NOARP` (a
//! `dummy` interface, say) and IPv4 on non-Ethernet links get none. The
//! first announcement is sent before `start` returns; the others, and the
//! refreshes, by a task of their own that `stop` ends ([`Resource::announced`]
//! waits for the first burst). A failed announcement is logged, not an error:
//! the address is in place. `monitor` is: the address is on the interface
//! (`Stopped` if not; `Failed` if the interface is gone or down).
//!
//! ### `ocf`: an OCF resource agent
//!
//! | key | default | meaning |
//! | --- | --- | --- |
//! | `agent` | required | `"provider:type"`, e.g. `"heartbeat:Filesystem"`: runs `$OCF_ROOT/resource.d/<provider>/<type>` |
//! | `params` | `{}` | the agent's parameters, passed as `OCF_RESKEY_<name>` |
//! | `start_timeout`, `stop_timeout`, `monitor_timeout` | `"20s"` each | the action's deadline, also passed as `OCF_RESKEY_CRM_meta_timeout` (milliseconds) |
//!
//! `OCF_ROOT` is `/usr/lib/ocf` unless the agent's environment sets it. The
//! agent also gets `OCF_RESOURCE_INSTANCE` (`<group>-<index>`),
//! `OCF_RESOURCE_TYPE` and `OCF_RESOURCE_PROVIDER`. Exit codes follow the
//! OCF standard: `monitor` 0 is `Running` (8, running promoted, too), 7 is
//! `Stopped`, anything else `Failed`; `start` and `stop` must exit 0. An
//! error names the code's meaning ("not configured") and the agent's last
//! stderr line. Every action runs in its own process group, killed whole
//! when its deadline passes. `check` runs the agent's `meta-data` and flags
//! parameters it does not take and required ones that are missing.
//!
//! ### `process`: a service the agent runs itself
//!
//! | key | default | meaning |
//! | --- | --- | --- |
//! | `command` | required | program and arguments, run without a shell; the program is looked up in `PATH` unless it has a `/` |
//! | `stop_timeout` | `"5s"` | on stop: SIGTERM to the whole process group, this long to go, then SIGKILL to the group |
//!
//! The command runs in its own process group, stdin from `/dev/null`,
//! stdout and stderr line by line into the agent's log. Where the host has
//! cgroup v2 (`/sys/fs/cgroup/cgroup.controllers`) and it is writable, it
//! also runs in a cgroup of its own, `/sys/fs/cgroup/fence-agent/<group>-<index>`,
//! and stopping ends with `cgroup.kill`, which also reaches processes that
//! left the process group; elsewhere (cgroup v1) the process group alone is
//! used. `start` fails if the command exits within its first 100 ms.
//! `monitor` is: the process is still running; once it has exited, monitor
//! says `Failed` with its exit status until the resource is stopped. There
//! are no restarts here: the group's supervisor decides. When the lease
//! lapsed (`urgent`), the group is SIGKILLed at once. The process belongs to
//! the [`Resource`] that started it: a later `fence-resource stop` does not
//! find it.
//!
//! ### `exec`: start, stop and monitor commands
//!
//! | key | default | meaning |
//! | --- | --- | --- |
//! | `start`, `stop` | required | the commands (program and arguments, no shell) |
//! | `monitor` | none | the monitor command: exit 0 is `Running`, 7 is `Stopped` (the OCF convention), anything else `Failed`; without one, monitor reports what the last start or stop did |
//! | `timeout` | `"20s"` | each command's deadline; its whole process group is killed when it passes |
//!
//! ## Using it
//!
//! [`ResourceSpec::validate`] finds every static problem (the arbiter runs
//! it on its configuration), [`ResourceSpec::check_installed`] what is
//! missing on this node. [`Group`] runs the resources of one group:
//! `start` in order (undoing the started ones when one fails), `stop` in
//! reverse order, `monitor` reports the first that is not running. The
//! `fence-resource` binary runs one group action from the command line:
//!
//! ```text
//! fence-resource start --group web --epoch 7 --node n1 '[{"kind":"ocf","agent":"heartbeat:Dummy"}]'
//! ```

mod cmd;
pub mod env;
pub mod error;
pub mod group;
pub mod spec;

pub mod address;
pub mod exec;
pub mod ocf;
pub mod process;
mod resource;

pub use env::RunEnv;
pub use error::{GroupError, ResourceError};
pub use group::Group;
pub use resource::{Health, Resource};
pub use spec::ResourceSpec;
