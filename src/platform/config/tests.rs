use super::*;

const GOOD: &str = r#"{
    "vm_hostname": "web1.example.net",
    "vm_conf": {"password": "$6$saltsalt$abcdefghijklmnopqrstuv",
                "user": "alice",
                "ssh_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE admin@x\r\nssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ alice@x\r\n\r\necdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAy ops@y\n",
                "run": "touch /tmp/mark",
                "script_args": "--db prod"},
    "nameservers": ["192.0.2.53", "2001:db8::53"],
    "vif": [{"vif_number": 0, "pna": [
        {"pna_address": "192.0.2.10", "pbn": {"pbn_network": "192.0.2.0/24", "pbn_gateway": "192.0.2.1"}},
        {"pna_address": "2001:db8::10", "pbn": {"pbn_network": "2001:db8::/64", "pbn_gateway": "2001:db8::1"}}
    ]}, {"vif_number": 1, "pna": [
        {"pna_address": "10.8.0.4", "pvn": {"pvn_network": "10.8.0.0/24"}}
    ]}],
    "something_new": {"ignored": true}
}"#;

#[test]
fn reads_the_platforms_fields_and_notes_unknown_ones() {
    let c = read(GOOD.as_bytes()).unwrap();
    assert!(c.problems.is_empty(), "{:?}", c.problems);
    assert_eq!(c.hostname.as_deref(), Some("web1.example.net"));
    assert_eq!(c.user.as_deref(), Some("alice"));
    assert_eq!(c.keys.len(), 3, "{:?}", c.keys);
    assert!(c.keys.iter().all(|k| !k.contains('\r')));
    assert_eq!(c.run, vec!["touch /tmp/mark"]);
    assert_eq!(c.script_args.as_deref(), Some("--db prod"));
    assert_eq!(c.vifs[0].addrs.len(), 2);
    let vlan = &c.vifs[1].addrs[0];
    assert!(vlan.private && vlan.prefix == 24 && vlan.gateway.is_none());
    assert!(!c.ipv6_only());
    let notes: Vec<&str> = c.notes.iter().map(|n| n.path.as_str()).collect();
    assert_eq!(notes, vec!["something_new"]);
    // Keys as a list; run as a list.
    let c = read(br#"{"vm_conf": {"ssh_key": ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE a", "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ b"], "run": ["a", "b"]}}"#).unwrap();
    assert_eq!((c.keys.len(), c.run.len()), (2, 2));
    let c = read(br#"{"vm_conf": null}"#).unwrap();
    assert_eq!(c, Config::default());
    assert_eq!(read(b"{}").unwrap(), Config::default());
    assert!(read(b"[1]").is_err());
    let e = read(b"{not json").unwrap_err();
    assert_eq!(e.at, Some((1, 2)));
}

#[test]
fn our_old_fields_are_noted_with_the_platforms_names() {
    let c = read(br#"{"login": "alice", "keys": ["x"], "run": "y", "gandi_vm_cleaned": true}"#)
        .unwrap();
    assert!(c.problems.is_empty());
    assert_eq!(c.user, None);
    assert!(c.keys.is_empty() && c.run.is_empty());
    let notes: Vec<String> = c.notes.iter().map(ToString::to_string).collect();
    assert_eq!(notes.len(), 3, "{notes:?}");
    assert!(notes[0].contains("login") && notes[0].contains("vm_conf.user"));
    assert!(notes[1].contains("vm_conf.ssh_key"));
    assert!(notes[2].contains("vm_conf.run"));
}

#[test]
fn every_bad_element_is_reported_and_the_rest_kept() {
    let text = r#"{"vm_hostname": "bad_host!", "vm_conf": {"password": "hunter2",
        "ssh_key": "not a key\nfrom=\"10.0.0.0/8\",no-pty ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE ok",
        "user": "Root", "run": ["ok", "", 3], "script_args": "a\nb"},
        "nameservers": ["x", "192.0.2.1", 7],
        "vif": [{"vif_number": 1, "mac": "zz", "pna": [{"pna_address": "10.0.0.1", "pbn": {"pbn_network": "2001:db8::/64"}}]},
                {"vif_number": 1}, {"vif_number": "zero"}, {"vif_number": 4294967295},
                {"vif_number": 2, "pna": [{"pna_address": "10.0.2.5", "pbn": {"pbn_network": "10.0.2.0/24"}},
                                          {"pna_address": "10.0.3.5", "pvn": {"pvn_network": "10.0.3.0/24"}, "pbn": {}},
                                          {"pna_address": "10.0.4.5"}]}]}"#;
    let c = read(text.as_bytes()).unwrap();
    let paths: Vec<&str> = c.problems.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(
        paths,
        vec![
            "vm_hostname",
            "vm_conf.password",
            "vm_conf.user",
            "vm_conf.ssh_key",
            "vm_conf.run[1]",
            "vm_conf.run[2]",
            "vm_conf.script_args",
            "nameservers[0]",
            "nameservers[2]",
            "vif[0].mac",
            "vif[0].pna[0].pbn.pbn_network",
            "vif[1].vif_number",
            "vif[2].vif_number",
            "vif[3].vif_number",
            "vif[4].pna[1]",
            "vif[4].pna[2]",
        ]
    );
    assert!(c.problems.iter().all(|p| p.at.is_some()));
    assert!(
        c.problems[3].message.starts_with("line 1:"),
        "{}",
        c.problems[3]
    );
    assert_eq!(c.nameservers, vec!["192.0.2.1".parse::<IpAddr>().unwrap()]);
    assert_eq!(c.keys.len(), 1);
    assert!(c.keys[0].starts_with("from="));
    let numbers: Vec<u32> = c.vifs.iter().map(|v| v.number).collect();
    assert_eq!(numbers, vec![1, 2]);
    assert_eq!(c.vifs[1].addrs.len(), 1);
    // eth1 had a bad address and no IPv4 left; eth0 is named by none
    // of the entries, one of which could not be read.
    assert!(c.unusable.contains_key(&1));
    assert!(c.unusable.contains_key(&0));
    assert_eq!(c.run, vec!["ok"]);
}

proptest::proptest! {
    #![proptest_config(crate::testing::proptest_config(256))]

    /// Keys given in one string, LF or CRLF, blank lines anywhere, are
    /// each taken; a bad line fails only itself.
    #[test]
    fn keys_of_one_string(n in 1usize..6, crlf in proptest::bool::ANY, blank in 0usize..3, bad in proptest::option::of(0usize..6)) {
        let mut lines: Vec<String> = (0..n)
            .map(|i| format!("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE{i:04} k{i}"))
            .collect();
        if let Some(b) = bad.filter(|b| *b < n) {
            lines[b] = "not a key".into();
        }
        let nl = if crlf { "\r\n" } else { "\n" };
        let text = lines.join(&nl.repeat(blank + 1));
        let doc = serde_json::json!({"vm_conf": {"ssh_key": text}}).to_string();
        let c = read(doc.as_bytes()).unwrap();
        let good = n - usize::from(bad.is_some_and(|b| b < n));
        proptest::prop_assert_eq!(c.keys.len(), good);
        proptest::prop_assert_eq!(c.problems.len(), n - good);
        proptest::prop_assert!(c.keys.iter().all(|k| !k.contains(['\r', '\n'])));
    }
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
