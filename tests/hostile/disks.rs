//! Data disks a user or the disk's own content tries to steer, on loop
//! devices: the disk's `.gandi/services`, its label in the disks table.

use super::common::*;
use super::*;
use std::fs;

/// A loop disk with `label`, mounted at ROOT/`key` as autofs would, and
/// settings naming that root; the fake /proc holds the processes given.
struct Mounted {
    env: Env,
    disk: LoopDisk,
    mp: PathBuf,
}

impl Mounted {
    fn new(label: &str, key: &str) -> Mounted {
        let env = Env::new();
        let disk = LoopDisk::new(env.path(), "data.img", 64);
        disk.mkfs("ext4", Some(label));
        let root = env.path().join("srv");
        let mp = root.join(key);
        fs::create_dir_all(&mp).unwrap();
        sh(Command::new("mount").arg(&disk.dev).arg(&mp));
        env.settings(&[
            format!("CONFIG_DISK_ROOT={}", root.display()),
            // This test's disk only, not another loop device of the machine.
            format!("CONFIG_DISK_DEVICES=\"{}\"", disk.name()),
            format!("GANDI_PROC_DIR={}", env.path().join("proc").display()),
        ]);
        // /proc as the commands read it: the kernel's views, and the
        // processes of this test's own making.
        let proc = env.path().join("proc");
        fs::create_dir_all(&proc).unwrap();
        for f in ["partitions", "swaps", "self", "mounts", "cmdline"] {
            std::os::unix::fs::symlink(Path::new("/proc").join(f), proc.join(f)).unwrap();
        }
        Mounted { env, disk, mp }
    }

    /// A process of `unit` whose working folder is `cwd`.
    fn process(&self, pid: u32, unit: &str, cwd: &Path) {
        let dir = self.env.path().join("proc").join(pid.to_string());
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("comm"), format!("{unit}\n")).unwrap();
        fs::write(dir.join("cgroup"), format!("0::/system.slice/{unit}\n")).unwrap();
        std::os::unix::fs::symlink(cwd, dir.join("cwd")).unwrap();
    }

    /// A process in cgroup `path` whose working folder is `cwd`.
    fn process_in(&self, pid: u32, path: &str, cwd: &Path) {
        let dir = self.env.path().join("proc").join(pid.to_string());
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("comm"), "x\n").unwrap();
        fs::write(dir.join("cgroup"), format!("0::{path}\n")).unwrap();
        std::os::unix::fs::symlink(cwd, dir.join("cwd")).unwrap();
    }

    fn release(&self, key: &str, systemctl_log: &Path) -> Output {
        let bin = self.env.path().join("bin");
        script(
            &bin.join("systemctl"),
            &format!("echo \"$@\" >> {}", systemctl_log.display()),
        );
        bounded(
            Command::new(super::bin())
                .args(["disk", "release", key])
                .env("GANDI_CONFIG", self.env.config())
                .env("PATH", path_with(&bin))
                .env_remove("JOURNAL_STREAM"),
            Duration::from_secs(60),
        )
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.mp).output();
        let _ = &self.disk;
    }
}

#[test]
fn a_disks_services_file_stops_only_the_services_that_use_it() {
    if !system_test(&["mkfs.ext4", "losetup", "mount"]) {
        return;
    }
    let _serial = serial("loop-release");
    let m = Mounted::new("media", "media");
    fs::create_dir_all(m.mp.join(".gandi")).unwrap();
    fs::write(
        m.mp.join(".gandi/services"),
        "ssh\ndbus.service\nsystemd-journald\nbackup.service\n# comment\n",
    )
    .unwrap();
    m.process(4_194_001, "backup.service", &m.mp);
    m.process(4_194_002, "ssh.service", Path::new("/"));
    // A user's own manager runs a unit named ssh.service on the disk: it
    // is no system service.
    m.process_in(
        4_194_003,
        "/user.slice/user-1000.slice/user@1000.service/app.slice/ssh.service",
        &m.mp,
    );
    let log = m.env.path().join("systemctl.log");
    // The process of ours is a fixture: the unmount sees no real user.
    let out = m.release("media", &log);
    assert!(out.status.success(), "{}", text(&out));
    let calls = fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(calls, "stop backup.service\n", "{}", text(&out));
    assert!(
        text(&out).contains("ssh.service not stopped"),
        "{}",
        text(&out)
    );
}

#[test]
fn a_fifo_as_the_disks_services_file_never_holds_a_release() {
    if !system_test(&["mkfs.ext4", "losetup", "mount"]) {
        return;
    }
    let _serial = serial("loop-release");
    for (what, make) in [
        ("a FIFO", 0),
        ("a link to /etc/shadow", 1),
        ("a folder link", 2),
    ] {
        let m = Mounted::new("media", "media");
        fs::create_dir_all(m.mp.join(".gandi")).unwrap();
        let at = m.mp.join(".gandi/services");
        match make {
            0 => fifo(&at),
            1 => std::os::unix::fs::symlink("/etc/shadow", &at).unwrap(),
            _ => {
                fs::remove_dir(m.mp.join(".gandi")).unwrap();
                std::os::unix::fs::symlink("/etc", m.mp.join(".gandi")).unwrap();
            }
        }
        let log = m.env.path().join("systemctl.log");
        let out = m.release("media", &log);
        assert!(out.status.success(), "{what}: {}", text(&out));
        assert!(!log.exists(), "{what}: a service was stopped");
    }
}

#[test]
fn labels_are_printed_escaped_in_the_table_and_raw_in_json() {
    if !system_test(&["mkfs.ext4", "losetup", "blkid", "e2label"]) {
        return;
    }
    let _serial = serial("loop-release");
    let env = Env::new();
    let disk = LoopDisk::new(env.path(), "odd.img", 64);
    disk.mkfs("ext4", Some("x"));
    // e2label takes any bytes: an escape sequence and a newline.
    sh(Command::new("e2label").arg(&disk.dev).arg("a\x1b[2Jb\nc"));
    settle();
    env.settings(&[format!("CONFIG_DISK_DEVICES=\"{}\"", disk.name())]);
    let out = gandi(&env.config(), &["disks"]);
    let table = stdout(&out).to_string();
    let row = table
        .lines()
        .find(|l| l.starts_with(&disk.name()))
        .unwrap_or_else(|| panic!("{table}"));
    // blkid itself shows control characters as ^X; whatever the source,
    // nothing reaches the terminal raw, and the row stays one line.
    assert!(
        !table.chars().any(|c| c.is_control() && c != '\n'),
        "{table:?}"
    );
    assert!(
        row.contains("a^[[2Jb^Jc") || row.contains("a\\x1b[2Jb\\x0ac"),
        "{row:?}"
    );
}
