//! A damaged filesystem: refused by the map until `disk check` repairs it, and never marked so by mistake.

use super::*;

#[test]
#[ignore = "make fault-test"]
fn a_damaged_filesystem_is_refused_until_disk_check_repairs_it() {
    if !system_test(&["mkfs.ext4", "debugfs", "dumpe2fs", "e2fsck"]) {
        return;
    }
    let _serial = serial("loop-faults");
    // Damage that `e2fsck -p` will not repair on its own: the root
    // folder's inode cleared; the primary copy of the group descriptors
    // zeroed (only the backup copy can repair it).
    type Damage = (&'static str, fn(&str));
    let damages: [Damage; 2] = [
        ("root folder's inode cleared", |dev| {
            run_ok(Command::new("debugfs").args(["-w", "-R", "clri <2>", dev]));
        }),
        ("primary group descriptors zeroed", |dev| {
            let info = run_ok(Command::new("dumpe2fs").args(["-h", dev]));
            let block: u64 = info
                .lines()
                .find_map(|l| l.strip_prefix("Block size:"))
                .and_then(|v| v.trim().parse().ok())
                .expect("block size");
            let groups = run_ok(Command::new("dumpe2fs").arg(dev));
            let gdt: u64 = groups
                .lines()
                .find_map(|l| l.trim().strip_prefix("Primary superblock at "))
                .and_then(|l| l.split("Group descriptors at ").nth(1))
                .and_then(|l| l.split('-').next())
                .and_then(|v| v.trim().parse().ok())
                .expect("group descriptors");
            // Zeros: junk in the slots of groups a growth adds later is
            // not seen by e2fsck, and resize2fs trusts it.
            let junk = vec![0u8; block as usize];
            use std::io::{Seek, SeekFrom, Write};
            let mut f = fs::OpenOptions::new().write(true).open(dev).unwrap();
            f.seek(SeekFrom::Start(gdt * block)).unwrap();
            f.write_all(&junk).unwrap();
            f.sync_all().unwrap();
        }),
    ];
    for (what, damage) in damages {
        let dir = tempdir();
        let d = fault_disk(dir.path(), "ext4", "hurt", 512, 64);
        let name = d.disk.name();
        let env = fault_env(&name);
        damage(&d.disk.dev);
        assert!(
            checks_clean(&d.disk.dev, "ext4").is_err(),
            "{what}: not damaged"
        );
        let out = grower(&env, &name).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{what}: {}", stderr(&out));
        let record: serde_json::Value = serde_json::from_slice(
            &fs::read(env.path().join(format!("run/disks/{name}.json"))).unwrap(),
        )
        .unwrap();
        assert_eq!(record["state"], "damaged", "{what}: {record}");
        // Refused by the map, with the reason; shown so by `disks`.
        let m = env.gandi(&["map", "hurt"]);
        assert_eq!(m.status.code(), Some(1), "{what}");
        assert!(stderr(&m).contains("damaged"), "{what}: {}", stderr(&m));
        let listed = String::from_utf8_lossy(&env.gandi(&["disks"]).stdout).into_owned();
        assert!(listed.contains("damaged"), "{what}: {listed}");
        // Again: still refused (the mark survives; a growth does not clear
        // it).
        assert_eq!(grower(&env, &name).output().unwrap().status.code(), Some(1));
        assert_eq!(env.gandi(&["map", "hurt"]).status.code(), Some(1));
        // The repair by hand: served again, grown, the file intact.
        let c = env.gandi(&["disk", "check", "hurt"]);
        assert!(c.status.success(), "{what}: {}{}", stdout(&c), stderr(&c));
        checks_clean(&d.disk.dev, "ext4").unwrap();
        let m = env.gandi(&["map", "hurt"]);
        assert!(m.status.success(), "{what}: {}", stderr(&m));
        let fs_size = gandi_vm::disk::fsgrow::fs_size(Path::new(&d.disk.dev), "ext4").unwrap();
        assert!(fs_size > 500 << 20, "{what}: {fs_size}");
        if what.starts_with("primary") {
            assert_eq!(known_sum(&d.disk.dev), d.sum, "{what}: the file changed");
        }
    }
}

/// The device detached and another disk attached under its name while the
/// grower checks it (a loop device used again): the errors the check
/// finds are the other filesystem's, so the grower's filesystem is not
/// marked damaged. A stand-in `e2fsck` swaps the disks at the moment it is
/// asked to check, then reports errors.
#[test]
#[ignore = "make fault-test"]
fn a_disk_swapped_during_its_check_is_not_marked_damaged() {
    if !system_test(&["mkfs.ext4", "e2fsck", "losetup"]) {
        return;
    }
    let _serial = serial("loop-faults");
    let dir = tempdir();
    let d = fault_disk(dir.path(), "ext4", "swapped", 64, 32);
    let name = d.disk.name();
    let other = dir.path().join("other.img");
    fs::File::create(&other).unwrap().set_len(64 << 20).unwrap();
    run_ok(
        Command::new("mkfs.ext4")
            .args(["-q", "-F", "-L", "intruder"])
            .arg(&other),
    );
    let env = fault_env(&name);
    let bin = env.path().join("bin");
    let real = ["/sbin/e2fsck", "/usr/sbin/e2fsck"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap();
    script(
        &bin.join("e2fsck"),
        &format!(
            "case \"$*\" in *-p*)\n\
             losetup -d {dev} && losetup {dev} {other}\n\
             echo 'intruder: Run journal anyway'; exit 4;;\n\
             esac\nexec {real} \"$@\"",
            dev = d.disk.dev,
            other = other.display()
        ),
    );
    let out = grower(&env, &name)
        .env("PATH", path_with(&bin))
        .output()
        .unwrap();
    let said = stderr(&out);
    assert!(said.contains("resizing offline"), "{said}");
    assert!(
        said.contains("holds another filesystem now"),
        "the swap went unnoticed: {said}"
    );
    let marked: Vec<_> = fs::read_dir(env.path().join("state/damaged"))
        .map(|rd| rd.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(marked.is_empty(), "marked damaged: {marked:?}");
    // The grower's own disk back, and its next event's growth: served.
    run_ok(Command::new("losetup").args(["-d", &d.disk.dev]));
    run_ok(Command::new("losetup").arg(&d.disk.dev).arg(&d.disk.image));
    let again = grower(&env, &name).output().unwrap();
    assert!(again.status.success(), "{}", stderr(&again));
    let served = env.gandi(&["map", "swapped"]);
    assert!(
        served.status.success(),
        "refused for the other disk's errors: {}",
        stderr(&served)
    );
}
