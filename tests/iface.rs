//! Hot-plugged NICs on real kernel interfaces: a "VM" network namespace and
//! a peer namespace with a real DHCP server (dnsmasq), joined by veth pairs.
//! Nothing touches the machine's own network.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)] // tests and benches: a failure is a panic, output is the report

mod common;

use common::*;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Two network namespaces, removed (with their processes) on drop.
struct Net {
    vm: String,
    peer: String,
    /// More peer namespaces, one per upstream.
    others: Vec<String>,
    dnsmasq: Vec<Child>,
    dir: PathBuf,
}

impl Net {
    fn new(dir: &Path, tag: &str) -> Net {
        let id = std::process::id();
        let net = Net {
            vm: format!("gv-vm-{id}-{tag}"),
            peer: format!("gv-peer-{id}-{tag}"),
            others: Vec::new(),
            dnsmasq: Vec::new(),
            dir: dir.to_path_buf(),
        };
        sh(Command::new("ip").args(["netns", "add", &net.vm]));
        sh(Command::new("ip").args(["netns", "add", &net.peer]));
        net
    }

    /// A veth pair: `ifname` in the VM (with `queues` queues), `peer_if`
    /// with `peer_addr` in the peer namespace.
    fn link(&self, ifname: &str, peer_if: &str, peer_addr: &str, queues: u32) {
        let q = queues.to_string();
        sh(Command::new("ip").args([
            "link",
            "add",
            ifname,
            "numtxqueues",
            &q,
            "numrxqueues",
            &q,
            "netns",
            &self.vm,
            "type",
            "veth",
            "peer",
            "name",
            peer_if,
            "netns",
            &self.peer,
        ]));
        self.peer_cmd(&["ip", "addr", "add", peer_addr, "dev", peer_if]);
        self.peer_cmd(&["ip", "link", "set", peer_if, "up"]);
    }

    /// Another peer namespace (removed on drop).
    fn add_peer(&mut self, tag: &str) -> String {
        let ns = format!("{}-{tag}", self.peer);
        sh(Command::new("ip").args(["netns", "add", &ns]));
        self.others.push(ns.clone());
        ns
    }

    /// A veth pair: `ifname` in the VM, `peer_if` with `peer_addr` in `ns`.
    fn link_to(&self, ns: &str, ifname: &str, peer_if: &str, peer_addr: &str) {
        sh(Command::new("ip").args([
            "link", "add", ifname, "netns", &self.vm, "type", "veth", "peer", "name", peer_if,
            "netns", ns,
        ]));
        self.in_ns(ns, &["ip", "addr", "add", peer_addr, "dev", peer_if]);
        self.in_ns(ns, &["ip", "link", "set", peer_if, "up"]);
    }

    fn in_ns(&self, ns: &str, args: &[&str]) -> String {
        sh(Command::new("ip").args(["netns", "exec", ns]).args(args))
    }

    fn peer_cmd(&self, args: &[&str]) -> String {
        sh(Command::new("ip")
            .args(["netns", "exec", &self.peer])
            .args(args))
    }

    fn vm_cmd(&self, args: &[&str]) -> String {
        sh(Command::new("ip")
            .args(["netns", "exec", &self.vm])
            .args(args))
    }

    /// dnsmasq as DHCP server on `peer_if` (no DNS), leases in `range`.
    fn dhcp(&mut self, peer_if: &str, range: &str, router: &str) {
        let leases = self.dir.join(format!("leases-{peer_if}"));
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.peer,
                "dnsmasq",
                "--no-daemon",
                "--conf-file=/dev/null",
                "--port=0",
            ])
            .arg(format!("--interface={peer_if}"))
            .arg("--bind-interfaces")
            .arg(format!("--dhcp-range={range},255.255.255.0,1h"))
            .arg(format!("--dhcp-option=3,{router}"))
            .arg(format!("--dhcp-leasefile={}", leases.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.dnsmasq.push(child);
    }

    /// Runs `gandi-vm ARGS` inside the VM namespace.
    fn gandi(&self, env: &Env, args: &[&str]) -> std::process::Output {
        Command::new("ip")
            .args(["netns", "exec", &self.vm, BIN])
            .args(args)
            .env("GANDI_CONFIG", env.config())
            .output()
            .unwrap()
    }

    fn addrs(&self, ifname: &str) -> String {
        self.vm_cmd(&["ip", "-4", "addr", "show", "dev", ifname])
    }

    fn routes(&self) -> String {
        self.vm_cmd(&["ip", "-4", "route", "show", "default"])
    }

    fn sysctl(&self, ifname: &str, key: &str) -> String {
        self.vm_cmd(&["cat", &format!("/proc/sys/net/ipv4/conf/{ifname}/{key}")])
            .trim()
            .to_string()
    }

    /// Waits until `f` holds, or 30 s.
    fn wait(&self, what: &str, f: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !f() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for c in &mut self.dnsmasq {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in [&self.vm, &self.peer].into_iter().chain(&self.others) {
            // Processes left in the namespace (udhcpc) go with it.
            if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
                for pid in stdout(&out).split_whitespace() {
                    if let Ok(pid) = pid.parse::<i32>() {
                        stop_pid(pid);
                    }
                }
            }
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

/// A root tree with a platform config, and settings pointing at it.
fn setup(env: &Env, config: &str, nodhcp: &str) -> PathBuf {
    let root = env.path().join("root");
    fs::create_dir_all(root.join("gandi")).unwrap();
    fs::write(root.join("gandi/config"), config).unwrap();
    let hooks = env.path().join("hooks");
    let log = env.path().join("hook.log");
    script(
        &hooks.join("post-iface-attach"),
        // Its arguments and the original's environment.
        &format!(
            "echo \"$@\" \"$INTERFACE\" \"$ACTION\" >> {}",
            log.display()
        ),
    );
    env.settings(&[
        format!("CONFIG_NODHCP=\"{nodhcp}\""),
        format!("GANDI_HOOK_DIR={}", hooks.display()),
    ]);
    root
}

const CONFIG: &str = r#"{"vif": [
    {"vif_number": 0, "pna": []},
    {"vif_number": 2, "pna": [{"pna_address": "10.88.0.5", "pbn": {"pbn_network": "10.88.0.0/24", "pbn_gateway": "10.88.0.1"}}]}
]}"#;

#[test]
fn dhcp_and_static_interfaces_sysctls_routes_and_removal() {
    if !system_test(&["ip", "dnsmasq", "udhcpc"]) {
        return;
    }
    let env = Env::new();
    let root = setup(&env, CONFIG, "eth0");
    let mut net = Net::new(env.path(), "a");
    net.link("eth1", "p1", "10.77.1.1/24", 1);
    net.link("eth2", "p2", "10.88.0.1/24", 1);
    net.dhcp("p1", "10.77.1.100,10.77.1.150", "10.77.1.1");
    let root_arg = root.to_str().unwrap();

    // eth1 is not in the config: DHCP, from the real server.
    let out = net.gandi(&env, &["iface", "eth1", "--root", root_arg]);
    assert!(out.status.success(), "{}", stderr(&out));
    net.wait("a DHCP lease on eth1", || {
        net.addrs("eth1").contains("inet 10.77.1.1")
    });
    let link = net.vm_cmd(&["ip", "link", "show", "dev", "eth1"]);
    assert!(link.contains(",UP"), "{link}");
    net.wait("eth1's default route", || {
        net.routes().contains("via 10.77.1.1 dev eth1 metric 1025")
    });
    // A secondary interface: ARP and reverse-path settings.
    assert_eq!(net.sysctl("eth1", "arp_announce"), "2");
    assert_eq!(net.sysctl("eth1", "rp_filter"), "0");
    assert_eq!(net.sysctl("eth1", "arp_filter"), "0");

    // eth2 has a static address in the config: no DHCP.
    let out = net.gandi(&env, &["iface", "eth2", "--root", root_arg]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        net.addrs("eth2").contains("inet 10.88.0.5/24"),
        "{}",
        net.addrs("eth2")
    );
    // Route policy: one default route per interface, each with its metric;
    // the lowest (eth1) wins.
    let routes = net.routes();
    assert!(
        routes.contains("via 10.77.1.1 dev eth1 metric 1025"),
        "{routes}"
    );
    assert!(
        routes.contains("via 10.88.0.1 dev eth2 metric 1026"),
        "{routes}"
    );
    assert!(!env.path().join("run/udhcpc-eth2.pid").exists());
    // The hook ran for each.
    let hooks = fs::read_to_string(env.path().join("hook.log")).unwrap();
    assert_eq!(hooks, "eth1 eth1 add\neth2 eth2 add\n");

    // Remove: the DHCP client goes, and what was generated.
    let pid_file = env.path().join("run/udhcpc-eth1.pid");
    let pid: i32 = fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let out = net.gandi(&env, &["iface", "--remove", "eth1", "--root", root_arg]);
    assert!(out.status.success());
    assert!(!pid_file.exists());
    net.wait("udhcpc to stop", || {
        fs::read_to_string(format!("/proc/{pid}/comm")).map_or(true, |c| c.trim() != "udhcpc")
    });
}

#[test]
fn nodhcp_interfaces_get_no_address_and_still_the_hook() {
    if !system_test(&["ip", "dnsmasq", "udhcpc"]) {
        return;
    }
    let env = Env::new();
    let root = setup(&env, "{}", "eth0 eth1");
    let mut net = Net::new(env.path(), "b");
    net.link("eth1", "p1", "10.77.2.1/24", 1);
    net.dhcp("p1", "10.77.2.100,10.77.2.150", "10.77.2.1");
    let out = net.gandi(&env, &["iface", "eth1", "--root", root.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    std::thread::sleep(Duration::from_secs(2));
    let link = net.vm_cmd(&["ip", "link", "show", "dev", "eth1"]);
    assert!(link.contains(",UP"), "{link}");
    let addr = net.addrs("eth1");
    assert!(!addr.contains("inet "), "{addr}");
    let routes = net.routes();
    assert!(routes.trim().is_empty(), "{routes}");
    assert!(!env.path().join("run/udhcpc-eth1.pid").exists());
    // As the original: CONFIG_NODHCP gates the addressing, not the hook.
    assert_eq!(
        fs::read_to_string(env.path().join("hook.log")).unwrap_or_default(),
        "eth1 eth1 add\n"
    );
    // Malformed names are refused (beneath the test's tree: a refusal
    // that regressed writes nothing of the host's).
    let out = net.gandi(
        &env,
        &["iface", "../eth1", "--root", root.to_str().unwrap()],
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("not an interface name"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn queues_through_the_ethtool_ioctl() {
    if !system_test(&["ip"]) {
        return;
    }
    let env = Env::new();
    env.settings(&[]);
    let net = Net::new(env.path(), "q");
    net.link("eth1", "p1", "10.77.3.1/24", 4);
    let out = net.gandi(&env, &["queues", "eth1", "2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let said = stdout(&out);
    assert!(said.contains("rx 2 tx 2"), "{said}");
    // Capped at what the device has.
    let out = net.gandi(&env, &["queues", "eth1", "8"]);
    assert!(stdout(&out).contains("rx 4 tx 4"));
}

/// With systemd-networkd, the interface's file is written, and networkd is
/// told to reload only when the file changed: at boot the file is
/// bootstrap's, already loaded, and a reload would restart the interface's
/// configuration mid-boot. The file is removed when the NIC goes, not
/// when the unit stops with the NIC present (a shutdown). (networkd does not run here: `networkctl` is a
/// stand-in that records its calls; the real one is exercised by the VM
/// test's NIC hot-plug.)
#[test]
fn networkd_reloads_only_when_the_file_changed() {
    if !system_test(&["ip"]) {
        return;
    }
    let env = Env::new();
    let root = setup(&env, CONFIG, "");
    fs::create_dir_all(root.join("run/systemd/netif")).unwrap();
    fs::write(root.join("run/systemd/netif/state"), "").unwrap();
    let bin = env.path().join("bin");
    let calls = env.path().join("networkctl.log");
    script(
        &bin.join("networkctl"),
        &format!("echo \"$@\" >> {}", calls.display()),
    );
    let net = Net::new(env.path(), "n");
    net.link("eth2", "p2", "10.88.0.1/24", 1);
    let iface = |extra: &[&str]| {
        let out = Command::new("ip")
            .args(["netns", "exec", &net.vm, BIN, "iface", "eth2"])
            .args(extra)
            .arg("--root")
            .arg(&root)
            .env("GANDI_CONFIG", env.config())
            .env("PATH", path_with(&bin))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
    };
    let attach = || iface(&[]);
    let file = root.join("etc/systemd/network/50-gandi-eth2.network");
    attach();
    let text = fs::read_to_string(&file).unwrap();
    assert!(text.contains("10.88.0.5"), "{text}");
    assert_eq!(
        fs::read_to_string(&calls).unwrap(),
        "reload\nreconfigure eth2\n"
    );
    // The same file: nothing to reload.
    attach();
    assert_eq!(
        fs::read_to_string(&calls).unwrap(),
        "reload\nreconfigure eth2\n"
    );
    // An admin's edit stays while the platform's value is the one applied.
    fs::write(&file, "[Match]\nName=eth2\n").unwrap();
    attach();
    assert_eq!(fs::read_to_string(&file).unwrap(), "[Match]\nName=eth2\n");
    assert_eq!(fs::read_to_string(&calls).unwrap().lines().count(), 2);
    // A new platform value is written, and networkd reloads it.
    let config = fs::read_to_string(root.join("gandi/config")).unwrap();
    fs::write(
        root.join("gandi/config"),
        config.replace("10.88.0.5", "10.88.0.6"),
    )
    .unwrap();
    attach();
    assert!(fs::read_to_string(&file).unwrap().contains("10.88.0.6"));
    assert_eq!(
        fs::read_to_string(&calls).unwrap().lines().count(),
        4,
        "no reload after the file changed"
    );

    // The unit stops at every shutdown, the NIC still there: the file
    // stays (the next boot needs it), and networkd is not told anything.
    iface(&["--remove"]);
    assert!(fs::read_to_string(&file).unwrap().contains("10.88.0.6"));
    assert_eq!(fs::read_to_string(&calls).unwrap().lines().count(), 4);
    // Nor is the platform's value taken as new at the next start.
    attach();
    assert_eq!(fs::read_to_string(&calls).unwrap().lines().count(), 4);
    // Unplugged: the file goes, and networkd reloads its files.
    net.vm_cmd(&["ip", "link", "del", "eth2"]);
    iface(&["--remove"]);
    assert!(!file.exists());
    assert_eq!(
        fs::read_to_string(&calls).unwrap().lines().last(),
        Some("reload")
    );
}

/// eth0 and eth1 each on an upstream of its own (a network namespace with
/// `rp_filter=1` and a client off the interface's subnet): a reply from
/// each address leaves through its own gateway; without our source rules
/// eth1's replies leave through eth0's default route and never arrive.
#[test]
fn two_public_nics_both_answer_and_their_rules_go_with_the_nic() {
    if !system_test(&["ip", "ping"]) {
        return;
    }
    let env = Env::new();
    let config = r#"{"vif": [
        {"vif_number": 0, "pna": [{"pna_address": "10.70.0.5", "pbn": {"pbn_network": "10.70.0.0/24", "pbn_gateway": "10.70.0.1"}}]},
        {"vif_number": 1, "pna": [{"pna_address": "10.71.0.5", "pbn": {"pbn_network": "10.71.0.0/24", "pbn_gateway": "10.71.0.1"}}]}
    ]}"#;
    let root = setup(&env, config, "");
    let mut net = Net::new(env.path(), "s");
    let a = net.peer.clone();
    let b = net.add_peer("b");
    net.link("eth0", "pa", "10.70.0.1/24", 1);
    net.link_to(&b, "eth1", "pb", "10.71.0.1/24");
    for (ns, client) in [(&a, "203.0.113.1/32"), (&b, "203.0.113.2/32")] {
        net.in_ns(ns, &["sysctl", "-q", "-w", "net.ipv4.conf.all.rp_filter=1"]);
        net.in_ns(
            ns,
            &["sysctl", "-q", "-w", "net.ipv4.conf.default.rp_filter=1"],
        );
        net.in_ns(ns, &["ip", "link", "set", "lo", "up"]);
        net.in_ns(ns, &["ip", "addr", "add", client, "dev", "lo"]);
    }
    let root_arg = root.to_str().unwrap();
    for nic in ["eth0", "eth1"] {
        let out = net.gandi(&env, &["iface", nic, "--root", root_arg]);
        assert!(out.status.success(), "{nic}: {}", stderr(&out));
    }
    let rules = net.vm_cmd(&["ip", "-4", "rule", "show"]);
    assert!(
        rules.contains("30002:\tfrom 10.71.0.5 lookup main suppress_prefixlength 0"),
        "{rules}"
    );
    assert!(
        rules.contains("30003:\tfrom 10.71.0.5 lookup 30001"),
        "{rules}"
    );
    assert!(!rules.contains("10.70.0.5"), "eth0 has no rule: {rules}");
    let table = net.vm_cmd(&["ip", "-4", "route", "show", "table", "30001"]);
    assert!(table.contains("default via 10.71.0.1 dev eth1"), "{table}");
    // A second `iface` adds no duplicate.
    let out = net.gandi(&env, &["iface", "eth1", "--root", root_arg]);
    assert!(out.status.success(), "{}", stderr(&out));
    let again = net.vm_cmd(&["ip", "-4", "rule", "show"]);
    assert_eq!(again.matches("from 10.71.0.5").count(), 2, "{again}");
    let ping = |ns: &str, from: &str, to: &str| {
        Command::new("ip")
            .args([
                "netns", "exec", ns, "ping", "-c", "1", "-W", "3", "-I", from, to,
            ])
            .output()
            .unwrap()
            .status
            .success()
    };
    assert!(
        ping(&a, "203.0.113.1", "10.70.0.5"),
        "eth0's address from its side"
    );
    assert!(
        ping(&b, "203.0.113.2", "10.71.0.5"),
        "eth1's address from its side"
    );
    // The control: without the rules, eth1's reply takes eth0's default.
    net.vm_cmd(&["ip", "-4", "rule", "del", "priority", "30003"]);
    assert!(
        !ping(&b, "203.0.113.2", "10.71.0.5"),
        "answered without the rule"
    );
    let out = net.gandi(&env, &["iface", "eth1", "--root", root_arg]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(ping(&b, "203.0.113.2", "10.71.0.5"), "the rule back");
    // Unplugged: its rules go (the table's route went with the NIC).
    net.vm_cmd(&["ip", "link", "del", "eth1"]);
    let out = net.gandi(&env, &["iface", "--remove", "eth1", "--root", root_arg]);
    assert!(out.status.success(), "{}", stderr(&out));
    let left = net.vm_cmd(&["ip", "-4", "rule", "show"]);
    assert!(
        !left.contains("10.71.0.5") && !left.contains("3000"),
        "{left}"
    );
    assert!(ping(&a, "203.0.113.1", "10.70.0.5"), "eth0 still answers");
}
