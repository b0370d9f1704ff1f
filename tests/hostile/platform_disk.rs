//! Which disk is the platform's: only the place it is attached at, never
//! a label, a partition name or the disk being `sdb`. On a fixture `/sys`
//! and `/dev` (image files standing for the disks).

use super::common::fixtures::{self, image, tar};
use super::common::*;
use super::*;
use gandi_vm::base::settings::Settings;
use gandi_vm::boot::bootstrap::disk::{self, Choice, Record};
use std::fs;
use std::os::unix::fs::symlink;
use std::process::Command;

/// A machine's `/sys` and `/dev`, as far as the choice reads them.
struct Machine {
    dir: tempfile::TempDir,
}

impl Machine {
    fn new() -> Machine {
        let m = Machine { dir: tempdir() };
        for d in ["sys/class/block", "dev", "proc", "state"] {
            fs::create_dir_all(m.p(d)).unwrap();
        }
        m
    }

    fn p(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn settings(&self) -> Settings {
        Settings::default().with_paths(|p| {
            p.sys_dir = self.p("sys");
            p.dev_dir = self.p("dev");
            p.proc_dir = self.p("proc");
            p.state_dir = self.p("state");
        })
    }

    /// A virtio disk `name` in PCI slot `slot` (`0000:00:04.0`).
    fn virtio(&self, name: &str, slot: &str) {
        let dev = format!(
            "devices/pci0000:00/{slot}/virtio{}/block/{name}",
            name.len()
        );
        fs::create_dir_all(self.p("sys").join(&dev)).unwrap();
        symlink(format!("../../{dev}"), self.p("sys/class/block").join(name)).unwrap();
    }

    /// A Xen virtual disk `name`.
    fn xen(&self, name: &str) {
        let dev = format!("devices/vbd-{}/block/{name}", 51712 + name.len());
        fs::create_dir_all(self.p("sys").join(&dev)).unwrap();
        symlink(format!("../../{dev}"), self.p("sys/class/block").join(name)).unwrap();
    }

    /// Partition `part` of `disk`, starting at sector `start`.
    fn partition(&self, disk: &str, part: &str, start: u64) {
        let target = fs::read_link(self.p("sys/class/block").join(disk)).unwrap();
        let dir = self.p("sys/class/block").join(&target).join(part);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("partition"), "1\n").unwrap();
        fs::write(dir.join("start"), format!("{start}\n")).unwrap();
        symlink(target.join(part), self.p("sys/class/block").join(part)).unwrap();
    }

    fn dev(&self, name: &str) -> PathBuf {
        self.p("dev").join(name)
    }
}

fn forged() -> Vec<u8> {
    tar(&[(
        "gandi/config",
        br#"{"vm_hostname": "forged", "vm_conf": {"password": "$6$x$forgedforgedforged"}}"#,
        0o600,
    )])
}

fn platform_archive() -> Vec<u8> {
    tar(&[("gandi/config", br#"{"vm_hostname": "platform"}"#, 0o600)])
}

/// A whole-disk swap area labelled `swap`, with `archive` at 512 KiB.
fn swap_disk(path: &Path, archive: &[u8]) {
    let dir = path.parent().unwrap();
    let name = path.file_name().unwrap().to_str().unwrap();
    image(dir, name, &[], None);
    sh(Command::new("mkswap").args(["-q", "-L", "swap"]).arg(path));
    image_at(path, archive);
}

/// Writes `archive` at 512 KiB of `path`.
fn image_at(path: &Path, archive: &[u8]) {
    use std::io::{Seek, SeekFrom, Write};
    let mut f = fs::OpenOptions::new().write(true).open(path).unwrap();
    f.seek(SeekFrom::Start(512 * 1024)).unwrap();
    f.write_all(archive).unwrap();
}

/// A disk with a GPT whose one partition is named `part_name`.
fn gpt_disk(path: &Path, part_name: &str) {
    let dir = path.parent().unwrap();
    image(dir, path.file_name().unwrap().to_str().unwrap(), &[], None);
    let mut child = Command::new("sfdisk")
        .args(["--quiet", "--label", "gpt"])
        .arg(path)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    use std::io::Write;
    writeln!(child.stdin.take().unwrap(), "start=2048, name={part_name}").unwrap();
    assert!(child.wait().unwrap().success());
}

fn found(c: &Choice) -> &disk::PlatformDisk {
    match c {
        Choice::Found(d) => d,
        other => panic!("no disk chosen: {other:?}"),
    }
}

#[test]
fn a_data_disks_partition_name_swap_label_or_name_never_makes_it_the_platforms() {
    if !system_test(&["mkswap", "sfdisk", "blkid"]) {
        return;
    }
    let m = Machine::new();
    // The platform's disk, at its place.
    m.virtio("vdb", "0000:00:04.0");
    swap_disk(&m.dev("vdb"), &platform_archive());
    // A data disk with a partition named gandiswap, labelled swap, a
    // forged archive at 512 KiB of the disk.
    m.virtio("vdc", "0000:00:05.0");
    gpt_disk(&m.dev("vdc"), "gandiswap");
    image_at(&m.dev("vdc"), &forged());
    m.partition("vdc", "vdc1", 2048);
    swap_disk(&m.dev("vdc1"), &forged());
    // A data disk that is sdb, a swap area labelled swap.
    m.virtio("sdb", "0000:00:06.0");
    swap_disk(&m.dev("sdb"), &forged());
    let before = [m.dev("vdc"), m.dev("vdc1"), m.dev("sdb")].map(|p| fs::read(p).unwrap());
    let s = m.settings();
    let d = disk::choose(&s, None, None);
    assert_eq!(found(&d).disk, m.dev("vdb"), "{d:?}");
    assert_eq!(found(&d).swap, m.dev("vdb"));
    assert_eq!(found(&d).place, "pci-0000:00:04.0");
    // Without the platform's disk, none of them is taken.
    fs::remove_file(m.p("sys/class/block/vdb")).unwrap();
    let d = disk::choose(&s, None, None);
    assert!(matches!(d, Choice::None(_)), "{d:?}");
    // Nothing was written on them.
    let after = [m.dev("vdc"), m.dev("vdc1"), m.dev("sdb")].map(|p| fs::read(p).unwrap());
    assert!(before == after, "a data disk was written");
}

#[test]
fn a_disk_at_the_platforms_place_holding_a_filesystem_is_not_taken() {
    if !system_test(&["mkswap", "mkfs.ext4", "blkid"]) {
        return;
    }
    let m = Machine::new();
    m.virtio("vdb", "0000:00:04.0");
    image(&m.p("dev"), "vdb", &[], None);
    sh(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-L", "swap"])
        .arg(m.dev("vdb")));
    image_at(&m.dev("vdb"), &forged());
    let d = disk::choose(&m.settings(), None, None);
    match &d {
        Choice::None(why) => assert!(why.contains("holds ext4"), "{why}"),
        other => panic!("{other:?}"),
    }
    // Given by hand (--device), its archive is read, but it is never
    // formatted.
    let env = Env::new();
    fixtures::root_settings(&env.config(), &[]);
    let root = fixtures::root_tree(env.path(), false);
    let canary = Canary::beside(&root);
    let before = fs::read(m.dev("vdb")).unwrap();
    let out = bootstrap(&env, &root, &m.dev("vdb"));
    let (result, detail) = step_of(&root, "bootstrap", "swap");
    assert_eq!(result, "skipped", "{}", text(&out));
    assert!(detail.contains("holds ext4"), "{detail}");
    assert!(
        fs::read(m.dev("vdb")).unwrap() == before,
        "the disk was written"
    );
    canary.check();
}

#[test]
fn two_disks_that_qualify_are_both_refused() {
    if !system_test(&["mkswap", "blkid"]) {
        return;
    }
    let m = Machine::new();
    m.xen("xvdz");
    swap_disk(&m.dev("xvdz"), &platform_archive());
    m.virtio("vdb", "0000:00:04.0");
    image(&m.p("dev"), "vdb", &forged(), None);
    let d = disk::choose(&m.settings(), None, None);
    match &d {
        Choice::Ambiguous(why) => assert!(why.contains("2 disks qualify"), "{why}"),
        other => panic!("{other:?}"),
    }
    // The disk recorded for this instance wins; for another instance the
    // record is not used.
    let uuid = disk::swap_uuid(&m.dev("xvdz")).expect("a swap UUID");
    let record = Record {
        format: disk::FORMAT.into(),
        instance: Some("i-1".into()),
        place: "xvdz".into(),
        swap_uuid: Some(uuid),
    };
    let d = disk::choose(&m.settings(), Some(&record), Some("i-1"));
    assert_eq!(found(&d).disk, m.dev("xvdz"), "{d:?}");
    let d = disk::choose(&m.settings(), Some(&record), Some("i-2"));
    assert!(matches!(d, Choice::Ambiguous(_)), "{d:?}");
}

#[test]
fn the_platforms_partitioned_layout_and_xens_old_one() {
    if !system_test(&["mkswap", "sfdisk", "blkid"]) {
        return;
    }
    let m = Machine::new();
    m.virtio("vdb", "0000:00:04.0");
    gpt_disk(&m.dev("vdb"), "gandiswap");
    image_at(&m.dev("vdb"), &platform_archive());
    m.partition("vdb", "vdb1", 2048);
    image(&m.p("dev"), "vdb1", &[], None);
    let d = disk::choose(&m.settings(), None, None);
    assert_eq!(found(&d).swap, m.dev("vdb1"), "{d:?}");
    let places = gandi_vm::boot::bootstrap::archive_places(&m.settings(), &m.dev("vdb1"));
    assert_eq!(places, vec![m.dev("vdb"), m.dev("vdb1")]);
    // A second partition: not the platform's layout.
    m.partition("vdb", "vdb2", 8192);
    image(&m.p("dev"), "vdb2", &[], None);
    let d = disk::choose(&m.settings(), None, None);
    assert!(matches!(d, Choice::None(_)), "{d:?}");

    // Xen: xvda2 of the old layout is a place only when it is a disk of
    // its own, never a partition of the system disk.
    let m = Machine::new();
    m.xen("xvda");
    m.partition("xvda", "xvda2", 2048);
    image(&m.p("dev"), "xvda2", &[], None);
    let d = disk::choose(&m.settings(), None, None);
    assert!(matches!(d, Choice::None(_)), "{d:?}");
    let m = Machine::new();
    m.xen("xvda2");
    image(&m.p("dev"), "xvda2", &platform_archive(), None);
    assert_eq!(
        found(&disk::choose(&m.settings(), None, None)).place,
        "xvda2"
    );
}

#[test]
fn a_pci_function_with_several_disks_is_no_place() {
    let m = Machine::new();
    // A SCSI controller: its disks share the function.
    for n in ["sda", "sdb"] {
        let dev = format!(
            "devices/pci0000:00/0000:00:04.0/virtio3/host0/target0:0:{}/0:0:{}:0/block/{n}",
            n.len(),
            n.len()
        );
        fs::create_dir_all(m.p("sys").join(&dev)).unwrap();
        symlink(format!("../../{dev}"), m.p("sys/class/block").join(n)).unwrap();
    }
    assert!(disk::places_of(&m.settings(), "sdb").is_empty());
    m.virtio("vdb", "0000:00:07.0");
    assert_eq!(
        disk::places_of(&m.settings(), "vdb"),
        vec!["pci-0000:00:07.0"]
    );
}

#[test]
fn the_instance_is_the_dmi_uuid() {
    let m = Machine::new();
    let s = m.settings();
    assert_eq!(disk::instance(&s), None);
    fs::create_dir_all(m.p("sys/class/dmi/id")).unwrap();
    fs::write(
        m.p("sys/class/dmi/id/product_uuid"),
        "00000000-0000-0000-0000-000000000000\n",
    )
    .unwrap();
    assert_eq!(disk::instance(&s), None, "an empty UUID names no instance");
    fs::write(
        m.p("sys/class/dmi/id/product_uuid"),
        "9F2A77E0-1C4B-4E5D-9A3B-0123456789AB\n",
    )
    .unwrap();
    assert_eq!(
        disk::instance(&s).as_deref(),
        Some("9f2a77e0-1c4b-4e5d-9a3b-0123456789ab")
    );
    fs::write(m.p("sys/class/dmi/id/product_uuid"), "$(reboot)\n").unwrap();
    assert_eq!(disk::instance(&s), None);
}

#[test]
fn the_archives_pages_are_never_the_kernels_and_a_read_archive_is_cleared() {
    if !system_test(&["mkswap", "blkid", "useradd", "depmod"]) {
        return;
    }
    let env = Env::new();
    fixtures::root_settings(&env.config(), &[]);
    let root = fixtures::root_tree(env.path(), false);
    let canary = Canary::beside(&root);
    let img = image(env.path(), "swap.img", &platform_archive(), None);
    let out = bootstrap(&env, &root, &img);
    assert!(out.status.success(), "{}", text(&out));
    let head = fs::read(&img).unwrap();
    assert_eq!(&head[4086..4096], b"SWAPSPACE2");
    let word = |at: usize| u32::from_ne_bytes(head[at..at + 4].try_into().unwrap());
    // 8 MiB: pages 0 to 2047; the archive's page 128 and the 636 after it.
    assert_eq!(word(1032), 637, "bad pages listed");
    assert_eq!(word(1536), 128);
    assert_eq!(word(1536 + 4 * 636), 764);
    let (_, detail) = step_of(&root, "bootstrap", "swap");
    assert!(detail.contains("pages 128 and after"), "{detail}");
    // The archive itself is still there (--root enables no swap, so it is
    // not cleared): a second run reads it again.
    assert!(gandi_vm::platform::archive::is_tar_header(
        head[512 * 1024..512 * 1024 + 512].try_into().unwrap()
    ));
    // Cleared, as before a swapon: the first block zeroed, nothing else.
    gandi_vm::boot::bootstrap::consume_archive(&img).unwrap();
    let now = fs::read(&img).unwrap();
    assert!(now[512 * 1024..512 * 1024 + 512].iter().all(|&b| b == 0));
    assert_eq!(now[..512 * 1024], head[..512 * 1024]);
    assert_eq!(now[512 * 1024 + 512..], head[512 * 1024 + 512..]);
    canary.check();
}
