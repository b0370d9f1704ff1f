//! `--root DIR` is the image builder's mode: `bootstrap`, `config` and
//! `postboot` on a tree touch nothing of the host. The tree's fstab names a
//! host loop device, and a host swap area labelled `swap` is present (udev
//! links it as /dev/disk/by-label/swap); stand-ins of the tools log every
//! call. Afterwards no host device's bytes have changed, no host file
//! outside DIR has, no tool of the list ran; then `postboot` run inside the
//! tree (chroot), as its first boot does, runs the deferred command once.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)] // tests and benches: a failure is a panic, output is the report

mod common;

use common::fixtures::*;
use common::*;
use std::fs;
use std::path::Path;
use std::process::Command;

/// Tools that must not run with `--root`.
const FORBIDDEN: &[&str] = &[
    "mkswap",
    "swapon",
    "tune2fs",
    "blkid",
    "sysctl",
    "ssh-keygen",
    "systemctl",
    "udevadm",
    "sfdisk",
    "partx",
    "resize2fs",
    "python3",
    "python2",
    "python",
    "networkctl",
    "ifup",
];

fn sum(path: &Path) -> String {
    sh(Command::new("sha256sum").arg(path))
}

/// Copies `bin` and the shared libraries it needs into `root`.
fn install_with_libs(bin: &Path, root: &Path, at: &str) {
    let dest = root.join(at.trim_start_matches('/'));
    fs::create_dir_all(dest.parent().unwrap()).unwrap();
    fs::copy(bin, &dest).unwrap();
    let ldd = Command::new("ldd").arg(bin).output().unwrap();
    for line in stdout(&ldd).lines() {
        let lib = line
            .split_whitespace()
            .find(|w| w.starts_with('/'))
            .map(str::to_string);
        if let Some(lib) = lib {
            let to = root.join(lib.trim_start_matches('/'));
            fs::create_dir_all(to.parent().unwrap()).unwrap();
            if !to.exists() {
                fs::copy(&lib, &to).unwrap();
            }
        }
    }
}

#[test]
fn root_trees_are_set_up_offline_and_the_first_boot_runs_what_was_deferred() {
    if !system_test(&[
        "mkswap",
        "mkfs.ext4",
        "tune2fs",
        "chroot",
        "ldd",
        "useradd",
        "depmod",
    ]) {
        return;
    }
    let _serial = serial("udev");
    let _udevd = Udevd::start();
    let env = Env::new();
    // Host devices: a swap area labelled swap, and the tree's root device.
    let swap = LoopDisk::new(env.path(), "hostswap.img", 16);
    swap.mkfs("swap", Some("swap"));
    let rootdev = LoopDisk::new(env.path(), "rootfs.img", 32);
    rootdev.mkfs("ext4", Some("treeroot"));
    sh(Command::new("tune2fs").args(["-c", "-1", &rootdev.dev]));
    settle();
    let sums = (sum(&swap.image), sum(&rootdev.image));

    // The tree, prepared by an image builder with the platform's config.
    let root = root_tree(env.path(), false);
    fs::write(
        root.join("etc/fstab"),
        format!("{} / ext4 defaults 0 1\n", rootdev.dev),
    )
    .unwrap();
    fs::create_dir_all(root.join("gandi")).unwrap();
    let mut cfg: serde_json::Value = serde_json::from_str(&config_json()).unwrap();
    cfg["vm_hostname"] = "offline-test".into();
    cfg["vm_conf"]["run"] = serde_json::json!(["echo ran >> /ran.log"]);
    fs::write(root.join("gandi/config"), cfg.to_string()).unwrap();
    fs::create_dir_all(root.join("etc/gandi/plugins.d")).unwrap();
    fs::create_dir_all(root.join("etc/gandi/hooks")).unwrap();
    let ran = env.path().join("ran-on-host");
    script(
        &root.join("etc/gandi/plugins.d/10-mine"),
        &format!("echo plugin >> {}", ran.display()),
    );
    script(
        &root.join("etc/gandi/hooks/post-vm-config"),
        &format!("echo hook >> {}", ran.display()),
    );
    fs::write(root.join("etc/gandi/sysctl.conf"), "vm.swappiness = 37\n").unwrap();
    fs::create_dir_all(root.join("etc/ssh")).unwrap();
    fs::write(root.join("etc/ssh/sshd_config"), "X11Forwarding no\n").unwrap();
    // A canary beside the tree, and what the host shows of itself.
    let canary = env.path().join("canary");
    fs::create_dir_all(&canary).unwrap();
    fs::write(canary.join("f"), "c").unwrap();
    let canary_before = full_snapshot(&canary);
    let host = || {
        (
            sh(&mut Command::new("hostname")),
            fs::read_to_string("/proc/sys/vm/swappiness").unwrap(),
            fs::read_to_string("/proc/swaps").unwrap(),
            fs::metadata("/run/gandi").is_ok(),
            fs::metadata("/var/lib/gandi").is_ok(),
            fs::metadata("/gandi").is_ok(),
        )
    };
    let host_before = host();
    // Stand-ins that log every call of a forbidden tool.
    let bin = env.path().join("bin");
    let calls = env.path().join("calls.log");
    for tool in FORBIDDEN {
        script(
            &bin.join(tool),
            &format!("echo \"{tool} $*\" >> {}", calls.display()),
        );
    }
    let path = path_with(&bin);

    for stage in ["bootstrap", "config", "postboot"] {
        let mut cmd = Command::new(BIN);
        cmd.arg(stage).arg("--root").arg(&root);
        if stage == "bootstrap" {
            cmd.args(["--kernel-release", RELEASE]);
        }
        let out = cmd
            .env("PATH", &path)
            .env_remove("GANDI_CONFIG")
            .env_remove("JOURNAL_STREAM")
            .output()
            .unwrap();
        assert!(out.status.success(), "{stage}: {}", stderr(&out));
    }
    let calls_made = fs::read_to_string(&calls).unwrap_or_default();
    assert!(calls_made.is_empty(), "tools ran: {calls_made}");
    assert!(
        !ran.exists(),
        "a plugin or hook ran: {}",
        fs::read_to_string(&ran).unwrap()
    );
    assert_eq!(
        (sum(&swap.image), sum(&rootdev.image)),
        sums,
        "a host device changed"
    );
    assert_eq!(full_snapshot(&canary), canary_before);
    assert_eq!(host(), host_before);
    assert!(
        !root.join("ran.log").exists(),
        "a command of the config ran"
    );
    // Applied in the tree, the rest deferred and said so.
    assert_eq!(
        fs::read_to_string(root.join("etc/hostname")).unwrap(),
        "offline-test\n"
    );
    assert_eq!(
        fs::read_link(root.join("etc/sysctl.d/60-gandi.conf")).unwrap(),
        Path::new("/etc/gandi/sysctl.conf")
    );
    let s = root_status(&root);
    assert_eq!(step(&s, "bootstrap", "archive")["result"], "skipped");
    assert_eq!(step(&s, "config", "fstab")["result"], "deferred");
    assert_eq!(step(&s, "config", "mount-count")["result"], "deferred");
    assert_eq!(step(&s, "postboot", "run[0]")["result"], "deferred");
    let kept: serde_json::Value =
        serde_json::from_slice(&fs::read(root.join("gandi/config")).unwrap()).unwrap();
    assert!(
        kept["vm_conf"].get("run").is_some(),
        "the deferred command was removed"
    );
    assert!(
        kept["vm_conf"].get("password").is_none(),
        "the hash stayed on disk"
    );

    // The first boot: postboot in the tree runs the command, once.
    install_with_libs(Path::new(BIN), &root, "/usr/bin/gandi-vm");
    install_with_libs(Path::new("/bin/sh"), &root, "/bin/sh");
    // A booted system has its /dev; commands run with /dev/null as input.
    fs::create_dir_all(root.join("dev")).unwrap();
    sh(Command::new("mknod")
        .args(["-m", "666"])
        .arg(root.join("dev/null"))
        .args(["c", "1", "3"]));
    for _ in 0..2 {
        let out = Command::new("chroot")
            .arg(&root)
            .args(["/usr/bin/gandi-vm", "postboot"])
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env_remove("GANDI_CONFIG")
            .env_remove("JOURNAL_STREAM")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
    }
    assert_eq!(fs::read_to_string(root.join("ran.log")).unwrap(), "ran\n");
}
