//! Broken or missing state, a pulled disk, no udevd, load: nothing trusted that should not be, no lookup that hangs.

use super::*;

#[test]
#[ignore = "make fault-test"]
fn broken_state_is_ignored_never_trusted() {
    if !system_test(&["mkfs.ext4"]) {
        return;
    }
    let _serial = serial("loop-faults");
    let dir = tempdir();
    let disk = LoopDisk::new(dir.path(), "broken.img", 64);
    disk.mkfs("ext4", Some("brk"));
    let name = disk.name();
    let env = fault_env(&name);
    let run = env.path().join("run");
    // The run dir on a small tmpfs of its own, to fill it later.
    let tmpfs = Tmpfs::mount(&run, "256k");
    let event = |action: &str| env.gandi(&["disk-event", action, &name]);
    let out = event("add");
    assert!(out.status.success(), "{}", said(&out));
    let record_path = run.join(format!("disks/{name}.json"));
    let index_path = run.join("disks.index");
    let good_record = fs::read(&record_path).unwrap();
    let good_index = fs::read(&index_path).unwrap();
    served_from(&env, "brk", &disk.dev, "whole state");

    // Damaged records: the map answers from the kernel (a probe, as no
    // udevd runs for this disk); the helper says so and writes it anew.
    let half = &good_record[..good_record.len() / 2];
    let damaged_records: [(&str, &[u8]); 5] = [
        ("empty record", b""),
        ("truncated record", half),
        ("garbage record", b"\x00\xff\x13garbage\n"),
        (
            "record of another format",
            b"{\"version\": 99, \"disks\": []}\n",
        ),
        ("record of another disk", b"[1, 2, 3]"),
    ];
    for (case, bytes) in damaged_records {
        fs::write(&record_path, bytes).unwrap();
        fs::remove_file(&index_path).unwrap();
        served_from(&env, "brk", &disk.dev, case);
        let out = event("change");
        assert!(out.status.success(), "{case}: {}", said(&out));
        assert!(
            said(&out).contains("ignoring its record"),
            "{case}: the helper did not say: {}",
            said(&out)
        );
        let record: serde_json::Value =
            serde_json::from_slice(&fs::read(&record_path).unwrap()).unwrap();
        assert_eq!(record["label"], "brk", "{case}");
        served_from(&env, "brk", &disk.dev, case);
    }

    // Damaged indexes: ignored or read for their whole lines only.
    let cut_line = &good_index[..good_index.len() - 3];
    let other_label = String::from_utf8_lossy(&good_index).replace("\tbrk\t", "\tother\t");
    // The index of the last version: another format, never read.
    assert!(other_label.contains("disk index 3:"), "{other_label}");
    let damaged_indexes: [(&str, Vec<u8>); 6] = [
        ("empty index", Vec::new()),
        ("index cut inside its last line", cut_line.to_vec()),
        ("index cut inside its header", good_index[..12].to_vec()),
        ("garbage index", b"\x00\x01\x02\xff\xfe".to_vec()),
        (
            "index of another format",
            other_label
                .replace("disk index 3:", "disk index 2:")
                .into_bytes(),
        ),
        (
            "JSON index",
            b"[{\"name\": \"x\", \"label\": \"brk\"}]\n".to_vec(),
        ),
    ];
    for (case, bytes) in damaged_indexes {
        fs::write(&index_path, &bytes).unwrap();
        served_from(&env, "brk", &disk.dev, case);
        let out = env.map("other");
        assert_eq!(out.status.code(), Some(1), "{case}: {}", said(&out));
        let out = event("change");
        assert!(out.status.success(), "{case}: {}", said(&out));
        assert_eq!(fs::read(&index_path).unwrap(), good_index, "{case}");
    }

    // A full run dir: the map still answers; the helper fails with the
    // reason, and the record it could not replace is whole.
    let good_record = fs::read(&record_path).unwrap();
    let filler = run.join("filler");
    let _ = Command::new("dd")
        .args(["if=/dev/zero", "bs=4k"])
        .arg(format!("of={}", filler.display()))
        .stderr(Stdio::null())
        .status();
    served_from(&env, "brk", &disk.dev, "full run dir");
    let out = event("change");
    assert!(!out.status.success(), "full run dir: {}", said(&out));
    assert!(
        said(&out).contains("No space left on device"),
        "full run dir: {}",
        said(&out)
    );
    assert_eq!(fs::read(&record_path).unwrap(), good_record);
    assert_eq!(fs::read(&index_path).unwrap(), good_index);
    let leftovers: Vec<_> = fs::read_dir(run.join("disks"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 1, "temp files left: {leftovers:?}");
    fs::remove_file(&filler).unwrap();

    // A read-only run dir: the same.
    tmpfs.remount("ro");
    served_from(&env, "brk", &disk.dev, "read-only run dir");
    let out = event("change");
    assert!(!out.status.success(), "read-only run dir: {}", said(&out));
    assert!(
        said(&out).contains("Read-only file system"),
        "read-only run dir: {}",
        said(&out)
    );
    assert_eq!(fs::read(&record_path).unwrap(), good_record);
    tmpfs.remount("rw");
    let out = event("change");
    assert!(out.status.success(), "{}", said(&out));
}

#[test]
#[ignore = "make fault-test"]
fn without_udevd_and_with_a_disk_pulled_while_mounted() {
    if !system_test(&["automount", "mkfs.ext4", "losetup"]) {
        return;
    }
    assert!(
        !udevd_running(),
        "a systemd-udevd this test did not start runs: stop it first"
    );
    let _serial = serial("loop-faults");
    let env = Env::new();
    let root = env.path().join("srv");
    let disk = LoopDisk::new(env.path(), "pulled.img", 64);
    disk.mkfs("ext4", Some("first"));
    env.settings(&[
        format!("CONFIG_DISK_DEVICES={}", disk.name()),
        format!("CONFIG_DISK_ROOT={}", root.display()),
        format!("GANDI_STATE_DIR={}", env.path().join("state").display()),
    ]);
    // udevd sees the disk as "first", then stops; the disk's label changes
    // while nothing watches. udev's entry is stale: not trusted.
    {
        let _udevd = Udevd::start();
        sh(Command::new("udevadm").args(["trigger", "--settle", &disk.dev]));
    }
    assert!(!udevd_running());
    let db = fs::read_to_string(format!("/run/udev/data/b7:{}", disk_minor(&disk.dev)))
        .unwrap_or_default();
    assert!(
        db.contains("ID_FS_LABEL=first"),
        "udev did not see the disk: {db}"
    );
    disk.mkfs("ext4", Some("second"));
    let out = env.map("first");
    assert_eq!(
        out.status.code(),
        Some(1),
        "stale udev entry served: {}",
        said(&out)
    );
    assert!(out.stdout.is_empty());
    served_from(&env, "second", &disk.dev, "no udevd");

    // Mounted through the real automount, then pulled (its file emptied,
    // as a detach leaves a device with no medium).
    let am = Automount::start(&env, &root, 600);
    let mp = root.join("second");
    assert!(lookup(&mp), "not mounted");
    fs::write(disk.image.as_path(), b"").unwrap();
    sh(Command::new("losetup").args(["-c", &disk.dev]));
    let listed = String::from_utf8_lossy(&env.gandi(&["disks"]).stdout).into_owned();
    assert!(
        listed.contains("gone: detached while mounted")
            && listed.contains(&mp.display().to_string()),
        "{listed}"
    );
    let out = env.map("second");
    assert_eq!(out.status.code(), Some(1), "{}", said(&out));
    assert!(said(&out).contains("gone"), "{}", said(&out));
    let out = env.gandi(&["disk", "release", "second"]);
    assert!(out.status.success(), "{}", said(&out));
    assert!(said(&out).contains("its disk is gone"), "{}", said(&out));
    assert!(
        !am.mounted().iter().any(|m| m.1 == mp),
        "still mounted: {:?}",
        am.mounted()
    );
    let listed = String::from_utf8_lossy(&env.gandi(&["disks"]).stdout).into_owned();
    assert!(!listed.contains("gone"), "{listed}");
    // Once more: nothing to release, said so.
    let out = env.gandi(&["disk", "release", "second"]);
    assert_eq!(out.status.code(), Some(1), "{}", said(&out));
}

#[test]
#[ignore = "make fault-test"]
fn lookups_under_load_never_mount_the_wrong_disk_nor_hang() {
    if !system_test(&[
        "automount",
        "udevadm",
        "mkfs.ext4",
        "debugfs",
        "resize2fs",
        "bash",
    ]) {
        return;
    }
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let _serial = serial("loop-faults");
    let _udev_serial = serial("udev");
    let env = Env::new();
    let root = env.path().join("srv");
    let run = env.path().join("run");
    // Its own 16 loop devices, by name, in the settings and the rules (not
    // `loop*`: the machine's loop devices are none of the test's business);
    // an image detached is attached again under its name.
    let names = free_loop_names(16);
    assert_eq!(names.len(), 16, "16 free loop device names");
    env.settings(&[
        format!("CONFIG_DISK_DEVICES=\"{}\"", names.join(" ")),
        format!("CONFIG_DISK_ROOT={}", root.display()),
        format!("GANDI_STATE_DIR={}", env.path().join("state").display()),
    ]);
    // 16 images, each an ext4 smaller than its file, with its own label
    // and a file `id` that holds the label.
    let images: Vec<PathBuf> = (0..16)
        .map(|i| {
            let image = env.path().join(format!("ld{i}.img"));
            fs::File::create(&image).unwrap().set_len(32 << 20).unwrap();
            run_ok(
                Command::new("mkfs.ext4")
                    .args(["-q", "-F", "-L", &format!("ld{i}")])
                    .arg(&image)
                    .arg("16M"),
            );
            let id = env.path().join(format!("id{i}"));
            fs::write(&id, format!("ld{i}")).unwrap();
            run_ok(
                Command::new("debugfs")
                    .args(["-w", "-R", &format!("write {} id", id.display())])
                    .arg(&image),
            );
            image
        })
        .collect();
    let _rules = RunRules::install("load", &loop_rules_for(&env.config(), &names));
    let _udevd = Udevd::start();
    let attached = Arc::new(std::sync::Mutex::new(Attached(vec![None; 16])));
    for i in 0..16 {
        assert!(
            attach_again(&names[i], &images[i], Duration::from_secs(10)),
            "{} taken",
            names[i]
        );
        attached.lock().unwrap().0[i] = Some(format!("/dev/{}", names[i]));
    }
    sh(Command::new("udevadm").args(["settle", "-t", "60"]));
    let am = Automount::start(&env, &root, 2);

    // Records and index whole at every moment.
    let stop = Arc::new(AtomicBool::new(false));
    let checker = {
        let (stop, run) = (stop.clone(), run.clone());
        std::thread::spawn(move || -> Result<usize, String> {
            let mut reads = 0;
            while !stop.load(Ordering::Relaxed) {
                reads += records_whole(&run)?;
                std::thread::sleep(Duration::from_millis(5));
            }
            Ok(reads)
        })
    };
    // 8 processes, 500 lookups each, of random keys; a read that takes
    // more than a minute is a hang.
    let readers: Vec<Child> = (0..8)
        .map(|n| {
            Command::new("bash")
                .arg("-c")
                .arg(format!(
                    r#"RANDOM={n}; ok=0
                    for i in $(seq 500); do
                        k=ld$((RANDOM % 16))
                        v=$(timeout 60 cat {root}/$k/id 2>/dev/null); rc=$?
                        if [ $rc = 124 ]; then echo "HANG $k"
                        elif [ $rc = 0 ] && [ "$v" != "$k" ]; then echo "WRONG $k gave $v"
                        elif [ $rc = 0 ]; then ok=$((ok + 1)); fi
                    done
                    echo "OK $ok""#,
                    root = root.display()
                ))
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    // Meanwhile: released, detached, the image grown, attached again.
    let cycles = Arc::new(AtomicUsize::new(0));
    let churn = {
        let (stop, cycles) = (stop.clone(), cycles.clone());
        let config = env.config();
        let attached = attached.clone();
        let images = images.clone();
        let names = names.clone();
        std::thread::spawn(move || {
            let mut rng = Rng(0x10ad);
            while !stop.load(Ordering::Relaxed) {
                let i = rng.below(16) as usize;
                let Some(dev) = attached.lock().unwrap().0[i].take() else {
                    continue;
                };
                let _ = Command::new(BIN)
                    .args(["disk", "release", &format!("ld{i}")])
                    .env("GANDI_CONFIG", &config)
                    .output();
                let _ = Command::new("losetup").args(["-d", &dev]).output();
                let f = fs::OpenOptions::new().write(true).open(&images[i]).unwrap();
                let len = f.metadata().unwrap().len();
                f.set_len(len + (4 << 20)).unwrap();
                drop(f);
                // Under the same name: a device still held (a mount not
                // yet undone defers the detach) is waited for a while, else
                // attached again at the end.
                if attach_again(&names[i], &images[i], Duration::from_secs(5)) {
                    attached.lock().unwrap().0[i] = Some(dev);
                }
                cycles.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut served = 0;
    for mut r in readers {
        while r.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = r.kill();
                stop.store(true, Ordering::Relaxed);
                panic!("the lookups did not end in 10 minutes: hung");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let mut text = String::new();
        use std::io::Read;
        r.stdout.take().unwrap().read_to_string(&mut text).unwrap();
        assert!(!text.contains("WRONG") && !text.contains("HANG"), "{text}");
        served += text
            .lines()
            .find_map(|l| l.strip_prefix("OK "))
            .and_then(|n| n.trim().parse::<usize>().ok())
            .expect("a reader's count");
    }
    stop.store(true, Ordering::Relaxed);
    churn.join().unwrap();
    let reads = checker.join().unwrap().unwrap_or_else(|e| panic!("{e}"));
    let cycles = cycles.load(Ordering::Relaxed);
    eprintln!(
        "4000 lookups: {served} served; {cycles} release/detach/attach cycles; {reads} record reads"
    );
    assert!(
        served > 400,
        "too few lookups served ({served}) to mean anything"
    );
    assert!(cycles >= 16, "too few attach cycles ({cycles})");
    // Once the growths end: every disk served again under its own label,
    // grown to its device.
    drop(am);
    for i in 0..16 {
        let mut slot = attached.lock().unwrap();
        if slot.0[i].is_none() {
            assert!(
                attach_again(&names[i], &images[i], Duration::from_secs(60)),
                "{} still held a minute after its detach",
                names[i]
            );
            slot.0[i] = Some(format!("/dev/{}", names[i]));
        }
    }
    sh(Command::new("udevadm").args(["settle", "-t", "60"]));
    for i in 0..16 {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let out = env.map(&format!("ld{i}"));
            if out.status.success() {
                let dev = attached.lock().unwrap().0[i].clone().unwrap();
                assert_eq!(entry_device(&out.stdout), dev, "ld{i}");
                break;
            }
            if Instant::now() >= deadline {
                // What the helper and the growers did with it, to tell why.
                let dev = attached.lock().unwrap().0[i].clone().unwrap_or_default();
                let name = dev.trim_start_matches("/dev/");
                let record = fs::read_to_string(run.join(format!("disks/{name}.json")))
                    .unwrap_or_else(|e| format!("no record: {e}"));
                let log = fs::read_to_string(run.join("disk-grow.log")).unwrap_or_default();
                let lines: Vec<&str> = log.lines().collect();
                panic!(
                    "ld{i} ({dev}): {}\nrecord: {record}\nlast lines of the growers' log:\n{}",
                    said(&out),
                    lines[lines.len().saturating_sub(60)..].join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    records_whole(&run).unwrap();
}

/// Attaches `image` at `/dev/NAME`, trying again for up to `wait` while the
/// device is still held.
fn attach_again(name: &str, image: &Path, wait: Duration) -> bool {
    let deadline = Instant::now() + wait;
    loop {
        if attach_loop(name, image) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
