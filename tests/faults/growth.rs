//! Growth killed, refused or raced: the filesystem is never damaged and the work ends.

use super::*;

#[test]
#[ignore = "make fault-test"]
fn growth_killed_at_random_moments_recovers_ext4_xfs_btrfs() {
    if !system_test(&["mkfs.xfs", "mkfs.btrfs", "e2fsck", "xfs_repair", "btrfs"]) {
        return;
    }
    let _serial = serial("loop-faults");
    let mut rng = Rng(0x5eed_1511);
    for fstype in ["ext4", "xfs", "btrfs"] {
        kill_growth(fstype, &mut rng);
    }
}

#[test]
#[ignore = "make fault-test"]
fn a_killed_grower_is_resumed_without_a_new_event() {
    if !system_test(&["mkfs.xfs", "mkfs.btrfs", "e2fsck", "xfs_repair", "btrfs"]) {
        return;
    }
    let _serial = serial("loop-faults");
    let mut rng = Rng(0x5eed_2323);
    let mut kills = 0;
    // ext4 grows offline here (this kernel refuses online resizing without
    // CAP_SYS_RESOURCE); `make vm-fault-test` kills an online one.
    for fstype in ["ext4", "xfs", "btrfs"] {
        kills += kill_grower(fstype, &mut rng);
    }
    assert_eq!(kills, 15);
}

/// An offline growth whose `resize2fs` found the filesystem mounted (a
/// mount autofs began before the resize's mark and finished after the
/// grower's look, so `resize2fs` tried the kernel's online resize, which
/// was refused): it wrote nothing, so the disk is not refused as cut short,
/// which nothing would repair before its next event. A `resize2fs` that
/// fails otherwise leaves the mark. `resize2fs` is a stand-in here: the
/// race cannot be timed from outside.
#[test]
#[ignore = "make fault-test"]
fn a_resize_refused_because_a_mount_landed_leaves_no_cut_short_mark() {
    if !system_test(&["mkfs.ext4", "e2fsck"]) {
        return;
    }
    let _serial = serial("loop-faults");
    for (case, stdout, refused_after) in [
        (
            "went online",
            "Filesystem at $1 is mounted on /srv/x; on-line resizing required",
            false,
        ),
        ("failed offline", "", true),
    ] {
        let dir = tempdir();
        let label = if refused_after { "offfail" } else { "online" };
        let d = fault_disk(dir.path(), "ext4", label, 64, 32);
        let name = d.disk.name();
        let env = fault_env(&name);
        let bin = env.path().join("bin");
        script(
            &bin.join("resize2fs"),
            &format!(
                "echo 'resize2fs 1.47.0 (5-Feb-2023)' >&2\necho \"{stdout}\"\n\
                 echo 'resize2fs: Permission denied to resize filesystem' >&2\nexit 1"
            ),
        );
        let out = grower(&env, &name)
            .env("PATH", path_with(&bin))
            .output()
            .unwrap();
        let said = stderr(&out);
        assert!(
            !out.status.success(),
            "{case}: the growth did not fail: {said}"
        );
        assert!(said.contains("resizing offline"), "{case}: {said}");
        let served = env.gandi(&["map", label]);
        let refusal = stderr(&served);
        if refused_after {
            assert!(!served.status.success(), "{case}: served");
            assert!(refusal.contains("cut short"), "{case}: {refusal}");
        } else {
            assert!(
                served.status.success(),
                "{case}: refused after a resize that wrote nothing: {refusal}"
            );
        }
        assert!(checks_clean(&d.disk.dev, "ext4").is_ok(), "{case}");
    }
}

#[test]
#[ignore = "make fault-test"]
fn one_filesystem_through_two_devices_is_never_grown_under_a_mount() {
    if !system_test(&["mkfs.ext4", "losetup", "e2fsck"]) {
        return;
    }
    let _serial = serial("loop-faults");
    let dir = tempdir();
    let d = fault_disk(dir.path(), "ext4", "twice", 512, 64);
    // The same image through a second loop device, as when a disk is
    // attached again while its old device lives on.
    let second = run_ok(
        Command::new("losetup")
            .args(["--find", "--show"])
            .arg(&d.disk.image),
    )
    .trim()
    .to_string();
    let _second = Attached(vec![Some(second.clone())]);
    let name = second.trim_start_matches("/dev/").to_string();
    let env = fault_env(&format!("{name} {}", d.disk.name()));
    // Mounted through the first device: the second is not grown.
    let mnt = tempdir();
    run_ok(Command::new("mount").arg(&d.disk.dev).arg(mnt.path()));
    let out = grower(&env, &name).output().unwrap();
    let record: serde_json::Value = serde_json::from_slice(
        &fs::read(env.path().join(format!("run/disks/{name}.json"))).unwrap(),
    )
    .unwrap();
    run_ok(Command::new("umount").arg(mnt.path()));
    assert!(out.status.success(), "{}", said(&out));
    assert_eq!(record["state"], "not-grown", "{record}");
    assert!(
        record["note"].as_str().unwrap_or("").contains(&d.disk.dev),
        "{record}"
    );
    checks_clean(&d.disk.dev, "ext4").unwrap();
    // Unmounted: two growers at once, one per device, end with one clean
    // growth (one waits for the other, by the filesystem's UUID).
    let a = grower(&env, &name).spawn().unwrap();
    let b = grower(&env, &d.disk.name()).spawn().unwrap();
    for mut child in [a, b] {
        let status = child.wait().unwrap();
        assert!(status.success());
    }
    checks_clean(&d.disk.dev, "ext4").unwrap();
    assert_eq!(known_sum(&d.disk.dev), d.sum);
    let fs_size = gandi_vm::disk::fsgrow::fs_size(Path::new(&d.disk.dev), "ext4").unwrap();
    assert!(fs_size > 500 << 20, "{fs_size}");
}
