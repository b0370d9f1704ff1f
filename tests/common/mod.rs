//! Test support: loop disks, a private automount daemon, private settings.
//! Everything a test creates is removed in `Drop`, also when it fails.
#![allow(dead_code)]

pub mod fixtures;

use std::fs::{self, File};
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_gandi-vm");
/// The program map, as installed at `/etc/auto.gandi`.
pub const MAP: &str = env!("CARGO_BIN_EXE_gandi-map");

/// Whether this system test can run: as root, with the tools it needs.
/// Otherwise it is skipped, and says so on the terminal even when the
/// harness captures output (a line `SKIPPED name: why`): as a normal user,
/// or with `GANDI_SKIP_SYSTEM_TESTS=1`. A missing tool as root is a
/// failure: `scripts/install-deps` installs them.
pub fn system_test(tools: &[&str]) -> bool {
    let skip = |why: &str| {
        use std::io::Write;
        let name = std::thread::current()
            .name()
            .unwrap_or("a system test")
            .to_string();
        // Written to the file descriptor, past the harness's capture.
        let _ = writeln!(std::io::stderr().lock(), "SKIPPED {name}: {why}");
        false
    };
    if std::env::var_os("GANDI_SKIP_SYSTEM_TESTS").is_some_and(|v| v == "1") {
        return skip("GANDI_SKIP_SYSTEM_TESTS=1");
    }
    if !nix::unistd::geteuid().is_root() {
        return skip("needs root (loop devices, mounts, real daemons)");
    }
    // The kernel has to mount autofs for the real automount to run: on a
    // kernel built without it (CONFIG_AUTOFS_FS unset) these tests cannot
    // run at all, and the VM test, which boots Debian's kernel, runs them.
    if tools.contains(&"automount")
        && !fs::read_to_string("/proc/filesystems")
            .unwrap_or_default()
            .lines()
            .any(|l| l.split_whitespace().last() == Some("autofs"))
    {
        return skip("this kernel has no autofs (CONFIG_AUTOFS_FS); `make vm-test` runs automount");
    }
    for tool in tools {
        let found = std::env::var("PATH")
            .unwrap_or_default()
            .split(':')
            .chain(["/sbin", "/usr/sbin"])
            .any(|d| Path::new(d).join(tool).exists());
        assert!(found, "{tool} is missing: run scripts/install-deps");
    }
    true
}

/// Runs a command, panicking with its output when it fails.
pub fn sh(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("starting {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A machine-wide lock: only one automount daemon can run at a time.
pub struct Serial(File);

pub fn serial(name: &str) -> Serial {
    let path = format!("/run/lock/gandi-vm-test-{name}.lock");
    let f = File::create(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    f.lock().unwrap();
    Serial(f)
}

/// `PATH` with the folder `bin` (stand-ins for tools) searched first.
pub fn path_with(bin: &Path) -> String {
    format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// Writes an executable shell script (hooks, stand-ins for tools).
pub fn script(path: &Path, body: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, format!("#!/bin/sh\n{body}\n")).unwrap();
    sh(Command::new("chmod").arg("755").arg(path));
}

/// A loop device over a sparse image file, detached on drop.
pub struct LoopDisk {
    pub dev: String,
    pub image: PathBuf,
}

impl LoopDisk {
    /// A loop device of `mib` MiB over a new image in `dir`.
    pub fn new(dir: &Path, file: &str, mib: u64) -> LoopDisk {
        let image = dir.join(file);
        let f = File::create(&image).unwrap();
        f.set_len(mib << 20).unwrap();
        drop(f);
        let dev = sh(Command::new("losetup")
            .args(["--find", "--show", "--partscan"])
            .arg(&image))
        .trim()
        .to_string();
        LoopDisk { dev, image }
    }

    /// The kernel name (`loop3`).
    pub fn name(&self) -> String {
        self.dev.trim_start_matches("/dev/").to_string()
    }

    /// Makes a filesystem of `fstype` with `label` over the whole device.
    pub fn mkfs(&self, fstype: &str, label: Option<&str>) -> &Self {
        mkfs(&self.dev, fstype, label);
        self
    }

    /// Writes one GPT partition (named `name`) over the whole disk and
    /// tells the kernel; returns the partition's device path.
    pub fn partition(&self, name: &str) -> String {
        let mut child = Command::new("sfdisk")
            .args(["--quiet", "--label", "gpt", &self.dev])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        use std::io::Write;
        writeln!(child.stdin.take().unwrap(), "start=2048, name={name}").unwrap();
        assert!(child.wait().unwrap().success(), "sfdisk failed");
        let part = format!("{}p1", self.dev);
        if !Path::new(&part).exists() {
            let _ = Command::new("partx").args(["-a", &self.dev]).output();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while !Path::new(&part).exists() {
            assert!(Instant::now() < deadline, "{part} did not appear");
            std::thread::sleep(Duration::from_millis(50));
        }
        part
    }

    /// Writes `content` into `file` at the root of the filesystem on `dev`.
    pub fn write_file(dev: &str, file: &str, content: &str) {
        let mnt = tempdir();
        sh(Command::new("mount").arg(dev).arg(mnt.path()));
        let res = fs::write(mnt.path().join(file), content);
        sh(Command::new("umount").arg(mnt.path()));
        res.unwrap();
    }
}

impl Drop for LoopDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dev).output();
        let _ = Command::new("losetup").arg("-d").arg(&self.dev).output();
    }
}

/// `k` names of loop devices that no file is attached to now, from
/// `loop256` up (above those `losetup --find` hands out first): a test
/// that detaches its images and attaches them again takes the same names
/// back (`attach_loop`), so that its settings and rules name its own
/// devices, never `loop*`, which covers the machine's.
pub fn free_loop_names(k: usize) -> Vec<String> {
    (256..4096)
        .map(|n| format!("loop{n}"))
        .filter(|name| !Path::new(&format!("/sys/block/{name}/loop")).exists())
        .take(k)
        .collect()
}

/// Attaches `image` at `/dev/NAME` (`losetup` makes the device if it is
/// missing). False when it failed: the device taken meanwhile by another
/// process, for one.
pub fn attach_loop(name: &str, image: &Path) -> bool {
    assert!(name.starts_with("loop") && !name.contains('/'), "{name}");
    Command::new("losetup")
        .arg(format!("/dev/{name}"))
        .arg(image)
        .output()
        .is_ok_and(|o| o.status.success())
}

pub fn mkfs(dev: &str, fstype: &str, label: Option<&str>) {
    let mut cmd = match fstype {
        "swap" => Command::new("mkswap"),
        "vfat" => Command::new("mkfs.vfat"),
        t => Command::new(format!("mkfs.{t}")),
    };
    match fstype {
        "ext2" | "ext3" | "ext4" => {
            cmd.args(["-q", "-F"]);
        }
        "xfs" | "btrfs" => {
            cmd.args(["-q", "-f"]);
        }
        "vfat" => {
            cmd.arg("-n");
        }
        _ => {}
    }
    if let Some(l) = label {
        if fstype == "vfat" {
            cmd.arg(l);
        } else {
            cmd.args(["-L", l]);
        }
    } else if fstype == "vfat" {
        cmd.arg("NO NAME");
    }
    cmd.arg(dev);
    sh(&mut cmd);
    settle();
}

/// Waits for udev to process pending events, when a udevd runs (a test
/// must not read udev's entry from before its own mkfs).
pub fn settle() {
    if udevd_running() {
        let _ = Command::new("udevadm")
            .args(["settle", "-t", "30"])
            .output();
    }
}

pub fn udevd_running() -> bool {
    !udevd_pids().is_empty()
}

/// Live systemd-udevd processes (zombies do not count: one a test stopped
/// may not be reaped yet).
pub fn udevd_pids() -> Vec<i32> {
    let mut pids = Vec::new();
    for e in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ...
        let Some((left, right)) = stat.rsplit_once(") ") else {
            continue;
        };
        if left.ends_with("(systemd-udevd") && !right.starts_with('Z') {
            pids.push(pid);
        }
    }
    pids
}

/// Stops a daemon by PID and waits (up to 10 s) for it to be gone.
pub fn stop_pid(pid: i32) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGTERM,
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if stat.is_empty()
            || stat
                .rsplit_once(") ")
                .is_some_and(|(_, r)| r.starts_with('Z'))
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
}

/// A private settings file and run directory.
pub struct Env {
    pub dir: tempfile::TempDir,
}

/// Where tests make their folders: as root, a folder of /run (root's
/// alone, like the places hooks and plugins run from); otherwise the
/// system's temporary folder.
pub fn test_base() -> PathBuf {
    if !nix::unistd::geteuid().is_root() {
        return std::env::temp_dir();
    }
    let base = PathBuf::from("/run/gandi-vm-test");
    fs::create_dir_all(&base).unwrap();
    base
}

/// A new private folder beneath [`test_base`], removed on drop.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir_in(test_base()).unwrap()
}

impl Env {
    pub fn new() -> Env {
        Env { dir: tempdir() }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn config(&self) -> PathBuf {
        self.path().join("gandi.conf")
    }

    /// Writes the settings file: the given lines plus a private run dir.
    pub fn settings(&self, lines: &[String]) {
        // Growths are handed to this build (not to the machine's units),
        // their marks kept here (not in the machine's /var/lib/gandi), no
        // hook of the machine runs, and only the automount this test
        // started is ever signalled. A line given below wins over these.
        let mut text = format!(
            "GANDI_BIN={BIN}\nGANDI_DISABLED_FILE={}\nGANDI_RUN_DIR={}\nGANDI_SYSTEMD_DIR={}\n\
             GANDI_AUTOFS_PIDFILE={}\nGANDI_STATE_DIR={}\nGANDI_HOOK_DIR={}\n",
            self.path().join("disabled").display(),
            self.path().join("run").display(),
            self.path().join("no-systemd").display(),
            self.path().join("automount.pid").display(),
            self.path().join("state").display(),
            self.path().join("hooks").display()
        );
        for l in lines {
            text.push_str(l);
            text.push('\n');
        }
        fs::write(self.config(), text).unwrap();
    }

    /// Runs `gandi-vm ARGS` with these settings.
    pub fn gandi(&self, args: &[&str]) -> std::process::Output {
        Command::new(BIN)
            .args(args)
            .env("GANDI_CONFIG", self.config())
            .env_remove("JOURNAL_STREAM")
            .output()
            .unwrap()
    }

    /// Runs the map program (`/etc/auto.gandi` once installed) as autofs
    /// does.
    pub fn map(&self, key: &str) -> std::process::Output {
        let link = self.map_link();
        Command::new(link)
            .arg(key)
            .env("GANDI_CONFIG", self.config())
            .output()
            .unwrap()
    }

    pub fn map_link(&self) -> PathBuf {
        let link = self.path().join("auto.gandi");
        if !link.exists() {
            symlink(MAP, &link).unwrap();
        }
        link
    }
}

/// The real automount daemon on a private master map and mount root.
pub struct Automount {
    pub root: PathBuf,
    child: Child,
    serial: Option<Serial>,
}

impl Automount {
    /// Starts automount serving `root` with the map link of `env`, idle
    /// timeout `timeout` seconds and the master-map options of the shipped
    /// file.
    pub fn start(env: &Env, root: &Path, timeout: u32) -> Automount {
        fs::write(
            env.path().join("auto.master"),
            master_line(root, &env.map_link(), timeout),
        )
        .unwrap();
        Automount::start_existing(env, root)
    }

    /// Starts automount on the master map already in `env` (as a restart
    /// of autofs would), waiting for `root` to be served.
    pub fn start_existing(env: &Env, root: &Path) -> Automount {
        Automount::start_locked(env, root, serial("automount"))
    }

    /// Stops the daemon but keeps the machine-wide lock, so that no other
    /// test's daemon starts (and gets our SIGHUPs) meanwhile.
    pub fn stop_keep_lock(mut self) -> Serial {
        let lock = self.serial.take().expect("the lock");
        drop(self);
        lock
    }

    /// Starts automount under a lock already held.
    pub fn start_locked(env: &Env, root: &Path, serial: Serial) -> Automount {
        fs::create_dir_all(root).unwrap();
        let master = env.path().join("auto.master");
        let log = File::create(env.path().join("automount.log")).unwrap();
        let child = ends_with_the_test(&mut Command::new("setsid"))
            .args(["automount", "-f", "-d", "-p"])
            .arg(env.path().join("automount.pid"))
            .arg(&master)
            .env("GANDI_CONFIG", env.config())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let am = Automount {
            root: root.to_path_buf(),
            child,
            serial: Some(serial),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !am.autofs_mounted() {
            assert!(
                Instant::now() < deadline,
                "automount did not mount {}: {}",
                root.display(),
                fs::read_to_string(env.path().join("automount.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        am
    }

    fn autofs_mounted(&self) -> bool {
        mounts().iter().any(|m| m.1 == self.root && m.2 == "autofs")
    }

    /// The mounts below the root, as (source, mount point, type, options).
    pub fn mounted(&self) -> Vec<(String, PathBuf, String, String)> {
        mounts()
            .into_iter()
            .filter(|m| m.1.parent() == Some(self.root.as_path()) && m.2 != "autofs")
            .collect()
    }

    /// Waits until nothing is mounted below the root, or `limit` passes.
    pub fn wait_idle(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if self.mounted().is_empty() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }
}

/// The shipped master-map line with a private root, map and timeout.
pub fn master_line(root: &Path, map: &Path, timeout: u32) -> String {
    let shipped = include_str!("../../auto.master.d/gandi.autofs");
    let line = shipped
        .lines()
        .find(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty())
        .expect("no entry in auto.master.d/gandi.autofs");
    let mut words: Vec<String> = line.split_whitespace().map(String::from).collect();
    words[0] = root.display().to_string();
    words[1] = format!("program:{}", map.display());
    for w in words.iter_mut() {
        if w.starts_with("--timeout=") {
            *w = format!("--timeout={timeout}");
        }
    }
    words.join(" ") + "\n"
}

impl Drop for Automount {
    fn drop(&mut self) {
        let pid = self.child.id() as i32;
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // Whatever the daemon left behind.
        let mut left: Vec<PathBuf> = mounts()
            .into_iter()
            .map(|m| m.1)
            .filter(|p| p.starts_with(&self.root))
            .collect();
        left.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        for p in left {
            let _ = Command::new("umount").arg("-l").arg(&p).output();
        }
    }
}

/// `/proc/mounts` as (source, mount point, type, options).
pub fn mounts() -> Vec<(String, PathBuf, String, String)> {
    fs::read_to_string("/proc/mounts")
        .unwrap()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            Some((
                f.first()?.to_string(),
                PathBuf::from(f.get(1)?.replace("\\040", " ")),
                f.get(2)?.to_string(),
                f.get(3)?.to_string(),
            ))
        })
        .collect()
}

/// Reads `ROOT/KEY/file` in a child process (a lookup from the daemon's
/// own process group would not trigger a mount; a child keeps the test
/// from hanging on a stuck lookup).
pub fn read_through(path: &Path) -> Option<String> {
    let out = Command::new("cat").arg(path).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Whether `ls ROOT/KEY` succeeds (it triggers the lookup).
pub fn lookup(path: &Path) -> bool {
    Command::new("ls")
        .arg(path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A udevd this test started, stopped when dropped (also on failure).
pub struct Udevd(pub Option<i32>);

impl Udevd {
    pub fn start() -> Udevd {
        Udevd(start_udevd())
    }
}

impl Drop for Udevd {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            let _ = Command::new("udevadm")
                .args(["settle", "-t", "30"])
                .output();
            stop_pid(pid);
        }
    }
}

/// Starts systemd-udevd unless one runs; returns the PID it started.
pub fn start_udevd() -> Option<i32> {
    if udevd_running() {
        return None;
    }
    let daemon = [
        "/lib/systemd/systemd-udevd",
        "/usr/lib/systemd/systemd-udevd",
    ]
    .into_iter()
    .find(|p| Path::new(p).exists())
    .expect("systemd-udevd missing: run scripts/install-deps");
    // In the foreground, as our child: it ends with the test even when the
    // test is killed (not left running on the machine with our rules).
    let mut child = ends_with_the_test(&mut Command::new(daemon))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {daemon}: {e}"));
    let pid = i32::try_from(child.id()).expect("a PID");
    // Reaped when it ends (stopped by PID, or with the test).
    std::thread::spawn(move || {
        let _ = child.wait();
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while !Command::new("udevadm")
        .args(["control", "--ping"])
        .output()
        .is_ok_and(|o| o.status.success())
    {
        if Instant::now() >= deadline {
            stop_pid(pid);
            panic!("udevd did not start");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Some(pid)
}

/// Makes the daemon `cmd` starts end (SIGTERM) when the thread of the test
/// that starts it ends, however it ends (a failure, a kill of the whole
/// test process): a daemon a test starts never outlives it.
#[allow(unsafe_code)] // see the SAFETY comment
pub fn ends_with_the_test(cmd: &mut Command) -> &mut Command {
    use std::os::unix::process::CommandExt;
    let parent = std::process::id();
    // SAFETY: the closure runs in the child between fork and exec and
    // calls only async-signal-safe functions (prctl, getppid, _exit); it
    // allocates nothing and takes no lock.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The test already gone before the call: no signal will come.
            if u32::try_from(libc::getppid()).ok() != Some(parent) {
                libc::_exit(1);
            }
            Ok(())
        })
    }
}

/// The shipped udev rules, with the device-name match widened to loop
/// devices, the built binary, and the settings file `config`.
pub fn loop_rules(config: &Path) -> String {
    loop_rules_for(config, &["loop*".to_string()])
}

/// The shipped udev rules for the devices `names` (globs) and their
/// partitions only, with the built binary and the settings file `config`.
pub fn loop_rules_for(config: &Path, names: &[String]) -> String {
    assert!(!names.is_empty(), "no device names");
    let shipped = include_str!("../../udev/rules.d/86-gandi.rules");
    let globs: Vec<String> = names
        .iter()
        .flat_map(|n| [n.clone(), format!("{n}p*")])
        .collect();
    let mut text = String::new();
    for line in shipped.lines() {
        if line.starts_with("KERNEL!=") {
            text.push_str(&format!(
                "KERNEL!=\"{}\", GOTO=\"gandi_disk_end\"\n",
                globs.join("|")
            ));
        } else {
            // The settings go on the command line, not in ENV{}: udev runs
            // every RUN with the event's last value of a variable, so one
            // set by another rules file would win.
            text.push_str(&line.replace(
                "/usr/bin/gandi-vm",
                &format!("/usr/bin/env GANDI_CONFIG={} {BIN}", config.display()),
            ));
            text.push('\n');
        }
    }
    assert!(text.contains(BIN), "the shipped rules changed shape");
    text
}

/// `udevadm test --action=ACTION DEV` with `rules` (named `name`) as the
/// only rules beside the system's, after `prefix` (`ip netns exec NS`), in
/// a mount namespace of its own, so that it changes nothing of the
/// machine's: `/run/udev` there is an empty tmpfs holding only these rules
/// (`udevadm test` writes the device's entry and tags into udev's
/// database), and the folders of `.link` files and the admin's rules are
/// empty (systemd 252's `udevadm test` applies the name a `.link` or a
/// rule's `NAME=` gives: run on the host's NIC, it renamed `eth0` to
/// `enp0s3` for real). Only the distribution's rules are read beside ours.
/// Returns stdout and stderr.
pub fn udevadm_test(prefix: &[&str], name: &str, rules: &str, action: &str, dev: &str) -> String {
    assert!(!name.contains('/') && name.ends_with(".rules"), "{name}");
    let dir = tempdir();
    let file = dir.path().join(name);
    fs::write(&file, rules).unwrap();
    let script = r#"set -eu
rules=$1; name=$2; shift 2
[ -d /run/udev ] || mkdir -p /run/udev
mount -t tmpfs -o mode=0755 gandi-udevadm-test /run/udev
mkdir /run/udev/rules.d
cp "$rules" "/run/udev/rules.d/$name"
for d in /etc/systemd/network /run/systemd/network /usr/local/lib/systemd/network \
    /usr/lib/systemd/network /lib/systemd/network /etc/udev/rules.d /usr/local/lib/udev/rules.d; do
    if [ -d "$d" ] && [ ! -L "$d" ]; then mount -t tmpfs -o mode=0755 gandi-udevadm-test "$d"; fi
done
exec udevadm test "$@"
"#;
    let (cmd, args) = match prefix.split_first() {
        Some((first, rest)) => (*first, rest.to_vec()),
        None => ("unshare", Vec::new()),
    };
    let mut c = Command::new(cmd);
    c.args(&args);
    if !prefix.is_empty() {
        c.arg("unshare");
    }
    let out = c
        .args([
            "--mount",
            "--propagation",
            "private",
            "--",
            "sh",
            "-c",
            script,
            "sh",
        ])
        .arg(&file)
        .arg(name)
        .arg(format!("--action={action}"))
        .arg(dev)
        .output()
        .unwrap();
    let text = stdout(&out) + &stderr(&out);
    assert!(out.status.success(), "udevadm test {dev}: {text}");
    text
}

/// The host's NICs by interface index: a test that asks udev about them
/// checks that none was renamed.
pub fn nic_names() -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = fs::read_dir("/sys/class/net")
        .map(|rd| {
            rd.flatten()
                .map(|e| {
                    let index = fs::read_to_string(e.path().join("ifindex")).unwrap_or_default();
                    (
                        index.trim().to_string(),
                        e.file_name().to_string_lossy().into_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Rules installed under /run/udev/rules.d until dropped.
pub struct RunRules(pub PathBuf);

impl RunRules {
    pub fn install(tag: &str, text: &str) -> RunRules {
        fs::create_dir_all("/run/udev/rules.d").unwrap();
        remove_stale_rules();
        let path = PathBuf::from(format!(
            "/run/udev/rules.d/86-gandi-{tag}-{}.rules",
            std::process::id()
        ));
        fs::write(&path, text).unwrap();
        let _ = Command::new("udevadm")
            .args(["control", "--reload"])
            .output();
        RunRules(path)
    }
}

/// Rules left by a test process that was killed (its Drop never ran):
/// they would run another build on this test's devices.
fn remove_stale_rules() {
    let Ok(rd) = fs::read_dir("/run/udev/rules.d") else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let pid = name
            .strip_prefix("86-gandi-")
            .and_then(|n| n.strip_suffix(".rules"))
            .and_then(|n| n.rsplit_once('-'))
            .map(|(_, pid)| pid.to_string());
        if let Some(pid) = pid
            && pid.parse::<u32>().is_ok()
            && !Path::new("/proc").join(&pid).exists()
        {
            eprintln!("removing stale test rules {name}");
            let _ = fs::remove_file(e.path());
        }
    }
}

impl Drop for RunRules {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
        let _ = Command::new("udevadm")
            .args(["control", "--reload"])
            .output();
    }
}

/// The device a map entry mounts: its location is a key link of ours.
pub fn entry_device(stdout: &[u8]) -> String {
    let text = String::from_utf8_lossy(stdout);
    let location = text
        .trim_end()
        .rsplit_once(" :")
        .map(|(_, l)| l)
        .unwrap_or_default();
    fs::read_link(location)
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| location.to_string())
}

/// What a program wrote on its standard output, as text.
pub fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What a program wrote on its standard error, as text.
pub fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}
