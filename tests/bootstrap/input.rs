//! Hostile archives and malformed configs: refused with their place, nothing followed or lost.

use super::*;

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
    let text = stdout(&v);
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
        stdout(&v).contains("future_field: unknown field, ignored (note)"),
        "{}",
        stdout(&v)
    );
    // The example of the docs: valid, no note.
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/config-example.json");
    let v = env.gandi(&["validate", example]);
    let said = stdout(&v);
    assert_eq!(v.status.code(), Some(0), "{said}");
    assert!(!said.contains("note"), "{said}");
    // Our old top-level fields: valid, each noted with the platform's name.
    fs::write(&good, r#"{"login": "a", "keys": [], "run": "x"}"#).unwrap();
    let v = env.gandi(&["validate", good.to_str().unwrap()]);
    let said = stdout(&v);
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
    assert!(out.status.success(), "{}", stderr(&out));
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
