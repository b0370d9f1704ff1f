//! `make fault-test`: processes killed at random moments, broken state,
//! a disk pulled while mounted, load. Each test is `#[ignore]`d in a plain
//! `cargo test` (they take minutes); `make fault-test` runs them. Random
//! moments come from a fixed seed, so a run is repeatable.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)] // tests and benches: a failure is a panic, output is the report

mod boot;
#[path = "../common/mod.rs"]
mod common;
mod damage;
mod growth;
mod state;

use common::fixtures::*;
use common::*;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const HASH: &str = "$6$saltsalt$Zx1dQ0z7nX0V9pXqHhG7vY1rN3tW8sL2kJ5mP4oA6bC9dE1fG3hI5jK7lM9nO1pQ3rS5tU7vW9xY1zA3bC5dE7";

/// A small fixed-seed random source (xorshift).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// Every descendant of `pid` (children first found, then theirs).
fn descendants(pid: i32) -> Vec<i32> {
    let mut all = vec![pid];
    let mut i = 0;
    while i < all.len() {
        let parent = all[i];
        for e in fs::read_dir("/proc").unwrap().flatten() {
            let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                continue;
            };
            let stat = fs::read_to_string(e.path().join("stat")).unwrap_or_default();
            let ppid = stat
                .rsplit_once(") ")
                .and_then(|(_, r)| r.split(' ').nth(1))
                .and_then(|s| s.parse::<i32>().ok());
            if ppid == Some(parent) && !all.contains(&p) {
                all.push(p);
            }
        }
        i += 1;
    }
    all
}

/// SIGKILLs a process and everything it started (as an OOM kill or a
/// power cut would stop them all), then reaps it.
fn kill_tree(child: &mut Child) {
    let pid = child.id() as i32;
    let all = descendants(pid);
    for p in &all {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(*p),
            nix::sys::signal::Signal::SIGSTOP,
        );
    }
    // Stopped, none can start another: the list is complete.
    let all = descendants(pid);
    for p in &all {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(*p),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    let _ = child.wait();
    // The others are reaped by init (or were our tree's): wait until gone.
    let deadline = Instant::now() + Duration::from_secs(20);
    for p in all {
        while Path::new("/proc").join(p.to_string()).exists()
            && !fs::read_to_string(format!("/proc/{p}/stat"))
                .unwrap_or_default()
                .contains(") Z")
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        stdout(&out),
        stderr(&out)
    );
    stdout(&out)
}

/// Whether the filesystem on `dev` checks clean, read-only.
fn checks_clean(dev: &str, fstype: &str) -> Result<(), String> {
    let out = match fstype {
        "ext4" => Command::new("e2fsck").args(["-fn", dev]).output(),
        "xfs" => Command::new("xfs_repair").args(["-n", dev]).output(),
        _ => Command::new("btrfs")
            .args(["check", "--readonly", dev])
            .output(),
    }
    .unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{}{}", stdout(&out), stderr(&out)))
    }
}

/// A data disk for the fault tests: a loop device of `mib` MiB with
/// `fstype` filling `fs_mib` of it, holding a file of known content.
struct FaultDisk {
    disk: LoopDisk,
    sum: String,
}

fn fault_disk(dir: &Path, fstype: &str, label: &str, mib: u64, fs_mib: u64) -> FaultDisk {
    let disk = LoopDisk::new(dir, &format!("{label}.img"), mib);
    let size = format!("{}M", fs_mib);
    match fstype {
        "ext4" => {
            run_ok(Command::new("mkfs.ext4").args(["-q", "-F", "-L", label, &disk.dev, &size]))
        }
        "xfs" => run_ok(Command::new("mkfs.xfs").args([
            "-q",
            "-f",
            "-L",
            label,
            "-d",
            &format!("size={size}"),
            &disk.dev,
        ])),
        _ => run_ok(Command::new("mkfs.btrfs").args([
            "-q",
            "-f",
            "-L",
            label,
            "-b",
            &format!("{}", fs_mib << 20),
            &disk.dev,
        ])),
    };
    let mnt = tempdir();
    run_ok(Command::new("mount").arg(&disk.dev).arg(mnt.path()));
    let data: Vec<u8> = (0..(4u32 << 20))
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    fs::write(mnt.path().join("known"), &data).unwrap();
    run_ok(Command::new("umount").arg(mnt.path()));
    let sum = sha(&data);
    FaultDisk { disk, sum }
}

fn sha(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The checksum of the known file, read from a read-only mount.
fn known_sum(dev: &str) -> String {
    let mnt = tempdir();
    run_ok(
        Command::new("mount")
            .args(["-o", "ro"])
            .arg(dev)
            .arg(mnt.path()),
    );
    let data = fs::read(mnt.path().join("known"));
    run_ok(Command::new("umount").arg(mnt.path()));
    sha(&data.unwrap())
}

fn fault_env(dev_name: &str) -> Env {
    let env = Env::new();
    env.settings(&[
        format!("CONFIG_DISK_DEVICES={dev_name}"),
        format!("GANDI_STATE_DIR={}", env.path().join("state").display()),
    ]);
    env
}

fn grower(env: &Env, name: &str) -> Command {
    let mut c = Command::new(BIN);
    c.args(["disk-grow", name])
        .env("GANDI_CONFIG", env.config())
        .env_remove("JOURNAL_STREAM")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

/// Whether `pid` has ended (a zombie not reaped yet, or gone).
fn ended(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| s.contains(") Z"))
        .unwrap_or(true)
}

/// Whether the grower's offline-resize mark is there now.
fn resize_mark(env: &Env) -> bool {
    fs::read_dir(env.path().join("state/resizing"))
        .map(|d| {
            d.flatten()
                .any(|e| e.path().extension().is_none_or(|x| x != "new"))
        })
        .unwrap_or(false)
}

/// Waits until the grower `child` has marked an offline resize as started
/// (true), or has ended without (false). Leaves the child unreaped.
fn resize_started(env: &Env, child: &Child) -> bool {
    while !ended(child.id()) {
        if resize_mark(env) {
            return true;
        }
        std::thread::sleep(Duration::from_micros(100));
    }
    false
}

/// How long the grower's offline resize lasts (its mark's life), when it
/// resizes offline. Leaves the child unreaped.
fn resize_window(env: &Env, child: &Child) -> Option<Duration> {
    if !resize_started(env, child) {
        return None;
    }
    let t = Instant::now();
    while resize_mark(env) && !ended(child.id()) {
        std::thread::sleep(Duration::from_micros(100));
    }
    Some(t.elapsed())
}

fn kill_growth(fstype: &str, rng: &mut Rng) {
    let (mib, fs_mib) = match fstype {
        "ext4" => (2048, 64),
        "xfs" => (4096, 320),
        _ => (2048, 160),
    };
    // How long an uninterrupted growth takes, to kill within it, and how
    // long its offline resize (if any) lasts.
    let probe_dir = tempdir();
    let probe = fault_disk(probe_dir.path(), fstype, "probe", mib, fs_mib);
    let env = fault_env(&probe.disk.name());
    let t = Instant::now();
    let probe_child = grower(&env, &probe.disk.name()).spawn().unwrap();
    let window = resize_window(&env, &probe_child);
    let probe_out = probe_child.wait_with_output().unwrap();
    let full = t.elapsed().as_millis() as u64;
    assert!(probe_out.status.success());
    // Where the kernel refuses online resizing (no CAP_SYS_RESOURCE here),
    // ext4 grows offline: the kills must then land in offline resizes and
    // the recovery must have run. Kills at random moments of the whole
    // growth may all miss a resize of a few milliseconds on a fast
    // machine, so every other round waits for the resize's mark and kills
    // at a random moment of the resize itself (at once in round 1).
    let offline = stderr(&probe_out).contains("resizing offline");
    drop(probe);
    let mut recovered = 0;
    for round in 0..20 {
        let dir = tempdir();
        let label = format!("kill{round}");
        let d = fault_disk(dir.path(), fstype, &label, mib, fs_mib);
        let name = d.disk.name();
        let env = fault_env(&name);
        let mut child = grower(&env, &name).spawn().unwrap();
        let at = if offline && round % 2 == 1 {
            let in_resize = if round == 1 {
                0
            } else {
                rng.below(window.unwrap_or_default().as_micros() as u64 + 1)
            };
            if resize_started(&env, &child) {
                std::thread::sleep(Duration::from_micros(in_resize));
            }
            format!("{in_resize} µs into the offline resize")
        } else {
            let at = rng.below(full + full / 5 + 1);
            std::thread::sleep(Duration::from_millis(at));
            format!("at {at} ms of {full}")
        };
        kill_tree(&mut child);
        // The next growth (a retry, or the next boot's) recovers and ends
        // the work.
        let out = grower(&env, &name).output().unwrap();
        let said = stderr(&out);
        assert!(
            out.status.success(),
            "{fstype} round {round} (killed {at}): {said}"
        );
        if said.contains("was cut short") {
            recovered += 1;
        }
        if let Err(e) = checks_clean(&d.disk.dev, fstype) {
            panic!("{fstype} round {round} (killed {at}): not clean after recovery: {e}\n{said}");
        }
        assert_eq!(
            known_sum(&d.disk.dev),
            d.sum,
            "{fstype} round {round}: the file changed"
        );
        let fs_size = gandi_vm::disk::fsgrow::fs_size(Path::new(&d.disk.dev), fstype).unwrap();
        assert!(
            fs_size + (2 << 20) >= mib << 20,
            "{fstype} round {round} (killed {at}): {fs_size} of {} bytes; the grower said: {said}",
            mib << 20
        );
        let served = env.gandi(&["map", &label]);
        assert!(
            served.status.success(),
            "{fstype} round {round}: not served: {}",
            stderr(&served)
        );
    }
    let resize = match window {
        Some(w) => format!(", its offline resize {} ms", w.as_millis()),
        None => String::new(),
    };
    eprintln!(
        "{fstype}: 20 growths killed ({full} ms each uncut{resize}), {recovered} offline resizes cut short and repaired"
    );
    if offline {
        assert!(
            recovered > 0,
            "{fstype}: no kill landed in an offline resize"
        );
    }
}

/// Stops the processes `pids` and everything they started; when `still`
/// says so then (the work is not over), SIGKILLs them all and returns
/// true; else lets them go on.
fn kill_pids(pids: &[i32], still: impl Fn() -> bool) -> bool {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    let mut all: Vec<i32> = pids.iter().flat_map(|p| descendants(*p)).collect();
    for p in &all {
        let _ = kill(Pid::from_raw(*p), Signal::SIGSTOP);
    }
    all = pids.iter().flat_map(|p| descendants(*p)).collect();
    let landed = pids.iter().any(|p| !ended(*p as u32)) && still();
    let signal = if landed {
        Signal::SIGKILL
    } else {
        Signal::SIGCONT
    };
    for p in &all {
        let _ = kill(Pid::from_raw(*p), signal);
    }
    landed
}

/// The record of `name` as the disks' table has it: (`growing`,
/// `growth_left`), with the record's grower and watcher.
fn reported(env: &Env, name: &str) -> (bool, bool, Vec<u32>) {
    let out = env.gandi(&["disks", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let dev = v
        .as_array()
        .and_then(|a| a.iter().find(|d| d["name"] == name))
        .cloned()
        .unwrap_or_default();
    let record = fs::read(env.path().join(format!("run/disks/{name}.json")))
        .ok()
        .and_then(|d| serde_json::from_slice::<serde_json::Value>(&d).ok())
        .unwrap_or_default();
    let pids = ["grower", "watcher"]
        .iter()
        .filter_map(|k| record[k].as_u64().map(|p| p as u32))
        .collect();
    (dev["growing"] == true, dev["growth_left"] == true, pids)
}

/// The record's state and grower, raw.
fn record_of(env: &Env, name: &str) -> serde_json::Value {
    fs::read(env.path().join(format!("run/disks/{name}.json")))
        .ok()
        .and_then(|d| serde_json::from_slice(&d).ok())
        .unwrap_or_default()
}

/// The grower as the udev path starts it without systemd: `disk-grow
/// NAME` (the watcher, which runs the work in a child) in a process group
/// of its own.
fn watched_grower(env: &Env, name: &str) -> Child {
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(env.path().join("grow.log"))
        .unwrap();
    let mut c = Command::new(BIN);
    c.args(["disk-grow", name])
        .env("GANDI_CONFIG", env.config())
        .env_remove("JOURNAL_STREAM")
        .stdout(Stdio::null())
        .stderr(log);
    std::os::unix::process::CommandExt::process_group(&mut c, 0);
    c.spawn().unwrap()
}

/// Five growths of `fstype` whose grower and tool are SIGKILLed while
/// they work, with no event after: the watcher starts the work again, or
/// (its watcher killed too) the next lookup does. Each disk ends grown,
/// clean and served within 5 minutes, and is never reported growing once
/// no grower of it lives.
fn kill_grower(fstype: &str, rng: &mut Rng) -> usize {
    let (mib, fs_mib) = match fstype {
        "ext4" => (2048, 64),
        "xfs" => (4096, 320),
        _ => (2048, 160),
    };
    let probe_dir = tempdir();
    let probe = fault_disk(probe_dir.path(), fstype, "probe", mib, fs_mib);
    let env = fault_env(&probe.disk.name());
    let t = Instant::now();
    let out = grower(&env, &probe.disk.name()).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let full = t.elapsed().as_micros() as u64;
    drop(probe);
    let mut landed = 0;
    let mut resumed_by_lookup = 0;
    // A kill lands only while the growth runs: tries enough for five.
    for attempt in 0..40 {
        if landed == 5 {
            break;
        }
        let dir = tempdir();
        let label = format!("grow{attempt}");
        let d = fault_disk(dir.path(), fstype, &label, mib, fs_mib);
        let name = d.disk.name();
        let env = fault_env(&name);
        let mut watcher = watched_grower(&env, &name);
        // Its worker named in the record.
        let deadline = Instant::now() + Duration::from_secs(60);
        let worker = loop {
            let r = record_of(&env, &name);
            if r["state"] == "growing" && r["grower"].is_u64() {
                break r["grower"].as_u64().unwrap() as i32;
            }
            if ended(watcher.id()) || Instant::now() > deadline {
                break 0;
            }
            std::thread::sleep(Duration::from_micros(200));
        };
        let kill_watcher = landed % 2 == 1;
        let mut hit = false;
        if worker != 0 {
            std::thread::sleep(Duration::from_micros(rng.below(full / 2 + 1)));
            let mut pids = vec![worker];
            if kill_watcher {
                pids.insert(0, watcher.id() as i32);
            }
            hit = kill_pids(&pids, || {
                let r = record_of(&env, &name);
                r["state"] == "growing" && r["grower"].as_u64() == Some(worker as u64)
            });
        }
        if !hit {
            let _ = watcher.wait();
            continue;
        }
        landed += 1;
        let at =
            format!("{fstype} kill {landed} (attempt {attempt}, watcher killed: {kill_watcher})");
        if kill_watcher {
            // The killed ones gone first: SIGKILL lands once the kernel
            // lets go of them (a btrfs resize in its ioctl), and a lookup
            // before that sees them alive and leaves the growth to a
            // later one.
            let gone_by = Instant::now() + Duration::from_secs(60);
            while ![worker as u32, watcher.id()].iter().all(|p| ended(*p)) {
                assert!(
                    Instant::now() < gone_by,
                    "{at}: the killed growth never ended"
                );
                std::thread::sleep(Duration::from_millis(10));
            }
            // No event: a lookup finds the growth left undone and starts
            // it again, without waiting for it.
            let t = Instant::now();
            let _ = env.gandi(&["map", &label]);
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "{at}: the lookup waited"
            );
            resumed_by_lookup += 1;
        }
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            let (growing, _left, pids) = reported(&env, &name);
            if growing {
                assert!(
                    pids.iter().any(|p| !ended(*p)),
                    "{at}: reported growing while none of {pids:?} lives"
                );
            }
            let r = record_of(&env, &name);
            if r["state"] == "ready" && !growing {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{at}: not grown after 5 minutes: {r}\n{}",
                fs::read_to_string(env.path().join("grow.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let status = watcher.wait().unwrap();
        assert!(
            kill_watcher || status.success(),
            "{at}: the watcher ended with {status}"
        );
        // Every process of ours for it has ended.
        let deadline = Instant::now() + Duration::from_secs(30);
        while reported(&env, &name).2.iter().any(|p| !ended(*p)) {
            assert!(Instant::now() < deadline, "{at}: a grower lingers");
            std::thread::sleep(Duration::from_millis(50));
        }
        if let Err(e) = checks_clean(&d.disk.dev, fstype) {
            panic!("{at}: not clean: {e}");
        }
        assert_eq!(known_sum(&d.disk.dev), d.sum, "{at}: the file changed");
        let fs_size = gandi_vm::disk::fsgrow::fs_size(Path::new(&d.disk.dev), fstype).unwrap();
        assert!(
            fs_size + (2 << 20) >= mib << 20,
            "{at}: {fs_size} of {} bytes",
            mib << 20
        );
        let served = env.gandi(&["map", &label]);
        assert!(
            served.status.success(),
            "{at}: not served: {}",
            stderr(&served)
        );
        let log = fs::read_to_string(env.path().join("grow.log")).unwrap_or_default();
        assert!(
            kill_watcher || log.contains("its grower was killed"),
            "{at}: {log}"
        );
    }
    assert_eq!(
        landed, 5,
        "{fstype}: only {landed} kills landed in a growth"
    );
    eprintln!(
        "{fstype}: 5 growers killed ({} ms each uncut), {resumed_by_lookup} of them with their watcher, resumed by a lookup",
        full / 1000
    );
    landed
}

/// Every entry of a tree but the per-run status: type, mode, and content
/// or link target (no times).
fn tree_files(root: &Path) -> std::collections::BTreeMap<String, String> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = std::collections::BTreeMap::new();
    fn walk(root: &Path, d: &Path, out: &mut std::collections::BTreeMap<String, String>) {
        for e in fs::read_dir(d).unwrap().flatten() {
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            if rel == "run" {
                continue;
            }
            let m = fs::symlink_metadata(&p).unwrap();
            let mode = m.permissions().mode();
            let what = if m.file_type().is_symlink() {
                format!("link {}", fs::read_link(&p).unwrap().display())
            } else if m.is_dir() {
                walk(root, &p, out);
                "dir".into()
            } else {
                format!("file {}", String::from_utf8_lossy(&fs::read(&p).unwrap()))
            };
            out.insert(rel, format!("{mode:o} {what}"));
        }
    }
    walk(root, root, &mut out);
    out
}

/// A stage on fresh trees: once uninterrupted, then 20 times killed at a
/// random moment and run again; each time the tree must equal the
/// uninterrupted run's.
fn kill_stage(what: &str, rng: &mut Rng, prepare: &dyn Fn(&Path) -> (Command, PathBuf)) {
    let reference_dir = tempdir();
    let (mut cmd, root) = prepare(reference_dir.path());
    let t = Instant::now();
    let out = cmd.output().unwrap();
    let full = t.elapsed().as_millis() as u64;
    assert!(out.status.success(), "{what}: {}", stderr(&out));
    let reference = tree_files(&root);
    for round in 0..20 {
        let dir = tempdir();
        let (mut cmd, root) = prepare(dir.path());
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let at = rng.below(full + 1);
        std::thread::sleep(Duration::from_millis(at));
        kill_tree(&mut child);
        let (mut again, _) = prepare_again(&cmd);
        let out = again.output().unwrap();
        assert!(
            out.status.success(),
            "{what} round {round} (killed at {at} ms of {full}): {}",
            stderr(&out)
        );
        let now = tree_files(&root);
        for (p, v) in &reference {
            assert_eq!(
                now.get(p),
                Some(v),
                "{what} round {round} (killed at {at} ms): {p}"
            );
        }
        for p in now.keys() {
            assert!(
                reference.contains_key(p),
                "{what} round {round} (killed at {at} ms): {p} left behind"
            );
        }
    }
}

/// The same command line again, with the same environment.
fn prepare_again(cmd: &Command) -> (Command, ()) {
    let mut c = Command::new(cmd.get_program());
    c.args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    (c, ())
}

/// A tmpfs mounted at a path for the length of a test.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        fs::create_dir_all(at).unwrap();
        run_ok(
            Command::new("mount")
                .args([
                    "-t",
                    "tmpfs",
                    "-o",
                    &format!("size={size},mode=0755"),
                    "tmpfs",
                ])
                .arg(at),
        );
        Tmpfs(at.to_path_buf())
    }

    fn remount(&self, opts: &str) {
        run_ok(
            Command::new("mount")
                .args(["-o", &format!("remount,{opts}")])
                .arg(&self.0),
        );
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn said(out: &std::process::Output) -> String {
    format!("{}{}", stdout(out), stderr(out))
}

/// The map serves `key` from `dev`; an unknown key is refused.
fn served_from(env: &Env, key: &str, dev: &str, case: &str) {
    let out = env.map(key);
    assert!(out.status.success(), "{case}: not served: {}", said(&out));
    assert_eq!(entry_device(&out.stdout), dev, "{case}");
    let none = env.map("no-such-disk");
    assert_eq!(none.status.code(), Some(1), "{case}: {}", said(&none));
    assert!(none.stdout.is_empty(), "{case}");
}

fn disk_minor(dev: &str) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let rdev = fs::metadata(dev).unwrap().rdev();
    (rdev & 0xff) | ((rdev >> 12) & !0xff)
}

/// Loop devices attached and detached by the load test, detached on drop.
struct Attached(Vec<Option<String>>);

impl Drop for Attached {
    fn drop(&mut self) {
        for dev in self.0.iter().flatten() {
            let _ = Command::new("losetup").args(["-d", dev]).status();
        }
    }
}

/// Every record and the index parse (what a reader may see at any moment).
fn records_whole(run: &Path) -> Result<usize, String> {
    let mut read = 0;
    if let Ok(rd) = fs::read_dir(run.join("disks")) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !name.ends_with(".json") {
                continue;
            }
            match fs::read(e.path()) {
                Ok(text) => {
                    serde_json::from_slice::<serde_json::Value>(&text)
                        .map_err(|err| format!("torn record {name}: {err}"))?;
                    read += 1;
                }
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => return Err(format!("{name}: {err}")),
            }
        }
    }
    match fs::read_to_string(run.join("disks.index")) {
        Ok(text) if !text.starts_with("# gandi-vm disk index") || !text.ends_with('\n') => {
            Err(format!("torn index: {text:?}"))
        }
        _ => Ok(read),
    }
}
