//! The program map under the real automount daemon, on loop devices.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)] // tests and benches: a failure is a panic, output is the report

mod common;

use common::*;
use std::fs;
use std::path::Path;
use std::time::Duration;

/// Settings that make exactly these loop devices (and their partitions)
/// candidates, so tests running side by side never see each other's disks.
fn only(env: &Env, disks: &[&LoopDisk], extra: &[&str]) {
    let globs: Vec<String> = disks
        .iter()
        .flat_map(|d| [d.name(), format!("{}p*", d.name())])
        .collect();
    let mut lines = vec![format!("CONFIG_DISK_DEVICES=\"{}\"", globs.join(" "))];
    lines.extend(extra.iter().map(|s| s.to_string()));
    env.settings(&lines);
}

fn label(tag: &str) -> String {
    format!("{tag}{}", std::process::id())
}

#[test]
fn ext4_xfs_btrfs_mount_on_access_with_master_options_and_expire() {
    if !system_test(&[
        "automount",
        "mkfs.ext4",
        "mkfs.xfs",
        "mkfs.btrfs",
        "losetup",
    ]) {
        return;
    }
    let env = Env::new();
    let ext4 = LoopDisk::new(env.path(), "ext4.img", 64);
    let xfs = LoopDisk::new(env.path(), "xfs.img", 320);
    let btrfs = LoopDisk::new(env.path(), "btrfs.img", 128);
    let disks = [("ext4", &ext4), ("xfs", &xfs), ("btrfs", &btrfs)];
    for (t, d) in &disks {
        d.mkfs(t, Some(&label(t)));
        LoopDisk::write_file(&d.dev, "hello", &format!("data on {t}\n"));
    }
    only(&env, &[&ext4, &xfs, &btrfs], &[]);
    let root = env.path().join("srv");
    let am = Automount::start(&env, &root, 3);

    for (t, d) in &disks {
        let content = read_through(&root.join(label(t)).join("hello"));
        assert_eq!(
            content.as_deref(),
            Some(format!("data on {t}\n").as_str()),
            "{t}"
        );
        let m = am
            .mounted()
            .into_iter()
            .find(|m| m.1 == root.join(label(t)))
            .unwrap_or_else(|| panic!("{t} not mounted: {:?}", am.mounted()));
        assert_eq!(m.0, d.dev, "{t} mounted from the wrong device");
        assert_eq!(m.2, *t);
        for opt in ["nosuid", "nodev", "noatime", "sync"] {
            assert!(
                m.3.split(',').any(|o| o == opt),
                "{t}: {opt} missing in {}",
                m.3
            );
        }
    }
    assert!(
        am.wait_idle(Duration::from_secs(60)),
        "the idle timeout did not unmount: {:?}",
        am.mounted()
    );
    // And it mounts again on the next access.
    assert!(lookup(&root.join(label("ext4"))));
    assert_eq!(am.mounted().len(), 1);
}

#[test]
fn names_uuids_partitions_duplicates_and_exclusions() {
    if !system_test(&["automount", "mkfs.ext4", "mkswap", "sfdisk", "losetup"]) {
        return;
    }
    let env = Env::new();
    let unlabelled = LoopDisk::new(env.path(), "nolabel.img", 32);
    unlabelled.mkfs("ext4", None);
    let parted = LoopDisk::new(env.path(), "parted.img", 64);
    let part = parted.partition("data");
    mkfs(&part, "ext4", Some(&label("part")));
    let dup_a = LoopDisk::new(env.path(), "dupa.img", 32);
    let dup_b = LoopDisk::new(env.path(), "dupb.img", 32);
    dup_a.mkfs("ext4", Some(&label("dup")));
    dup_b.mkfs("ext4", Some(&label("dup")));
    LoopDisk::write_file(&dup_a.dev, "who", "a");
    LoopDisk::write_file(&dup_b.dev, "who", "b");
    let swap = LoopDisk::new(env.path(), "swap.img", 32);
    swap.mkfs("swap", Some(&label("swap")));
    let busy = LoopDisk::new(env.path(), "busy.img", 32);
    busy.mkfs("ext4", Some(&label("busy")));
    let elsewhere = tempdir();
    sh(std::process::Command::new("mount")
        .arg(&busy.dev)
        .arg(elsewhere.path()));
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(self.0)
                .output();
        }
    }
    let _unmount = Unmount(elsewhere.path());

    only(
        &env,
        &[&unlabelled, &parted, &dup_a, &dup_b, &swap, &busy],
        &[],
    );
    let root = env.path().join("srv");
    let am = Automount::start(&env, &root, 600);

    // Unlabelled: by kernel name; its UUID (in any case) is refused and
    // names that path, mounted or not (one path per disk).
    assert!(lookup(&root.join(unlabelled.name())));
    let uuid = sh(std::process::Command::new("blkid").args([
        "-s",
        "UUID",
        "-o",
        "value",
        &unlabelled.dev,
    ]));
    let uuid = uuid.trim();
    assert!(!uuid.is_empty());
    assert!(!lookup(&root.join(uuid)));
    sh(std::process::Command::new("umount").arg(root.join(unlabelled.name())));
    assert!(!lookup(&root.join(uuid.to_uppercase())));
    let out = env.map(uuid);
    assert!(
        stderr(&out).contains(&format!(
            "served at {}",
            root.join(unlabelled.name()).display()
        )),
        "{}",
        stderr(&out)
    );

    // Partitioned disk: the labelled partition is served, the disk is not.
    assert!(lookup(&root.join(label("part"))));
    assert!(!lookup(&root.join(parted.name())));

    // Two disks with one label: the first in kernel order, with a warning;
    // the other by its name.
    let (first, second) = if dup_a.name().len() < dup_b.name().len()
        || (dup_a.name().len() == dup_b.name().len() && dup_a.name() < dup_b.name())
    {
        (&dup_a, &dup_b)
    } else {
        (&dup_b, &dup_a)
    };
    let out = env.map(&label("dup"));
    assert!(out.status.success());
    assert_eq!(entry_device(&out.stdout), first.dev);
    assert!(stderr(&out).contains("2 devices have the label"));
    let who_first = if first.dev == dup_a.dev { "a" } else { "b" };
    let who_second = if who_first == "a" { "b" } else { "a" };
    assert_eq!(
        read_through(&root.join(label("dup")).join("who")).as_deref(),
        Some(who_first)
    );
    assert_eq!(
        read_through(&root.join(second.name()).join("who")).as_deref(),
        Some(who_second)
    );

    // Swap and a disk mounted elsewhere: nothing mounted, nothing printed.
    let before = am.mounted().len();
    for key in [label("swap"), swap.name(), label("busy"), busy.name()] {
        assert!(!lookup(&root.join(&key)), "{key} served");
        let out = env.map(&key);
        assert!(!out.status.success(), "{key}");
        assert!(out.stdout.is_empty(), "{key}");
        assert!(!out.stderr.is_empty(), "{key}: no reason given");
    }
    // Misses and odd keys.
    for key in ["no-such-disk", "-o", "..x", "a b c", "$HOME", "&"] {
        assert!(!lookup(&root.join(key)), "{key} served");
        let out = env.map(key);
        assert!(!out.status.success() && out.stdout.is_empty(), "{key}");
    }
    assert_eq!(am.mounted().len(), before, "{:?}", am.mounted());
    let log = fs::read_to_string(env.path().join("automount.log")).unwrap_or_default();
    assert!(
        log.contains("swap area"),
        "the daemon's log lacks the reason"
    );
}

#[test]
fn allow_mount_off_serves_nothing() {
    if !system_test(&["automount", "mkfs.ext4", "losetup"]) {
        return;
    }
    let env = Env::new();
    let disk = LoopDisk::new(env.path(), "d.img", 32);
    disk.mkfs("ext4", Some(&label("off")));
    only(&env, &[&disk], &["CONFIG_ALLOW_MOUNT=0"]);
    let root = env.path().join("srv");
    let am = Automount::start(&env, &root, 600);
    assert!(!lookup(&root.join(label("off"))));
    assert!(am.mounted().is_empty());
    let out = env.map(&label("off"));
    assert!(!out.status.success() && out.stdout.is_empty());
    assert!(stderr(&out).contains("CONFIG_ALLOW_MOUNT=0"));
}

#[test]
fn release_runs_hooks_stops_services_unmounts_and_the_map_refuses() {
    if !system_test(&["automount", "mkfs.ext4", "losetup"]) {
        return;
    }
    let env = Env::new();
    let disk = LoopDisk::new(env.path(), "r.img", 32);
    disk.mkfs("ext4", Some(&label("rel")));
    LoopDisk::write_file(&disk.dev, "keep", "x");
    let hooks = env.path().join("hooks");
    let log = env.path().join("calls.log");
    script(
        &hooks.join("pre-disk-detach"),
        &format!("echo hook \"$@\" >> {}", log.display()),
    );
    // systemd is not PID 1 on the test machines: a stand-in systemctl that
    // logs what it is asked.
    let bin = env.path().join("bin");
    script(
        &bin.join("systemctl"),
        &format!("echo systemctl \"$@\" >> {}", log.display()),
    );
    only(
        &env,
        &[&disk],
        &[&format!("GANDI_HOOK_DIR={}", hooks.display())],
    );
    let root = env.path().join("srv");
    let am = Automount::start(&env, &root, 600);
    let mp = root.join(label("rel"));
    assert!(lookup(&mp));
    fs::create_dir_all(mp.join(".gandi")).unwrap();
    fs::write(
        mp.join(".gandi/services"),
        "postgresql.service\n# a comment\nnginx\n",
    )
    .unwrap();

    let path = path_with(&bin);
    let release = |extra: &[&str]| {
        let mut cmd = std::process::Command::new(BIN);
        cmd.args(["disk", "release", &label("rel")])
            .args(extra)
            .env("GANDI_CONFIG", env.config())
            .env("PATH", &path);
        cmd.output().unwrap()
    };

    // Busy: a process works inside it. Named; the services it stopped
    // are started again and the message says what was done and undone.
    let mut busy = std::process::Command::new("sleep")
        .arg("60")
        .current_dir(&mp)
        .spawn()
        .unwrap();
    let out = release(&[]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains(&format!("pid {} (sleep) by its cwd", busy.id())),
        "{err}"
    );
    assert!(
        err.contains("started postgresql.service again")
            && err.contains("started nginx again")
            && err.contains("pre-disk-detach hook ran and is not undone"),
        "{err}"
    );
    let calls = fs::read_to_string(&log).unwrap();
    let order: Vec<&str> = calls
        .lines()
        .filter(|l| l.starts_with("systemctl"))
        .collect();
    assert_eq!(
        order,
        [
            "systemctl stop postgresql.service",
            "systemctl stop nginx",
            "systemctl start postgresql.service",
            "systemctl start nginx"
        ],
        "{calls}"
    );
    fs::remove_file(&log).unwrap();
    assert!(
        am.mounted().iter().any(|m| m.1 == mp),
        "unmounted although busy"
    );
    assert!(env.map(&disk.name()).status.code() == Some(1)); // mounted: refused
    let _ = busy.kill();
    let _ = busy.wait();

    // Free: hook, services, unmount, mark.
    let out = release(&[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let calls = fs::read_to_string(&log).unwrap();
    assert!(
        calls.contains(&format!("hook {} {}", disk.dev, mp.display())),
        "{calls}"
    );
    assert!(
        calls.contains("systemctl stop postgresql.service"),
        "{calls}"
    );
    assert!(calls.contains("systemctl stop nginx"), "{calls}");
    assert!(am.mounted().is_empty(), "{:?}", am.mounted());
    // The map refuses it now, under every key.
    for key in [label("rel"), disk.name()] {
        let out = env.map(&key);
        assert!(!out.status.success() && out.stdout.is_empty());
        assert!(stderr(&out).contains("released"), "{key}");
    }
    assert!(!lookup(&root.join(disk.name())));
    // The key it was mounted under: autofs kept the map's answer, but the
    // answer's link is gone, so nothing mounts.
    let _ = lookup(&mp);
    assert!(
        am.mounted().is_empty(),
        "released disk mounted again: {:?}",
        am.mounted()
    );
    // Twice: says so, changes nothing.
    let out = release(&[]);
    assert!(out.status.success());
    assert!(stdout(&out).contains("already released"));
    // Attached again (a new attach sequence number): served again.
    sh(std::process::Command::new("losetup").args(["-d", &disk.dev]));
    sh(std::process::Command::new("losetup")
        .arg(&disk.dev)
        .arg(&disk.image));
    settle();
    // The key autofs kept the released answer for fails once, then autofs
    // asks the map again (after the master map's negative timeout: within
    // 2 s). Its other names stay refused (one path per disk).
    let uuid =
        sh(std::process::Command::new("blkid").args(["-s", "UUID", "-o", "value", &disk.dev]));
    assert!(!lookup(&root.join(uuid.trim())), "served under its UUID");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !lookup(&mp) {
        assert!(
            std::time::Instant::now() < deadline,
            "{} never served again",
            mp.display()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn release_force_unmounts_a_busy_disk_lazily() {
    if !system_test(&["automount", "mkfs.ext4", "losetup"]) {
        return;
    }
    let env = Env::new();
    let disk = LoopDisk::new(env.path(), "f.img", 32);
    disk.mkfs("ext4", Some(&label("force")));
    only(&env, &[&disk], &[]);
    let root = env.path().join("srv");
    let am = Automount::start(&env, &root, 600);
    let mp = root.join(label("force"));
    assert!(lookup(&mp));
    let mut busy = std::process::Command::new("sleep")
        .arg("60")
        .current_dir(&mp)
        .spawn()
        .unwrap();
    let out = env.gandi(&["disk", "release", &label("force"), "--force"]);
    let _ = busy.kill();
    let _ = busy.wait();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("lazily"));
    assert!(am.mounted().is_empty());
}

/// Settings pointing `mount-root` and `automount` at the test's master map.
fn admin_settings(env: &Env, disk: &LoopDisk, root: &Path, other_master: &Path) {
    only(
        env,
        &[disk],
        &[
            &format!(
                "GANDI_MASTER_MAP={}",
                env.path().join("auto.master").display()
            ),
            &format!("GANDI_AUTO_MASTER={}", other_master.display()),
            &format!("CONFIG_DISK_ROOT={}", root.display()),
        ],
    );
}

/// autofs ages master-map entries in whole seconds: a re-read within the
/// second of the previous one does not see a removed entry. A real admin
/// never moves the root that fast; the tests wait that second out.
fn let_autofs_age() {
    std::thread::sleep(Duration::from_millis(1100));
}

fn wait_autofs(path: &Path, present: bool) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::time::Instant::now() < deadline {
        if mounts().iter().any(|m| m.1 == path && m.2 == "autofs") == present {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn mount_root_moves_the_root_refuses_when_busy_and_is_idempotent() {
    if !system_test(&["automount", "mkfs.ext4", "losetup"]) {
        return;
    }
    let env = Env::new();
    let disk = LoopDisk::new(env.path(), "m.img", 32);
    disk.mkfs("ext4", Some(&label("move")));
    LoopDisk::write_file(&disk.dev, "f", "moved\n");
    let old = env.path().join("srv");
    let new = env.path().join("data/disks");
    // Another map owns a root nearby.
    let other = env.path().join("auto.master.system");
    fs::write(
        &other,
        format!("{} /etc/auto.misc\n", env.path().join("misc").display()),
    )
    .unwrap();
    admin_settings(&env, &disk, &old, &other);
    let mut am = Automount::start(&env, &old, 600);

    // Busy: a disk is mounted under the old root.
    assert!(lookup(&old.join(label("move"))));
    let out = env.gandi(&["mount-root", new.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains(&disk.dev) && err.contains("nothing was changed"),
        "{err}"
    );
    assert!(!new.exists());
    sh(std::process::Command::new("umount").arg(old.join(label("move"))));

    // Bad places.
    for bad in ["relative", "/", "/usr/local/disks", "/etc", "/srv/../etc"] {
        let out = env.gandi(&["mount-root", bad]);
        assert!(!out.status.success(), "{bad} accepted");
    }
    let inside = env.path().join("misc/sub");
    assert!(
        !env.gandi(&["mount-root", inside.to_str().unwrap()])
            .status
            .success()
    );

    // The move. Another process named automount (a copy of sleep, which
    // SIGHUP ends) is not ours to signal: only the daemon of the PID file.
    let decoy_bin = env.path().join("automount");
    fs::copy("/bin/sleep", &decoy_bin).unwrap();
    struct Decoy(std::process::Child);
    impl Drop for Decoy {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut decoy = Decoy(
        std::process::Command::new(&decoy_bin)
            .arg("60")
            .spawn()
            .unwrap(),
    );
    let_autofs_age();
    let out = env.gandi(&["mount-root", new.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let said = stdout(&out);
    assert!(
        said.contains("CONFIG_DISK_ROOT") && said.contains("SIGHUP"),
        "{said}"
    );
    assert!(wait_autofs(&new, true), "autofs did not take the new root");
    assert!(
        wait_autofs(&old, false),
        "the old root is still served: {}",
        fs::read_to_string(env.path().join("automount.log")).unwrap_or_default()
    );
    // Looked at once the daemon took the signal: a signal sent to the
    // decoy as well has ended it by now.
    assert!(
        decoy.0.try_wait().unwrap().is_none(),
        "another automount process was signalled"
    );
    drop(decoy);
    am.root = new.clone();
    assert_eq!(
        read_through(&new.join(label("move")).join("f")).as_deref(),
        Some("moved\n")
    );
    assert!(!lookup(&old.join(label("move"))));
    assert!(
        fs::read_to_string(env.config())
            .unwrap()
            .contains(&format!("CONFIG_DISK_ROOT={}", new.display()))
    );

    // Twice: nothing changes.
    let master = fs::read(env.path().join("auto.master")).unwrap();
    let settings = fs::read(env.config()).unwrap();
    let out = env.gandi(&["mount-root", new.to_str().unwrap()]);
    assert!(out.status.success());
    assert!(stdout(&out).contains("nothing to change"));
    assert_eq!(fs::read(env.path().join("auto.master")).unwrap(), master);
    assert_eq!(fs::read(env.config()).unwrap(), settings);
    drop(am);
}

#[test]
fn automount_disable_and_enable() {
    if !system_test(&["automount", "mkfs.ext4", "losetup"]) {
        return;
    }
    let env = Env::new();
    let disk = LoopDisk::new(env.path(), "a.img", 32);
    disk.mkfs("ext4", Some(&label("toggle")));
    let root = env.path().join("srv");
    let other = env.path().join("auto.master.system");
    fs::write(&other, "").unwrap();
    admin_settings(&env, &disk, &root, &other);
    let am = Automount::start(&env, &root, 600);

    let_autofs_age();
    let out = env.gandi(&["automount", "disable"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(wait_autofs(&root, false), "still served after disable");
    assert!(
        fs::read_to_string(env.path().join("auto.master"))
            .unwrap()
            .contains(&format!("#{} program:", root.display()))
    );
    assert!(
        fs::read_to_string(env.config())
            .unwrap()
            .contains("CONFIG_ALLOW_MOUNT=0")
    );
    let again = env.gandi(&["automount", "disable"]);
    assert!(stdout(&again).contains("nothing to change"));
    // With its last map gone, automount stops (autofs's own behaviour).
    let lock = am.stop_keep_lock();

    // Enable: the entry and the flag come back; autofs, started again (as
    // `systemctl reload-or-restart` does on a VM), serves the disk.
    let out = env.gandi(&["automount", "enable"]);
    assert!(out.status.success());
    assert!(stdout(&out).contains("entry for"));
    assert!(
        fs::read_to_string(env.config())
            .unwrap()
            .contains("CONFIG_ALLOW_MOUNT=1")
    );
    let am = Automount::start_locked(&env, &root, lock);
    assert!(lookup(&root.join(label("toggle"))));
    // The lock stays held: `automount auto` below signals automount too.
    let _lock = am.stop_keep_lock();

    // auto: another map owns the root, ours steps aside.
    fs::write(&other, format!("{} /etc/auto.other\n", root.display())).unwrap();
    let out = env.gandi(&["automount", "auto"]);
    assert!(out.status.success());
    assert!(stdout(&out).contains("another autofs map owns"));
    assert!(
        fs::read_to_string(env.path().join("auto.master"))
            .unwrap()
            .contains(&format!("#{}", root.display()))
    );
}
