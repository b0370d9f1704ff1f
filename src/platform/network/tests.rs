//! The interface model, each stack's file, source rules and names.

use super::*;
use crate::platform::config;

fn cfg(text: &str) -> Config {
    config::read(text.as_bytes()).unwrap()
}

#[test]
fn dhcp_as_the_original_decides() {
    // eth0 static, eth1 without address: DHCP on eth1 only.
    let c = cfg(
        r#"{"vif": [{"vif_number": 0, "pna": [{"pna_address": "192.0.2.10", "pbn": {"pbn_network": "192.0.2.0/24", "pbn_gateway": "192.0.2.1"}}]}, {"vif_number": 1, "pna": []}]}"#,
    );
    let i = interfaces(&c, true);
    assert!(!i[0].dhcp4 && i[1].dhcp4);
    // eth0 without a static IPv4 in a config that has IPv4: DHCP.
    let c = cfg(
        r#"{"vif": [{"vif_number": 0}, {"vif_number": 1, "pna": [{"pna_address": "192.0.2.10", "pbn": {"pbn_network": "192.0.2.0/24", "pbn_gateway": "192.0.2.1"}}]}]}"#,
    );
    assert!(interfaces(&c, true)[0].dhcp4);
    // IPv6-only: DHCP for none.
    let c = cfg(
        r#"{"vif": [{"vif_number": 0, "pna": [{"pna_address": "2001:db8::1", "pbn": {"pbn_network": "2001:db8::/64"}}]}, {"vif_number": 1}]}"#,
    );
    assert!(interfaces(&c, true).iter().all(|i| !i.dhcp4));
    // An IPv6 public address and a private IPv4 without gateway: still
    // IPv6-only (the platform's rule), the VLAN static.
    let c = cfg(
        r#"{"vif": [{"vif_number": 0, "pna": [{"pna_address": "2001:db8::1", "pbn": {"pbn_network": "2001:db8::/64", "pbn_gateway": "2001:db8::ff"}}]},
                    {"vif_number": 1, "pna": [{"pna_address": "10.9.0.5", "pvn": {"pvn_network": "10.9.0.0/24"}}]}]}"#,
    );
    assert!(c.ipv6_only());
    let i = interfaces(&c, true);
    assert!(!i[0].dhcp4 && !i[1].dhcp4);
    assert_eq!(i[1].v4, vec![("10.9.0.5/24".to_string(), None)]);
    // A public IPv4 without gateway does not make it dual-stack either.
    let c = cfg(
        r#"{"vif": [{"vif_number": 0, "pna": [{"pna_address": "192.0.2.9", "pbn": {"pbn_network": "192.0.2.0/24"}}]}]}"#,
    );
    assert!(c.ipv6_only());
    // eth0's only address is broken: DHCP, and the file says why.
    let c = cfg(
        r#"{"vif": [{"vif_number": 0, "pna": [{"pna_address": "192.0.2.300", "pbn": {"pbn_network": "192.0.2.0/24"}}]}]}"#,
    );
    let i = interfaces(&c, true);
    assert!(i[0].dhcp4);
    assert!(networkd_file(&i[0]).contains("# DHCP because vif[0].pna[0]"));
    // The vif field unreadable: eth0 gets DHCP.
    let c = cfg(r#"{"vif": "eth0"}"#);
    let i = interfaces(&c, true);
    assert_eq!((i[0].name.as_str(), i[0].dhcp4), ("eth0", true));
}

#[test]
fn hotplugged_interfaces() {
    let c = cfg(
        r#"{"vif": [{"vif_number": 0, "pna": [{"pna_address": "192.0.2.10", "pbn": {"pbn_network": "192.0.2.0/24"}}]}]}"#,
    );
    assert!(hotplug("eth3", 3, None, Some(&c), true).dhcp4);
    assert!(!hotplug("eth0", 0, None, Some(&c), true).dhcp4);
    assert!(hotplug("eth1", 1, None, None, true).dhcp4);
    // A predictable name: the config's vif 0 by its index.
    let i = hotplug("ens3", 0, None, Some(&c), true);
    assert_eq!(
        (i.name.as_str(), i.dhcp4, i.metric()),
        ("ens3", false, 1024)
    );
    // IPv6-only: a NIC the config does not name still gets DHCP; one
    // it names does not.
    let v6 = cfg(
        r#"{"vif": [{"vif_number": 0, "pna": [{"pna_address": "2001:db8::1", "pbn": {"pbn_network": "2001:db8::/64"}}]}, {"vif_number": 1}]}"#,
    );
    assert!(hotplug("eth2", 2, None, Some(&v6), true).dhcp4);
    assert!(!hotplug("eth1", 1, None, Some(&v6), true).dhcp4);
}

#[test]
fn keyfiles() {
    let i = Iface {
        v4: vec![("192.0.2.5/24".into(), Some("192.0.2.1".into()))],
        dhcp4: false,
        ..Iface::dhcp("eth1", 1)
    };
    let k = keyfile(&i);
    assert!(k.contains("interface-name=eth1\n"));
    assert!(
        k.contains("[ipv4]\naddress1=192.0.2.5/24,192.0.2.1\nmethod=manual\nroute-metric=1025\n"),
        "{k}"
    );
    assert!(k.contains("[ipv6]\nmethod=auto\n"));
    let uuid = render::connection_uuid("eth1");
    assert_eq!(uuid.len(), 36);
    assert_eq!(&uuid[14..15], "4");
    assert_eq!(uuid, render::connection_uuid("eth1"));
    assert_ne!(uuid, render::connection_uuid("eth2"));
}

#[test]
fn metrics_and_names() {
    assert_eq!(metric(0), 1024);
    assert_eq!(metric(3), 1027);
    assert_eq!(metric(5000), 2024);
    assert!(valid_iface("eth1"));
    assert!(!valid_iface("../x"));
    assert!(!valid_iface("a very long interface"));
}

/// eth0 public (the main default), eth1 public with an IPv4 and an IPv6
/// gateway, eth2 a private VLAN (no gateway).
const TWO_PUBLIC: &str = r#"{"vif": [
    {"vif_number": 0, "pna": [{"pna_address": "192.0.2.10", "pbn": {"pbn_network": "192.0.2.0/24", "pbn_gateway": "192.0.2.1"}}]},
    {"vif_number": 1, "pna": [
        {"pna_address": "198.51.100.10", "pbn": {"pbn_network": "198.51.100.0/24", "pbn_gateway": "198.51.100.1"}},
        {"pna_address": "198.51.100.11", "pbn": {"pbn_network": "198.51.100.0/24", "pbn_gateway": "198.51.100.1"}},
        {"pna_address": "2001:db8:1::10", "pbn": {"pbn_network": "2001:db8:1::/64", "pbn_gateway": "2001:db8:1::1"}}]},
    {"vif_number": 2, "pna": [{"pna_address": "10.9.0.5", "pvn": {"pvn_network": "10.9.0.0/24"}}]}
]}"#;

#[test]
fn only_public_nics_beyond_the_first_get_a_table() {
    let c = cfg(TWO_PUBLIC);
    let i = interfaces(&c, true);
    assert_eq!(
        i.iter().map(|i| i.source_routes).collect::<Vec<_>>(),
        [false, true, false]
    );
    let rules = routes::rules_of(&i[1]);
    assert_eq!(rules.len(), 3);
    assert_eq!(
        (
            rules[0].from.as_str(),
            rules[0].table,
            rules[0].main_priority,
            rules[0].table_priority
        ),
        ("198.51.100.10", 30001, 30002, 30003)
    );
    assert!(rules[2].v6 && rules[2].gateway == "2001:db8:1::1");
    assert!(
        rules
            .iter()
            .all(|r| routes::ours(r.main_priority, true, "main", Some(0))
                && routes::ours(r.table_priority, true, &r.table.to_string(), None))
    );
    // Not ours: an admin's rule in our range of another shape, a prefix
    // source, vif 0's priorities (where the kernel puts an admin's rule
    // added without one).
    assert!(!routes::ours(30003, true, "main", None));
    assert!(!routes::ours(30003, true, "30001", Some(0)));
    assert!(!routes::ours(30002, false, "main", Some(0)));
    assert!(!routes::ours(30001, true, "30000", None));
    assert!(!routes::ours(30000, true, "main", Some(0)));
    assert!(!routes::ours(30005, true, "30001", None));
    // Turned off: no table, no rule, in any stack.
    let off = interfaces(&c, false);
    assert!(off.iter().all(|i| !i.source_routes));
    for stack in STACKS {
        let text = render(stack, &off[1]);
        assert!(!text.contains("30001"), "{stack:?}: {text}");
    }
}

#[test]
fn source_rules_in_every_stack() {
    let i = &interfaces(&cfg(TWO_PUBLIC), true)[1];
    let n = networkd_file(i);
    assert!(
        n.contains("\n[Route]\nGateway=198.51.100.1\nMetric=1025\n"),
        "{n}"
    );
    assert!(
        n.contains("\n[Route]\nGateway=198.51.100.1\nTable=30001\n"),
        "{n}"
    );
    assert!(
        n.contains("\n[Route]\nGateway=2001:db8:1::1\nTable=30001\n"),
        "{n}"
    );
    assert!(n.contains(
        "\n[RoutingPolicyRule]\nFrom=198.51.100.11\nTable=254\nSuppressPrefixLength=0\nPriority=30002\n"
    ));
    assert!(
        n.contains("\n[RoutingPolicyRule]\nFrom=2001:db8:1::10\nTable=30001\nPriority=30003\n")
    );
    let k = keyfile(i);
    assert!(
        k.contains("route1=0.0.0.0/0,198.51.100.1\nroute1_options=table=30001\n"),
        "{k}"
    );
    assert!(k.contains(
        "routing-rule1=priority 30002 from 198.51.100.10 suppress_prefixlength 0 table 254\n"
    ));
    assert!(
        k.contains("routing-rule4=priority 30003 from 198.51.100.11 table 30001\n"),
        "{k}"
    );
    assert!(k.contains("[ipv6]\naddress1=2001:db8:1::10/64,2001:db8:1::1\nmethod=auto\nroute-metric=1025\nroute1=::/0,2001:db8:1::1\n"), "{k}");
    let f = ifupdown_file(i);
    assert!(
        f.contains("\tpost-up ip -4 route replace default via 198.51.100.1 dev eth1 table 30001\n"),
        "{f}"
    );
    assert!(f.contains("\tpost-up ip -4 rule del from 198.51.100.11 lookup 30001 priority 30003 2>/dev/null || true\n\tpost-up ip -4 rule add from 198.51.100.11 lookup 30001 priority 30003\n"), "{f}");
    assert!(f.contains("\tpre-down ip -6 rule del from 2001:db8:1::10 lookup main suppress_prefixlength 0 priority 30002 2>/dev/null || true\n"), "{f}");
    let p = netplan_file(i);
    assert!(
        p.contains(
            "        - to: \"0.0.0.0/0\"\n          via: \"198.51.100.1\"\n          table: 30001\n"
        ),
        "{p}"
    );
    assert!(
        p.contains(
            "        - to: \"198.51.100.0/24\"\n          scope: link\n          table: 30001\n"
        ),
        "{p}"
    );
    assert_eq!(p.matches("198.51.100.0/24").count(), 1, "{p}");
    assert!(
        p.contains(
            "        - to: \"2001:db8:1::/64\"\n          scope: link\n          table: 30001\n"
        ),
        "{p}"
    );
    assert!(p.contains("      routing-policy:\n        - from: \"198.51.100.10\"\n          table: 30001\n          priority: 30003\n"), "{p}");
    // eth0 has none.
    let first = &interfaces(&cfg(TWO_PUBLIC), true)[0];
    for stack in STACKS {
        assert!(!render(stack, first).contains("3000"), "{stack:?}");
    }
}

#[test]
fn netplan_files() {
    let c = cfg(
        r#"{"vif": [{"vif_number": 0, "mac": "AA:00:00:00:00:01", "pna": []}, {"vif_number": 2, "pna": [{"pna_address": "10.9.0.5", "pvn": {"pvn_network": "10.9.0.0/24"}}]},
            {"vif_number": 1, "pna": [{"pna_address": "192.0.2.10", "pbn": {"pbn_network": "192.0.2.0/24", "pbn_gateway": "192.0.2.1"}}]}]}"#,
    );
    let i = interfaces(&c, true);
    let p = netplan_file(&i[0]);
    assert!(p.contains("network:\n  version: 2\n  ethernets:\n    eth0:\n      match:\n        macaddress: \"aa:00:00:00:00:01\"\n      dhcp4: true\n"), "{p}");
    assert!(
        p.contains("dhcp4-overrides:\n        route-metric: 1024\n"),
        "{p}"
    );
    assert!(!p.contains("renderer"));
    let p = netplan_file(&i[2]);
    assert!(p.contains("    eth2:\n      dhcp4: false\n"), "{p}");
    assert!(
        p.contains("      addresses:\n        - \"10.9.0.5/24\"\n"),
        "{p}"
    );
    assert!(!p.contains("routes:"), "{p}");
    assert_eq!(
        file_of(Stack::Netplan, "eth1"),
        PathBuf::from("/etc/netplan/00-gandi-eth1.yaml")
    );
    assert_eq!(mode_of(Stack::Netplan), 0o600);
}

#[test]
fn bus_order_and_names() {
    use names::*;
    use std::cmp::Ordering::*;
    assert_eq!(bus_cmp("/sys/devices/vif-2", "/sys/devices/vif-10"), Less);
    assert_eq!(
        bus_cmp(
            "/sys/devices/pci0000:00/0000:00:1c.0",
            "/sys/devices/pci0000:00/0000:00:03.0"
        ),
        Greater
    );
    assert_eq!(bus_cmp("/a/virtio9", "/a/virtio10"), Less);
    assert_eq!(bus_cmp("/a/b", "/a/b/c"), Less);
    // A fixture sysfs: ens5 behind a root port, ens3 and ens4 on the root
    // bus, a bridge and a veth (no device) left out.
    let dir = tempfile::tempdir().unwrap();
    let sys = dir.path();
    let nic = |name: &str, dev: &str, kind: &str, mac: &str| {
        let devdir = sys.join("devices").join(dev);
        std::fs::create_dir_all(&devdir).unwrap();
        let net = sys.join("class/net").join(name);
        std::fs::create_dir_all(&net).unwrap();
        std::fs::write(net.join("type"), format!("{kind}\n")).unwrap();
        std::fs::write(net.join("address"), format!("{mac}\n")).unwrap();
        std::os::unix::fs::symlink(&devdir, net.join("device")).unwrap();
    };
    nic(
        "ens5",
        "pci0000:00/0000:00:1c.0/0000:01:00.0/virtio5",
        "1",
        "aa:00:00:00:00:05",
    );
    nic(
        "ens3",
        "pci0000:00/0000:00:03.0/virtio0",
        "1",
        "aa:00:00:00:00:03",
    );
    nic(
        "ens4",
        "pci0000:00/0000:00:04.0/virtio1",
        "1",
        "aa:00:00:00:00:04",
    );
    nic(
        "ib0",
        "pci0000:00/0000:00:02.0/ib",
        "32",
        "aa:00:00:00:00:20",
    );
    std::fs::create_dir_all(sys.join("class/net/br0")).unwrap();
    std::fs::write(sys.join("class/net/br0/type"), "1\n").unwrap();
    let order = bus_order(sys);
    assert_eq!(order, ["ens3", "ens4", "ens5"]);
    assert_eq!(index_of("ens5", &order), Some(2));
    assert_eq!(index_of("eth7", &order), Some(7));
    assert_eq!(index_of("br0", &order), None);
    assert!(nodhcp_means("eth0", "ens3", Some(0)));
    assert!(!nodhcp_means("eth0", "ens4", Some(1)));
    assert!(nodhcp_means("ens4", "ens4", Some(1)));
    // The config's vifs named as the NICs are: by MAC, else by place.
    let c = cfg(
        r#"{"vif": [{"vif_number": 0, "pna": []}, {"vif_number": 1, "mac": "aa:00:00:00:00:05", "pna": []}, {"vif_number": 2, "mac": "aa:00:00:00:00:99", "pna": []}]}"#,
    );
    let mut i = interfaces(&c, true);
    name_live(&mut i, &order, sys);
    assert_eq!(
        i.iter().map(|i| i.name.as_str()).collect::<Vec<_>>(),
        ["ens3", "ens5", "eth2"]
    );
    // A vif without MAC never takes a name a MAC gave another.
    let c2 = cfg(
        r#"{"vif": [{"vif_number": 0, "mac": "aa:00:00:00:00:04", "pna": []}, {"vif_number": 1, "pna": []}]}"#,
    );
    let mut k = interfaces(&c2, true);
    name_live(&mut k, &order, sys);
    assert_eq!(
        k.iter().map(|i| i.name.as_str()).collect::<Vec<_>>(),
        ["ens4", "eth1"]
    );
    assert!(
        i[2].note
            .as_deref()
            .unwrap()
            .contains("no interface has aa:00:00:00:00:99")
    );
    assert_eq!(i[1].metric(), 1025);
    // Offline: the ethN names.
    let mut j = interfaces(&c, true);
    name_live(&mut j, &[], &sys.join("none"));
    assert_eq!(j[0].name, "eth0");
}

proptest::proptest! {
    #[test]
    fn bus_order_is_a_total_order(a in "[a-z0-9:./-]{0,30}", b in "[a-z0-9:./-]{0,30}", c in "[a-z0-9:./-]{0,30}") {
        use names::bus_cmp;
        proptest::prop_assert_eq!(bus_cmp(&a, &b), bus_cmp(&b, &a).reverse());
        if bus_cmp(&a, &b).is_le() && bus_cmp(&b, &c).is_le() {
            proptest::prop_assert!(bus_cmp(&a, &c).is_le());
        }
    }

    #[test]
    fn every_stack_renders_any_interface(
        index in 0u32..100,
        v4 in proptest::collection::vec((0u32..u32::MAX, 1u8..=32, proptest::option::of(0u32..u32::MAX)), 0..3),
        dhcp in proptest::bool::ANY,
    ) {
        let v4: Vec<(String, Option<String>)> = v4
            .into_iter()
            .map(|(a, l, g)| (format!("{}/{l}", std::net::Ipv4Addr::from(a)), g.map(|g| std::net::Ipv4Addr::from(g).to_string())))
            .collect();
        let on = index > 0 && v4.iter().any(|(_, g)| g.is_some());
        let i = Iface { v4, dhcp4: dhcp, source_routes: on, ..Iface::dhcp(&format!("eth{index}"), index) };
        for stack in STACKS {
            let text = render(stack, &i);
            proptest::prop_assert!(text.starts_with("# Written by gandi-vm"));
            proptest::prop_assert_eq!(text.contains(&format!("{}", routes::table_of(index))) && on, on);
        }
    }
}

fn touch(root: &std::path::Path, path: &str, text: &str) {
    let p = root.join(path.trim_start_matches('/'));
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

#[test]
fn netplan_only_when_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    touch(root, "/usr/sbin/netplan", "");
    touch(root, "/usr/sbin/NetworkManager", "");
    std::fs::create_dir_all(root.join("etc/NetworkManager")).unwrap();
    std::fs::create_dir_all(root.join("etc/netplan")).unwrap();
    let tree = Tree::open(root).unwrap();
    // Installed, no file of anyone's: NetworkManager runs the network.
    assert_eq!(detect_stack(&tree), Stack::NetworkManager);
    // Our own file left there does not make netplan the stack.
    touch(root, "/etc/netplan/00-gandi-eth0.yaml", "network: {}\n");
    assert_eq!(detect_stack(&tree), Stack::NetworkManager);
    // Another's file, in any of its folders, does.
    touch(root, "/lib/netplan/01-netcfg.yaml", "network: {}\n");
    assert_eq!(detect_stack(&tree), Stack::Netplan);
    std::fs::remove_file(root.join("lib/netplan/01-netcfg.yaml")).unwrap();
    touch(root, "/etc/netplan/50-cloud-init.yaml", "network: {}\n");
    assert_eq!(detect_stack(&tree), Stack::Netplan);
    // Not installed: its files reach no one.
    std::fs::remove_file(root.join("usr/sbin/netplan")).unwrap();
    assert_eq!(detect_stack(&tree), Stack::NetworkManager);
}

#[test]
fn a_stack_change_removes_our_unedited_file_of_the_other() {
    use crate::platform::ledger::Ledger;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let tree = Tree::open(root).unwrap();
    let state = std::path::Path::new("/var/lib/gandi");
    let ifaces = interfaces(&cfg(TWO_PUBLIC), true);
    let mut ledger = Ledger::load(&tree, state);
    for i in &ifaces {
        apply_one(&tree, &mut ledger, Stack::Netplan, i).unwrap();
    }
    // The admin edits eth1's file; eth0's is as we wrote it.
    let edited = root.join("etc/netplan/00-gandi-eth1.yaml");
    let mut text = std::fs::read_to_string(&edited).unwrap();
    text.push_str("# mine\n");
    std::fs::write(&edited, &text).unwrap();
    for i in &ifaces {
        apply_one(&tree, &mut ledger, Stack::NetworkManager, i).unwrap();
    }
    assert!(!root.join("etc/netplan/00-gandi-eth0.yaml").exists());
    assert_eq!(std::fs::read_to_string(&edited).unwrap(), text);
    for name in ["eth0", "eth1"] {
        assert!(tree.exists(file_of(Stack::NetworkManager, name)), "{name}");
    }
    // Nothing else of anyone's is touched.
    assert_eq!(tree.list("/etc/netplan").unwrap().len(), 1);
}
