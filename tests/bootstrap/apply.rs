//! The platform's config applied to a tree: once, kept, the admin's word last, one bad element failing alone.

use super::*;

#[test]
fn applies_the_config_to_a_tree_and_a_second_run_keeps_it() {
    if !system_test(&["mkswap", "depmod", "useradd", "gzip", "blkid"]) {
        return;
    }
    let (env, root) = setup(&[]);
    let img = image(env.path(), "swap.img", &good_archive(env.path()), None);
    let out = bootstrap(&env, &root, &img);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("gandi-vm bootstrap: ok"));

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
    assert!(out.status.success(), "{}", stderr(&out));
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
    assert!(out.status.success(), "{}", stderr(&out));
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
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(read(&root, "etc/hostname"), "web2.example.net\n");
    let now = read(&root, "root/.ssh/authorized_keys");
    assert!(
        now.contains(new_key) && !now.contains(PLATFORM_KEY),
        "{now}"
    );
    assert!(read(&root, "etc/shadow").contains(admin_hash));
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
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(result(&root, "hostname"), "skipped");
}
