//! `make bench`: lookup latency of the program map (hit and miss) with 1, 32
//! and 128 loop disks, side by side with the reference algorithm (the
//! original shell map, `benches/fixtures/reference-auto.gandi`) and with
//! `/bin/true` as the floor. Prints medians and ratios; asserts nothing
//! about time (machines are noisy).
//!
//! Needs root. Uses udev's database as a real VM does: a running udevd is
//! reused, else one is started for the run and stopped at the end.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{BIN, MAP};

struct Loops(Vec<String>);

impl Drop for Loops {
    fn drop(&mut self) {
        for d in &self.0 {
            let _ = Command::new("losetup").arg("-d").arg(d).output();
        }
    }
}

#[path = "../tests/common/mod.rs"]
mod common;

struct Udevd(Option<i32>);

impl Drop for Udevd {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            settle();
            common::stop_pid(pid);
        }
    }
}

fn ensure_udevd() -> Udevd {
    Udevd(common::start_udevd())
}

fn settle() {
    let _ = Command::new("udevadm")
        .args(["settle", "-t", "60"])
        .status();
}

/// Waits until the attach helper has recorded every device.
fn wait_records(run: &Path, loops: &Loops) {
    let deadline = Instant::now() + Duration::from_secs(120);
    for dev in &loops.0 {
        let record = run.join(format!("disks/{}.json", dev.trim_start_matches("/dev/")));
        while !fs::read_to_string(&record).is_ok_and(|r| r.contains("\"ready\"")) {
            assert!(Instant::now() < deadline, "{dev} was never recorded");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn attach(dir: &Path, loops: &mut Loops, upto: usize) {
    while loops.0.len() < upto {
        let i = loops.0.len();
        let img = dir.join(format!("d{i}.img"));
        fs::File::create(&img).unwrap().set_len(4 << 20).unwrap();
        let st = Command::new("mkfs.ext4")
            .args(["-q", "-F", "-L"])
            .arg(format!("benchdisk{i}"))
            .arg(&img)
            .status()
            .unwrap();
        assert!(st.success());
        let out = Command::new("losetup")
            .args(["--find", "--show"])
            .arg(&img)
            .output()
            .unwrap();
        assert!(out.status.success(), "losetup failed");
        loops
            .0
            .push(String::from_utf8_lossy(&out.stdout).trim().to_string());
    }
    settle();
}

/// Median wall time of `runs` runs of the command.
fn median(program: &Path, args: &[&str], env: &[(&str, &Path)], runs: usize) -> Duration {
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let mut cmd = Command::new(program);
            cmd.args(args).stdout(Stdio::null()).stderr(Stdio::null());
            for (k, v) in env {
                cmd.env(k, v);
            }
            let t = Instant::now();
            let _ = cmd.status();
            t.elapsed()
        })
        .collect();
    times.sort();
    times[times.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:8.3} ms", d.as_secs_f64() * 1000.0)
}

fn main() {
    // SAFETY: plain syscall.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("bench: needs root (loop devices, udevd)");
        std::process::exit(1);
    }
    let dir = tempfile::tempdir().unwrap();
    // No test may attach loop devices meanwhile (our rules would see them).
    let _serial = common::serial("udev");
    let _udevd = ensure_udevd();
    let mut loops = Loops(Vec::new());
    let conf = dir.path().join("gandi.conf");
    fs::write(
        &conf,
        format!(
            "CONFIG_DISK_DEVICES=\"loop*\"\nGANDI_RUN_DIR={}\n",
            dir.path().join("run").display()
        ),
    )
    .unwrap();
    let map_link: PathBuf = dir.path().join("auto.gandi");
    std::os::unix::fs::symlink(MAP, &map_link).unwrap();
    let reference =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/fixtures/reference-auto.gandi");
    let env = [
        ("GANDI_CONFIG", conf.as_path()),
        ("GANDI_LOG", Path::new("warn")),
    ];

    // As on a VM: the attach helper's udev rules record every disk.
    let rules = common::RunRules::install("bench", &common::loop_rules(&conf));
    let run = dir.path().join("run");

    println!("program map lookup, median wall time (fork+exec included)");
    println!("disks recorded by the attach helper, as its udev rules do on a VM");
    println!(
        "{:>5}  {:<10} {:>12} {:>12} {:>12}",
        "disks", "what", "hit", "miss", "ref/ours"
    );
    let mut ours_by_n = Vec::new();
    for n in [1usize, 32, 128] {
        attach(dir.path(), &mut loops, n);
        wait_records(&run, &loops);
        let hit_key = format!("benchdisk{}", n - 1);
        let check = Command::new(&map_link)
            .arg(&hit_key)
            .env("GANDI_CONFIG", &conf)
            .output()
            .unwrap();
        assert!(
            check.status.success(),
            "the map does not serve {hit_key}: {}",
            String::from_utf8_lossy(&check.stderr)
        );
        let runs = 201;
        let ref_runs = if n >= 128 { 11 } else { 31 };
        let floor = median(Path::new("/bin/true"), &[], &[], runs);
        let ours_hit = median(&map_link, &[&hit_key], &env, runs);
        let ours_miss = median(&map_link, &["no-such-disk"], &env, runs);
        let ref_hit = median(&reference, &[&hit_key], &[], ref_runs);
        let ref_miss = median(&reference, &["no-such-disk"], &[], ref_runs);
        println!("{n:>5}  {:<10} {} {}", "/bin/true", ms(floor), ms(floor));
        println!(
            "{n:>5}  {:<10} {} {} {:>11.1}x",
            "gandi-vm",
            ms(ours_hit),
            ms(ours_miss),
            ref_hit.as_secs_f64() / ours_hit.as_secs_f64()
        );
        println!(
            "{n:>5}  {:<10} {} {}",
            "reference",
            ms(ref_hit),
            ms(ref_miss)
        );
        ours_by_n.push((n, ours_hit, floor, ref_hit));
    }
    // Without the helper's records (udev's database only): one more read
    // per disk.
    drop(rules);
    let _ = fs::remove_dir_all(&run);
    let key = format!("benchdisk{}", loops.0.len() - 1);
    let no_records = median(&map_link, &[&key], &env, 201);
    println!(
        "{:>5}  {:<10} {} (no records: udev's database only)",
        loops.0.len(),
        "gandi-vm",
        ms(no_records)
    );
    drop(loops);
    helper(dir.path(), &conf);
    println!();
    let (_, one, _, _) = ours_by_n[0];
    for (n, hit, floor, reference) in &ours_by_n {
        println!(
            "{n:>3} disks: gandi-vm is {:.1}x faster than the reference (goal at 32: >= 50x), \
             {:.2}x the 1-disk time (goal at 128: <= 1.2x), {:.2}x /bin/true",
            reference.as_secs_f64() / hit.as_secs_f64(),
            hit.as_secs_f64() / one.as_secs_f64(),
            hit.as_secs_f64() / floor.as_secs_f64(),
        );
    }
}

/// The attach helper: its time per udev event (recording and hand-off, no
/// growth), and the time from a loop attach to its label being served.
fn helper(dir: &Path, conf: &Path) {
    println!();
    println!("attach helper");
    // One event as udev runs it: the device's properties as environment.
    let img = dir.join("helper.img");
    fs::File::create(&img).unwrap().set_len(16 << 20).unwrap();
    assert!(
        Command::new("mkfs.ext4")
            .args(["-q", "-F", "-L", "helper"])
            .arg(&img)
            .status()
            .unwrap()
            .success()
    );
    let out = Command::new("losetup")
        .args(["--find", "--show"])
        .arg(&img)
        .output()
        .unwrap();
    let dev = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let _loop = Loops(vec![dev.clone()]);
    settle();
    let name = dev.trim_start_matches("/dev/").to_string();
    let devnum = fs::read_to_string(format!("/sys/class/block/{name}/dev")).unwrap();
    let (major, minor) = devnum.trim().split_once(':').unwrap();
    let runs = 101;
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            let st = Command::new(BIN)
                .arg("disk-event")
                .env_clear()
                .env("GANDI_CONFIG", conf)
                .env("GANDI_LOG", "warn")
                .envs([
                    ("ACTION", "change"),
                    ("SUBSYSTEM", "block"),
                    ("DEVNAME", dev.as_str()),
                    ("MAJOR", major),
                    ("MINOR", minor),
                    ("ID_FS_TYPE", "ext4"),
                    ("ID_FS_USAGE", "filesystem"),
                    ("ID_FS_LABEL_ENC", "helper"),
                ])
                .env("DEVPATH", format!("/devices/virtual/block/{name}"))
                .stdout(Stdio::null())
                .status()
                .unwrap();
            assert!(st.success());
            t.elapsed()
        })
        .collect();
    times.sort();
    println!(
        "  udev event (record + hand-off, no growth): {}",
        ms(times[runs / 2])
    );

    // Attach to served: the shipped rules for loop devices, the real udevd.
    let _rules = common::RunRules::install("bench", &common::loop_rules(conf));
    let mut lat = Vec::new();
    for i in 0..9 {
        let img = dir.join(format!("attach{i}.img"));
        fs::File::create(&img).unwrap().set_len(8 << 20).unwrap();
        let label = format!("attach{i}");
        assert!(
            Command::new("mkfs.ext4")
                .args(["-q", "-F", "-L", &label])
                .arg(&img)
                .status()
                .unwrap()
                .success()
        );
        let t = Instant::now();
        let out = Command::new("losetup")
            .args(["--find", "--show"])
            .arg(&img)
            .output()
            .unwrap();
        let dev = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let _l = Loops(vec![dev]);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ok = Command::new(BIN)
                .args(["map", &label])
                .env("GANDI_CONFIG", conf)
                .env("GANDI_LOG", "warn")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok || Instant::now() > deadline {
                break;
            }
        }
        lat.push(t.elapsed());
        settle();
    }
    lat.sort();
    println!(
        "  loop attach to label served by the map: {} (median of {})",
        ms(lat[lat.len() / 2]),
        lat.len()
    );
}
