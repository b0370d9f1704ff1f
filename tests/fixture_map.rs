//! The matcher and discovery on fixture trees: a fake sysfs, mount table
//! and udev database under a temp dir.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)] // tests and benches: a failure is a panic, output is the report

use gandi_vm::base::settings::{RawConfig, Settings};
use gandi_vm::disk::index;
use gandi_vm::disk::map::{MapError, lookup};
use gandi_vm::disk::scan::Scan;
use gandi_vm::kernel::device::{Exclusion, MetaSource};
use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::PathBuf;

struct Tree {
    dir: tempfile::TempDir,
    mountinfo: String,
    /// A listening socket standing for udevd's control socket.
    udevd: Option<std::os::fd::OwnedFd>,
}

impl Drop for Tree {
    fn drop(&mut self) {
        self.stop_udevd();
    }
}

/// Listens on a SOCK_SEQPACKET socket at `path`, as udevd does.
fn listen(path: &std::path::Path) -> std::os::fd::OwnedFd {
    use nix::sys::socket::{AddressFamily, Backlog, SockFlag, SockType, UnixAddr, bind, socket};
    use std::os::fd::AsRawFd;
    let fd = socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .unwrap();
    bind(fd.as_raw_fd(), &UnixAddr::new(path).unwrap()).unwrap();
    nix::sys::socket::listen(&fd, Backlog::new(16).unwrap()).unwrap();
    fd
}

impl Tree {
    fn new() -> Tree {
        let mut t = Tree {
            dir: tempfile::tempdir().unwrap(),
            mountinfo: "22 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n".into(),
            udevd: None,
        };
        t.udevd = Some(listen(&t.p("control")));
        for d in [
            "sys/class/block",
            "sys/dev/block",
            "proc/self",
            "udev",
            "dev",
            "run",
        ] {
            fs::create_dir_all(t.p(d)).unwrap();
        }
        fs::write(t.p("proc/swaps"), "Filename Type Size Used Priority\n").unwrap();
        fs::write(t.p("proc/partitions"), "major minor  #blocks  name\n\n").unwrap();
        t.disk("vda", "254:0", 1 << 30, None);
        t
    }

    fn stop_udevd(&mut self) {
        if let Some(fd) = self.udevd.take() {
            drop(fd);
            let _ = fs::remove_file(self.p("control"));
        }
    }

    fn p(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// A block device; `parent` makes it a partition.
    fn dev(&self, name: &str, devnum: &str, size: u64, parent: Option<&str>, diskseq: Option<u64>) {
        let rel = match parent {
            Some(p) => format!("devices/virtual/block/{p}/{name}"),
            None => format!("devices/virtual/block/{name}"),
        };
        let dir = self.p(&format!("sys/{rel}"));
        fs::create_dir_all(dir.join("holders")).unwrap();
        fs::write(dir.join("dev"), format!("{devnum}\n")).unwrap();
        fs::write(dir.join("size"), format!("{}\n", size / 512)).unwrap();
        if let Some(seq) = diskseq {
            fs::write(dir.join("diskseq"), format!("{seq}\n")).unwrap();
        }
        if parent.is_some() {
            fs::write(dir.join("partition"), "1\n").unwrap();
        }
        // The kernel lists the devices that have a medium.
        if size > 0 {
            let (major, minor) = devnum.split_once(':').unwrap();
            let line = format!("{major:>4} {minor:>7} {:>10} {name}\n", size / 1024);
            let mut f = fs::OpenOptions::new()
                .append(true)
                .open(self.p("proc/partitions"))
                .unwrap();
            std::io::Write::write_all(&mut f, line.as_bytes()).unwrap();
        }
        symlink(
            format!("../../{rel}"),
            self.p(&format!("sys/class/block/{name}")),
        )
        .unwrap();
        symlink(
            format!("../../{rel}"),
            self.p(&format!("sys/dev/block/{devnum}")),
        )
        .unwrap();
    }

    fn disk(&self, name: &str, devnum: &str, size: u64, diskseq: Option<u64>) {
        self.dev(name, devnum, size, None, diskseq);
    }

    /// A record as the attach helper writes it: the file, then the index.
    fn record(&self, settings: &Settings, json: &str) {
        fs::create_dir_all(self.p("run/disks")).unwrap();
        let name: serde_json::Value = serde_json::from_str(json).unwrap();
        let name = name["name"].as_str().unwrap();
        fs::write(self.p(&format!("run/disks/{name}.json")), json).unwrap();
        index::write_index(settings).unwrap();
    }

    /// udev's database entry.
    fn udev(&self, devnum: &str, props: &[(&str, &str)]) {
        // As udev does: the attach sequence number of the time, as a link.
        let mut text = String::new();
        if let Ok(seq) = fs::read_to_string(self.p(&format!("sys/dev/block/{devnum}/diskseq"))) {
            text.push_str(&format!("S:disk/by-diskseq/{}\n", seq.trim()));
        }
        text.push_str("I:1234\n");
        for (k, v) in props {
            text.push_str(&format!("E:{k}={v}\n"));
        }
        fs::write(self.p(&format!("udev/b{devnum}")), text).unwrap();
    }

    fn fs(&self, devnum: &str, fstype: &str, label: Option<&str>, uuid: &str) {
        let usage = match fstype {
            "swap" => "other",
            "LVM2_member" => "raid",
            _ => "filesystem",
        };
        let mut props = vec![
            ("ID_FS_TYPE", fstype),
            ("ID_FS_USAGE", usage),
            ("ID_FS_UUID_ENC", uuid),
        ];
        let enc;
        if let Some(l) = label {
            enc = l.replace(' ', "\\x20");
            props.push(("ID_FS_LABEL_ENC", &enc));
        }
        self.udev(devnum, &props);
    }

    fn mount(&mut self, devnum: &str, source: &str, at: &str) {
        self.mountinfo
            .push_str(&format!("40 22 {devnum} / {at} rw - ext4 {source} rw\n"));
    }

    /// A mount of any type, as the mount table shows it.
    fn mount_as(&mut self, devnum: &str, fstype: &str, source: &str, at: &str) {
        self.mountinfo.push_str(&format!(
            "41 22 {devnum} / {at} rw - {fstype} {source} rw\n"
        ));
    }

    fn settings(&self, extra: &str) -> Settings {
        fs::write(self.p("proc/self/mountinfo"), &self.mountinfo).unwrap();
        let text = format!(
            "GANDI_SYS_DIR={}\nGANDI_PROC_DIR={}\nGANDI_DEV_DIR={}\nGANDI_UDEV_DATA_DIR={}\n\
             GANDI_RUN_DIR={}\nGANDI_PROBE_TIMEOUT_MS=2000\n\
             CONFIG_DISK_DEVICES=\"vd* xvd*\"\n{extra}",
            self.p("sys").display(),
            self.p("proc").display(),
            self.p("dev").display(),
            self.p("udev").display(),
            self.p("run").display(),
        );
        let s = Settings::from_raw(&RawConfig::parse(&text), None);
        assert!(s.problems.is_empty(), "{:?}", s.problems);
        s
    }
}

/// The map entry with its location (a key link of ours) resolved to the
/// device it points at.
fn entry(s: &Settings, key: &str) -> Result<String, MapError> {
    lookup(s, OsStr::new(key)).map(|a| {
        let (opts, location) = a.entry.split_once(" :").unwrap();
        let target = fs::read_link(location).expect("the location is a key link");
        format!("{opts} :{}", target.display())
    })
}

fn dev_path(t: &Tree, name: &str) -> String {
    t.p("dev").join(name).display().to_string()
}

#[test]
fn label_then_name_then_uuid() {
    let t = Tree::new();
    t.disk("vdb", "252:16", 10 << 30, Some(5));
    t.fs("252:16", "ext4", Some("backups"), "1111-aaaa");
    t.disk("vdc", "252:32", 10 << 30, Some(6));
    t.fs("252:32", "xfs", Some("vdb"), "2222-BBBB");
    t.disk("vdd", "252:48", 10 << 30, Some(7));
    t.fs("252:48", "btrfs", None, "3333-cccc");
    let s = t.settings("");

    let vdb = dev_path(&t, "vdb");
    let vdc = dev_path(&t, "vdc");
    let vdd = dev_path(&t, "vdd");
    assert_eq!(
        entry(&s, "backups").unwrap(),
        format!("-fstype=ext4,rw,nosuid,nodev,noatime :{vdb}")
    );
    // A label wins over a kernel name.
    assert_eq!(
        entry(&s, "vdb").unwrap(),
        format!("-fstype=xfs,rw,nosuid,nodev,noatime :{vdc}")
    );
    assert_eq!(
        entry(&s, "vdd").unwrap(),
        format!("-fstype=btrfs,rw,nosuid,nodev,noatime :{vdd}")
    );
    // One path per disk: a labelled disk's UUID (in any case) and kernel
    // name are refused, naming its path; an unlabelled one's UUID too.
    let elsewhere = |key: &str, name: &str, at: &str| {
        assert_eq!(
            entry(&s, key),
            Err(MapError::Elsewhere {
                name: name.into(),
                at: format!("/srv/{at}")
            }),
            "{key}"
        )
    };
    elsewhere("2222-bbbb", "vdc", "vdb");
    elsewhere("2222-BBBB", "vdc", "vdb");
    elsewhere("1111-AAAA", "vdb", "backups");
    elsewhere("vdc", "vdc", "vdb");
    elsewhere("3333-CCCC", "vdd", "vdd");
    let _ = (&vdb, &vdc);
    assert_eq!(
        entry(&s, "nothing"),
        Err(MapError::NoMatch("nothing".into()))
    );
    assert!(matches!(entry(&s, ".."), Err(MapError::BadKey(_))));
}

#[test]
fn labels_with_blanks_and_mount_params() {
    let t = Tree::new();
    t.disk("vdb", "252:16", 1 << 30, None);
    t.fs("252:16", "ext4", Some("my data"), "u1");
    let s = t.settings("CONFIG_MOUNT_PARAMS=ro,noexec\n");
    assert_eq!(
        entry(&s, "my data").unwrap(),
        format!("-fstype=ext4,ro,noexec :{}", dev_path(&t, "vdb"))
    );
}

#[test]
fn duplicate_labels_pick_the_first_in_kernel_order() {
    let t = Tree::new();
    for (name, num) in [("vdaa", "252:416"), ("vdc", "252:32"), ("vdb", "252:16")] {
        t.disk(name, num, 1 << 30, None);
        t.fs(num, "ext4", Some("same"), name);
    }
    let s = t.settings("");
    let answer = lookup(&s, OsStr::new("same")).unwrap();
    assert_eq!(answer.device.name, "vdb");
    let warning = answer.warning.unwrap();
    assert!(
        warning.contains("/srv/vdc") && warning.contains("/srv/vdaa"),
        "{warning}"
    );
    // The others by name.
    assert_eq!(lookup(&s, OsStr::new("vdc")).unwrap().device.name, "vdc");
}

#[test]
fn exclusions_by_detection() {
    let mut t = Tree::new();
    // Root disk partitioned: vda1 is root, vda2 has a label.
    t.dev("vda2", "254:2", 1 << 30, Some("vda"), None);
    t.fs("254:2", "ext4", Some("rootdata"), "r2");
    // Partitioned data disk.
    t.disk("vdb", "252:16", 1 << 30, None);
    t.udev("252:16", &[("ID_PART_TABLE_TYPE", "gpt")]);
    t.dev("vdb1", "252:17", 1 << 29, Some("vdb"), None);
    t.fs("252:17", "ext4", Some("inpart"), "p1");
    // Swap, LVM, no filesystem, held by dm, mounted elsewhere.
    t.disk("vdc", "252:32", 1 << 30, None);
    t.fs("252:32", "swap", Some("sw"), "s1");
    t.disk("vdd", "252:48", 1 << 30, None);
    t.fs("252:48", "LVM2_member", None, "l1");
    t.disk("vde", "252:64", 1 << 30, None);
    t.udev("252:64", &[]);
    t.disk("vdf", "252:80", 1 << 30, None);
    t.fs("252:80", "ext4", Some("held"), "h1");
    fs::create_dir_all(t.p("sys/devices/virtual/block/vdf/holders/dm-0")).unwrap();
    t.disk("vdg", "252:96", 1 << 30, None);
    t.fs("252:96", "ext4", Some("busy"), "b1");
    t.mount("252:96", "/dev/vdg", "/mnt/elsewhere");
    // The platform's disk: a GPT partition named gandiswap.
    t.disk("xvdz", "202:400", 1 << 30, None);
    t.dev("xvdz1", "202:401", 1 << 29, Some("xvdz"), None);
    t.udev(
        "202:401",
        &[
            ("ID_FS_TYPE", "swap"),
            ("ID_FS_USAGE", "other"),
            ("ID_PART_ENTRY_NAME", "gandiswap"),
        ],
    );
    t.dev("xvdz2", "202:402", 1 << 29, Some("xvdz"), None);
    t.fs("202:402", "ext4", Some("platform"), "z2");
    let s = t.settings("CONFIG_DISK_DEVICES=\"vd* xvd*\"\n");

    let scan = Scan::new(&s).unwrap();
    let devices = scan.devices();
    let why = |name: &str| {
        devices
            .iter()
            .find(|d| d.name == name)
            .unwrap_or_else(|| panic!("{name} not listed"))
            .excluded
            .clone()
    };
    assert_eq!(why("vda"), Some(Exclusion::RootDisk));
    assert_eq!(why("vda2"), Some(Exclusion::RootDisk));
    assert_eq!(why("vdb"), Some(Exclusion::Partitioned));
    assert_eq!(why("vdb1"), None);
    assert_eq!(why("vdc"), Some(Exclusion::Swap));
    assert_eq!(
        why("vdd"),
        Some(Exclusion::NotMountable("LVM2_member".into()))
    );
    assert_eq!(why("vde"), Some(Exclusion::NoFilesystem));
    assert_eq!(why("vdf"), Some(Exclusion::InUse("dm-0".into())));
    assert_eq!(why("vdg"), None);
    assert_eq!(why("xvdz1"), Some(Exclusion::Swap));
    assert_eq!(why("xvdz2"), Some(Exclusion::PlatformDisk));

    assert!(entry(&s, "inpart").unwrap().ends_with("/vdb1"));
    for key in [
        "rootdata", "vda", "vdb", "sw", "vdd", "vde", "held", "platform",
    ] {
        assert!(
            matches!(entry(&s, key), Err(MapError::Excluded { .. })),
            "{key}: {:?}",
            entry(&s, key)
        );
    }
    assert_eq!(
        entry(&s, "busy"),
        Err(MapError::Mounted {
            name: "vdg".into(),
            at: "/mnt/elsewhere".into()
        })
    );
}

#[test]
fn disabled_serves_nothing() {
    let t = Tree::new();
    t.disk("vdb", "252:16", 1 << 30, None);
    t.fs("252:16", "ext4", Some("data"), "u");
    let s = t.settings("CONFIG_ALLOW_MOUNT=0\n");
    assert_eq!(entry(&s, "data"), Err(MapError::Disabled));
}

#[test]
fn records_are_trusted_only_while_current_and_stale_udev_data_is_not() {
    let t = Tree::new();
    t.disk("vdb", "252:16", 1 << 30, Some(9));
    t.udev(
        "252:16",
        &[
            ("DISKSEQ", "9"),
            ("ID_FS_TYPE", "ext4"),
            ("ID_FS_USAGE", "filesystem"),
            ("ID_FS_LABEL_ENC", "old"),
        ],
    );
    let s = t.settings("");
    fs::create_dir_all(t.p("run/disks")).unwrap();
    let record = |size: u64, label: &str| {
        format!(
            r#"{{"name":"vdb","devnum":"252:16","diskseq":9,"size":{size},"fstype":"ext4","usage":"filesystem","label":"{label}","uuid":null,"part_name":null,"part_table":null,"partitioned":false,"state":"ready","updated":1}}"#
        )
    };
    // A current record wins over udev.
    t.record(&s, &record(1 << 30, "fresh"));
    let source = || {
        let devs = Scan::new(&s).unwrap().devices();
        devs.iter().find(|d| d.name == "vdb").unwrap().source
    };
    assert_eq!(source(), MetaSource::Record);
    assert!(entry(&s, "fresh").is_ok());
    // A record of another size is stale: udev's data is used.
    t.record(&s, &record(1 << 20, "fresh"));
    assert!(entry(&s, "fresh").is_err());
    assert!(entry(&s, "old").is_ok());
    // udev data from an earlier attach (other DISKSEQ) is not trusted
    // either: the probe runs, finds no device in the fixture, and the disk
    // is reported unreadable rather than served under its old label.
    fs::write(t.p("sys/devices/virtual/block/vdb/diskseq"), "10\n").unwrap();
    assert_ne!(source(), MetaSource::Udev);
    assert!(entry(&s, "old").is_err());
}

#[test]
fn released_disks_are_refused_until_reattached() {
    let t = Tree::new();
    t.disk("vdb", "252:16", 1 << 30, Some(4));
    t.fs("252:16", "ext4", Some("data"), "u");
    let s = t.settings("");
    fs::create_dir_all(t.p("run/released")).unwrap();
    fs::write(t.p("run/released/vdb"), "4\n").unwrap();
    assert!(matches!(entry(&s, "data"), Err(MapError::Excluded { .. })));
    // Attached again: a new sequence number.
    fs::write(t.p("sys/devices/virtual/block/vdb/diskseq"), "5\n").unwrap();
    t.fs("252:16", "ext4", Some("data"), "u");
    assert!(entry(&s, "data").is_ok());
}

#[test]
fn unsafe_device_names_are_never_printed() {
    let t = Tree::new();
    t.disk("vd$x", "252:16", 1 << 30, None);
    t.fs("252:16", "ext4", Some("odd"), "u");
    let s = t.settings("");
    assert!(matches!(entry(&s, "odd"), Err(MapError::UnsafeEntry(_))));
}

#[test]
fn udev_entries_are_not_used_while_udevd_is_down() {
    let mut t = Tree::new();
    t.disk("vdb", "252:16", 1 << 30, None);
    t.fs("252:16", "ext4", Some("data"), "u");
    let s = t.settings("");
    assert!(entry(&s, "data").is_ok());
    t.stop_udevd();
    // The probe runs instead; the fixture has no real device, so the disk
    // is unreadable, not served from udev's possibly old entry.
    assert!(entry(&s, "data").is_err());
    let devs = Scan::new(&s).unwrap().devices();
    let vdb = devs.iter().find(|d| d.name == "vdb").unwrap();
    assert_ne!(vdb.source, MetaSource::Udev);
    assert!(vdb.excluded.is_some());
}

#[test]
fn a_disk_being_grown_is_not_served() {
    let t = Tree::new();
    t.disk("vdb", "252:16", 1 << 30, Some(3));
    t.fs("252:16", "ext4", Some("data"), "u");
    let s = t.settings("");
    fs::create_dir_all(t.p("run/disks")).unwrap();
    let record = |state: &str| {
        format!(
            r#"{{"name":"vdb","devnum":"252:16","diskseq":3,"size":{},"fstype":"ext4","usage":"filesystem","label":"data","uuid":"u","part_name":null,"part_table":null,"partitioned":false,"state":"{state}","updated":1}}"#,
            1u64 << 30
        )
    };
    t.record(&s, &record("growing"));
    match entry(&s, "data") {
        Err(MapError::Excluded { reason, .. }) => {
            assert!(reason.contains("being grown"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    t.record(&s, &record("ready"));
    assert!(entry(&s, "data").is_ok());
}

#[test]
fn entries_name_a_key_link_that_a_release_removes() {
    let t = Tree::new();
    t.disk("vdb", "252:16", 1 << 30, Some(2));
    t.fs("252:16", "ext4", Some("my data"), "u1");
    let s = t.settings("");
    let answer = lookup(&s, OsStr::new("my data")).unwrap();
    let location = answer.entry.split_once(" :").unwrap().1.to_string();
    // Hex of the key: any label makes a path autofs can carry.
    assert_eq!(
        location,
        t.p("run/keys/6d792064617461").display().to_string()
    );
    assert!(!location.contains(' '));
    assert_eq!(fs::read_link(&location).unwrap(), t.p("dev/vdb"));
    // Dropped for the device: the kept answer mounts nothing.
    let dropped = gandi_vm::disk::keylinks::drop_key_links(&s, &t.p("dev/vdb"));
    assert_eq!(dropped.len(), 1);
    assert!(fs::symlink_metadata(&location).is_err());
    gandi_vm::disk::keylinks::restore_key_links(&dropped, &t.p("dev/vdb"));
    assert_eq!(fs::read_link(&location).unwrap(), t.p("dev/vdb"));
}

/// The map's last look, after its key link is made: a disk released, or
/// detached and another attached under its name, since it was described,
/// is not current any more (the lookup then refuses it and drops the link).
#[test]
fn a_disk_released_or_attached_again_after_its_description_is_not_current() {
    let t = Tree::new();
    t.disk("vdb", "252:16", 1 << 30, Some(4));
    t.fs("252:16", "ext4", Some("data"), "u");
    let s = t.settings("");
    let scan = Scan::new(&s).unwrap();
    let dev = scan
        .devices()
        .into_iter()
        .find(|d| d.name == "vdb")
        .unwrap();
    assert!(scan.still_current(&dev));
    // Attached again: another sequence number.
    fs::write(t.p("sys/devices/virtual/block/vdb/diskseq"), "5\n").unwrap();
    assert!(!scan.still_current(&dev));
    fs::write(t.p("sys/devices/virtual/block/vdb/diskseq"), "4\n").unwrap();
    assert!(scan.still_current(&dev));
    // Released meanwhile.
    fs::create_dir_all(t.p("run/released")).unwrap();
    fs::write(t.p("run/released/vdb"), "4\n").unwrap();
    assert!(!scan.still_current(&dev));
    // A release of an earlier attach does not count.
    fs::write(t.p("run/released/vdb"), "3\n").unwrap();
    assert!(scan.still_current(&dev));
    // Emptied meanwhile (a loop device detached keeps its number): its
    // size read anew says so; so does another size.
    let size = t.p("sys/devices/virtual/block/vdb/size");
    let before = fs::read_to_string(&size).unwrap();
    for other in ["0\n", "4096\n"] {
        fs::write(&size, other).unwrap();
        assert!(!scan.still_current(&dev), "{other}");
    }
    fs::write(&size, &before).unwrap();
    assert!(scan.still_current(&dev));
    // Gone: no number to read.
    fs::remove_file(t.p("sys/devices/virtual/block/vdb/diskseq")).unwrap();
    assert!(!scan.still_current(&dev));
}

// ---- Hostile inputs (see tests/hostile/): what a user or a disk can
// write, as the map and the disks table read it.

/// The device names that appear as mounted in the disks table.
fn mounted(s: &Settings, name: &str) -> Vec<PathBuf> {
    Scan::new(s)
        .unwrap()
        .devices()
        .into_iter()
        .find(|d| d.name == name)
        .unwrap()
        .mounts
}

#[test]
fn a_users_fuse_mount_naming_a_disk_takes_nothing_from_it() {
    let mut t = Tree::new();
    t.disk("vdb", "252:16", 1 << 30, None);
    t.fs("252:16", "ext4", Some("data"), "u1");
    // sshfs -o fsname=/dev/vdb, in a user's home and under the root.
    t.mount_as("0:55", "fuse.sshfs", "/dev/vdb", "/home/eve/mnt");
    t.mount_as("0:56", "fuse", "/dev/vdb", "/srv/data");
    t.mount_as("0:57", "tmpfs", "/dev/vdb", "/home/eve/tmp");
    let s = t.settings("");
    assert!(mounted(&s, "vdb").is_empty(), "{:?}", mounted(&s, "vdb"));
    assert!(entry(&s, "data").is_ok(), "{:?}", entry(&s, "data"));
    // Nothing of those counts as a disk detached while mounted either.
    assert!(Scan::new(&s).unwrap().gone().is_empty());
}

#[test]
fn btrfs_mounts_are_matched_by_their_members_not_their_names() {
    let mut t = Tree::new();
    t.disk("vdb", "252:16", 1 << 30, None);
    t.fs("252:16", "btrfs", Some("pool"), "b-uuid");
    t.disk("vdc", "252:32", 1 << 30, None);
    t.fs("252:32", "btrfs", Some("pool2"), "b2-uuid");
    // vdb and vdc are one filesystem's members; the table names vdc.
    for m in ["vdb", "vdc"] {
        fs::create_dir_all(t.p(&format!("sys/fs/btrfs/b-uuid/devices/{m}"))).unwrap();
    }
    t.mount_as("0:45", "btrfs", "/dev/vdc", "/mnt/pool");
    let s = t.settings("");
    assert_eq!(mounted(&s, "vdb"), vec![PathBuf::from("/mnt/pool")]);
    assert_eq!(mounted(&s, "vdc"), vec![PathBuf::from("/mnt/pool")]);
    assert!(matches!(entry(&s, "pool"), Err(MapError::Mounted { .. })));
    // A FUSE mount naming vdb is still nothing of vdb's.
    let mut t = Tree::new();
    t.disk("vdb", "252:16", 1 << 30, None);
    t.fs("252:16", "btrfs", Some("pool"), "b-uuid");
    t.mount_as("0:45", "fuse.x", "/dev/vdb", "/mnt/fake");
    let s = t.settings("");
    assert!(mounted(&s, "vdb").is_empty());
}

#[test]
fn the_label_is_served_whoever_looked_the_disk_up_first() {
    let mut t = Tree::new();
    t.disk("vdb", "252:16", 1 << 30, None);
    t.fs("252:16", "ext4", Some("data"), "abcd-1234");
    // Mounted under its kernel name (its label was another disk's then).
    t.mount("252:16", "/run/gandi/keys/766462", "/srv/vdb");
    let s = t.settings("");
    assert!(entry(&s, "data").is_ok(), "{:?}", entry(&s, "data"));
    // Its other names are refused; mounted anywhere else, it is not ours.
    assert!(matches!(
        entry(&s, "ABCD-1234"),
        Err(MapError::Elsewhere { .. })
    ));
    t.mount("252:16", "/dev/vdb", "/mnt/admin");
    let s = t.settings("");
    assert!(matches!(entry(&s, "data"), Err(MapError::Mounted { .. })));
    // Released, it is refused under every name.
    let mut t = Tree::new();
    t.disk("vdb", "252:16", 1 << 30, Some(3));
    t.fs("252:16", "ext4", Some("data"), "abcd-1234");
    let s = t.settings("");
    fs::create_dir_all(t.p("run/released")).unwrap();
    fs::write(t.p("run/released/vdb"), "3\n").unwrap();
    for key in ["data", "vdb", "abcd-1234"] {
        assert!(
            matches!(entry(&s, key), Err(MapError::Excluded { .. })),
            "{key}"
        );
    }
    let _ = &mut t;
}

#[test]
fn a_long_label_keeps_its_key_link() {
    let t = Tree::new();
    let label = "l".repeat(200);
    t.disk("vdb", "252:16", 1 << 30, None);
    t.fs("252:16", "ext4", Some(&label), "u1");
    let s = t.settings("");
    let answer = lookup(&s, OsStr::new(&label)).unwrap();
    let location = answer.entry.split_once(" :").unwrap().1.to_string();
    assert!(
        location.starts_with(&t.p("run/keys/sha256-").display().to_string()),
        "{location}"
    );
    assert_eq!(fs::read_link(&location).unwrap(), t.p("dev/vdb"));
}

/// Runs `f` in a thread; fails when it has not returned within 20 s.
fn within<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(std::time::Duration::from_secs(20))
        .expect("it waited on a FIFO")
}

#[test]
fn a_fifo_for_the_index_a_record_or_a_release_mark_never_holds_a_lookup() {
    let t = Tree::new();
    t.disk("vdb", "252:16", 1 << 30, None);
    t.fs("252:16", "ext4", Some("data"), "u1");
    let s = t.settings("");
    for (dir, name) in [
        ("run", "disks.index"),
        ("run/disks", "vdb.json"),
        ("run/released", "vdb"),
    ] {
        fs::create_dir_all(t.p(dir)).unwrap();
        let path = t.p(dir).join(name);
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
        let s2 = s.clone();
        let served = within(move || entry(&s2, "data"));
        let s2 = s.clone();
        let listed = within(move || Scan::new(&s2).unwrap().devices().len());
        assert!(listed > 0);
        fs::remove_file(&path).unwrap();
        // The index's and a record's FIFO are no source; a release mark
        // that cannot be read still marks the disk released.
        if name == "vdb" && dir == "run/released" {
            assert!(
                matches!(served, Err(MapError::Excluded { .. })),
                "{served:?}"
            );
        } else {
            assert!(served.is_ok(), "{name}: {served:?}");
        }
    }
}

#[test]
fn labels_reach_the_table_escaped_and_json_raw() {
    let t = Tree::new();
    t.disk("vdb", "252:16", 1 << 30, None);
    t.udev(
        "252:16",
        &[
            ("ID_FS_TYPE", "ext4"),
            ("ID_FS_USAGE", "filesystem"),
            ("ID_FS_LABEL_ENC", "a\\x1b[2Jb\\x0ac"),
        ],
    );
    let s = t.settings("");
    let config = t.p("gandi.conf");
    fs::write(
        &config,
        format!(
            "GANDI_SYS_DIR={}\nGANDI_PROC_DIR={}\nGANDI_DEV_DIR={}\nGANDI_UDEV_DATA_DIR={}\n\
             GANDI_RUN_DIR={}\nCONFIG_DISK_DEVICES=vd*\n",
            s.paths.sys_dir.display(),
            s.paths.proc_dir.display(),
            s.paths.dev_dir.display(),
            s.paths.udev_data_dir.display(),
            s.paths.run_dir.display()
        ),
    )
    .unwrap();
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_gandi-vm"))
            .args(args)
            .env("GANDI_CONFIG", &config)
            .env_remove("JOURNAL_STREAM")
            .output()
            .unwrap()
    };
    let table = String::from_utf8(run(&["disks"]).stdout).unwrap();
    assert!(!table.contains('\x1b'), "{table:?}");
    let row = table.lines().find(|l| l.starts_with("vdb")).unwrap();
    assert!(row.contains("a\\x1b[2Jb\\x0ac"), "{row:?}");
    let v: serde_json::Value = serde_json::from_slice(&run(&["disks", "--json"]).stdout).unwrap();
    assert_eq!(v[1]["label"], "a\x1b[2Jb\nc", "{v}");
}

#[test]
fn a_growth_left_undone_is_started_again_by_a_lookup_that_waits_for_nothing() {
    use std::io::Read;
    use std::os::unix::fs::PermissionsExt;
    let t = Tree::new();
    t.disk("vdb", "252:16", 1 << 30, Some(3));
    t.fs("252:16", "ext4", Some("data"), "u");
    // The program the map starts: a stand-in that says what it holds and
    // lingers, as a long growth does.
    let seen = t.p("adopter.txt");
    let bin = t.p("gandi-vm-stand-in");
    fs::write(
        &bin,
        format!(
            "#!/bin/sh\n{{ echo \"args $*\"; echo \"pgid $(ps -o pgid= $$ | tr -d ' ') pid $$\"; \
             ls -l /proc/$$/fd; }} > {}.new\n\
             mv {0}.new {0}\nexec sleep 30\n",
            seen.display()
        ),
    )
    .unwrap();
    fs::set_permissions(&bin, fs::Permissions::from_mode(0o755)).unwrap();
    let extra = format!(
        "GANDI_BIN={}\nGANDI_SYSTEMD_DIR={}\n",
        bin.display(),
        t.p("no-systemd").display()
    );
    let s = t.settings(&extra);
    fs::write(t.p("gandi.conf"), {
        let mut text = String::new();
        for (k, v) in [
            ("GANDI_SYS_DIR", t.p("sys")),
            ("GANDI_PROC_DIR", t.p("proc")),
            ("GANDI_DEV_DIR", t.p("dev")),
            ("GANDI_UDEV_DATA_DIR", t.p("udev")),
            ("GANDI_RUN_DIR", t.p("run")),
        ] {
            text.push_str(&format!("{k}={}\n", v.display()));
        }
        text.push_str("CONFIG_DISK_DEVICES=\"vd* xvd*\"\n");
        text.push_str(&extra);
        text
    })
    .unwrap();
    // Its grower and watcher were killed: `growing` by processes gone.
    t.record(
        &s,
        &format!(
            r#"{{"name":"vdb","devnum":"252:16","diskseq":3,"size":{},"fstype":"ext4","usage":"filesystem","label":"data","uuid":"u","part_name":null,"part_table":null,"partitioned":false,"state":"growing","grower":{},"watcher":{},"updated":1}}"#,
            1u64 << 30,
            1u32 << 30,
            (1u32 << 30) + 1
        ),
    );
    let started = std::time::Instant::now();
    let mut map = std::process::Command::new(env!("CARGO_BIN_EXE_gandi-map"))
        .arg("data")
        .env("GANDI_CONFIG", t.p("gandi.conf"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // autofs reads the map's output to its end: it must come while the
    // program the map started still runs.
    let mut out = String::new();
    map.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    let mut err = String::new();
    map.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    let status = map.wait().unwrap();
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "the lookup waited for the program it started"
    );
    assert!(status.success(), "{err}");
    assert!(out.starts_with("-fstype=ext4,"), "{out}");
    assert!(err.contains("left undone: started again"), "{err}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !seen.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "nothing started: {err}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let said = fs::read_to_string(&seen).unwrap();
    let pid: i32 = said
        .split_whitespace()
        .skip_while(|w| *w != "pid")
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
    assert!(said.contains("args disk-grow --adopt vdb"), "{said}");
    // Its own process group, none of the map's pipes.
    let pgid: i32 = said
        .split_whitespace()
        .skip_while(|w| *w != "pgid")
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(pgid, pid, "{said}");
    assert!(
        !said.contains("pipe:") && !said.contains("socket:"),
        "{said}"
    );
    // A growth in progress (a live grower) starts nothing.
    fs::remove_file(&seen).unwrap();
    t.record(
        &s,
        &format!(
            r#"{{"name":"vdb","devnum":"252:16","diskseq":3,"size":{},"fstype":"ext4","usage":"filesystem","label":"data","uuid":"u","part_name":null,"part_table":null,"partitioned":false,"state":"ready","updated":1}}"#,
            1u64 << 30
        ),
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gandi-map"))
        .arg("data")
        .env("GANDI_CONFIG", t.p("gandi.conf"))
        .output()
        .unwrap();
    assert!(out.status.success());
    // Said before the map exits, were it started; the stand-in's file is
    // a second look.
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!said.contains("started again"), "{said}");
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(!seen.exists(), "a ready disk's lookup started a grower");
}

fn record_of(
    name: &str,
    devnum: &str,
    seq: u64,
    size: u64,
    label: Option<&str>,
    uuid: &str,
) -> String {
    let label = label.map_or("null".to_string(), |l| format!("{l:?}"));
    format!(
        r#"{{"name":"{name}","devnum":"{devnum}","diskseq":{seq},"size":{size},"fstype":"ext4","usage":"filesystem","label":{label},"uuid":"{uuid}","part_name":null,"part_table":null,"partitioned":false,"state":"ready","updated":1}}"#
    )
}

/// A hit the index by key can answer reads neither the kernel's list of
/// every block device nor the whole index: shown with both unreadable (a
/// miss, which must read the kernel's list, then fails).
#[test]
fn a_hit_reads_only_its_own_disk() {
    let t = Tree::new();
    for (i, name) in ["vdb", "vdc", "vdd"].iter().enumerate() {
        let devnum = format!("252:{}", 16 * (i + 1));
        t.disk(name, &devnum, 1 << 30, Some(10 + i as u64));
        t.fs(&devnum, "ext4", Some(&format!("data{i}")), &format!("u{i}"));
    }
    let s = t.settings("");
    for (i, name) in ["vdb", "vdc", "vdd"].iter().enumerate() {
        let devnum = format!("252:{}", 16 * (i + 1));
        let label = format!("data{i}");
        t.record(
            &s,
            &record_of(
                name,
                &devnum,
                10 + i as u64,
                1 << 30,
                Some(&label),
                &format!("u{i}"),
            ),
        );
    }
    assert_eq!(
        entry(&s, "data1").unwrap(),
        format!("-fstype=ext4,{} :{}", s.mount_params, dev_path(&t, "vdc"))
    );
    fs::rename(t.p("proc/partitions"), t.p("proc/partitions.away")).unwrap();
    fs::rename(t.p("run/disks.index"), t.p("run/disks.index.away")).unwrap();
    assert_eq!(
        entry(&s, "data1").unwrap(),
        format!("-fstype=ext4,{} :{}", s.mount_params, dev_path(&t, "vdc"))
    );
    // By UUID, in any case: the key's own spelling is refused as before
    // (it names the label's path), decided by the scan of every device.
    assert!(matches!(entry(&s, "U2"), Err(MapError::System(_))));
    assert!(matches!(entry(&s, "nothing"), Err(MapError::System(_))));
    fs::rename(t.p("proc/partitions.away"), t.p("proc/partitions")).unwrap();
    fs::rename(t.p("run/disks.index.away"), t.p("run/disks.index")).unwrap();
    assert!(matches!(entry(&s, "U2"), Err(MapError::Elsewhere { .. })));
    assert!(matches!(entry(&s, "nothing"), Err(MapError::NoMatch(_))));
}

/// The index by key is trusted only while the kernel confirms its disk:
/// another disk under the number (another size, another attach) is
/// looked up in full, and an unrecorded disk found that way is served.
#[test]
fn the_index_by_key_is_trusted_only_while_the_kernel_confirms_it() {
    let t = Tree::new();
    t.disk("vdb", "252:16", 1 << 30, Some(4));
    t.fs("252:16", "ext4", Some("data"), "u");
    let s = t.settings("");
    t.record(
        &s,
        &record_of("vdb", "252:16", 4, 1 << 30, Some("data"), "u"),
    );
    assert!(entry(&s, "data").is_ok());
    // Detached and another disk attached under its number, same size, not
    // recorded yet, with udev's entry of its own attach: the old record's
    // label no longer serves it.
    fs::write(t.p("sys/devices/virtual/block/vdb/diskseq"), "5\n").unwrap();
    t.fs("252:16", "ext4", Some("other"), "v");
    assert!(matches!(entry(&s, "data"), Err(MapError::NoMatch(_))));
    // Its index files name the old disk still; with the kernel's list
    // gone, the lookup cannot answer from them.
    fs::rename(t.p("proc/partitions"), t.p("proc/partitions.away")).unwrap();
    assert!(matches!(entry(&s, "data"), Err(MapError::System(_))));
}

/// A disk whose attach number was recorded and cannot be read now (it went
/// in the middle of the lookup) is not confirmed: the scan of its key's
/// devices answers nothing, and the lookup scans every device.
#[test]
fn a_recorded_attach_number_gone_from_sysfs_is_no_confirmation() {
    let t = Tree::new();
    t.disk("vdb", "252:16", 1 << 30, Some(4));
    t.fs("252:16", "ext4", Some("data"), "u");
    let s = t.settings("");
    t.record(
        &s,
        &record_of("vdb", "252:16", 4, 1 << 30, Some("data"), "u"),
    );
    assert!(Scan::for_key(&s, "data", |_, l, _| l == Some("data")).is_some());
    let seq = t.p("sys/devices/virtual/block/vdb/diskseq");
    fs::remove_file(&seq).unwrap();
    assert!(Scan::for_key(&s, "data", |_, l, _| l == Some("data")).is_none());
    fs::write(&seq, "4\n").unwrap();
    assert!(Scan::for_key(&s, "data", |_, l, _| l == Some("data")).is_some());
}

/// A record the index leaves out (damaged) leaves no index by key: its
/// disk, which the scan of every device still sees, may answer to a key
/// before the recorded ones.
#[test]
fn no_index_by_key_while_a_record_is_left_out() {
    let t = Tree::new();
    t.disk("vdb", "252:16", 1 << 30, Some(4));
    t.fs("252:16", "ext4", Some("data"), "u");
    let s = t.settings("");
    t.record(
        &s,
        &record_of("vdb", "252:16", 4, 1 << 30, Some("data"), "u"),
    );
    assert!(fs::symlink_metadata(index::keys_index_path(&s)).is_ok());
    fs::write(t.p("run/disks/vdc.json"), "{ not a record").unwrap();
    index::write_index(&s).unwrap();
    assert!(fs::symlink_metadata(index::keys_index_path(&s)).is_err());
    assert!(entry(&s, "data").is_ok());
    fs::remove_file(t.p("run/disks/vdc.json")).unwrap();
    index::write_index(&s).unwrap();
    assert!(fs::symlink_metadata(index::keys_index_path(&s)).is_ok());
}

/// Each write of the index leaves one generation of the index by key, and
/// removes what a killed writer left.
#[test]
fn the_index_by_key_keeps_one_generation() {
    let t = Tree::new();
    t.disk("vdb", "252:16", 1 << 30, Some(4));
    let s = t.settings("");
    fs::create_dir_all(t.p("run/disks.keys.999-1")).unwrap();
    fs::write(t.p("run/disks.keys.999-1/6461746"), "half").unwrap();
    for label in ["a", "b", "c"] {
        t.record(
            &s,
            &record_of("vdb", "252:16", 4, 1 << 30, Some(label), "u"),
        );
    }
    let gens: Vec<String> = fs::read_dir(t.p("run"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("disks.keys"))
        .collect();
    assert_eq!(gens.len(), 2, "{gens:?}");
    let link = fs::read_link(t.p("run/disks.keys")).unwrap();
    assert!(
        gens.contains(&link.display().to_string()),
        "{gens:?} {link:?}"
    );
    // The files: the name, the label, the UUID (in lower case).
    let mut files: Vec<String> = fs::read_dir(t.p("run/disks.keys"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    let hex = |k: &str| k.bytes().map(|b| format!("{b:02x}")).collect::<String>();
    let mut want = vec![hex("vdb"), hex("c"), hex("u")];
    want.sort();
    assert_eq!(files, want);
}

mod same_answers {
    use super::*;
    use proptest::prelude::*;

    /// One disk: its label, UUID (its case), whether it was released.
    fn disk() -> impl Strategy<Value = (Option<&'static str>, bool, bool)> {
        (
            prop::option::of(prop::sample::select(vec!["data", "vdc", "Data", "u1", "b"])),
            any::<bool>(),
            prop::bool::weighted(0.2),
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        /// Whatever the disks' labels (one another's names and UUIDs
        /// among them, duplicates, cases), a lookup answers as a scan of
        /// every device does: the index by key changes what is read,
        /// never the answer.
        #[test]
        fn the_index_by_key_answers_as_a_full_scan(disks in prop::collection::vec(disk(), 1..5)) {
            let t = Tree::new();
            let names = ["vdb", "vdc", "vdd", "vde", "vdf"];
            let s = t.settings("");
            fs::create_dir_all(t.p("run/released")).unwrap();
            for (i, (label, upper, released)) in disks.iter().enumerate() {
                let devnum = format!("252:{}", 16 * (i + 1));
                let uuid = if *upper { format!("U{i}") } else { format!("u{i}") };
                t.disk(names[i], &devnum, 1 << 30, Some(i as u64 + 1));
                t.fs(&devnum, "ext4", *label, &uuid);
                t.record(&s, &record_of(names[i], &devnum, i as u64 + 1, 1 << 30, *label, &uuid));
                if *released {
                    fs::write(t.p(&format!("run/released/{}", names[i])), format!("{}\n", i + 1)).unwrap();
                }
            }
            let mut keys: Vec<String> = vec!["data".into(), "Data".into(), "b".into(), "nothing".into()];
            for (i, _) in disks.iter().enumerate() {
                keys.extend([names[i].to_string(), format!("u{i}"), format!("U{i}")]);
            }
            let shown = |r: Result<String, MapError>| format!("{r:?}");
            let fast: Vec<String> = keys.iter().map(|k| shown(entry(&s, k))).collect();
            fs::remove_file(t.p("run/disks.keys")).unwrap();
            let full: Vec<String> = keys.iter().map(|k| shown(entry(&s, k))).collect();
            for ((k, a), b) in keys.iter().zip(&fast).zip(&full) {
                prop_assert_eq!(a, b, "key {:?}", k);
            }
        }
    }
}

/// A disk looked up by its kernel name while its label leads to another
/// disk (the first in kernel order with it) is served under its name; the
/// label's other disks are not among the key's, so the index by key reads
/// the label's too.
#[test]
fn a_name_is_served_when_its_label_leads_elsewhere() {
    let t = Tree::new();
    t.disk("vdb", "252:16", 1 << 30, Some(1));
    t.disk("vdc", "252:32", 1 << 30, Some(2));
    t.fs("252:16", "ext4", Some("data"), "u1");
    t.fs("252:32", "ext4", Some("data"), "u2");
    let s = t.settings("");
    t.record(
        &s,
        &record_of("vdb", "252:16", 1, 1 << 30, Some("data"), "u1"),
    );
    t.record(
        &s,
        &record_of("vdc", "252:32", 2, 1 << 30, Some("data"), "u2"),
    );
    assert_eq!(
        entry(&s, "vdc").unwrap(),
        format!("-fstype=ext4,{} :{}", s.mount_params, dev_path(&t, "vdc"))
    );
    assert!(matches!(entry(&s, "vdb"), Err(MapError::Elsewhere { .. })));
}

/// The rules that look beyond the key's own device still apply when the
/// index by key answers: a whole disk with partitions, the root's disk, a
/// partition beside the platform's.
#[test]
fn every_rule_applies_to_a_hit_from_the_index_by_key() {
    let t = Tree::new();
    // vda is the root's disk (the mount table's `/`).
    let s0 = t.settings("CONFIG_DISK_DEVICES=\"vd*\"");
    t.record(
        &s0,
        &record_of("vda", "254:0", 0, 1 << 30, Some("rootlabel"), "r"),
    );
    // A whole disk that carries a partition.
    t.disk("vdb", "252:16", 1 << 30, Some(1));
    t.dev("vdb1", "252:17", 1 << 29, Some("vdb"), None);
    t.fs("252:16", "ext4", Some("whole"), "w");
    // A partition beside the platform's swap/config partition.
    t.disk("vdc", "252:32", 1 << 30, Some(2));
    t.dev("vdc1", "252:33", 1 << 29, Some("vdc"), None);
    t.dev("vdc2", "252:34", 1 << 28, Some("vdc"), None);
    t.udev(
        "252:34",
        &[
            ("ID_FS_TYPE", "swap"),
            ("ID_FS_USAGE", "other"),
            ("ID_PART_ENTRY_NAME", "gandiswap"),
        ],
    );
    t.fs("252:33", "ext4", Some("beside"), "b");
    let s = t.settings("CONFIG_DISK_DEVICES=\"vd*\"");
    t.record(
        &s,
        &record_of("vdb", "252:16", 1, 1 << 30, Some("whole"), "w"),
    );
    t.record(
        &s,
        &record_of("vdc1", "252:33", 2, 1 << 29, Some("beside"), "b"),
    );
    let excluded = |key: &str| match entry(&s, key) {
        Err(MapError::Excluded { reason, .. }) => reason,
        other => panic!("{key}: {other:?}"),
    };
    let whole = excluded("whole");
    let beside = excluded("beside");
    let root = excluded("rootlabel");
    // The same without the kernel's list: the index by key decided each.
    fs::rename(t.p("proc/partitions"), t.p("proc/partitions.away")).unwrap();
    for (key, reason) in [("whole", &whole), ("beside", &beside), ("rootlabel", &root)] {
        match entry(&s, key) {
            // Refused by the scan of one key: then asked again of every
            // device, which cannot be read here.
            Err(MapError::System(_)) => {}
            other => panic!("{key}: served or refused otherwise ({other:?}), not as {reason}"),
        }
    }
    fs::rename(t.p("proc/partitions.away"), t.p("proc/partitions")).unwrap();
    assert_eq!(
        (whole.as_str(), beside.as_str(), root.as_str()),
        (
            Exclusion::Partitioned.to_string().as_str(),
            Exclusion::PlatformDisk.to_string().as_str(),
            Exclusion::RootDisk.to_string().as_str()
        )
    );
}

/// The root on LVM (`dm-0`, over a partition of vde): another partition of
/// vde is the root's disk too, when the index by key answers as in full.
#[test]
fn a_partition_beside_the_roots_volume_is_refused_from_the_index_by_key() {
    let mut t = Tree::new();
    t.mountinfo = "22 1 253:0 / / rw,relatime - ext4 /dev/mapper/vg-root rw\n".into();
    t.disk("dm-0", "253:0", 1 << 30, None);
    t.disk("vde", "252:64", 1 << 31, Some(3));
    t.dev("vde1", "252:65", 1 << 30, Some("vde"), None);
    t.dev("vde2", "252:66", 1 << 29, Some("vde"), None);
    fs::create_dir_all(t.p("sys/devices/virtual/block/dm-0/slaves")).unwrap();
    symlink(
        "../../vde/vde1",
        t.p("sys/devices/virtual/block/dm-0/slaves/vde1"),
    )
    .unwrap();
    t.fs("252:66", "ext4", Some("beside"), "b");
    let s = t.settings("CONFIG_DISK_DEVICES=\"vd*\"");
    t.record(
        &s,
        &record_of("vde2", "252:66", 3, 1 << 29, Some("beside"), "b"),
    );
    let root = Exclusion::RootDisk.to_string();
    assert!(
        matches!(entry(&s, "beside"), Err(MapError::Excluded { reason, .. }) if reason == root)
    );
    fs::rename(t.p("proc/partitions"), t.p("proc/partitions.away")).unwrap();
    assert!(matches!(entry(&s, "beside"), Err(MapError::System(_))));
}

/// While udev has events queued, a disk may be attached and not recorded
/// yet: the index by key is not used, and a key answers as the scan of
/// every device decides (here: the unrecorded disk whose label is the key,
/// before the recorded disk of that name).
#[test]
fn while_udev_has_events_queued_a_lookup_scans_every_device() {
    let t = Tree::new();
    t.disk("vdb", "252:16", 1 << 30, Some(1));
    t.disk("vdc", "252:32", 1 << 30, Some(2));
    t.fs("252:16", "ext4", None, "u1");
    t.fs("252:32", "ext4", Some("vdb"), "u2");
    let s = t.settings("");
    t.record(&s, &record_of("vdb", "252:16", 1, 1 << 30, None, "u1"));
    let from_index = entry(&s, "vdb");
    // What the scan of every device decides: the index by key set aside.
    let keys = s.paths.run_dir.join("disks.keys");
    let link = fs::read_link(&keys).unwrap();
    fs::remove_file(&keys).unwrap();
    let full = entry(&s, "vdb");
    assert_ne!(
        format!("{from_index:?}"),
        format!("{full:?}"),
        "the case shows no difference"
    );
    symlink(&link, &keys).unwrap();
    fs::write(t.p("queue"), "").unwrap();
    assert_eq!(format!("{:?}", entry(&s, "vdb")), format!("{full:?}"));
    fs::remove_file(t.p("queue")).unwrap();
    assert_eq!(format!("{:?}", entry(&s, "vdb")), format!("{from_index:?}"));
}

/// A hit the index answers takes the ext4 driver's sysfs folder for the
/// disk's mounts: no entry there for the disk, and the driver holds no
/// filesystem of it (the mount table, whose line here is made up, is not
/// read); an entry there, or no folder of the driver at all, and the mount
/// table decides.
#[test]
fn a_hit_takes_the_drivers_sysfs_folder_for_the_mounts() {
    let mut t = Tree::new();
    t.disk("vdb", "252:16", 1 << 30, Some(4));
    t.fs("252:16", "ext4", Some("data"), "u");
    let s = t.settings("");
    t.record(
        &s,
        &record_of("vdb", "252:16", 4, 1 << 30, Some("data"), "u"),
    );
    t.mount("252:16", "/dev/vdb", "/mnt/admin");
    let s = t.settings("");
    assert!(matches!(entry(&s, "data"), Err(MapError::Mounted { .. })));
    fs::create_dir_all(t.p("sys/fs/ext4/vda")).unwrap();
    assert!(entry(&s, "data").is_ok(), "{:?}", entry(&s, "data"));
    fs::create_dir_all(t.p("sys/fs/ext4/vdb")).unwrap();
    assert!(matches!(entry(&s, "data"), Err(MapError::Mounted { .. })));
    // Another type: the mount table decides.
    let mut t = Tree::new();
    t.disk("vdc", "252:32", 1 << 30, Some(5));
    t.fs("252:32", "ext3", Some("old"), "w");
    let s = t.settings("");
    let record =
        record_of("vdc", "252:32", 5, 1 << 30, Some("old"), "w").replace("\"ext4\"", "\"ext3\"");
    t.record(&s, &record);
    fs::create_dir_all(t.p("sys/fs/ext4")).unwrap();
    assert!(entry(&s, "old").is_ok(), "{:?}", entry(&s, "old"));
    t.mount("252:32", "/dev/vdc", "/mnt/admin");
    let s = t.settings("");
    assert!(matches!(entry(&s, "old"), Err(MapError::Mounted { .. })));
}
