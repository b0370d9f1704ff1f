//! The per-boot `config` and the `postboot` stages on temp root trees.

mod common;

use common::fixtures::{config_tree, snapshot};
use common::*;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const CRONTAB: &str = "SHELL=/bin/sh\n\
# m h dom mon dow user\tcommand\n\
17 *\t* * *\troot\tcd / && run-parts --report /etc/cron.hourly\n\
25 6\t* * *\troot\ttest -x /usr/sbin/anacron || { cd / && run-parts --report /etc/cron.daily; }\n\
47 6\t* * 7\troot\ttest -x /usr/sbin/anacron || { cd / && run-parts --report /etc/cron.weekly; }\n\
52 6\t1 * *\troot\ttest -x /usr/sbin/anacron || { cd / && run-parts --report /etc/cron.monthly; }\n\
30 2\t* * *\troot\t/usr/local/bin/admin-backup\n";

struct Tree {
    env: Env,
    root: PathBuf,
    disk: LoopDisk,
}

/// A tree with the files `config` reads, its root filesystem on a loop
/// device (named by path in fstab), a fake sysfs with hvc0 and a kernel
/// console on ttyS0.
fn tree(sshd_include: bool, extra: &[&str]) -> Tree {
    let env = Env::new();
    // The common fixture, then what these tests look at more closely.
    let root = config_tree(env.path());
    fs::remove_dir(root.join("etc/ssh/sshd_config.d")).unwrap();
    fs::create_dir_all(root.join("usr/share/zoneinfo/America")).unwrap();
    fs::write(root.join("usr/share/zoneinfo/America/New_York"), "TZif-ny").unwrap();
    fs::create_dir_all(env.path().join("sys/class/tty/hvc0")).unwrap();
    fs::create_dir_all(env.path().join("hooks")).unwrap();
    fs::create_dir_all(env.path().join("proc")).unwrap();
    fs::write(
        env.path().join("proc/consoles"),
        "ttyS0                -W- (EC p a)    4:64\n",
    )
    .unwrap();
    fs::write(root.join("etc/crontab"), CRONTAB).unwrap();
    let disk = LoopDisk::new(env.path(), "rootfs.img", 32);
    disk.mkfs("ext4", Some("rootfs"));
    fs::write(
        root.join("etc/fstab"),
        format!("# <file system> <mount point> <type> <options> <dump> <pass>\n{}\t/\text4\terrors=remount-ro 0 1\n/dev/vdb1\t/data\text4\tdefaults 0 2\n", disk.dev),
    )
    .unwrap();
    let mut sshd = String::new();
    if sshd_include {
        sshd.push_str("Include /etc/ssh/sshd_config.d/*.conf\n");
    }
    sshd.push_str("# the admin's own\nX11Forwarding no\n");
    fs::write(root.join("etc/ssh/sshd_config"), sshd).unwrap();
    let mut lines: Vec<String> = vec![
        format!("GANDI_SYS_DIR={}", env.path().join("sys").display()),
        format!("GANDI_PROC_DIR={}", env.path().join("proc").display()),
        format!("GANDI_HOOK_DIR={}", env.path().join("hooks").display()),
    ];
    lines.extend(extra.iter().map(|s| s.to_string()));
    env.settings(&lines);
    Tree { env, root, disk }
}

fn config(t: &Tree, cmdline: &str) -> std::process::Output {
    let file = t.env.path().join("cmdline");
    fs::write(&file, cmdline).unwrap();
    Command::new(BIN)
        .args(["config", "--root"])
        .arg(&t.root)
        .arg("--cmdline")
        .arg(&file)
        .env("GANDI_CONFIG", t.env.config())
        .output()
        .unwrap()
}

fn status(env: &Env, stage: &str) -> serde_json::Value {
    let all: serde_json::Value =
        serde_json::from_slice(&fs::read(env.path().join("run/status.json")).unwrap()).unwrap();
    all[stage].clone()
}

fn result(s: &serde_json::Value, step: &str) -> String {
    s["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["step"] == step)
        .map(|x| x["result"].as_str().unwrap().to_string())
        .unwrap_or_else(|| panic!("no step {step}: {s}"))
}

fn read(t: &Tree, p: &str) -> String {
    fs::read_to_string(t.root.join(p)).unwrap_or_default()
}

#[test]
fn every_step_on_then_a_second_run_changes_nothing() {
    if !system_test(&["ssh-keygen", "tune2fs", "blkid"]) {
        return;
    }
    let t = tree(true, &[]);
    let hook_log = t.env.path().join("hook.log");
    let hook = t.env.path().join("hooks/post-vm-config");
    script(&hook, &format!("echo ran >> {}", hook_log.display()));
    let out = config(&t, "root=/dev/vda1 gandi=America/New_York quiet");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Console gettys on hvc0 and ttyS0.
    for tty in ["hvc0", "ttyS0"] {
        let link = t.root.join(format!(
            "etc/systemd/system/getty.target.wants/serial-getty@{tty}.service"
        ));
        assert_eq!(
            fs::read_link(&link).unwrap(),
            Path::new("/lib/systemd/system/serial-getty@.service")
        );
    }
    // fstab: the root line by UUID, the backup, the admin's line kept.
    let uuid = sh(Command::new("blkid").args(["-s", "UUID", "-o", "value", &t.disk.dev]));
    let fstab = read(&t, "etc/fstab");
    assert!(
        fstab.contains(&format!(
            "UUID={}\t/\text4\terrors=remount-ro 0 1",
            uuid.trim()
        )),
        "{fstab}"
    );
    assert!(fstab.contains("/dev/vdb1\t/data"));
    assert!(read(&t, "etc/fstab.gandi-vm.bak").contains(&t.disk.dev));
    // Cron spread; the admin's job kept.
    let cron = read(&t, "etc/crontab");
    assert!(
        !cron.contains("17 *\t* * *\troot\tcd / && run-parts --report /etc/cron.hourly"),
        "{cron}"
    );
    assert!(cron.contains("30 2\t* * *\troot\t/usr/local/bin/admin-backup"));
    assert_eq!(cron.lines().filter(|l| l.contains("run-parts")).count(), 4);
    // Timezone from the command line.
    assert_eq!(read(&t, "etc/timezone"), "America/New_York\n");
    assert_eq!(
        fs::read_link(t.root.join("etc/localtime")).unwrap(),
        Path::new("/usr/share/zoneinfo/America/New_York")
    );
    // SSH: host keys and the drop-in.
    assert!(t.root.join("etc/ssh/ssh_host_ed25519_key").exists());
    let dropin = read(&t, "etc/ssh/sshd_config.d/50-gandi.conf");
    assert!(
        dropin.contains("PermitRootLogin prohibit-password") && dropin.contains("ListenAddress ::")
    );
    assert!(read(&t, "etc/ssh/sshd_config").contains("X11Forwarding no"));
    // motd, mount count, hook.
    assert!(read(&t, "etc/motd.d/gandi").contains("/etc/default/gandi"));
    let d = sh(Command::new("dumpe2fs").arg("-h").arg(&t.disk.dev));
    assert!(
        d.lines()
            .any(|l| l.starts_with("Maximum mount count:") && l.trim_end().ends_with("42")),
        "{d}"
    );
    assert_eq!(fs::read_to_string(&hook_log).unwrap(), "ran\n");
    let s = status(&t.env, "config");
    for step in [
        "console",
        "hosts",
        "fstab",
        "cron",
        "timezone",
        "sshd",
        "motd",
        "mount-count",
        "hook",
    ] {
        assert_eq!(result(&s, step), "changed", "{step}");
    }
    // /etc/hosts was missing: made, with the hostname.
    assert!(read(&t, "etc/hosts").contains("127.0.1.1\tweb1.example.net web1"));

    // A second boot: byte-identical tree, every step unchanged (the hook runs).
    let before = snapshot(&t.root);
    let out = config(&t, "root=/dev/vda1 gandi=America/New_York quiet");
    assert!(out.status.success());
    assert_eq!(before, snapshot(&t.root));
    let s = status(&t.env, "config");
    for step in [
        "console",
        "hosts",
        "fstab",
        "cron",
        "timezone",
        "sshd",
        "motd",
        "mount-count",
    ] {
        assert_eq!(result(&s, step), "unchanged", "{step}");
    }
    // Another machine spreads its jobs elsewhere.
    let other = tree(true, &[]);
    fs::write(
        other.root.join("etc/machine-id"),
        "fedcba9876543210fedcba9876543210\n",
    )
    .unwrap();
    assert!(config(&other, "").status.success());
    assert_ne!(read(&other, "etc/crontab"), cron);
}

#[test]
fn admin_choices_are_kept_and_sshd_without_include_gets_a_block() {
    if !system_test(&["ssh-keygen", "tune2fs"]) {
        return;
    }
    let t = tree(false, &[]);
    // The admin set a timezone; no gandi= on the command line.
    std::os::unix::fs::symlink(
        "/usr/share/zoneinfo/Europe/Paris",
        t.root.join("etc/localtime"),
    )
    .unwrap();
    fs::write(t.root.join("etc/timezone"), "Europe/Paris\n").unwrap();
    // The admin masked a getty.
    let wants = t.root.join("etc/systemd/system/getty.target.wants");
    fs::create_dir_all(&wants).unwrap();
    std::os::unix::fs::symlink("/dev/null", wants.join("serial-getty@ttyS0.service")).unwrap();
    // An fstab already by UUID.
    fs::write(t.root.join("etc/fstab"), "UUID=abcd / ext4 defaults 0 1\n").unwrap();
    assert!(config(&t, "root=/dev/vda1").status.success());
    assert_eq!(
        fs::read_link(t.root.join("etc/localtime")).unwrap(),
        Path::new("/usr/share/zoneinfo/Europe/Paris")
    );
    assert_eq!(
        fs::read_link(wants.join("serial-getty@ttyS0.service")).unwrap(),
        Path::new("/dev/null")
    );
    assert_eq!(read(&t, "etc/fstab"), "UUID=abcd / ext4 defaults 0 1\n");
    assert!(!t.root.join("etc/fstab.gandi-vm.bak").exists());
    let sshd = read(&t, "etc/ssh/sshd_config");
    assert!(sshd.starts_with("# BEGIN gandi-vm"), "{sshd}");
    assert!(sshd.contains("PermitEmptyPasswords no") && sshd.contains("X11Forwarding no"));
    // An /etc/hosts of the admin's is left as it is.
    let u = tree(true, &[]);
    fs::write(u.root.join("etc/hosts"), "127.0.0.1 localhost mine\n").unwrap();
    assert!(config(&u, "").status.success());
    assert_eq!(read(&u, "etc/hosts"), "127.0.0.1 localhost mine\n");
    // No localtime at all: the original's default.
    assert_eq!(read(&u, "etc/timezone"), "Europe/Paris\n");
    // An unknown zone is an error of that step only.
    let v = tree(true, &[]);
    let out = config(&v, "gandi=Mars/Olympus");
    assert!(!out.status.success());
    let s = status(&v.env, "config");
    assert_eq!(result(&s, "timezone"), "failed");
    assert_eq!(result(&s, "motd"), "changed");
}

#[test]
fn flags_off_leave_everything_as_it_was() {
    if !system_test(&["tune2fs"]) {
        return;
    }
    let t = tree(
        true,
        &[
            "CONFIG_CONSOLE=0",
            "CONFIG_HOSTNAME=0",
            "CONFIG_CRON=0",
            "CONFIG_TIMEZONE=0",
            "CONFIG_SSHD=0",
            "CONFIG_MOTD=0",
        ],
    );
    let before = snapshot(&t.root);
    assert!(config(&t, "gandi=America/New_York").status.success());
    let after = snapshot(&t.root);
    // Only the fstab fix and its backup (not gated, as in the original).
    let changed: Vec<&PathBuf> = after
        .keys()
        .filter(|k| before.get(*k) != after.get(*k))
        .collect();
    let names: Vec<String> = changed
        .iter()
        .map(|p| p.strip_prefix(&t.root).unwrap().display().to_string())
        .collect();
    assert_eq!(names, vec!["etc/fstab", "etc/fstab.gandi-vm.bak"]);
    assert!(!t.root.join("etc/systemd").exists());
    let s = status(&t.env, "config");
    for step in ["console", "hosts", "cron", "timezone", "sshd", "motd"] {
        assert_eq!(result(&s, step), "skipped", "{step}");
    }
}

const HASH: &str = "$6$saltsalt$Zx1dQ0z7nX0V9pXqHhG7vY1rN3tW8sL2kJ5mP4oA6bC9dE1fG3hI5jK7lM9nO1pQ3rS5tU7vW9xY1zA3bC5dE7";

fn postboot_tree(run: &str, timeout: u64) -> (Env, PathBuf, String) {
    let env = Env::new();
    env.settings(&[format!("GANDI_POSTBOOT_TIMEOUT={timeout}")]);
    let root = env.path().join("root");
    fs::create_dir_all(root.join("gandi")).unwrap();
    let config = format!(
        r#"{{"vm_hostname": "web1", "vm_conf": {{"password": "{HASH}"}}, "run": {run}, "vif": [{{"vif_number": 0}}]}}"#
    );
    fs::write(root.join("gandi/config"), &config).unwrap();
    let init = root.join("gandi/init");
    fs::write(&init, "#!/bin/sh\necho \"init $@\" >> ./runs.log\n").unwrap();
    fs::set_permissions(&init, fs::Permissions::from_mode(0o700)).unwrap();
    (env, root, config)
}

fn postboot(env: &Env, root: &Path) -> std::process::Output {
    Command::new(BIN)
        .args(["postboot", "--root"])
        .arg(root)
        .env("GANDI_CONFIG", env.config())
        .output()
        .unwrap()
}

fn grep_tree(dir: &Path, needle: &str) -> Vec<PathBuf> {
    snapshot(dir)
        .into_iter()
        .filter(|(_, (c, _))| String::from_utf8_lossy(c).contains(needle))
        .map(|(p, _)| p)
        .collect()
}

#[test]
fn commands_run_once_with_status_and_secrets_are_removed() {
    if !system_test(&[]) {
        return;
    }
    let (env, root, original) =
        postboot_tree(r#"["echo hello; echo one >> ./runs.log", "exit 3"]"#, 60);
    let out = postboot(&env, &root);
    // A command failed: the stage says so.
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("run[0]: hello"),
        "output not logged"
    );
    assert_eq!(
        fs::read_to_string(root.join("runs.log")).unwrap(),
        "one\ninit --postboot\n"
    );
    let s = status(&env, "postboot");
    assert_eq!(result(&s, "run[0]"), "changed");
    assert_eq!(result(&s, "run[1]"), "failed");
    assert_eq!(result(&s, "init --postboot"), "changed");
    assert_eq!(result(&s, "secrets"), "changed");
    // The secrets and the command material are gone; the rest stays.
    assert!(
        grep_tree(&root, HASH).is_empty(),
        "the hash is still on disk"
    );
    assert!(!root.join("gandi/init").exists());
    let cleaned: serde_json::Value =
        serde_json::from_slice(&fs::read(root.join("gandi/config")).unwrap()).unwrap();
    assert!(
        cleaned.get("run").is_none()
            && cleaned["vm_hostname"] == "web1"
            && cleaned["vif"][0]["vif_number"] == 0
    );
    assert_eq!(
        fs::metadata(root.join("gandi/config"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );

    // Run again: nothing runs.
    let out = postboot(&env, &root);
    assert!(out.status.success());
    assert_eq!(
        fs::read_to_string(root.join("runs.log"))
            .unwrap()
            .lines()
            .count(),
        2
    );
    // A second boot with the same config (bootstrap extracts it again, with
    // its secrets and script): nothing runs, the secrets go again.
    fs::write(root.join("gandi/config"), &original).unwrap();
    fs::write(
        root.join("gandi/init"),
        "#!/bin/sh\necho again >> ./runs.log\n",
    )
    .unwrap();
    fs::set_permissions(root.join("gandi/init"), fs::Permissions::from_mode(0o700)).unwrap();
    let out = postboot(&env, &root);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        fs::read_to_string(root.join("runs.log"))
            .unwrap()
            .lines()
            .count(),
        2
    );
    assert!(grep_tree(&root, HASH).is_empty());
    // A new config: a new run.
    fs::write(root.join("gandi/config"), original.replace("web1", "web2")).unwrap();
    let out = postboot(&env, &root);
    assert_eq!(out.status.code(), Some(1)); // "exit 3" again
    assert_eq!(
        fs::read_to_string(root.join("runs.log"))
            .unwrap()
            .lines()
            .filter(|l| *l == "one")
            .count(),
        2
    );
}

#[test]
fn a_hanging_command_is_stopped_at_its_limit() {
    if !system_test(&[]) {
        return;
    }
    let (env, root, _) = postboot_tree(r#""sleep 60; echo late >> ./runs.log""#, 1);
    fs::remove_file(root.join("gandi/init")).unwrap();
    let start = Instant::now();
    let out = postboot(&env, &root);
    assert!(start.elapsed() < Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(1));
    let s = status(&env, "postboot");
    assert_eq!(result(&s, "run[0]"), "failed");
    let detail = s["steps"][0]["detail"].as_str().unwrap();
    assert!(detail.contains("killed after 1 s"), "{detail}");
    std::thread::sleep(Duration::from_millis(200));
    assert!(!root.join("runs.log").exists());
    let shown = env.gandi(&["status"]);
    assert_eq!(shown.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&shown.stdout).contains("postboot: FAILED"));
}

#[test]
fn mount_stage_with_allow_mount_off_does_nothing() {
    if !system_test(&[]) {
        return;
    }
    let env = Env::new();
    env.settings(&["CONFIG_ALLOW_MOUNT=0".into()]);
    let out = env.gandi(&["mount"]);
    assert!(out.status.success());
    assert_eq!(result(&status(&env, "mount"), "replay"), "skipped");
}
