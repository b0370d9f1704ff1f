use super::*;

const GOOD: &str = r#"{
    "vm_hostname": "web1.example.net",
    "vm_conf": {"password": "$6$saltsalt$abcdefghijklmnopqrstuv", "ssh_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE admin@x"},
    "nameservers": ["192.0.2.53", "2001:db8::53"],
    "vif": [{"vif_number": 0, "pna": [
        {"pna_address": "192.0.2.10", "pbn": {"pbn_network": "192.0.2.0/24", "pbn_gateway": "192.0.2.1"}},
        {"pna_address": "2001:db8::10", "pbn": {"pbn_network": "2001:db8::/64", "pbn_gateway": "2001:db8::1"}}
    ]}],
    "login": "alice",
    "keys": ["ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ alice@x"],
    "run": ["touch /tmp/mark", "echo done"],
    "something_new": {"ignored": true}
}"#;

#[test]
fn reads_known_fields_and_ignores_unknown_ones() {
    let c = read(GOOD.as_bytes()).unwrap();
    assert!(c.problems.is_empty(), "{:?}", c.problems);
    assert_eq!(c.hostname.as_deref(), Some("web1.example.net"));
    assert_eq!(c.vifs[0].addrs.len(), 2);
    assert_eq!(c.run.len(), 2);
    assert_eq!(c.root_keys.len(), 2);
    assert_eq!(c.keys.len(), 1);
    let c = read(br#"{"run": "echo one", "vm_conf": null}"#).unwrap();
    assert_eq!(c.run, vec!["echo one"]);
    assert_eq!(read(b"{}").unwrap(), Config::default());
    assert!(read(b"[1]").is_err());
    let e = read(b"{not json").unwrap_err();
    assert_eq!(e.at, Some((1, 2)));
}

#[test]
fn every_bad_element_is_reported_and_the_rest_kept() {
    let text = r#"{"vm_hostname": "bad_host!", "vm_conf": {"password": "hunter2", "ssh_key": 5},
        "nameservers": ["x", "192.0.2.1", 7], "login": "Root",
        "keys": ["not a key", "from=\"10.0.0.0/8\",no-pty ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE ok"],
        "vif": [{"vif_number": 1, "mac": "zz", "pna": [{"pna_address": "10.0.0.1", "pbn": {"pbn_network": "2001:db8::/64"}}]},
                {"vif_number": 1}, {"vif_number": "zero"}, {"vif_number": 4294967295},
                {"vif_number": 2, "pna": [{"pna_address": "10.0.2.5", "pbn": {"pbn_network": "10.0.2.0/24"}}]}],
        "run": ["ok", "", 3]}"#;
    let c = read(text.as_bytes()).unwrap();
    let paths: Vec<&str> = c.problems.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(
        paths,
        vec![
            "vm_hostname",
            "vm_conf.password",
            "vm_conf.ssh_key",
            "keys[0]",
            "login",
            "nameservers[0]",
            "nameservers[2]",
            "vif[0].mac",
            "vif[0].pna[0].pbn.pbn_network",
            "vif[1].vif_number",
            "vif[2].vif_number",
            "vif[3].vif_number",
            "run[1]",
            "run[2]",
        ]
    );
    assert!(c.problems.iter().all(|p| p.at.is_some()));
    assert_eq!(c.nameservers, vec!["192.0.2.1".parse::<IpAddr>().unwrap()]);
    assert_eq!(c.root_keys.len(), 1);
    assert!(c.root_keys[0].starts_with("from="));
    let numbers: Vec<u32> = c.vifs.iter().map(|v| v.number).collect();
    assert_eq!(numbers, vec![1, 2]);
    assert_eq!(c.vifs[1].addrs.len(), 1);
    // eth1 had a bad address and no IPv4 left; eth0 is named by none
    // of the entries, one of which could not be read.
    assert!(c.unusable.contains_key(&1));
    assert!(c.unusable.contains_key(&0));
    assert_eq!(c.run, vec!["ok"]);
}

#[test]
fn key_lines() {
    for good in [
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE",
        "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ me@host with blanks",
        r#"from="10.0.0.0/8" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE x"#,
        r#"command="echo \"hi there\"",no-pty ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAy"#,
        "restrict sk-ssh-ed25519@openssh.com AAAAGnNrLXNzaC1lZDI1NTE5QG9w",
    ] {
        assert!(check_key_line(good).is_ok(), "{good}");
    }
    assert_eq!(
        check_key_line("not a key").unwrap_err(),
        "not an SSH public key line (type, then the key in base64)"
    );
    for bad in [
        "",
        "hunter2",
        "ssh-ed25519",
        "ssh-ed25519 short",
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE\nssh-rsa AAAA",
        r#"from="10.0.0.0/8 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE"#,
        r#"bad option ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE"#,
    ] {
        assert!(check_key_line(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn hashes() {
    assert!(valid_hash(
        "$6$rounds=5000$saltsalt$abcdefghijklmnopqrstuvwxyz"
    ));
    assert!(valid_hash("$y$j9T$abcdefgh$ABCDEFGHIJKLMNOPQRSTUV"));
    assert!(valid_hash("!"));
    assert!(!valid_hash("hunter2"));
    assert!(!valid_hash("$6$salt$has:colon:inside"));
    assert!(!valid_hash("$6$salt$short"));
    assert!(!valid_hash("$9$salt$abcdefghijkl"));
}
