//! The attach helper under the real systemd-udevd, on loop devices: the
//! shipped rules, made to match this test's loop devices, installed under
//! /run/udev/rules.d for the test's duration.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)] // tests and benches: a failure is a panic, output is the report

mod common;

use common::*;
use gandi_vm::disk::fsgrow::fs_size;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// udevd for the test (reused when one runs, else started and stopped),
/// and the shipped rules installed for this test's settings.
struct Udev {
    _rules: RunRules,
    started: Option<i32>,
    _serial: Serial,
}

impl Udev {
    fn start(env: &Env) -> Udev {
        Udev::start_with(&loop_rules(&env.config()))
    }

    fn start_with(rules: &str) -> Udev {
        let serial = serial("udev");
        let started = start_udevd();
        Udev {
            _rules: RunRules::install("test", rules),
            started,
            _serial: serial,
        }
    }

    /// Replays `add` for the devices, as `gandi-vm mount` does at boot.
    fn trigger(&self, devs: &[&str]) {
        let mut cmd = Command::new("udevadm");
        cmd.args(["trigger", "--action=add", "--settle"]);
        for d in devs {
            cmd.arg(format!(
                "/sys/class/block/{}",
                d.trim_start_matches("/dev/")
            ));
        }
        sh(&mut cmd);
    }
}

impl Drop for Udev {
    fn drop(&mut self) {
        if let Some(pid) = self.started {
            // No growth of this test's left to act on the next test's
            // disks (a loop device's name is soon used again).
            // (Not while a failed test unwinds: a second panic aborts.)
            if std::thread::panicking() {
                settle();
            } else {
                quiesce("");
            }
            stop_pid(pid);
        }
    }
}

fn settings_for(env: &Env, names: &[String]) {
    let globs: Vec<String> = names
        .iter()
        .flat_map(|n| [n.clone(), format!("{n}p*")])
        .collect();
    env.settings(&[
        format!("CONFIG_DISK_DEVICES=\"{}\"", globs.join(" ")),
        format!("GANDI_HOOK_DIR={}", env.path().join("hooks").display()),
        format!("CONFIG_DISK_ROOT={}", env.path().join("srv").display()),
    ]);
}

fn record(env: &Env, name: &str) -> Option<serde_json::Value> {
    let text = fs::read(env.path().join(format!("run/disks/{name}.json"))).ok()?;
    Some(serde_json::from_slice(&text).expect("a torn or invalid record"))
}

/// Waits until the record of `name` satisfies `done`.
fn wait_record(
    env: &Env,
    name: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(r) = record(env, name)
            && done(&r)
        {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "{name}: record never got there: {:?}\nbackground growth log:\n{}",
            record(env, name),
            fs::read_to_string(env.path().join("run/disk-grow.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until no background growth of `name` (`gandi-vm disk-grow NAME`,
/// started where systemd is not the init; of any disk for "") runs.
fn wait_no_grower(name: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while grower_running(name) {
        assert!(Instant::now() < deadline, "{name}: its growth never ended");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn grower_running(name: &str) -> bool {
    fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| {
            let args = fs::read(e.path().join("cmdline")).unwrap_or_default();
            let args: Vec<&[u8]> = args.split(|b| *b == 0).collect();
            // `disk-grow NAME` or `disk-grow --adopt NAME` (any, for "").
            args.iter()
                .position(|a| *a == b"disk-grow")
                .is_some_and(|at| name.is_empty() || args[at + 1..].contains(&name.as_bytes()))
        })
}

/// Waits until nothing started for `name` can still write its record: no
/// background growth runs and udev's queue is empty (a growth's writes make
/// udev send a `change`, whose helper starts another growth). Settled
/// twice: udevd queues that `change` when it reads the close of the
/// device from inotify, which a first settle may answer before.
fn quiesce(name: &str) {
    for _ in 0..10 {
        wait_no_grower(name);
        settle();
        settle();
        if !grower_running(name) {
            return;
        }
    }
    panic!("{name}: its growths kept starting");
}

fn grown(r: &serde_json::Value) -> bool {
    r["state"] == "ready" && r["last_grow"].is_object()
}

/// A loop device over `mib` MiB whose filesystem fills half of it.
fn half_full(env: &Env, file: &str, fstype: &str, label: &str, mib: u64) -> LoopDisk {
    let d = LoopDisk::new(env.path(), file, mib);
    let half = format!("{}", (mib / 2) << 20);
    let mut cmd = match fstype {
        "ext4" => {
            let mut c = Command::new("mkfs.ext4");
            c.args([
                "-q",
                "-F",
                "-L",
                label,
                &d.dev,
                &format!("{}k", (mib / 2) << 10),
            ]);
            c
        }
        "xfs" => {
            let mut c = Command::new("mkfs.xfs");
            c.args([
                "-q",
                "-f",
                "-L",
                label,
                "-d",
                &format!("size={half}"),
                &d.dev,
            ]);
            c
        }
        "btrfs" => {
            let mut c = Command::new("mkfs.btrfs");
            c.args(["-q", "-f", "-L", label, "-b", &half, &d.dev]);
            c
        }
        other => panic!("{other}"),
    };
    sh(&mut cmd);
    settle();
    d
}

#[test]
fn attach_grows_ext4_xfs_btrfs_records_and_runs_the_hook() {
    if !system_test(&[
        "udevadm",
        "mkfs.xfs",
        "mkfs.btrfs",
        "resize2fs",
        "xfs_growfs",
    ]) {
        return;
    }
    let env = Env::new();
    // Everything under the lock: no other test attaches, detaches or
    // replays loop devices while ours are handled.
    env.settings(&["CONFIG_DISK_DEVICES=\"none\"".into()]);
    let udev = Udev::start(&env);
    let disks = [
        ("ext4", half_full(&env, "e.img", "ext4", "ge", 128)),
        ("xfs", half_full(&env, "x.img", "xfs", "gx", 640)),
        ("btrfs", half_full(&env, "b.img", "btrfs", "gb", 512)),
    ];
    let parted = LoopDisk::new(env.path(), "p.img", 64);
    let part = parted.partition("data");
    mkfs(&part, "ext4", Some("gp"));
    let part_size_before = fs_size(Path::new(&part), "ext4").unwrap();

    let hooks = env.path().join("hooks");
    let hook_log = env.path().join("hook.log");
    script(
        &hooks.join("post-disk-attach"),
        &format!("echo \"$@\" >> {}", hook_log.display()),
    );

    let mut names: Vec<String> = disks.iter().map(|(_, d)| d.name()).collect();
    names.push(parted.name());
    settings_for(&env, &names);
    let devs: Vec<&str> = disks
        .iter()
        .map(|(_, d)| d.dev.as_str())
        .chain([parted.dev.as_str(), part.as_str()])
        .collect();
    udev.trigger(&devs);

    for (fstype, d) in &disks {
        let r = wait_record(&env, &d.name(), grown);
        let dev_size = r["size"].as_u64().unwrap();
        let after = fs_size(Path::new(&d.dev), fstype).unwrap();
        assert!(
            after + (2 << 20) >= dev_size,
            "{fstype}: {after} of {dev_size}"
        );
        assert!(
            r["last_grow"]["before"].as_u64().unwrap() * 3 / 2 < after,
            "{fstype}: {r}"
        );
        assert_eq!(r["fstype"], *fstype);
        // Nothing left mounted by the growth (XFS and btrfs were mounted in
        // a private namespace).
        assert!(
            !mounts().iter().any(|m| m.0 == d.dev),
            "{fstype} left mounted"
        );
    }
    // The partitioned disk: recorded, left alone.
    let r = wait_record(&env, &parted.name(), |r| r["state"] == "not-grown");
    assert!(r["note"].as_str().unwrap().contains("partitioned"), "{r}");
    let rp = wait_record(&env, &format!("{}p1", parted.name()), |r| {
        r["state"] == "ready"
    });
    assert!(rp["note"].as_str().unwrap().contains("partition"), "{rp}");
    assert_eq!(fs_size(Path::new(&part), "ext4").unwrap(), part_size_before);

    // The hook ran once per disk, with DEV FSTYPE MOUNTPOINT.
    let deadline = Instant::now() + Duration::from_secs(30);
    while fs::read_to_string(&hook_log)
        .unwrap_or_default()
        .lines()
        .count()
        < 4
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = fs::read_to_string(&hook_log).unwrap_or_default();
    let srv = env.path().join("srv");
    assert!(
        log.contains(&format!("{} ext4 {}/ge", disks[0].1.dev, srv.display())),
        "{log}"
    );
    assert!(
        log.contains(&format!("{} xfs {}/gx", disks[1].1.dev, srv.display())),
        "{log}"
    );

    // Remove: the record goes (once nothing of the attach can write it).
    quiesce(&disks[0].1.name());
    sh(Command::new("udevadm")
        .args(["trigger", "--action=remove", "--settle"])
        .arg(format!("/sys/class/block/{}", disks[0].1.name())));
    assert!(record(&env, &disks[0].1.name()).is_none());
}

struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

#[test]
fn sixteen_disks_at_once_with_a_concurrent_reader() {
    if !system_test(&["udevadm", "resize2fs"]) {
        return;
    }
    let env = Env::new();
    // Everything under the lock: no other test attaches, detaches or
    // replays loop devices while ours are handled.
    env.settings(&["CONFIG_DISK_DEVICES=\"none\"".into()]);
    let udev = Udev::start(&env);
    let disks: Vec<LoopDisk> = (0..16)
        .map(|i| half_full(&env, &format!("d{i}.img"), "ext4", &format!("many{i}"), 32))
        .collect();
    let names: Vec<String> = disks.iter().map(|d| d.name()).collect();
    settings_for(&env, &names);

    // Readers: parse every record and run the map, all the time.
    let stop = Arc::new(AtomicBool::new(false));
    // Stops the reader also when an assertion fails.
    let _stop_reader = StopOnDrop(stop.clone());
    let reads = Arc::new(AtomicUsize::new(0));
    let reader = {
        let (stop, reads) = (stop.clone(), reads.clone());
        let dir = env.path().join("run/disks");
        let config = env.config();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if let Ok(rd) = fs::read_dir(&dir) {
                    for e in rd.flatten() {
                        let name = e.file_name().to_string_lossy().into_owned();
                        if name.ends_with(".json") {
                            let text = fs::read(e.path()).unwrap_or_default();
                            if !text.is_empty() {
                                serde_json::from_slice::<serde_json::Value>(&text)
                                    .unwrap_or_else(|err| panic!("torn record {name}: {err}"));
                                reads.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                }
                let _ = Command::new(BIN)
                    .args(["map", "many3"])
                    .env("GANDI_CONFIG", &config)
                    .output();
            }
        })
    };
    let devs: Vec<&str> = disks.iter().map(|d| d.dev.as_str()).collect();
    udev.trigger(&devs);
    for d in &disks {
        let r = wait_record(&env, &d.name(), grown);
        let after = fs_size(Path::new(&d.dev), "ext4").unwrap();
        assert!(after + (2 << 20) >= r["size"].as_u64().unwrap());
    }
    stop.store(true, Ordering::Relaxed);
    reader.join().expect("the reader saw a torn record");
    assert!(reads.load(Ordering::Relaxed) > 0);
    // The map serves what the records say.
    let out = env.map("many7");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(entry_device(&out.stdout), disks[7].dev);
}

#[test]
fn malformed_udev_environment_changes_nothing() {
    if !system_test(&[]) {
        return;
    }
    let env = Env::new();
    env.settings(&["CONFIG_DISK_DEVICES=\"vd*\"".into()]);
    let run = |pairs: &[(&str, &str)]| {
        let mut cmd = Command::new(BIN);
        cmd.arg("disk-event")
            .env_clear()
            .env("GANDI_CONFIG", env.config());
        for (k, v) in pairs {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    };
    for (pairs, expect) in [
        (vec![], "ACTION is not set"),
        (vec![("ACTION", "add")], "DEVPATH is not set"),
        (
            vec![("ACTION", "add"), ("DEVPATH", "/devices/x/vdb")],
            "MAJOR is not set",
        ),
        (
            vec![("ACTION", "frob"), ("DEVPATH", "/devices/x/vdb")],
            "unknown action",
        ),
        (
            vec![
                ("ACTION", "add"),
                ("DEVPATH", "/devices/x/vdb"),
                ("DEVNAME", "/dev/sda"),
                ("MAJOR", "1"),
                ("MINOR", "2"),
            ],
            "does not match",
        ),
    ] {
        let out = run(&pairs);
        assert!(!out.status.success(), "{pairs:?}");
        let err = stderr(&out);
        assert!(err.contains(expect), "{pairs:?}: {err}");
    }
    assert!(!env.path().join("run").exists(), "something was written");
}

#[test]
fn by_hand_with_a_missing_tool_reports_it_and_changes_nothing() {
    if !system_test(&["blkid", "mkfs.ext4"]) {
        return;
    }
    // Its loop device's events must not reach another test's rules.
    let _lock = serial("udev");
    let env = Env::new();
    let d = half_full(&env, "m.img", "ext4", "missing", 64);
    settings_for(&env, &[d.name()]);
    let before = fs_size(Path::new(&d.dev), "ext4").unwrap();
    // Only blkid on the PATH: e2fsck and resize2fs are missing.
    let bin = env.path().join("bin");
    fs::create_dir_all(&bin).unwrap();
    let blkid = [
        "/sbin/blkid",
        "/usr/sbin/blkid",
        "/bin/blkid",
        "/usr/bin/blkid",
    ]
    .into_iter()
    .find(|p| Path::new(p).exists())
    .unwrap();
    std::os::unix::fs::symlink(blkid, bin.join("blkid")).unwrap();
    let out = Command::new(BIN)
        .args(["disk-event", "add", &d.dev])
        .env("GANDI_CONFIG", env.config())
        .env("PATH", &bin)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("e2fsck"), "{err}");
    let r = record(&env, &d.name()).unwrap();
    assert_eq!(r["state"], "grow-failed");
    assert_eq!(fs_size(Path::new(&d.dev), "ext4").unwrap(), before);
    // With the tools, by hand, it grows.
    let out = Command::new(BIN)
        .args(["disk-event", "change", &d.name()])
        .env("GANDI_CONFIG", env.config())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(grown(&record(&env, &d.name()).unwrap()));
    assert!(fs_size(Path::new(&d.dev), "ext4").unwrap() > before);
}

#[test]
fn the_mount_stage_replays_the_disks_attached_during_boot() {
    if !system_test(&["udevadm", "resize2fs"]) {
        return;
    }
    let env = Env::new();
    // Attached while the helper did not yet know it (as before udev's
    // rules were loaded at boot): not recorded.
    env.settings(&["CONFIG_DISK_DEVICES=\"none\"".into()]);
    // Declared before the disk: dropped (and the lock released) after it.
    let udev = Udev::start(&env);
    let d = half_full(&env, "boot.img", "ext4", "atboot", 64);
    // The boot's coldplug: udev probes the disk anew (mkfs may have run
    // before udev saw the attach, and its entry would not know the
    // filesystem); the helper still does not know the disk.
    udev.trigger(&[&d.dev]);
    assert!(record(&env, &d.name()).is_none());
    settings_for(&env, &[d.name()]);
    let out = env.gandi(&["mount", "--timeout", "60"]);
    assert!(out.status.success(), "{}", stderr(&out));
    wait_record(&env, &d.name(), grown);
    let status = || -> serde_json::Value {
        serde_json::from_slice(&fs::read(env.path().join("run/status.json")).unwrap()).unwrap()
    };
    let step = status()["mount"]["steps"][0].clone();
    assert_eq!(step["result"], "changed", "{step}");
    assert!(
        step["detail"].as_str().unwrap().contains(&d.name()),
        "{step}"
    );
    // Once recorded, a disk is not replayed again.
    let out = env.gandi(&["mount", "--timeout", "60"]);
    assert!(out.status.success());
    let step = status()["mount"]["steps"][0].clone();
    assert_eq!(step["result"], "unchanged", "{step}");
    // --all replays every block device, as the original did.
    let out = env.gandi(&["mount", "--timeout", "60", "--all"]);
    assert!(out.status.success());
    let step = status()["mount"]["steps"][0].clone();
    assert_eq!(step["result"], "changed", "{step}");
    // The replay's helper hands the growth on again: once it ended.
    quiesce(&d.name());
    wait_record(&env, &d.name(), grown);
}

#[test]
fn hotplug_rules_under_udevadm_test() {
    if !system_test(&["udevadm"]) {
        return;
    }
    let shipped = include_str!("../udev/rules.d/85-gandi-hotplug.rules");
    let rules = shipped.replace("/usr/bin/gandi-vm", BIN);
    let name = "86-gandi-hotplug-test.rules";
    let test = |dev: &str| udevadm_test(&[], name, &rules, "add", dev);
    // Canary: asking udev about the host's NICs renames none of them.
    let before = nic_names();
    // Every device class our rules look at: the file is read without errors.
    let mut checked = 0;
    for dev in [
        "/sys/devices/system/cpu/cpu0",
        "/sys/devices/system/memory/memory0",
        "/sys/class/net/lo",
    ] {
        if !Path::new(dev).exists() {
            continue;
        }
        checked += 1;
        let out = test(dev);
        assert!(out.contains(name), "{dev}: our rules were not read: {out}");
        for line in out.lines().filter(|l| l.contains(name)) {
            assert!(!line.to_ascii_lowercase().contains("invalid"), "{line}");
            assert!(!line.to_ascii_lowercase().contains("error"), "{line}");
        }
        // cpu0 is never onlined by us; lo is not a hot-plugged NIC.
        assert!(!out.contains("gandi-iface@lo"), "{out}");
    }
    assert!(
        checked > 0,
        "no CPU, memory block or lo to test the rules on"
    );
    // Every NIC on a bus, whatever its name (eth0, enp0s3): only the unit
    // is asked for; a virtual one (no `device`: ifb, veth, bridge) gets
    // nothing.
    let mut nics = 0;
    for e in fs::read_dir("/sys/class/net").unwrap().flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        let kind = fs::read_to_string(e.path().join("type")).unwrap_or_default();
        if kind.trim() != "1" {
            continue;
        }
        let out = test(&format!("/sys/class/net/{n}"));
        let asked = out.contains(&format!("SYSTEMD_WANTS=gandi-iface@{n}.service"));
        if e.path().join("device").exists() {
            nics += 1;
            assert!(asked, "{n}: {out}");
        } else {
            assert!(!asked && !out.contains("gandi-iface@"), "{n}: {out}");
        }
    }
    assert_eq!(
        nic_names(),
        before,
        "udevadm test renamed a NIC of the host"
    );
    eprintln!("{nics} NICs on a bus tested");
}

/// The device holding `/` gets a record saying so, and no growth is handed
/// off for it (one stat in the udev helper, instead of a service started
/// for the root disk at every boot).
#[test]
fn the_root_filesystem_is_recorded_as_excluded_without_a_growth() {
    if !system_test(&[]) {
        return;
    }
    use std::os::unix::fs::MetadataExt;
    let dev = fs::metadata("/").unwrap().dev();
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    let Ok(target) = fs::read_link(format!("/sys/dev/block/{major}:{minor}")) else {
        eprintln!("skipped: / is not on a block device here");
        return;
    };
    let name = target.file_name().unwrap().to_string_lossy().into_owned();
    let env = Env::new();
    env.settings(&[format!("CONFIG_DISK_DEVICES=\"{name}\"")]);
    let out = Command::new(BIN)
        .arg("disk-event")
        .env_clear()
        .env("GANDI_CONFIG", env.config())
        .envs([
            ("ACTION", "add"),
            ("SUBSYSTEM", "block"),
            ("DEVNAME", &format!("/dev/{name}")),
            ("DEVPATH", &format!("/devices/test/block/{name}")),
            ("MAJOR", &major.to_string()),
            ("MINOR", &minor.to_string()),
            ("ID_FS_TYPE", "ext4"),
            ("ID_FS_USAGE", "filesystem"),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let r = record(&env, &name).expect("no record");
    assert_eq!(r["state"], "excluded", "{r}");
    assert!(r["note"].as_str().unwrap().contains("root"), "{r}");
    assert!(
        !env.path().join("run/disk-grow.log").exists(),
        "a growth was handed off for the root filesystem"
    );
    // The map refuses it (the root's device found without the mount
    // table: the process's root).
    let out = env.map(&name);
    assert!(!out.status.success(), "the root's disk served");
    assert!(
        stderr(&out).contains("holds the root filesystem"),
        "{}",
        stderr(&out)
    );
}

/// Restarts udev's event queue when dropped (also when the test fails).
struct QueueStopped;

impl QueueStopped {
    fn new() -> QueueStopped {
        sh(Command::new("udevadm").args(["control", "--stop-exec-queue"]));
        QueueStopped
    }
}

impl Drop for QueueStopped {
    fn drop(&mut self) {
        let _ = Command::new("udevadm")
            .args(["control", "--start-exec-queue"])
            .status();
    }
}

/// A disk attached under a loop device that held another disk before, and
/// looked up before udev has handled the attach: udev's entry is still the
/// earlier disk's (another attach sequence number). The map must not
/// believe it and miss (autofs would then refuse the key for a second or
/// two): it probes the disk and serves it.
#[test]
fn a_lookup_before_udev_handles_an_attach_probes_the_new_disk() {
    if !system_test(&["udevadm", "mkfs.ext4", "blkid"]) {
        return;
    }
    let env = Env::new();
    let udev = Udev::start(&env);
    if udev.started.is_none() {
        eprintln!(
            "skipped: a udevd this test did not start runs, and its queue is not ours to stop"
        );
        return;
    }
    let d = LoopDisk::new(env.path(), "earlier.img", 16);
    d.mkfs("ext4", Some("earlier"));
    settings_for(&env, &[d.name()]);
    udev.trigger(&[&d.dev]);
    assert!(env.map("earlier").status.success());
    // Detached, and the detach handled: the record is gone, udev's entry
    // stays with the earlier attach's sequence number. (Nothing of the
    // attach left running: a late growth would record the next disk.)
    quiesce(&d.name());
    sh(Command::new("losetup").args(["-d", &d.dev]));
    settle();
    quiesce(&d.name());
    assert!(
        record(&env, &d.name()).is_none(),
        "the detach left the record"
    );
    let later = env.path().join("later.img");
    fs::File::create(&later).unwrap().set_len(16 << 20).unwrap();
    mkfs(later.to_str().unwrap(), "ext4", Some("later"));
    let queue = QueueStopped::new();
    sh(Command::new("losetup").arg(&d.dev).arg(&later));
    let out = env.map("later");
    let said = stderr(&out);
    assert!(
        out.status.success(),
        "not served before udev's event: {said}"
    );
    let location = stdout(&out)
        .trim()
        .rsplit_once(" :")
        .map(|(_, l)| l.to_string())
        .unwrap();
    assert_eq!(
        fs::canonicalize(&location).unwrap(),
        Path::new(&d.dev),
        "{location}"
    );
    // The earlier disk's label is not served from udev's old entry.
    assert!(!env.map("earlier").status.success());
    drop(queue);
    settle();
    assert!(env.map("later").status.success());
}

/// A NIC whose name systemd escapes (`wan-1`: `-` means `/` in a unit's
/// instance) is asked for under its escaped name, so that the unit's
/// `BindsTo=` names its device and `%I` gives the name back; one that needs
/// no escape is asked for as it is. Shown on veth pairs in a namespace of
/// the test's (no bus NIC can be named here), with the rule's bus gate
/// replaced by a match of the test's names.
#[test]
fn an_interface_name_is_escaped_for_its_unit() {
    if !system_test(&["udevadm", "ip", "systemd-escape"]) {
        return;
    }
    let shipped = include_str!("../udev/rules.d/85-gandi-hotplug.rules");
    let gate = "TEST!=\"device\", GOTO=\"gandi_hotplug_end\"";
    assert!(shipped.contains(gate), "the rule's bus gate moved");
    // `udevadm test` makes no synthetic event: the coldplug's test is
    // taken as met (the VM test boots the real one), the marks' folder is
    // the test's.
    let synth = "ENV{SYNTH_UUID}==\"?*\"";
    assert!(shipped.contains(synth), "the rule's coldplug test moved");
    let env = Env::new();
    let marks = env.path().join("ifaces");
    let gated = shipped
        .replace("/usr/bin/gandi-vm", BIN)
        .replace(gate, "KERNEL!=\"gvq*\", GOTO=\"gandi_hotplug_end\"")
        .replace("/run/gandi/ifaces/", &format!("{}/", marks.display()));
    let text = gated.replace(synth, "ACTION==\"add\"");
    let ns = format!("gv-esc-{}", std::process::id());
    struct Ns(String);
    impl Drop for Ns {
        fn drop(&mut self) {
            let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
        }
    }
    let _ = Command::new("ip").args(["netns", "del", &ns]).output();
    assert!(
        Command::new("ip")
            .args(["netns", "add", &ns])
            .status()
            .unwrap()
            .success()
    );
    let _guard = Ns(ns.clone());
    let ip = |args: &[&str]| {
        let out = Command::new("ip")
            .args(["netns", "exec", &ns])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        stdout(&out) + &stderr(&out)
    };
    ip(&[
        "ip", "link", "add", "gvq-w1", "type", "veth", "peer", "name", "gvq.a",
    ]);
    // Bootstrap's marks are named by the interface index (a rename keeps
    // it), not by the name.
    let index = |name: &str| ip(&["cat", &format!("/sys/class/net/{name}/ifindex")]);
    let rules = std::cell::RefCell::new(String::new());
    let asked = |action: &str, name: &str| -> Vec<String> {
        let out = udevadm_test(
            &["ip", "netns", "exec", &ns],
            "86-gandi-escape-test.rules",
            &rules.borrow(),
            action,
            &format!("/sys/class/net/{name}"),
        );
        out.lines()
            .filter(|l| l.contains("SYSTEMD_WANTS=") && l.contains("gandi-iface"))
            .map(|l| l.trim_end().to_string())
            .collect()
    };
    let wanted = |name: &str| asked("add", name);
    let one = |wants: &[String], unit: &str, what: &str| {
        assert!(
            wants
                .iter()
                .any(|l| l.ends_with(&format!("SYSTEMD_WANTS={unit}"))),
            "{what}: {wants:?}"
        );
        // Asked for one unit only.
        assert_eq!(wants.len(), 1, "{what}: {wants:?}");
    };
    {
        *rules.borrow_mut() = text.clone();
        // Marked by bootstrap, a name the rule takes as it is gets the unit
        // without a process; one it must escape keeps the unit that has one.
        for (name, unit, mark) in [
            ("gvq-w1", r"gandi-iface@gvq\x2dw1.service", None),
            ("gvq.a", "gandi-iface@gvq.a.service", None),
            // A mark under the name is none.
            ("gvq.a", "gandi-iface@gvq.a.service", Some(false)),
            ("gvq-w1", r"gandi-iface@gvq\x2dw1.service", Some(true)),
            ("gvq.a", "gandi-iface-kept@gvq.a.service", Some(true)),
        ] {
            let _ = fs::remove_dir_all(&marks);
            if let Some(by_index) = mark {
                fs::create_dir_all(&marks).unwrap();
                let file = if by_index {
                    index(name).trim().to_string()
                } else {
                    name.to_string()
                };
                fs::write(marks.join(file), format!("{name}\n")).unwrap();
            }
            one(&wanted(name), unit, &format!("{name} {mark:?}"));
            // What systemd makes of it: the unit's %I is the name again.
            let back = Command::new("systemd-escape")
                .args(["--unescape", "--instance", unit])
                .output()
                .unwrap();
            assert_eq!(stdout(&back).trim(), name);
        }
    }
    // The rule as shipped: an `add` that is not the coldplug's (`udevadm
    // test` makes no synthetic event) gets the unit with a process, marked
    // or not.
    *rules.borrow_mut() = gated.clone();
    one(
        &wanted("gvq.a"),
        "gandi-iface@gvq.a.service",
        "a marked NIC's event that is not synthetic",
    );
    // The `move` of a NIC the coldplug's event renamed: the kept unit when
    // it is marked, the one with a process when not.
    let moved = |name: &str| asked("move", name);
    one(
        &moved("gvq.a"),
        "gandi-iface-kept@gvq.a.service",
        "a marked NIC's move",
    );
    fs::remove_dir_all(&marks).unwrap();
    one(
        &moved("gvq.a"),
        "gandi-iface@gvq.a.service",
        "an unmarked NIC's move",
    );
}

/// Waits until the clock that stamps files in `dir` has moved past the
/// time `path` was written (it ticks coarsely: two files written within a
/// tick have the same time).
fn past_the_time_of(path: &Path, dir: &Path) {
    let then = fs::metadata(path).unwrap().modified().unwrap();
    let probe = dir.join(".clock");
    for _ in 0..1000 {
        fs::write(&probe, "").unwrap();
        if fs::metadata(&probe).unwrap().modified().unwrap() > then {
            fs::remove_file(&probe).unwrap();
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    panic!("the clock of {} did not move", dir.display());
}

/// At boot, udev's rule leaves the coldplug's disks (a synthetic `add`) to
/// the mount stage, which records them in its own process, until that
/// stage ran; a `change` of a device holding `/` runs no helper. The
/// rule's paths are moved to the test's folder.
#[test]
fn the_coldplug_is_recorded_by_the_mount_stage_in_one_process() {
    if !system_test(&["udevadm", "resize2fs"]) {
        return;
    }
    let env = Env::new();
    let run = env.path().join("run");
    let enabled = env.path().join("etc/wants/gandi-mount.service");
    fs::create_dir_all(enabled.parent().unwrap()).unwrap();
    fs::write(&enabled, "").unwrap();
    fs::create_dir_all(env.path().join("run-systemd")).unwrap();
    let rules = loop_rules(&env.config())
        .replace("/run/gandi/", &format!("{}/", run.display()))
        .replace(
            "/run/systemd/system",
            &env.path().join("run-systemd").display().to_string(),
        )
        .replace(
            "/etc/systemd/system/multi-user.target.wants/gandi-mount.service",
            &enabled.display().to_string(),
        )
        .replace(
            "/etc/systemd/system/gandi-mount.service",
            &env.path().join("etc/masked").display().to_string(),
        )
        .replace(
            "/etc/gandi/disabled",
            &env.path().join("etc/disabled").display().to_string(),
        );
    assert!(
        rules.contains(&enabled.display().to_string()),
        "the rule changed shape"
    );
    env.settings(&["CONFIG_DISK_DEVICES=\"none\"".into()]);
    let udev = Udev::start_with(&rules);
    let d = half_full(&env, "cold.img", "ext4", "cold", 64);
    // A disk its filesystem fills (nothing to grow).
    let off = LoopDisk::new(env.path(), "off.img", 32);
    off.mkfs("ext4", Some("off"));
    settle();
    settings_for(&env, &[d.name(), off.name()]);
    // gandi-vm turned off: the mount stage will not run, the helper does.
    fs::write(env.path().join("etc/disabled"), "").unwrap();
    udev.trigger(&[&off.dev]);
    assert!(
        record(&env, &off.name()).is_some(),
        "a coldplug add was left to a mount stage turned off"
    );
    fs::remove_file(env.path().join("etc/disabled")).unwrap();
    // The coldplug's `add`: left to the mount stage.
    udev.trigger(&[&d.dev]);
    assert!(
        record(&env, &d.name()).is_none(),
        "the helper ran for a coldplug add"
    );
    // The mount stage starts later than the coldplug, as at boot: its
    // mark is then newer than udev's entry on the filesystem's clock.
    let m = fs::read_to_string(format!("/sys/class/block/{}/dev", d.name())).unwrap();
    past_the_time_of(Path::new(&format!("/run/udev/data/b{}", m.trim())), &run);
    let out = env.gandi(&["mount", "--timeout", "60"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let status: serde_json::Value =
        serde_json::from_slice(&fs::read(run.join("status.json")).unwrap()).unwrap();
    let step = &status["mount"]["steps"][0];
    assert_eq!(
        step["detail"].as_str().unwrap(),
        format!("recorded {}", d.name()),
        "{step}"
    );
    wait_record(&env, &d.name(), grown);
    // Once it ran, a synthetic `add` runs the helper again.
    quiesce(&d.name());
    fs::remove_file(run.join(format!("disks/{}.json", d.name()))).unwrap();
    udev.trigger(&[&d.dev]);
    assert!(
        record(&env, &d.name()).is_some(),
        "the helper did not run after the replay"
    );
    // A `change` of a device marked as holding `/`: no helper. The mark
    // first, then the background growth of that `add` let end (it writes
    // the record and its tools' writes make udev send a `change`), then
    // the queue drained: nothing of before can write the record after.
    fs::create_dir_all(run.join("root-device")).unwrap();
    fs::write(run.join(format!("root-device/{}", d.name())), "").unwrap();
    quiesce(&d.name());
    fs::remove_file(run.join(format!("disks/{}.json", d.name()))).unwrap();
    sh(Command::new("udevadm")
        .args(["trigger", "--action=change", "--settle"])
        .arg(format!("/sys/class/block/{}", d.name())));
    assert!(
        record(&env, &d.name()).is_none(),
        "the helper ran for the root's change"
    );
    fs::remove_file(run.join(format!("root-device/{}", d.name()))).unwrap();
    sh(Command::new("udevadm")
        .args(["trigger", "--action=change", "--settle"])
        .arg(format!("/sys/class/block/{}", d.name())));
    assert!(
        record(&env, &d.name()).is_some(),
        "the helper did not run for a change"
    );
}

/// A mount kept alive in a mount namespace of its own (`unshare`), ended
/// by PID when dropped, also when the test fails.
struct MountedApart {
    child: std::process::Child,
}

impl MountedApart {
    fn new(dev: &str, dir: &Path) -> MountedApart {
        let child = ends_with_the_test(&mut Command::new("unshare"))
            .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
            .arg("mount \"$0\" \"$1\" && exec sleep 300")
            .arg(dev)
            .arg(dir)
            .spawn()
            .unwrap();
        MountedApart { child }
    }
}

impl Drop for MountedApart {
    fn drop(&mut self) {
        // `sleep` itself (unshare and sh exec): its end ends the namespace
        // and its mount.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until `path` exists (`true`) or not (`false`).
fn wait_path(path: &Path, present: bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while path.exists() != present {
        assert!(
            Instant::now() < deadline,
            "{} never {}",
            path.display(),
            if present { "came" } else { "went" }
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether a lookup of `key` opens the mount table (traced).
fn reads_the_mount_table(env: &Env, key: &str) -> (bool, std::process::Output) {
    let trace = env.path().join(format!("{key}.trace"));
    let out = Command::new("strace")
        .args(["-f", "-e", "trace=openat,open", "-o"])
        .arg(&trace)
        .arg(env.map_link())
        .arg(key)
        .env("GANDI_CONFIG", env.config())
        .output()
        .unwrap();
    let text = fs::read_to_string(&trace).unwrap();
    (text.contains("/mountinfo"), out)
}

/// A lookup that the index answers reads no mount table for an ext4 or
/// XFS disk that sysfs shows no filesystem of that driver holds, and
/// still refuses every disk mounted elsewhere (ext4 and XFS, which sysfs
/// shows mounted; btrfs and ext3, for which the mount table decides). A
/// disk mounted only in another mount namespace is served as the mount
/// table of the map's own namespace says (sysfs shows it mounted: the
/// table is read).
#[test]
fn a_disk_mounted_elsewhere_is_refused_with_or_without_the_mount_table() {
    if !system_test(&[
        "mkfs.ext4",
        "mkfs.xfs",
        "mkfs.btrfs",
        "mkfs.ext3",
        "strace",
        "unshare",
    ]) {
        return;
    }
    if !Command::new("strace")
        .args(["-o", "/dev/null", "true"])
        .status()
        .is_ok_and(|s| s.success())
    {
        eprintln!("skipped: strace cannot trace here");
        return;
    }
    // The root's device read without the mount table needs a number of a
    // block device (not overlayfs's or btrfs's anonymous one).
    let quick_root = {
        use std::os::unix::fs::MetadataExt;
        libc::major(fs::metadata("/").unwrap().dev()) != 0
    };
    // No udevd of another test's records these loop devices meanwhile.
    let _serial = serial("udev");
    let env = Env::new();
    let kinds = [
        ("ext4", "mext4", quick_root),
        ("xfs", "mxfs", quick_root),
        ("btrfs", "mbtrfs", false),
        ("ext3", "mext3", false),
    ];
    let disks: Vec<LoopDisk> = kinds
        .iter()
        .map(|(t, label, _)| {
            let d = LoopDisk::new(env.path(), &format!("{t}.img"), 320);
            d.mkfs(t, Some(label));
            d
        })
        .collect();
    settings_for(&env, &disks.iter().map(LoopDisk::name).collect::<Vec<_>>());
    for d in &disks {
        let out = env.gandi(&["disk-event", "add", &d.name()]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let canary = env.path().join("mnt-canary");
    fs::create_dir_all(&canary).unwrap();
    fs::write(canary.join("keep"), "x").unwrap();
    for ((fstype, label, by_sysfs), d) in kinds.iter().zip(&disks) {
        let (read, out) = reads_the_mount_table(&env, label);
        assert!(out.status.success(), "{fstype}: {}", stderr(&out));
        assert_eq!(
            read, !by_sysfs,
            "{fstype}: the mount table read ({read}) where sysfs says"
        );
        let dir = env.path().join(format!("mnt-{fstype}"));
        fs::create_dir_all(&dir).unwrap();
        sh(Command::new("mount").arg(&d.dev).arg(&dir));
        let (read, out) = reads_the_mount_table(&env, label);
        let _ = Command::new("umount").arg(&dir).status();
        assert!(read, "{fstype}: mounted, and the mount table not read");
        assert!(!out.status.success(), "{fstype}: served while mounted");
        assert!(
            stderr(&out).contains("already mounted"),
            "{fstype}: {}",
            stderr(&out)
        );
        // Mounted in another mount namespace only.
        if *fstype == "ext4" || *fstype == "xfs" {
            let driver = if *fstype == "xfs" { "xfs" } else { "ext4" };
            let entry = Path::new("/sys/fs").join(driver).join(d.name());
            let apart = MountedApart::new(&d.dev, &dir);
            wait_path(&entry, true);
            let (read, out) = reads_the_mount_table(&env, label);
            drop(apart);
            wait_path(&entry, false);
            assert!(read, "{fstype}: sysfs shows a mount, the table not read");
            assert!(
                out.status.success(),
                "{fstype}: refused for a mount in another namespace: {}",
                stderr(&out)
            );
        }
        assert!(
            env.map(label).status.success(),
            "{fstype}: not served after"
        );
    }
    assert!(canary.join("keep").exists(), "the canary folder changed");
}
