//! A cluster in network namespaces the test creates: a switch (a bridge in
//! its own namespace), three nodes each running a real `fence-agent`, one
//! running the `fence-arbiter`, and a client that asks who has the floating
//! addresses every 5 ms (`arp_watch`) and records which MAC answers.
//!
//! The fence device (`fence_netns`, a ClusterLabs-protocol script) switches
//! a node "off" by killing every process in its namespace and taking its
//! switch port down, and reports off only then; it logs each off. "Power
//! on" brings the port up and starts the node's agent again, in a new boot.
//!
//! Needs root, `ip` (iproute2), and for the `ocf` group resource-agents.
//! Everything lives under one name prefix and is removed on drop; only
//! processes this harness started are killed, by PID.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The floating address of group `vip` (kind `address`) and of group
/// `vip2` (kind `ocf`, `ocf:heartbeat:IPaddr2`).
pub const VIP: &str = "10.77.0.50";
pub const VIP2: &str = "10.77.0.51";
const ARBITER: &str = "10.77.0.2";
const CLIENT: &str = "10.77.0.100";

fn node_ip(i: u32) -> String {
    format!("10.77.0.{}", 10 + i)
}

/// One answer the client saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub at_us: u64,
    pub target: String,
    pub mac: String,
}

/// What the client recorded: rounds sent, answers.
#[derive(Debug, Default)]
pub struct Watch {
    pub rounds: Vec<u64>,
    pub answers: Vec<Answer>,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The namespaces and links; removed on drop.
pub struct Net {
    pub prefix: String,
    made: Vec<String>,
}

impl Net {
    pub fn ns(&self, which: &str) -> String {
        format!("{}{which}", self.prefix)
    }

    /// Switch, nodes n1..n3, arbiter `arb`, client `cl`.
    pub fn create(prefix: &str) -> Result<Net, String> {
        let mut net = Net {
            prefix: prefix.to_string(),
            made: Vec::new(),
        };
        let sw = net.ns("sw");
        for which in ["sw", "n1", "n2", "n3", "arb", "cl"] {
            let name = net.ns(which);
            let _ = ip(&["netns", "del", &name]); // a leftover of a killed run of ours
            ip(&["netns", "add", &name])?;
            net.made.push(name.clone());
            ip(&["-n", &name, "link", "set", "lo", "up"])?;
        }
        ip(&["-n", &sw, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &sw, "link", "set", "br0", "up"])?;
        for (which, port, addr) in [
            ("n1", "s1", node_ip(1)),
            ("n2", "s2", node_ip(2)),
            ("n3", "s3", node_ip(3)),
            ("arb", "sa", ARBITER.to_string()),
            ("cl", "sc", CLIENT.to_string()),
        ] {
            net.attach(which, port, &addr)?;
        }
        Ok(net)
    }

    /// Wire namespace `which` to the switch on `port`, with `addr`.
    fn attach(&self, which: &str, port: &str, addr: &str) -> Result<(), String> {
        let (ns, sw) = (self.ns(which), self.ns("sw"));
        ip(&[
            "-n", &sw, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", &ns,
        ])?;
        ip(&["-n", &sw, "link", "set", port, "master", "br0", "up"])?;
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{addr}/24"),
            "dev",
            "eth0",
        ])?;
        ip(&["-n", &ns, "link", "set", "eth0", "up"])
    }

    /// Node `which` boots again: a fresh namespace (no socket, no address,
    /// no rule of its earlier life survives), wired to the switch again.
    fn reboot(&self, which: &str, port: &str, addr: &str) -> Result<(), String> {
        let ns = self.ns(which);
        // (The veth goes with one of its ends; the old namespace itself is
        // freed by the kernel later.)
        let _ = ip(&["-n", &self.ns("sw"), "link", "del", port]);
        ip(&["netns", "del", &ns])?;
        ip(&["netns", "add", &ns])?;
        ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        self.attach(which, port, addr)
    }

    /// A command run inside namespace `which`.
    pub fn cmd(&self, which: &str, program: &Path) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns(which)]).arg(program);
        c
    }

    pub fn ip(&self, args: &[&str]) -> Result<(), String> {
        ip(args)
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for name in self.made.iter().rev() {
            let _ = ip(&["netns", "del", name]);
        }
    }
}

/// The cluster: arbiter, agents, client watch, in their namespaces.
pub struct NetCluster {
    pub net: Net,
    pub dir: PathBuf,
    bin: PathBuf,
    arbiter: Option<Child>,
    agents: BTreeMap<u32, Child>,
    watch: Option<Child>,
    pub seen: Arc<Mutex<Watch>>,
    pub url: String,
    /// The same topology run by keepalived (VRRP) instead, for comparison:
    /// no arbiter, no fencing; one floating address.
    keepalived: bool,
}

fn fence_script(prefix: &str, log: &Path) -> String {
    format!(
        r#"#!/bin/sh
# A test fence device (ClusterLabs agent protocol): a node is the network
# namespace {prefix}<plug>; off kills every process in it and takes its
# switch port down; status is off only once both are so.
action=; plug=
while IFS='=' read -r k v; do
  case "$k" in action) action=$v ;; plug|port) plug=$v ;; esac
done
port=s${{plug#n}}
case "$action" in
metadata) cat <<'EOF'
<?xml version="1.0" ?>
<resource-agent name="fence_netns" shortdesc="Test device: a node in a network namespace">
<parameters>
<parameter name="plug" unique="0" required="0"><getopt mixed="-n"/><content type="string"/><shortdesc lang="en">Node</shortdesc></parameter>
</parameters>
<actions><action name="on"/><action name="off"/><action name="status"/><action name="monitor"/><action name="metadata"/><action name="validate-all"/></actions>
</resource-agent>
EOF
  exit 0 ;;
validate-all|monitor|list) exit 0 ;;
off)
  for p in $(ip netns pids {prefix}$plug); do kill -9 $p; done
  ip -n {prefix}sw link set $port down
  echo "off $plug $(date +%s%6N)" >> {log}
  exit 0 ;;
on) ip -n {prefix}sw link set $port up; exit 0 ;;
status)
  if [ -n "$(ip netns pids {prefix}$plug)" ]; then exit 0; fi
  if ip -n {prefix}sw -o link show $port | grep -q '<[^>]*,UP[,>]'; then exit 0; fi
  exit 2 ;;
*) exit 1 ;;
esac
"#,
        log = log.display()
    )
}

impl NetCluster {
    /// Create the namespaces, write the configs, start the arbiter, the
    /// agents and the client's watch. `bin`: where the binaries are.
    pub fn start(bin: &Path, prefix: &str, dir: &Path) -> Result<NetCluster, String> {
        let net = Net::create(prefix)?;
        let d = dir.to_path_buf();
        let fence = d.join("fence_netns");
        std::fs::write(&fence, fence_script(prefix, &d.join("fence.log")))
            .map_err(|e| e.to_string())?;
        Command::new("chmod")
            .arg("755")
            .arg(&fence)
            .status()
            .map_err(|e| e.to_string())?;
        let mut toml = format!(
            "[arbiter]\nlisten = \"{ARBITER}:7400\"\nstate_dir = \"{}\"\nlog_format = \"json\"\ninsecure_plaintext = true\n\n\
             [[cluster]]\nname = \"demo\"\n\n[[cluster.device]]\nname = \"netns\"\ndriver = \"exec\"\nagent = \"{}\"\n",
            d.join("state").display(),
            fence.display()
        );
        for i in 1..=3 {
            toml += &format!(
                "\n[[cluster.node]]\nid = {i}\nname = \"n{i}\"\naddress = \"{}:7501\"\nfence = [[\"netns:n{i}\"]]\n",
                node_ip(i)
            );
        }
        toml += &format!(
            "\n[[cluster.group]]\nname = \"vip\"\nnodes = [\"n1\", \"n2\", \"n3\"]\n\
             resources = [ {{ kind = \"address\", address = \"{VIP}/24\", interface = \"eth0\" }} ]\n\
             \n[[cluster.group]]\nname = \"vip2\"\nnodes = [\"n1\", \"n2\", \"n3\"]\n\
             resources = [ {{ kind = \"ocf\", agent = \"heartbeat:IPaddr2\", params = {{ ip = \"{VIP2}\", cidr_netmask = \"24\", nic = \"eth0\" }} }} ]\n"
        );
        std::fs::write(d.join("arbiter.toml"), toml).map_err(|e| e.to_string())?;
        for i in 1..=3 {
            std::fs::write(
                d.join(format!("agent{i}.toml")),
                format!(
                    "cluster = \"demo\"\nnode = {i}\narbiter = \"http://{ARBITER}:7400\"\nlisten = \"{}:7501\"\n\
                     log_format = \"json\"\ninsecure_plaintext = true\nboot_id_file = \"{}\"\n",
                    node_ip(i),
                    d.join(format!("boot{i}")).display()
                ),
            )
            .map_err(|e| e.to_string())?;
        }
        let mut c = NetCluster {
            net,
            dir: d,
            bin: bin.to_path_buf(),
            arbiter: None,
            agents: BTreeMap::new(),
            watch: None,
            seen: Arc::new(Mutex::new(Watch::default())),
            url: format!("http://{ARBITER}:7400"),
            keepalived: false,
        };
        let log = std::fs::File::create(c.dir.join("arbiter.log")).map_err(|e| e.to_string())?;
        let arbiter = c
            .net
            .cmd("arb", &c.bin.join("fence-arbiter"))
            .arg("--config")
            .arg(c.dir.join("arbiter.toml"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("fence-arbiter: {e}"))?;
        c.arbiter = Some(arbiter);
        for i in 1..=3 {
            c.start_agent(i)?;
        }
        c.start_watch()?;
        Ok(c)
    }

    /// keepalived 2.2.7 (Debian) in the same namespaces: node 1 priority
    /// 150, node 2 100, node 3 50, advert_int 1 s (its default), preempt
    /// (its default); the address `VIP` only.
    pub fn start_keepalived(prefix: &str, dir: &Path) -> Result<NetCluster, String> {
        let net = Net::create(prefix)?;
        let mut c = NetCluster {
            net,
            dir: dir.to_path_buf(),
            bin: crate::e2e::binaries(),
            arbiter: None,
            agents: BTreeMap::new(),
            watch: None,
            seen: Arc::new(Mutex::new(Watch::default())),
            url: String::new(),
            keepalived: true,
        };
        for i in 1..=3u32 {
            std::fs::write(
                c.dir.join(format!("ka{i}.conf")),
                format!(
                    "global_defs {{\n  router_id n{i}\n}}\nvrrp_instance VI {{\n  state BACKUP\n  interface eth0\n  \
                     virtual_router_id 77\n  priority {}\n  advert_int 1\n  virtual_ipaddress {{\n    {VIP}/24\n  }}\n}}\n",
                    200 - 50 * i
                ),
            )
            .map_err(|e| e.to_string())?;
            c.start_agent(i)?;
        }
        c.start_watch()?;
        Ok(c)
    }

    /// The keepalived processes of node `i` (parent, VRRP child).
    fn keepalived_pids(&self, i: u32) -> Vec<i32> {
        let mut pids: Vec<i32> = self.agent_pid(i).map(|p| p as i32).into_iter().collect();
        if let Ok(t) = std::fs::read_to_string(self.dir.join(format!("ka{i}-vrrp.pid")))
            && let Ok(p) = t.trim().parse()
        {
            pids.push(p);
        }
        pids
    }

    /// Start node `i`'s agent in a new boot (its machine just powered on).
    pub fn start_agent(&mut self, i: u32) -> Result<(), String> {
        if self.keepalived {
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.dir.join(format!("ka{i}.log")))
                .map_err(|e| e.to_string())?;
            // (The killed instance's pid files would make it refuse to start.)
            for f in [format!("ka{i}.pid"), format!("ka{i}-vrrp.pid")] {
                let _ = std::fs::remove_file(self.dir.join(f));
            }
            let d = &self.dir;
            let child = self
                .net
                .cmd(&format!("n{i}"), Path::new("keepalived"))
                .args(["-n", "-P", "-l", "-G", "-D"])
                .arg(format!("--pid={}", d.join(format!("ka{i}.pid")).display()))
                .arg(format!(
                    "--vrrp_pid={}",
                    d.join(format!("ka{i}-vrrp.pid")).display()
                ))
                .arg(format!(
                    "--use-file={}",
                    d.join(format!("ka{i}.conf")).display()
                ))
                .stdout(log.try_clone().map_err(|e| e.to_string())?)
                .stderr(log)
                .spawn()
                .map_err(|e| format!("keepalived: {e}"))?;
            if let Some(mut old) = self.agents.insert(i, child) {
                let _ = old.kill();
                let _ = old.wait();
            }
            return Ok(());
        }
        let uuid =
            std::fs::read_to_string("/proc/sys/kernel/random/uuid").map_err(|e| e.to_string())?;
        std::fs::write(self.dir.join(format!("boot{i}")), uuid.trim())
            .map_err(|e| e.to_string())?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("agent{i}.log")))
            .map_err(|e| e.to_string())?;
        let child = self
            .net
            .cmd(&format!("n{i}"), &self.bin.join("fence-agent"))
            .arg("--config")
            .arg(self.dir.join(format!("agent{i}.toml")))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("fence-agent: {e}"))?;
        if let Some(mut old) = self.agents.insert(i, child) {
            let _ = old.kill();
            let _ = old.wait();
        }
        Ok(())
    }

    fn start_watch(&mut self) -> Result<(), String> {
        let mut child = self
            .net
            .cmd("cl", &self.bin.join("arp_watch"))
            .args(["--iface", "eth0", "--src", CLIENT, "--target", VIP])
            .args(if self.keepalived {
                vec![]
            } else {
                vec!["--target", VIP2]
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("arp_watch: {e}"))?;
        let out = child.stdout.take().expect("piped");
        let seen = self.seen.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { return };
                let f: Vec<&str> = line.split_whitespace().collect();
                let mut w = seen.lock().expect("watch");
                match f.as_slice() {
                    ["S", t] => w.rounds.extend(t.parse::<u64>().ok()),
                    ["R", t, target, mac] => {
                        if let Ok(at_us) = t.parse() {
                            w.answers.push(Answer {
                                at_us,
                                target: target.to_string(),
                                mac: mac.to_string(),
                            });
                        }
                    }
                    _ => {}
                }
            }
        });
        self.watch = Some(child);
        Ok(())
    }

    pub fn agent_pid(&self, i: u32) -> Option<u32> {
        self.agents.get(&i).map(Child::id)
    }

    /// The MAC of node `i`'s interface.
    pub fn mac(&self, i: u32) -> String {
        let out = Command::new("ip")
            .args([
                "-n",
                &self.net.ns(&format!("n{i}")),
                "-o",
                "link",
                "show",
                "eth0",
            ])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
            .unwrap_or_default();
        out.split_whitespace()
            .skip_while(|w| *w != "link/ether")
            .nth(1)
            .unwrap_or_default()
            .to_string()
    }

    /// The node whose MAC last answered for `target` (none: `None`).
    pub fn answering(&self, target: &str) -> Option<u32> {
        let mac = self
            .seen
            .lock()
            .expect("watch")
            .answers
            .iter()
            .rev()
            .find(|a| a.target == target)
            .map(|a| a.mac.clone())?;
        (1..=3).find(|&i| self.mac(i) == mac)
    }

    /// Times node `i` was switched off by the fence device.
    pub fn offs(&self, i: u32) -> Vec<u64> {
        std::fs::read_to_string(self.dir.join("fence.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.first() == Some(&"off") && f.get(1) == Some(&format!("n{i}").as_str()))
                    .then(|| f.get(2)?.parse().ok())
                    .flatten()
            })
            .collect()
    }

    /// Wait until `target` is answered by one node for `steady`; that node.
    pub fn wait_answered(&self, target: &str, within: Duration) -> Option<u32> {
        let end = Instant::now() + within;
        while Instant::now() < end {
            let recent: Vec<String> = {
                let w = self.seen.lock().expect("watch");
                let now = crate::e2e::unix_us();
                w.answers
                    .iter()
                    .filter(|a| a.target == target && a.at_us + 100_000 > now)
                    .map(|a| a.mac.clone())
                    .collect()
            };
            if recent.len() >= 10 && recent.iter().all(|m| *m == recent[0]) {
                return (1..=3).find(|&i| self.mac(i) == recent[0]);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Node `i` powered on again: port up, link up, nft rules gone, agent
    /// started in a new boot.
    pub fn power_on(&mut self, i: u32) -> Result<(), String> {
        // A machine powered off comes back with none of its addresses,
        // sockets or rules: its namespace is made anew (the switch port
        // went with the old one).
        self.net
            .reboot(&format!("n{i}"), &format!("s{i}"), &node_ip(i))?;
        self.start_agent(i)
    }

    /// On node `i`'s agent log: from the first "lease lost" after `t0_us`
    /// to its next "resource group stopped" of group `group`, in ms.
    pub fn lapse_to_stopped(&self, i: u32, group: &str, t0_us: u64) -> Option<f64> {
        let log = self.log(&format!("agent{i}"));
        let mut lost = None;
        for (at, msg, f) in crate::e2e::json_log(&log) {
            if at < t0_us {
                continue;
            }
            if lost.is_none() && msg.starts_with("lease lost") {
                lost = Some(at);
            }
            if let Some(l) = lost
                && msg == "resource group stopped"
                && f["group"] == group
            {
                return Some((at - l) as f64 / 1000.0);
            }
        }
        None
    }

    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(format!("{name}.log"))).unwrap_or_default()
    }
}

impl Drop for NetCluster {
    fn drop(&mut self) {
        if self.keepalived {
            // (Its VRRP child outlives a killed parent.)
            for i in 1..=3 {
                for pid in self.keepalived_pids(i) {
                    let p = nix::unistd::Pid::from_raw(pid);
                    let _ = nix::sys::signal::kill(p, nix::sys::signal::Signal::SIGCONT);
                    let _ = nix::sys::signal::kill(p, nix::sys::signal::Signal::SIGKILL);
                }
            }
        }
        for c in self
            .agents
            .values_mut()
            .chain(self.arbiter.iter_mut())
            .chain(self.watch.iter_mut())
        {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A fault of the node holding the floating addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Its agent killed (SIGKILL): the address stays on its interface.
    Kill,
    /// Its agent frozen (SIGSTOP).
    Freeze,
    /// Its switch port down.
    Cut,
    /// Only the cluster's traffic (to the arbiter and the peers) dropped;
    /// clients still reach it.
    ClusterTraffic,
    /// Its own link down.
    LinkDown,
}

impl Fault {
    pub const ALL: [Fault; 5] = [
        Fault::Kill,
        Fault::Freeze,
        Fault::Cut,
        Fault::ClusterTraffic,
        Fault::LinkDown,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Fault::Kill => "agent killed (SIGKILL)",
            Fault::Freeze => "agent frozen (SIGSTOP)",
            Fault::Cut => "cut off at the switch",
            Fault::ClusterTraffic => "cluster traffic only dropped",
            Fault::LinkDown => "its link down",
        }
    }
}

/// One fault, measured from the client's side.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub fault: Fault,
    pub old: u32,
    pub new: u32,
    /// Fault to the first answer for the address from the new holder.
    pub takeover_ms: f64,
    /// Rounds (5 ms each) in which two MACs answered for one address.
    pub dual_rounds: usize,
    /// The old holder switched off (µs), and the new holder's first answer.
    pub off_us: Option<u64>,
    pub first_new_us: u64,
}

impl NetCluster {
    fn apply(&self, fault: Fault, node: u32) -> Result<(), String> {
        let ns = self.net.ns(&format!("n{node}"));
        match fault {
            Fault::Kill | Fault::Freeze => {
                let sig = if fault == Fault::Kill {
                    nix::sys::signal::Signal::SIGKILL
                } else {
                    nix::sys::signal::Signal::SIGSTOP
                };
                let pids = if self.keepalived {
                    self.keepalived_pids(node)
                } else {
                    vec![self.agent_pid(node).ok_or("no agent")? as i32]
                };
                for pid in pids {
                    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig)
                        .map_err(|e| e.to_string())?;
                }
                Ok(())
            }
            Fault::Cut => ip(&[
                "-n",
                &self.net.ns("sw"),
                "link",
                "set",
                &format!("s{node}"),
                "down",
            ]),
            Fault::LinkDown => ip(&["-n", &ns, "link", "set", "eth0", "down"]),
            Fault::ClusterTraffic => {
                let peers: Vec<String> = (1..=3)
                    .filter(|&p| p != node)
                    .map(node_ip)
                    .chain([ARBITER.to_string()])
                    .collect();
                let set = peers.join(", ");
                let rules = if self.keepalived {
                    // keepalived's cluster traffic: its VRRP adverts.
                    "table inet cut {\n  chain o {\n    type filter hook output priority 0;\n    ip protocol vrrp drop\n  }\n  \
                     chain i {\n    type filter hook input priority 0;\n    ip protocol vrrp drop\n  }\n}\n"
                        .to_string()
                } else {
                    format!(
                        "table inet cut {{\n  chain o {{\n    type filter hook output priority 0;\n    ip daddr {{ {set} }} drop\n  }}\n  \
                     chain i {{\n    type filter hook input priority 0;\n    ip saddr {{ {set} }} drop\n  }}\n}}\n"
                    )
                };
                let file = self.dir.join(format!("cut-n{node}.nft"));
                std::fs::write(&file, rules).map_err(|e| e.to_string())?;
                let out = Command::new("ip")
                    .args(["netns", "exec", &ns, "nft", "-f"])
                    .arg(&file)
                    .output()
                    .map_err(|e| format!("nft: {e}"))?;
                if out.status.success() {
                    Ok(())
                } else {
                    Err(format!("nft: {}", String::from_utf8_lossy(&out.stderr)))
                }
            }
        }
    }

    /// Every node a member with a lease (asked from the client's namespace).
    pub fn all_leased(&self, within: Duration) -> bool {
        let end = Instant::now() + within;
        while Instant::now() < end {
            let out = self
                .net
                .cmd("cl", &self.bin.join("fencectl"))
                .args(["--arbiter", &self.url, "-o", "json", "nodes"])
                .output();
            if let Ok(o) = out
                && let Ok(v) = serde_json::from_slice::<serde_json::Value>(&o.stdout)
                && let Some(a) = v.as_array()
                && a.len() == 3
                && a.iter()
                    .all(|n| n["lease"] == true && n["state"] == "member")
            {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }

    /// Fault the node answering for `VIP`, wait for another node to answer
    /// steadily, measure; then power the old holder on again and wait for
    /// the cluster to be whole.
    pub fn fault_holder(&mut self, fault: Fault) -> Result<Outcome, String> {
        self.fault_holder_for(fault, None)
    }

    /// As [`NetCluster::fault_holder`]; with `window`, the dual answers are
    /// counted from the fault for that long (the old holder is restored
    /// only after it), as the benchmark compares with keepalived.
    pub fn fault_holder_for(
        &mut self,
        fault: Fault,
        window: Option<Duration>,
    ) -> Result<Outcome, String> {
        let old = self
            .wait_answered(VIP, Duration::from_secs(20))
            .ok_or("nobody answers for the address")?;
        if !self.keepalived && self.wait_answered(VIP2, Duration::from_secs(20)).is_none() {
            return Err("nobody answers for the IPaddr2 address".into());
        }
        let t0 = crate::e2e::unix_us();
        self.apply(fault, old)?;
        let end = Instant::now() + Duration::from_secs(20);
        let old_mac = self.mac(old);
        let new = loop {
            if Instant::now() > end {
                return Err(format!("{}: nobody else answers within 20 s", fault.name()));
            }
            if self.keepalived {
                // (The old master may answer on: the first other MAC.)
                let other = {
                    let w = self.seen.lock().expect("watch");
                    w.answers
                        .iter()
                        .find(|a| a.target == VIP && a.at_us > t0 && a.mac != old_mac)
                        .map(|a| a.mac.clone())
                };
                if let Some(m) = other
                    && let Some(n) = (1..=3).find(|&i| self.mac(i) == m)
                {
                    break n;
                }
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            match self.wait_answered(VIP, Duration::from_millis(200)) {
                Some(n) if n != old => break n,
                _ => {}
            }
        };
        // Both addresses back before the next round.
        if !self.keepalived {
            match self.wait_answered(VIP2, Duration::from_secs(20)) {
                Some(n) if n != old => {}
                other => {
                    return Err(format!(
                        "{}: the IPaddr2 address is answered by {other:?}",
                        fault.name()
                    ));
                }
            }
        }
        if let Some(w) = window {
            let until = t0 + w.as_micros() as u64;
            while crate::e2e::unix_us() < until {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let new_mac = self.mac(new);
        let (first_new_us, dual_rounds) = {
            let w = self.seen.lock().expect("watch");
            let first = w
                .answers
                .iter()
                .find(|a| a.target == VIP && a.mac == new_mac && a.at_us > t0)
                .map(|a| a.at_us)
                .ok_or("no answer from the new holder")?;
            // (Without a window: from a second before the fault on, so that
            // a stale answer from the last round's recovery counts too.)
            let dual = match window {
                Some(win) => dual_rounds_between(&w, t0, t0 + win.as_micros() as u64),
                None => dual_rounds(&w, t0.saturating_sub(1_000_000)),
            };
            (first, dual)
        };
        let off_us = self.offs(old).into_iter().find(|&t| t >= t0);
        let outcome = Outcome {
            fault,
            old,
            new,
            takeover_ms: (first_new_us - t0) as f64 / 1000.0,
            dual_rounds,
            off_us,
            first_new_us,
        };
        if self.keepalived {
            // No fence: an operator reboots the old master.
            for pid in self.keepalived_pids(old) {
                let p = nix::unistd::Pid::from_raw(pid);
                let _ = nix::sys::signal::kill(p, nix::sys::signal::Signal::SIGCONT);
                let _ = nix::sys::signal::kill(p, nix::sys::signal::Signal::SIGKILL);
            }
            self.net
                .reboot(&format!("n{old}"), &format!("s{old}"), &node_ip(old))?;
            self.start_agent(old)?;
            // One master again, steadily.
            std::thread::sleep(Duration::from_secs(4));
            if self.wait_answered(VIP, Duration::from_secs(20)).is_none() {
                return Err(format!("{}: keepalived never settled again", fault.name()));
            }
            return Ok(outcome);
        }
        // Power the old holder on again once it was switched off.
        let end = Instant::now() + Duration::from_secs(20);
        while self.offs(old).into_iter().all(|t| t < t0) {
            if Instant::now() > end {
                return Err(format!("{}: node {old} never switched off", fault.name()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.power_on(old)?;
        if !self.all_leased(Duration::from_secs(30)) {
            return Err(format!(
                "{}: the cluster is not whole again after 30 s",
                fault.name()
            ));
        }
        Ok(outcome)
    }
}

/// As [`dual_rounds`], between two instants.
pub fn dual_rounds_between(w: &Watch, from_us: u64, to_us: u64) -> usize {
    let mut per: BTreeMap<(u64, String), std::collections::BTreeSet<String>> = BTreeMap::new();
    for a in w
        .answers
        .iter()
        .filter(|a| a.at_us >= from_us && a.at_us < to_us)
    {
        let round = match w.rounds.binary_search(&a.at_us) {
            Ok(i) => i,
            Err(0) => continue,
            Err(i) => i - 1,
        };
        per.entry((w.rounds[round], a.target.clone()))
            .or_default()
            .insert(a.mac.clone());
    }
    per.values().filter(|m| m.len() > 1).count()
}

/// Rounds since `since_us` in which two different MACs answered for the
/// same address (an answer belongs to the last round sent before it).
pub fn dual_rounds(w: &Watch, since_us: u64) -> usize {
    dual_rounds_between(w, since_us, u64::MAX)
}
