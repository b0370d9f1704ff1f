//! `gandi-vm bootstrap --root` on temp trees with fixture swap images (a
//! file with a tar archive at 512 KiB), and the root disk growth on loop
//! devices.

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
        .output()
        .unwrap()
}

fn status(env: &Env) -> serde_json::Value {
    serde_json::from_slice(&fs::read(env.path().join("run/status.json")).unwrap()).unwrap()
}

fn step<'a>(s: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    s["bootstrap"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["step"] == name)
        .unwrap_or_else(|| panic!("no step {name}: {s}"))
}

#[test]
fn applies_the_config_to_a_tree_and_a_second_run_changes_nothing() {
    if !system_test(&["mkswap", "depmod", "useradd", "gzip", "blkid"]) {
        return;
    }
    let env = Env::new();
    env.settings(&[]);
    let root = root_tree(env.path(), false);
    let img = image(env.path(), "swap.img", &good_archive(env.path()), None);
    let out = bootstrap(&env, &root, &img);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // /gandi: root-only.
    let mode = |p: &str| fs::metadata(root.join(p)).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode("gandi"), 0o700);
    assert_eq!(mode("gandi/config"), 0o600);
    // Password, under the shadow lock, other lines kept, mode kept.
    let shadow = fs::read_to_string(root.join("etc/shadow")).unwrap();
    assert!(
        shadow.starts_with(&format!("root:{HASH}:19000:")),
        "{shadow}"
    );
    assert!(shadow.contains("daemon:*:19000"));
    assert_eq!(mode("etc/shadow"), 0o640);
    // The user and its key.
    let passwd = fs::read_to_string(root.join("etc/passwd")).unwrap();
    assert!(passwd.contains("alice:x:"), "{passwd}");
    let user_keys = fs::read_to_string(root.join("home/alice/.ssh/authorized_keys")).unwrap();
    assert!(user_keys.contains(USER_KEY));
    // Root's keys: the admin's kept, the platform's in our block.
    let keys = fs::read_to_string(root.join("root/.ssh/authorized_keys")).unwrap();
    assert!(keys.starts_with(ADMIN_KEY), "{keys}");
    assert!(keys.contains(PLATFORM_KEY) && keys.contains(USER_KEY));
    assert_eq!(mode("root/.ssh/authorized_keys"), 0o600);
    // Hostname and hosts (the admin's lines kept).
    assert_eq!(
        fs::read_to_string(root.join("etc/hostname")).unwrap(),
        "web1.example.net\n"
    );
    let hosts = fs::read_to_string(root.join("etc/hosts")).unwrap();
    assert!(
        hosts.contains("127.0.1.1\tweb1.example.net web1"),
        "{hosts}"
    );
    assert!(hosts.contains("10.1.1.1\tbackup"));
    // Resolvers first, the admin's search line kept.
    let resolv = fs::read_to_string(root.join("etc/resolv.conf")).unwrap();
    let first_ns = resolv
        .lines()
        .find(|l| l.starts_with("nameserver"))
        .unwrap();
    assert_eq!(first_ns, "nameserver 192.0.2.53");
    assert!(resolv.contains("search example.net"));
    // systemd-networkd: static on eth0, DHCP on eth1.
    let eth0 = fs::read_to_string(root.join("etc/systemd/network/50-gandi-eth0.network")).unwrap();
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
    let eth1 = fs::read_to_string(root.join("etc/systemd/network/50-gandi-eth1.network")).unwrap();
    assert!(eth1.contains("DHCP=ipv4"), "{eth1}");
    // Modules, with depmod's index.
    assert!(
        root.join(format!("lib/modules/{RELEASE}/kernel/drivers/README"))
            .exists()
    );
    assert!(
        root.join(format!("lib/modules/{RELEASE}/modules.dep"))
            .exists()
    );
    // Swap on the image, labelled swap; the archive still after it.
    let probe = sh(Command::new("blkid").args(["-p", "-o", "export"]).arg(&img));
    assert!(
        probe.contains("TYPE=swap") && probe.contains("LABEL=swap"),
        "{probe}"
    );
    // Status: every step, none failed.
    let s = status(&env);
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
        assert_ne!(
            step(&s, name)["result"],
            "failed",
            "{name}: {}",
            step(&s, name)
        );
    }
    assert_eq!(step(&s, "sysctl")["result"], "skipped");
    let shown = env.gandi(&["status"]);
    assert!(shown.status.success());
    assert!(String::from_utf8_lossy(&shown.stdout).contains("bootstrap: ok"));

    // Twice: byte-identical files, and the steps say unchanged.
    let before = snapshot(&root);
    let image_before = fs::read(&img).unwrap();
    let out = bootstrap(&env, &root, &img);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after = snapshot(&root);
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>()
    );
    for (p, v) in &before {
        assert_eq!(
            Some(v),
            after.get(p),
            "{} changed on the second run",
            p.display()
        );
    }
    assert!(
        fs::read(&img).unwrap() == image_before,
        "the swap image changed on the second run"
    );
    let s = status(&env);
    for name in [
        "password",
        "user",
        "root-keys",
        "hostname",
        "resolvers",
        "network",
        "swap",
    ] {
        assert_eq!(step(&s, name)["result"], "unchanged", "{name}");
    }
}

#[test]
fn ifupdown_systems_get_interfaces_d_stanzas() {
    if !system_test(&["mkswap", "depmod", "useradd", "gzip"]) {
        return;
    }
    let env = Env::new();
    env.settings(&[]);
    let root = root_tree(env.path(), true);
    let img = image(env.path(), "swap.img", &good_archive(env.path()), None);
    let out = bootstrap(&env, &root, &img);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let eth0 = fs::read_to_string(root.join("etc/network/interfaces.d/gandi-eth0")).unwrap();
    assert!(
        eth0.contains("iface eth0 inet static\n\taddress 192.0.2.10/24\n\tgateway 192.0.2.1"),
        "{eth0}"
    );
    assert!(
        eth0.contains("iface eth0 inet6 static\n\taddress 2001:db8::10/64"),
        "{eth0}"
    );
    let eth1 = fs::read_to_string(root.join("etc/network/interfaces.d/gandi-eth1")).unwrap();
    assert!(eth1.contains("iface eth1 inet dhcp"));
    assert!(!root.join("etc/systemd/network").exists());
}

#[test]
fn flags_turn_steps_off() {
    if !system_test(&["mkswap", "useradd", "gzip", "depmod"]) {
        return;
    }
    let env = Env::new();
    env.settings(&[
        "CONFIG_HOSTNAME=0".into(),
        "CONFIG_NAMESERVER=0".into(),
        "CONFIG_NETWORK=0".into(),
    ]);
    let root = root_tree(env.path(), false);
    let img = image(env.path(), "swap.img", &good_archive(env.path()), None);
    assert!(bootstrap(&env, &root, &img).status.success());
    assert!(!root.join("etc/hostname").exists());
    assert_eq!(
        fs::read_to_string(root.join("etc/resolv.conf")).unwrap(),
        "search example.net\nnameserver 10.0.0.1\n"
    );
    assert!(!root.join("etc/systemd/network").exists());
    let s = status(&env);
    for name in ["hostname", "resolvers", "network"] {
        assert_eq!(step(&s, name)["result"], "skipped");
    }
}

/// A raw tar header block for hostile entries the tar crate refuses to
/// write: name, type flag, link name.
fn raw_entry(name: &str, kind: u8, link: &str, data: &[u8]) -> Vec<u8> {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    h[100..107].copy_from_slice(b"0000644");
    h[108..115].copy_from_slice(b"0000000");
    h[116..123].copy_from_slice(b"0000000");
    let size = format!("{:011o}", data.len());
    h[124..135].copy_from_slice(size.as_bytes());
    h[136..147].copy_from_slice(b"00000000000");
    h[156] = kind;
    h[157..157 + link.len()].copy_from_slice(link.as_bytes());
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    for b in &mut h[148..156] {
        *b = b' ';
    }
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
    let mut out = h.to_vec();
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out
}

fn with_end(mut blocks: Vec<u8>) -> Vec<u8> {
    blocks.extend_from_slice(&[0u8; 1024]);
    blocks
}

#[test]
fn hostile_archives_write_nothing() {
    if !system_test(&["mkswap"]) {
        return;
    }
    let good = raw_entry("gandi/config", b'0', "", b"{}");
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
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
            "symlink out",
            raw_entry("gandi/shadow", b'2', "/etc/shadow", b""),
            "leads outside",
        ),
        (
            "relative link out",
            raw_entry("gandi/up", b'2', "../../etc", b""),
            "leads outside",
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
    ];
    for (what, bad, expect) in cases {
        let env = Env::new();
        env.settings(&[]);
        let root = root_tree(env.path(), false);
        let before = snapshot(&root);
        let mut blocks = good.clone();
        blocks.extend(bad);
        let img = image(env.path(), "swap.img", &with_end(blocks), None);
        let out = bootstrap(&env, &root, &img);
        assert!(!out.status.success(), "{what}: accepted");
        let s = status(&env);
        let archive = step(&s, "archive");
        assert_eq!(archive["result"], "failed", "{what}");
        assert!(
            archive["detail"].as_str().unwrap().contains(expect),
            "{what}: {archive}"
        );
        assert!(!root.join("gandi").exists(), "{what}: /gandi written");
        let after = snapshot(&root);
        assert_eq!(before, after, "{what}: the tree changed");
        assert!(!env.path().join("etc").exists());
        let leftovers: Vec<_> = fs::read_dir(&root)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(".gandi"))
            .collect();
        assert!(leftovers.is_empty(), "{what}: staging left behind");
    }
}

#[test]
fn malformed_config_is_reported_with_its_place_and_nothing_is_applied() {
    if !system_test(&["mkswap"]) {
        return;
    }
    let env = Env::new();
    env.settings(&[]);
    let root = root_tree(env.path(), false);
    let before_etc = snapshot(&root.join("etc"));
    let bad = br#"{"vm_hostname": "ok", "vif": [{"vif_number": "zero"}]}"#;
    let img = image(
        env.path(),
        "swap.img",
        &tar(&[("gandi/config", bad, 0o600)]),
        None,
    );
    let out = bootstrap(&env, &root, &img);
    assert!(!out.status.success());
    let s = status(&env);
    let detail = step(&s, "config")["detail"].as_str().unwrap().to_string();
    assert!(detail.contains("vif[0].vif_number"), "{detail}");
    assert_eq!(snapshot(&root.join("etc")), before_etc);
    // validate says the same, with the line and column.
    let cfg = env.path().join("bad.json");
    fs::write(&cfg, bad).unwrap();
    let v = env.gandi(&["validate", cfg.to_str().unwrap()]);
    assert_eq!(v.status.code(), Some(1));
    let text = String::from_utf8_lossy(&v.stdout);
    assert!(
        text.contains(":1:") && text.contains("vif[0].vif_number"),
        "{text}"
    );
    let good = env.path().join("good.json");
    fs::write(&good, config_json()).unwrap();
    assert_eq!(
        env.gandi(&["validate", good.to_str().unwrap()])
            .status
            .code(),
        Some(0)
    );
}

#[test]
fn a_non_empty_device_without_swap_is_never_formatted() {
    if !system_test(&["mkswap"]) {
        return;
    }
    let env = Env::new();
    env.settings(&[]);
    let root = root_tree(env.path(), false);
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
    let s = status(&env);
    assert_eq!(step(&s, "swap")["result"], "skipped");
    assert!(
        step(&s, "swap")["detail"]
            .as_str()
            .unwrap()
            .contains("does not seem empty")
    );
    // No archive at all: nothing to apply, the zeroed disk becomes swap.
    let env = Env::new();
    env.settings(&[]);
    let blank = image(env.path(), "blank.img", &[], None);
    let out = bootstrap(&env, &root, &blank);
    assert!(out.status.success());
    let s = status(&env);
    assert_eq!(step(&s, "archive")["result"], "skipped");
    assert_eq!(step(&s, "swap")["result"], "changed");
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
    let mnt = tempfile::tempdir().unwrap();
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
    let before = gandi_vm::grow::fs_size_at(Path::new(&part), fstype, mp).unwrap();
    // The platform enlarges the disk.
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
    let after = gandi_vm::grow::fs_size_at(Path::new(&part), fstype, mp).unwrap();
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
    // Twice: nothing to do.
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
fn resolved_stub_gets_a_drop_in_and_the_link_stays() {
    if !system_test(&["mkswap", "useradd", "gzip", "depmod"]) {
        return;
    }
    let env = Env::new();
    env.settings(&[]);
    let root = root_tree(env.path(), false);
    fs::remove_file(root.join("etc/resolv.conf")).unwrap();
    std::os::unix::fs::symlink(
        "../run/systemd/resolve/stub-resolv.conf",
        root.join("etc/resolv.conf"),
    )
    .unwrap();
    let img = image(env.path(), "swap.img", &good_archive(env.path()), None);
    assert!(bootstrap(&env, &root, &img).status.success());
    let dropin = fs::read_to_string(root.join("etc/systemd/resolved.conf.d/gandi.conf")).unwrap();
    assert!(dropin.contains("DNS=192.0.2.53 2001:db8::53"), "{dropin}");
    assert!(
        fs::symlink_metadata(root.join("etc/resolv.conf"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
}
