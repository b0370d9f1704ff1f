//! `gandi-vm bootstrap --root` on temp trees with fixture swap images (a
//! file with a tar archive at 512 KiB): what is applied, what is kept as
//! the admin left it, what one bad field does, hostile archives; and the
//! root disk growth on loop devices.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)] // tests and benches: a failure is a panic, output is the report

mod common;

use common::fixtures::*;
use common::*;
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

fn bootstrap(env: &Env, root: &Path, device: &Path) -> std::process::Output {
    Command::new(BIN)
        .args(["bootstrap", "--kernel-release", RELEASE, "--root"])
        .arg(root)
        .arg("--device")
        .arg(device)
        .env("GANDI_CONFIG", env.config())
        .env_remove("JOURNAL_STREAM")
        .output()
        .unwrap()
}

fn result(root: &Path, name: &str) -> String {
    step(&root_status(root), "bootstrap", name)["result"]
        .as_str()
        .unwrap()
        .to_string()
}

fn detail(root: &Path, name: &str) -> String {
    step(&root_status(root), "bootstrap", name)["detail"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn read(root: &Path, p: &str) -> String {
    fs::read_to_string(root.join(p)).unwrap_or_default()
}

/// A fresh tree and the settings for it.
fn setup(lines: &[&str]) -> (Env, PathBuf) {
    let env = Env::new();
    root_settings(&env.config(), lines);
    let root = root_tree(env.path(), false);
    (env, root)
}

/// Every file of the tree but the per-run status.
fn tree_state(root: &Path) -> Vec<(PathBuf, (Vec<u8>, u32))> {
    snapshot(root)
        .into_iter()
        .filter(|(p, _)| !p.starts_with(root.join("run")))
        .collect()
}

#[test]
fn applies_the_config_to_a_tree_and_a_second_run_keeps_it() {
    if !system_test(&["mkswap", "depmod", "useradd", "gzip", "blkid"]) {
        return;
    }
    let (env, root) = setup(&[]);
    let img = image(env.path(), "swap.img", &good_archive(env.path()), None);
    let out = bootstrap(&env, &root, &img);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("gandi-vm bootstrap: ok"));

    let mode = |p: &str| fs::metadata(root.join(p)).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode("gandi"), 0o700);
    assert_eq!(mode("gandi/config"), 0o600);
    let shadow = read(&root, "etc/shadow");
    assert!(
        shadow.starts_with(&format!("root:{HASH}:19000:")),
        "{shadow}"
    );
    assert!(shadow.contains("daemon:*:19000"));
    assert_eq!(mode("etc/shadow"), 0o640);
    assert!(read(&root, "etc/passwd").contains("alice:x:"));
    assert!(read(&root, "home/alice/.ssh/authorized_keys").contains(USER_KEY));
    let keys = read(&root, "root/.ssh/authorized_keys");
    assert!(keys.starts_with(ADMIN_KEY), "{keys}");
    assert!(keys.contains(PLATFORM_KEY) && keys.contains(USER_KEY));
    assert!(keys.contains("# BEGIN gandi-vm: SSH keys from the platform"));
    // The admin's file keeps its mode; the one we make is the user's alone.
    assert_eq!(mode("root/.ssh/authorized_keys"), 0o644);
    assert_eq!(mode("home/alice/.ssh/authorized_keys"), 0o600);
    assert_eq!(read(&root, "etc/hostname"), "web1.example.net\n");
    let hosts = read(&root, "etc/hosts");
    // The name at eth0's address, as the platform's script writes it.
    assert!(
        hosts.contains("192.0.2.10\tweb1.example.net web1"),
        "{hosts}"
    );
    assert!(hosts.contains("10.1.1.1\tbackup"));
    let resolv = read(&root, "etc/resolv.conf");
    let first_ns = resolv
        .lines()
        .find(|l| l.starts_with("nameserver"))
        .unwrap();
    assert_eq!(first_ns, "nameserver 192.0.2.53");
    assert!(resolv.contains("search example.net"));
    let eth0 = read(&root, "etc/systemd/network/50-gandi-eth0.network");
    for l in [
        "Name=eth0",
        "DHCP=no",
        "Address=192.0.2.10/24",
        "Gateway=192.0.2.1",
        "Address=2001:db8::10/64",
        "Gateway=2001:db8::1",
    ] {
        assert!(eth0.contains(l), "{l} missing in {eth0}");
    }
    assert!(read(&root, "etc/systemd/network/50-gandi-eth1.network").contains("DHCP=ipv4"));
    assert!(
        root.join(format!("lib/modules/{RELEASE}/kernel/drivers/README"))
            .exists()
    );
    assert!(
        root.join(format!("lib/modules/{RELEASE}/modules.dep"))
            .exists()
    );
    assert_eq!(read(&root, &format!("boot/System.map-{RELEASE}")), "map\n");
    let probe = sh(Command::new("blkid").args(["-p", "-o", "export"]).arg(&img));
    assert!(
        probe.contains("TYPE=swap") && probe.contains("LABEL=swap"),
        "{probe}"
    );
    // The state of what was applied: root-only, no value in it.
    assert_eq!(mode("var/lib/gandi"), 0o700);
    assert_eq!(mode("var/lib/gandi/applied.json"), 0o600);
    assert!(!read(&root, "var/lib/gandi/applied.json").contains(HASH));
    for name in [
        "archive",
        "config",
        "password",
        "user",
        "root-keys",
        "hostname",
        "resolvers",
        "network",
        "modules",
        "swap",
    ] {
        assert!(
            ["changed", "unchanged"].contains(&result(&root, name).as_str()),
            "{name}: {}",
            detail(&root, name)
        );
    }
    for name in ["root-disk", "plugins"] {
        assert_eq!(result(&root, name), "deferred", "{name}");
    }
    // The record of what was applied: written.
    assert_eq!(result(&root, "state"), "changed");

    // Twice, same platform config: nothing changes, values are "kept".
    let before = tree_state(&root);
    let image_before = fs::read(&img).unwrap();
    let out = bootstrap(&env, &root, &img);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(before, tree_state(&root));
    assert!(
        fs::read(&img).unwrap() == image_before,
        "the swap image changed"
    );
    for name in ["password", "hostname", "resolvers", "modules"] {
        assert_eq!(result(&root, name), "kept", "{name}");
    }
    assert_eq!(result(&root, "network"), "unchanged");
    assert!(detail(&root, "network").contains("eth0 kept"));
    assert_eq!(result(&root, "state"), "unchanged");
}

#[test]
fn the_admin_has_the_last_word_until_the_platform_changes_a_value() {
    if !system_test(&["mkswap", "depmod", "useradd", "gzip"]) {
        return;
    }
    let (env, root) = setup(&[]);
    let img = image(env.path(), "swap.img", &good_archive(env.path()), None);
    assert!(bootstrap(&env, &root, &img).status.success());
    // The admin: a new password, the platform's key removed (a leaked one),
    // another hostname, an edited network file.
    let admin_hash = "$6$adminsalt$AdminHashAdminHashAdminHashAdminHashAdminHashAdminHash0";
    let shadow = read(&root, "etc/shadow").replace(HASH, admin_hash);
    fs::write(root.join("etc/shadow"), shadow).unwrap();
    let keys = read(&root, "root/.ssh/authorized_keys").replace(&format!("{PLATFORM_KEY}\n"), "");
    fs::write(root.join("root/.ssh/authorized_keys"), &keys).unwrap();
    fs::write(root.join("etc/hostname"), "mine\n").unwrap();
    let net = root.join("etc/systemd/network/50-gandi-eth1.network");
    fs::write(&net, "# the admin's\n").unwrap();
    // A second boot, the same platform config: every change of the admin
    // stays.
    let out = bootstrap(&env, &root, &img);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(read(&root, "etc/shadow").contains(admin_hash));
    let now = read(&root, "root/.ssh/authorized_keys");
    assert!(
        !now.contains(PLATFORM_KEY),
        "the removed key came back: {now}"
    );
    assert!(now.contains(ADMIN_KEY) && now.contains(USER_KEY));
    assert!(
        detail(&root, "root-keys").contains("1 kept out"),
        "{}",
        detail(&root, "root-keys")
    );
    assert_eq!(read(&root, "etc/hostname"), "mine\n");
    assert_eq!(fs::read_to_string(&net).unwrap(), "# the admin's\n");
    assert_eq!(result(&root, "password"), "kept");
    // The platform changes the hostname and adds a key: those are applied;
    // the removed key stays removed; the password stays the admin's.
    let new_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINewPlatformKeyNewKey ops2@gandi";
    let mut cfg: serde_json::Value = serde_json::from_str(&config_json()).unwrap();
    cfg["vm_hostname"] = "web2.example.net".into();
    cfg["vm_conf"]["ssh_key"] = format!("{PLATFORM_KEY}\n{USER_KEY}\n{new_key}").into();
    let archive = tar(&[("gandi/config", cfg.to_string().as_bytes(), 0o600)]);
    let img2 = image(env.path(), "swap2.img", &archive, None);
    let out = bootstrap(&env, &root, &img2);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(read(&root, "etc/hostname"), "web2.example.net\n");
    let now = read(&root, "root/.ssh/authorized_keys");
    assert!(
        now.contains(new_key) && !now.contains(PLATFORM_KEY),
        "{now}"
    );
    assert!(read(&root, "etc/shadow").contains(admin_hash));
}

/// The good config with one value changed (`path` in JSON pointer form).
fn with(pointer: &str, value: serde_json::Value) -> String {
    let mut cfg: serde_json::Value = serde_json::from_str(&config_json()).unwrap();
    *cfg.pointer_mut(pointer)
        .unwrap_or_else(|| panic!("{pointer}")) = value;
    cfg.to_string()
}

#[test]
fn one_bad_element_fails_only_itself_and_the_vm_stays_reachable() {
    if !system_test(&["mkswap", "useradd"]) {
        return;
    }
    use serde_json::json;
    // (what, config, the step that fails, the path it names)
    let cases = [
        (
            "hostname",
            with("/vm_hostname", json!("bad_host!")),
            "hostname",
            "vm_hostname",
        ),
        (
            "password",
            with("/vm_conf/password", json!("hunter2")),
            "password",
            "vm_conf.password",
        ),
        (
            "ssh_key type",
            with("/vm_conf/ssh_key", json!(5)),
            "root-keys",
            "vm_conf.ssh_key",
        ),
        (
            "one key",
            with(
                "/vm_conf/ssh_key",
                json!(format!("{USER_KEY}\r\nnot a key")),
            ),
            "root-keys",
            "vm_conf.ssh_key",
        ),
        (
            "one resolver",
            with("/nameservers", json!(["x", "192.0.2.53"])),
            "resolvers",
            "nameservers[0]",
        ),
        (
            "login",
            with("/vm_conf/user", json!("Root")),
            "user",
            "vm_conf.user",
        ),
        (
            "address",
            with("/vif/0/pna/0/pna_address", json!("192.0.2.300")),
            "network",
            "vif[0].pna[0].pna_address",
        ),
        (
            "vif number",
            with("/vif/0/vif_number", json!("zero")),
            "network",
            "vif[0].vif_number",
        ),
    ];
    for (what, config, failing, path) in cases {
        let (env, root) = setup(&[]);
        let img = image(
            env.path(),
            "swap.img",
            &tar(&[("gandi/config", config.as_bytes(), 0o600)]),
            None,
        );
        let out = bootstrap(&env, &root, &img);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{what}: the exit code says nothing"
        );
        let s = root_status(&root);
        let config_step = step(&s, "bootstrap", "config");
        assert_eq!(config_step["result"], "failed", "{what}");
        assert!(
            config_step["detail"].as_str().unwrap().contains(path),
            "{what}: {config_step}"
        );
        assert_eq!(
            result(&root, failing),
            "failed",
            "{what}: {}",
            detail(&root, failing)
        );
        assert!(
            detail(&root, failing).contains(path),
            "{what}: {}",
            detail(&root, failing)
        );
        // Everything else was applied.
        if failing != "password" {
            assert!(read(&root, "etc/shadow").contains(HASH), "{what}: password");
        }
        let keys = read(&root, "root/.ssh/authorized_keys");
        if what != "ssh_key type" {
            assert!(keys.contains(USER_KEY), "{what}: keys {keys}");
        }
        if failing != "root-keys" {
            assert!(keys.contains(PLATFORM_KEY), "{what}: keys {keys}");
        }
        if failing != "hostname" {
            assert_eq!(read(&root, "etc/hostname"), "web1.example.net\n", "{what}");
        }
        assert!(
            read(&root, "etc/resolv.conf").contains("nameserver 192.0.2.53"),
            "{what}"
        );
        // eth0 is reachable: its static address, or DHCP with the reason.
        let eth0 = read(&root, "etc/systemd/network/50-gandi-eth0.network");
        if failing == "network" {
            assert!(
                eth0.contains("DHCP=ipv4") && eth0.contains("# DHCP because"),
                "{what}: {eth0}"
            );
        } else {
            assert!(eth0.contains("Address=192.0.2.10/24"), "{what}: {eth0}");
        }
        if failing != "user" {
            assert!(read(&root, "etc/passwd").contains("alice:x:"), "{what}");
        }
    }
}

#[test]
fn a_system_account_as_login_is_refused_and_the_rest_applies() {
    if !system_test(&["mkswap"]) {
        return;
    }
    let (env, root) = setup(&[]);
    let config = with("/vm_conf/user", serde_json::json!("daemon"));
    let img = image(
        env.path(),
        "swap.img",
        &tar(&[("gandi/config", config.as_bytes(), 0o600)]),
        None,
    );
    let out = bootstrap(&env, &root, &img);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(result(&root, "user"), "failed");
    assert!(
        detail(&root, "user").contains("system account"),
        "{}",
        detail(&root, "user")
    );
    assert!(!root.join("usr/sbin/.ssh").exists());
    assert!(read(&root, "root/.ssh/authorized_keys").contains(PLATFORM_KEY));
    assert_eq!(read(&root, "etc/hostname"), "web1.example.net\n");
}

#[test]
fn damaged_blocks_are_left_byte_for_byte() {
    if !system_test(&["mkswap", "useradd"]) {
        return;
    }
    let (env, root) = setup(&[]);
    let keys = format!(
        "# BEGIN gandi-vm: SSH keys from the platform (lines outside this block are yours)\n\
         ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOldPlatformKeyOld old\n\
         # END gandi-vm: SSH keys from the platform -- do not touch\n{ADMIN_KEY}\n"
    );
    fs::write(root.join("root/.ssh/authorized_keys"), &keys).unwrap();
    let resolv = "# END gandi-vm\nnameserver 10.0.0.1\noptions edns0\n";
    fs::write(root.join("etc/resolv.conf"), resolv).unwrap();
    let img = image(env.path(), "swap.img", &good_archive(env.path()), None);
    let out = bootstrap(&env, &root, &img);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(read(&root, "root/.ssh/authorized_keys"), keys);
    assert_eq!(read(&root, "etc/resolv.conf"), resolv);
    assert!(
        detail(&root, "root-keys").contains("damaged"),
        "{}",
        detail(&root, "root-keys")
    );
    assert!(detail(&root, "resolvers").contains("damaged"));
    assert_eq!(read(&root, "etc/hostname"), "web1.example.net\n");
}

#[test]
fn ifupdown_systems_get_interfaces_d_stanzas() {
    if !system_test(&["mkswap", "depmod", "useradd", "gzip"]) {
        return;
    }
    let env = Env::new();
    root_settings(&env.config(), &[]);
    let root = root_tree(env.path(), true);
    let img = image(env.path(), "swap.img", &good_archive(env.path()), None);
    let out = bootstrap(&env, &root, &img);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let eth0 = read(&root, "etc/network/interfaces.d/gandi-eth0");
    assert!(
        eth0.contains("iface eth0 inet static\n\taddress 192.0.2.10/24\n\tgateway 192.0.2.1"),
        "{eth0}"
    );
    assert!(
        eth0.contains("iface eth0 inet6 static\n\taddress 2001:db8::10/64"),
        "{eth0}"
    );
    assert!(read(&root, "etc/network/interfaces.d/gandi-eth1").contains("iface eth1 inet dhcp"));
    assert!(!root.join("etc/systemd/network").exists());
}

#[test]
fn flags_turn_steps_off() {
    if !system_test(&["mkswap", "useradd", "gzip", "depmod"]) {
        return;
    }
    let (env, root) = setup(&[
        "CONFIG_HOSTNAME=0",
        "CONFIG_NAMESERVER=0",
        "CONFIG_NETWORK=0",
    ]);
    let img = image(env.path(), "swap.img", &good_archive(env.path()), None);
    assert!(bootstrap(&env, &root, &img).status.success());
    assert!(!root.join("etc/hostname").exists());
    assert_eq!(
        read(&root, "etc/resolv.conf"),
        "search example.net\nnameserver 10.0.0.1\n"
    );
    assert!(!root.join("etc/systemd/network").exists());
    for name in ["hostname", "resolvers", "network"] {
        assert_eq!(result(&root, name), "skipped");
    }
}

#[test]
fn the_trees_own_settings_file_is_read() {
    if !system_test(&["mkswap", "useradd", "gzip", "depmod"]) {
        return;
    }
    let env = Env::new();
    let root = root_tree(env.path(), false);
    fs::create_dir_all(root.join("etc/default")).unwrap();
    fs::write(root.join("etc/default/gandi"), "CONFIG_HOSTNAME=0\n").unwrap();
    let img = image(env.path(), "swap.img", &good_archive(env.path()), None);
    let out = Command::new(BIN)
        .args(["bootstrap", "--kernel-release", RELEASE, "--root"])
        .arg(&root)
        .arg("--device")
        .arg(&img)
        .env_remove("GANDI_CONFIG")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(result(&root, "hostname"), "skipped");
}

#[test]
fn hostile_archives_are_refused_whole_and_links_are_never_followed() {
    if !system_test(&["mkswap"]) {
        return;
    }
    let good = raw_entry("gandi/config", b'0', "", b"{}");
    let refused: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "traversal",
            raw_entry("gandi/../../etc/evil", b'0', "", b"x"),
            "'..'",
        ),
        (
            "absolute",
            raw_entry("/etc/evil", b'0', "", b"x"),
            "absolute",
        ),
        (
            "hard link out",
            raw_entry("gandi/hl", b'1', "etc/shadow", b""),
            "leads outside",
        ),
        (
            "char device",
            raw_entry("gandi/null", b'3', "", b""),
            "device node",
        ),
        ("fifo", raw_entry("gandi/pipe", b'6', "", b""), "FIFO"),
        (
            "twice",
            raw_entry("gandi/config", b'0', "", b"{\"a\":1}"),
            "given twice",
        ),
        (
            "through a link",
            [
                raw_entry("gandi/up", b'2', "../../canary", b""),
                raw_entry("gandi/up/planted", b'0', "", b"x"),
            ]
            .concat(),
            "not followed",
        ),
        (
            "hard link to a link",
            [
                raw_entry("gandi/l", b'2', "../../canary/secret", b""),
                raw_entry("gandi/hl", b'1', "gandi/l", b""),
            ]
            .concat(),
            "not a file",
        ),
    ];
    for (what, bad, expect) in refused {
        let (env, root) = setup(&[]);
        let canary = env.path().join("canary");
        fs::create_dir_all(&canary).unwrap();
        fs::write(canary.join("secret"), "s").unwrap();
        // What bootstrap may write whatever the archive: status, state.
        let ours = |p: &Path| p.starts_with(root.join("run")) || p.starts_with(root.join("var"));
        let tree = |r: &Path| {
            full_snapshot(r)
                .into_iter()
                .filter(|(p, _)| !ours(p))
                .collect::<std::collections::BTreeMap<_, _>>()
        };
        let (canary_before, root_before) = (full_snapshot(&canary), tree(&root));
        let img = image(
            env.path(),
            "swap.img",
            &with_end([good.clone(), bad].concat()),
            None,
        );
        let out = bootstrap(&env, &root, &img);
        assert!(!out.status.success(), "{what}: accepted");
        let archive = step(&root_status(&root), "bootstrap", "archive").clone();
        assert_eq!(archive["result"], "failed", "{what}");
        assert!(
            archive["detail"].as_str().unwrap().contains(expect),
            "{what}: {archive}"
        );
        assert_eq!(
            full_snapshot(&canary),
            canary_before,
            "{what}: the canary changed"
        );
        assert_eq!(tree(&root), root_before, "{what}: the tree changed");
    }
    // Kept as entries but never followed: a config that is a chain of
    // links out of the tree is not read.
    let (env, root) = setup(&[]);
    let canary = env.path().join("canary");
    fs::create_dir_all(&canary).unwrap();
    let outside = r#"{"vm_hostname": "hijacked", "vm_conf": {"run": "touch /tmp/hijacked"}}"#;
    fs::write(canary.join("config"), outside).unwrap();
    fs::set_permissions(canary.join("config"), fs::Permissions::from_mode(0o644)).unwrap();
    let before = full_snapshot(&canary);
    let archive = with_end(
        [
            raw_entry("gandi/a/b/c/d", b'2', "../../..", b""),
            raw_entry(
                "gandi/config",
                b'2',
                "a/b/c/d/../../../../canary/config",
                b"",
            ),
        ]
        .concat(),
    );
    let img = image(env.path(), "swap.img", &archive, None);
    let out = bootstrap(&env, &root, &img);
    assert!(!out.status.success());
    assert_eq!(result(&root, "archive"), "changed");
    assert_eq!(result(&root, "config"), "failed");
    assert!(
        detail(&root, "config").contains("not followed"),
        "{}",
        detail(&root, "config")
    );
    assert_eq!(full_snapshot(&canary), before);
    assert!(!root.join("etc/hostname").exists());
}

#[test]
fn malformed_config_is_reported_with_its_place_and_validate_lists_every_problem() {
    if !system_test(&["mkswap"]) {
        return;
    }
    let (env, root) = setup(&[]);
    let before_etc = snapshot(&root.join("etc"));
    let bad = b"{\"vm_hostname\": \"ok\",\n \"vif\": [{\"vif_number\": 0}\n";
    let img = image(
        env.path(),
        "swap.img",
        &tar(&[("gandi/config", bad, 0o600)]),
        None,
    );
    let out = bootstrap(&env, &root, &img);
    assert!(!out.status.success());
    assert!(
        detail(&root, "config").contains("nothing applied"),
        "{}",
        detail(&root, "config")
    );
    assert_eq!(snapshot(&root.join("etc")), before_etc);
    // validate: every problem, type errors included, each with its place.
    let cfg = env.path().join("bad.json");
    fs::write(
        &cfg,
        "{\"vm_hostname\": [1],\n \"nameservers\": [\"x\", 7],\n \"vif\": [{\"vif_number\": \"zero\"}]}",
    )
    .unwrap();
    let v = env.gandi(&["validate", cfg.to_str().unwrap()]);
    assert_eq!(v.status.code(), Some(1));
    let text = String::from_utf8_lossy(&v.stdout);
    for expect in [
        ":1:17: vm_hostname: expected a string",
        ":2:18: nameservers[0]:",
        ":2:23: nameservers[1]:",
        ":3:25: vif[0].vif_number: expected a number",
    ] {
        assert!(text.contains(expect), "{expect} not in {text}");
    }
    let good = env.path().join("good.json");
    fs::write(&good, config_json()).unwrap();
    let v = env.gandi(&["validate", good.to_str().unwrap()]);
    assert_eq!(v.status.code(), Some(0));
    // Valid, with a note for the field the platform does not write.
    assert!(
        String::from_utf8_lossy(&v.stdout).contains("future_field: unknown field, ignored (note)"),
        "{}",
        String::from_utf8_lossy(&v.stdout)
    );
    // The example of the docs: valid, no note.
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/config-example.json");
    let v = env.gandi(&["validate", example]);
    let said = String::from_utf8_lossy(&v.stdout);
    assert_eq!(v.status.code(), Some(0), "{said}");
    assert!(!said.contains("note"), "{said}");
    // Our old top-level fields: valid, each noted with the platform's name.
    fs::write(&good, r#"{"login": "a", "keys": [], "run": "x"}"#).unwrap();
    let v = env.gandi(&["validate", good.to_str().unwrap()]);
    let said = String::from_utf8_lossy(&v.stdout);
    for field in ["vm_conf.user", "vm_conf.ssh_key", "vm_conf.run"] {
        assert!(said.contains(field), "{field}: {said}");
    }
}

#[test]
fn modules_are_added_and_installed_once_per_tarball() {
    if !system_test(&["mkswap", "depmod", "gzip", "useradd"]) {
        return;
    }
    let (env, root) = setup(&[]);
    let admin = root.join(format!("lib/modules/{RELEASE}/extra/dkms.ko"));
    fs::create_dir_all(admin.parent().unwrap()).unwrap();
    fs::write(&admin, "the admin's module").unwrap();
    let img = image(env.path(), "swap.img", &good_archive(env.path()), None);
    assert!(bootstrap(&env, &root, &img).status.success());
    assert!(admin.exists(), "the admin's module was removed");
    assert!(
        root.join(format!("lib/modules/{RELEASE}/kernel/drivers/README"))
            .exists()
    );
    assert_eq!(result(&root, "modules"), "changed");
    // The second boot: /gandi is extracted again, no modules work.
    assert!(bootstrap(&env, &root, &img).status.success());
    assert_eq!(result(&root, "modules"), "kept");
    assert!(admin.exists());
}

#[test]
fn a_non_empty_device_without_swap_is_never_formatted() {
    if !system_test(&["mkswap"]) {
        return;
    }
    let (env, root) = setup(&[]);
    let data: Vec<u8> = (0..4096u32).map(|i| (i * 7 + 3) as u8).collect();
    let img = image(
        env.path(),
        "data.img",
        &tar(&[("gandi/config", b"{}", 0o600)]),
        Some(&data),
    );
    let before = fs::read(&img).unwrap();
    let out = bootstrap(&env, &root, &img);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(fs::read(&img).unwrap(), before, "the image was changed");
    assert_eq!(result(&root, "swap"), "skipped");
    assert!(detail(&root, "swap").contains("does not seem empty"));
    // No archive at all: nothing to apply, the zeroed disk becomes swap.
    let (env, root) = setup(&[]);
    let blank = image(env.path(), "blank.img", &[], None);
    assert!(bootstrap(&env, &root, &blank).status.success());
    assert_eq!(result(&root, "archive"), "skipped");
    assert_eq!(result(&root, "swap"), "changed");
}

#[test]
fn resolvers_go_through_whatever_owns_resolv_conf() {
    if !system_test(&["mkswap", "useradd", "gzip", "depmod"]) {
        return;
    }
    // systemd-resolved's stub: a drop-in, the link stays.
    let (env, root) = setup(&[]);
    fs::remove_file(root.join("etc/resolv.conf")).unwrap();
    std::os::unix::fs::symlink(
        "../run/systemd/resolve/stub-resolv.conf",
        root.join("etc/resolv.conf"),
    )
    .unwrap();
    let img = image(env.path(), "swap.img", &good_archive(env.path()), None);
    assert!(bootstrap(&env, &root, &img).status.success());
    let dropin = read(&root, "etc/systemd/resolved.conf.d/gandi.conf");
    assert!(dropin.contains("DNS=192.0.2.53 2001:db8::53"), "{dropin}");
    assert!(
        fs::symlink_metadata(root.join("etc/resolv.conf"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    // resolvconf: our block in its head file, the link stays.
    let (env, root) = setup(&[]);
    fs::remove_file(root.join("etc/resolv.conf")).unwrap();
    std::os::unix::fs::symlink(
        "../run/resolvconf/resolv.conf",
        root.join("etc/resolv.conf"),
    )
    .unwrap();
    let img = image(env.path(), "swap.img", &good_archive(env.path()), None);
    assert!(bootstrap(&env, &root, &img).status.success());
    assert!(read(&root, "etc/resolvconf/resolv.conf.d/head").contains("nameserver 192.0.2.53"));
    assert!(
        fs::symlink_metadata(root.join("etc/resolv.conf"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    // Another program's link: left as it is, and said so.
    let (env, root) = setup(&[]);
    fs::remove_file(root.join("etc/resolv.conf")).unwrap();
    std::os::unix::fs::symlink("/run/connman/resolv.conf", root.join("etc/resolv.conf")).unwrap();
    let img = image(env.path(), "swap.img", &good_archive(env.path()), None);
    assert_eq!(bootstrap(&env, &root, &img).status.code(), Some(1));
    assert_eq!(result(&root, "resolvers"), "failed");
    assert!(detail(&root, "resolvers").contains("another program"));
    assert_eq!(
        fs::read_link(root.join("etc/resolv.conf")).unwrap(),
        Path::new("/run/connman/resolv.conf")
    );
}

/// Grows the last partition of a loop disk after its image is enlarged.
fn grow_case(table: &str, fstype: &str) {
    let env = Env::new();
    env.settings(&[]);
    let disk = LoopDisk::new(env.path(), "root.img", 512);
    let script = match table {
        "gpt" => "label: gpt\nstart=2048, size=655360, name=gandiroot\n",
        _ => "label: dos\nstart=2048, size=655360, type=83\n",
    };
    let mut child = Command::new("sfdisk")
        .args(["--quiet", &disk.dev])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success());
    if table == "gpt" {
        // As the platform's images come: a zero disk GUID until first boot.
        sh(Command::new("sfdisk").args([
            "--disk-id",
            &disk.dev,
            "00000000-0000-0000-0000-000000000000",
        ]));
    }
    let _ = Command::new("partx").args(["-a", &disk.dev]).output();
    let part = format!("{}p1", disk.dev);
    settle();
    assert!(Path::new(&part).exists(), "{part} missing");
    mkfs(&part, fstype, Some("gandiroot"));
    // Mounted, as a root is, for XFS. This machine's kernel refuses online
    // ext4 resizing (EPERM from EXT4_IOC_RESIZE_FS, even by hand), so ext4
    // is grown unmounted here; the VM test covers the online case.
    let mnt = tempdir();
    if fstype == "xfs" {
        sh(Command::new("mount").arg(&part).arg(mnt.path()));
    }
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).output();
        }
    }
    let _u = Unmount(mnt.path().to_path_buf());
    let mp = (fstype == "xfs").then(|| mnt.path());
    let before = gandi_vm::disk::fsgrow::fs_size_at(Path::new(&part), fstype, mp).unwrap();
    fs::OpenOptions::new()
        .write(true)
        .open(&disk.image)
        .unwrap()
        .set_len(1024 << 20)
        .unwrap();
    sh(Command::new("losetup").args(["-c", &disk.dev]));
    let out = env.gandi(&["root-disk", "--device", &part]);
    assert!(
        out.status.success(),
        "{table}/{fstype}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("grown"), "{stdout}");
    let part_size: u64 = fs::read_to_string(format!("/sys/class/block/{}p1/size", disk.name()))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        part_size * 512 > 1000 << 20,
        "{table}: partition not grown: {part_size}"
    );
    let after = gandi_vm::disk::fsgrow::fs_size_at(Path::new(&part), fstype, mp).unwrap();
    assert!(
        after > before * 3 / 2 + (300 << 20),
        "{table}/{fstype}: {before} -> {after}"
    );
    if table == "gpt" {
        let json = sh(Command::new("sfdisk").arg("--json").arg(&disk.dev));
        assert!(json.contains("\"name\": \"gandiroot\""), "{json}");
        assert!(
            !json.contains("00000000-0000-0000-0000-000000000000"),
            "disk GUID not randomised: {json}"
        );
        assert!(stdout.contains("GUIDs randomised"), "{stdout}");
    }
    let out = env.gandi(&["root-disk", "--device", &part]);
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("unchanged"));
}

#[test]
fn root_partition_grows_gpt_and_mbr_ext4_and_xfs() {
    if !system_test(&["sfdisk", "partx", "mkfs.xfs", "resize2fs", "xfs_growfs"]) {
        return;
    }
    grow_case("gpt", "ext4");
    grow_case("dos", "xfs");
    grow_case("gpt", "xfs");
    grow_case("dos", "ext4");
}

#[test]
fn networkmanager_guests_get_keyfiles_its_parser_reads() {
    if !system_test(&["mkswap", "useradd", "gzip", "depmod", "nmcli"]) {
        return;
    }
    let (env, root) = setup(&[]);
    fs::create_dir_all(root.join("etc/NetworkManager/system-connections")).unwrap();
    fs::write(root.join("usr/sbin/NetworkManager"), "").unwrap();
    fs::write(
        root.join("etc/resolv.conf"),
        "# Generated by NetworkManager\nnameserver 10.0.0.1\n",
    )
    .unwrap();
    let img = image(env.path(), "swap.img", &good_archive(env.path()), None);
    let out = bootstrap(&env, &root, &img);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!root.join("etc/systemd/network").exists());
    for (name, expect) in [
        (
            "eth0",
            vec![
                "method=manual",
                "address1=192.0.2.10/24,192.0.2.1",
                "address1=2001:db8::10/64,2001:db8::1",
                "route-metric=1024",
            ],
        ),
        (
            "eth1",
            vec!["interface-name=eth1", "method=auto", "route-metric=1025"],
        ),
    ] {
        let file = root.join(format!(
            "etc/NetworkManager/system-connections/gandi-{name}.nmconnection"
        ));
        assert_eq!(
            fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // NetworkManager's own keyfile reader, without a daemon.
        let out = Command::new("nmcli")
            .args([
                "--offline",
                "connection",
                "modify",
                "connection.autoconnect",
                "yes",
            ])
            .stdin(fs::File::open(&file).unwrap())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let parsed = String::from_utf8_lossy(&out.stdout);
        for e in expect {
            assert!(
                parsed.contains(e),
                "{name}: {e} not in what NetworkManager read:\n{parsed}"
            );
        }
    }
    // Resolvers through NetworkManager: a drop-in; the file is left to it.
    let dropin = read(&root, "etc/NetworkManager/conf.d/50-gandi-dns.conf");
    assert!(
        dropin.contains("servers=192.0.2.53,2001:db8::53"),
        "{dropin}"
    );
    assert_eq!(
        read(&root, "etc/resolv.conf"),
        "# Generated by NetworkManager\nnameserver 10.0.0.1\n"
    );
}
