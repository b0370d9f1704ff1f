//! Configs in the shape the platform writes them (`vm_conf.user`, several
//! keys in one CRLF string, `vm_conf.run`, `/gandi/script` with arguments,
//! a private VLAN, an IPv6-only VM, four resolvers), applied with
//! `bootstrap --root` on fixture trees.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)] // tests and benches: a failure is a panic, output is the report

mod common;

use common::fixtures::*;
use common::*;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

const KEYS: [&str; 3] = [PLATFORM_KEY, USER_KEY, ADMIN_KEY];

fn bootstrap(env: &Env, root: &Path, config: &str, extra: &[(&str, &[u8], u32)]) -> String {
    let mut entries: Vec<(&str, &[u8], u32)> = vec![("gandi/config", config.as_bytes(), 0o600)];
    entries.extend_from_slice(extra);
    let img = image(env.path(), "swap.img", &tar(&entries), None);
    let out = Command::new(BIN)
        .args(["bootstrap", "--kernel-release", RELEASE, "--root"])
        .arg(root)
        .arg("--device")
        .arg(&img)
        .env("GANDI_CONFIG", env.config())
        .env_remove("JOURNAL_STREAM")
        .output()
        .unwrap();
    format!("{}{}", stdout(&out), stderr(&out))
}

fn tree() -> (Env, PathBuf) {
    let env = Env::new();
    root_settings(&env.config(), &[]);
    let root = root_tree(env.path(), false);
    let g = root.join("etc/group");
    let mut text = fs::read_to_string(&g).unwrap();
    text.push_str("users:x:100:\n");
    fs::write(g, text).unwrap();
    fs::write(
        root.join("etc/gshadow"),
        "root:*::\ndaemon:*::\nusers:*::\n",
    )
    .unwrap();
    (env, root)
}

fn read(root: &Path, p: &str) -> String {
    fs::read_to_string(root.join(p)).unwrap_or_default()
}

fn step(root: &Path, name: &str) -> (String, String) {
    let s = root_status(root);
    let st = fixtures::step(&s, "bootstrap", name);
    (
        st["result"].as_str().unwrap_or_default().into(),
        st["detail"].as_str().unwrap_or_default().into(),
    )
}

#[test]
fn the_platforms_full_config() {
    if !system_test(&["mkswap", "useradd", "blkid"]) {
        return;
    }
    let (env, root) = tree();
    let config = serde_json::json!({
        "vm_hostname": "web1.example.net",
        "vm_conf": {
            "user": "alice",
            "password": HASH,
            "ssh_key": format!("{}\r\n{}\r\n\r\n{}\r\n", KEYS[0], KEYS[1], KEYS[2]),
            "run": "echo hello",
            "script_args": "--site web1"
        },
        "nameservers": ["192.0.2.53", "192.0.2.54", "192.0.2.55", "2001:db8::53", "2001:db8::54"],
        "vif": [
            {"vif_number": 0, "pna": [
                {"pna_address": "192.0.2.10", "pbn": {"pbn_network": "192.0.2.0/24", "pbn_gateway": "192.0.2.1"}},
                {"pna_address": "2001:db8::10", "pbn": {"pbn_network": "2001:db8::/64", "pbn_gateway": "2001:db8::1"}}]},
            {"vif_number": 1, "pna": [
                {"pna_address": "10.8.0.4", "pvn": {"pvn_network": "10.8.0.0/24"}}]}
        ]
    })
    .to_string();
    let said = bootstrap(
        &env,
        &root,
        &config,
        &[("gandi/script", b"#!/bin/sh\necho script\n", 0o700)],
    );
    assert!(said.contains("gandi-vm bootstrap: ok"), "{said}");
    // The user, in the first of wheel, admin, users the tree has.
    let passwd = read(&root, "etc/passwd");
    let alice = passwd
        .lines()
        .find(|l| l.starts_with("alice:"))
        .expect(&passwd);
    assert_eq!(alice.split(':').nth(3), Some("100"), "{alice}");
    assert!(alice.ends_with(":/bin/bash"), "{alice}");
    assert!(step(&root, "user").1.contains("group users"));
    // The password for root and for her; every key for both.
    let shadow = read(&root, "etc/shadow");
    for who in ["root", "alice"] {
        let line = shadow
            .lines()
            .find(|l| l.starts_with(&format!("{who}:")))
            .unwrap();
        assert_eq!(line.split(':').nth(1), Some(HASH), "{who}");
    }
    for file in [
        "root/.ssh/authorized_keys",
        "home/alice/.ssh/authorized_keys",
    ] {
        let keys = read(&root, file);
        for k in KEYS {
            assert!(keys.contains(k), "{file}: {k} missing in {keys}");
        }
        assert!(!keys.contains('\r'), "{file}");
    }
    let ak = fs::metadata(root.join("home/alice/.ssh/authorized_keys")).unwrap();
    assert_eq!(
        (ak.uid(), ak.mode() & 0o777),
        (fs::metadata(root.join("home/alice")).unwrap().uid(), 0o600)
    );
    // The VLAN static, no DHCP; IPv6 takes router advertisements.
    let eth1 = read(&root, "etc/systemd/network/50-gandi-eth1.network");
    assert!(
        eth1.contains("DHCP=no") && eth1.contains("Address=10.8.0.4/24"),
        "{eth1}"
    );
    assert!(!eth1.contains("Gateway"), "{eth1}");
    let eth0 = read(&root, "etc/systemd/network/50-gandi-eth0.network");
    assert!(
        eth0.contains("IPv6AcceptRA=yes") && eth0.contains("Address=2001:db8::10/64"),
        "{eth0}"
    );
    // Three resolvers (two IPv4, one IPv6) and the platform's options.
    let resolv = read(&root, "etc/resolv.conf");
    let servers: Vec<&str> = resolv
        .lines()
        .filter_map(|l| l.strip_prefix("nameserver "))
        .collect();
    assert_eq!(servers.len(), 4, "{resolv}"); // ours, then the admin's own
    assert!(
        servers[..2].iter().all(|s| s.starts_with("192.0.2.")),
        "{resolv}"
    );
    assert!(servers[2].starts_with("2001:db8::"), "{resolv}");
    assert!(
        resolv.contains("options timeout:1 attempts:3 rotate\n"),
        "{resolv}"
    );
    assert!(step(&root, "resolvers").1.contains("3 of the 5 given"));
    // The hostname files.
    assert_eq!(read(&root, "etc/mailname"), "web1.example.net\n");
    assert!(read(&root, "etc/hosts").contains("192.0.2.10\tweb1.example.net web1"));
    // eth0's address changes, not the name: the hosts line follows, the
    // admin's hostname stays.
    fs::write(root.join("etc/hostname"), "mine\n").unwrap();
    let moved = config.replace("192.0.2.10", "192.0.2.20");
    bootstrap(
        &env,
        &root,
        &moved,
        &[("gandi/script", b"#!/bin/sh\necho script\n", 0o700)],
    );
    assert_eq!(read(&root, "etc/hostname"), "mine\n");
    let hosts = read(&root, "etc/hosts");
    assert!(
        hosts.contains("192.0.2.20\tweb1.example.net web1") && !hosts.contains("192.0.2.10"),
        "{hosts}"
    );
    // The script and the command wait for postboot (deferred with --root).
    let out = Command::new(BIN)
        .args(["postboot", "--root"])
        .arg(&root)
        .env("GANDI_CONFIG", env.config())
        .env_remove("JOURNAL_STREAM")
        .output()
        .unwrap();
    assert!(out.status.success());
    let s = root_status(&root);
    for name in ["script", "run[0]"] {
        assert_eq!(
            fixtures::step(&s, "postboot", name)["result"],
            "deferred",
            "{name}"
        );
    }
}

#[test]
fn an_ipv6_only_vm_with_a_private_ipv4() {
    if !system_test(&["mkswap", "blkid"]) {
        return;
    }
    let (env, root) = tree();
    let config = serde_json::json!({
        "vm_conf": {"ssh_key": KEYS[0]},
        "nameservers": ["192.0.2.53", "2001:db8::53", "2001:db8::54", "2001:db8::55", "2001:db8::56"],
        "vif": [
            {"vif_number": 0, "pna": [
                {"pna_address": "2001:db8::10", "pbn": {"pbn_network": "2001:db8::/64", "pbn_gateway": "2001:db8::1"}}]},
            {"vif_number": 1, "pna": [
                {"pna_address": "10.8.0.4", "pvn": {"pvn_network": "10.8.0.0/24", "pvn_gateway": "10.8.0.1"}}]}
        ]
    })
    .to_string();
    let said = bootstrap(&env, &root, &config, &[]);
    assert!(said.contains("gandi-vm bootstrap: ok"), "{said}");
    // IPv6-only (the private IPv4 does not count): no DHCP on eth0.
    let eth0 = read(&root, "etc/systemd/network/50-gandi-eth0.network");
    assert!(eth0.contains("DHCP=no"), "{eth0}");
    let eth1 = read(&root, "etc/systemd/network/50-gandi-eth1.network");
    assert!(
        eth1.contains("DHCP=no") && eth1.contains("Address=10.8.0.4/24"),
        "{eth1}"
    );
    // Three IPv6 resolvers, none IPv4.
    let resolv = read(&root, "etc/resolv.conf");
    let ours: Vec<&str> = resolv
        .lines()
        .take_while(|l| !l.starts_with("# END"))
        .filter_map(|l| l.strip_prefix("nameserver "))
        .collect();
    assert_eq!(ours.len(), 3, "{resolv}");
    assert!(ours.iter().all(|s| s.contains(':')), "{resolv}");
    // The hosts line: no static IPv4 on eth0.
    let hosts = read(&root, "etc/hosts");
    assert!(!hosts.contains("10.8.0.4"), "{hosts}");
}
