//! `make bench`: the program map against the exec floor, and attach to
//! served.
//!
//! - Lookups (hit and miss) at 1, 32 and 128 recorded loop disks, timed as
//!   paired loops against a static no-op built here (the exec floor: what
//!   any static program costs to start): several rounds, each timing a few
//!   hundred runs of each program in turn, the order rotating; the ratio
//!   of each round, then their median and spread. In the same rounds, the
//!   lookup's reads alone (a static program built here that makes the same
//!   opens, reads, listings and link reads, taken from an `strace` of the
//!   lookup, and nothing else): what the map's rules cost before any of its
//!   own work. Side by side, the reference algorithm (the original shell map,
//!   `benches/fixtures/reference-auto.gandi`).
//! - Per lookup, deterministic counts: system calls (`strace -c`), minor
//!   page faults (`getrusage` of the children), bytes read.
//! - The attach helper: one udev event; attach to served through the real
//!   automount and udevd, after a miss of the same key.
//!
//! Prints figures; asserts nothing about time (machines are noisy).
//! Needs root. A running udevd is reused, else one is started for the run
//! and stopped at the end.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)] // tests and benches: a failure is a panic, output is the report

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

/// The bench's settings: its own folders, and its loop devices (none
/// before the first is attached) as the only data disks.
fn write_conf(conf: &Path, dir: &Path, loops: &Loops) {
    let names: Vec<&str> = loops
        .0
        .iter()
        .map(|d| d.trim_start_matches("/dev/"))
        .collect();
    fs::write(
        conf,
        format!(
            "CONFIG_DISK_DEVICES=\"{}\"\nGANDI_RUN_DIR={}\nGANDI_SYSTEMD_DIR={}\n\
             GANDI_STATE_DIR={}\nGANDI_HOOK_DIR={}\n",
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(" ")
            },
            dir.join("run").display(),
            dir.join("no-systemd").display(),
            dir.join("state").display(),
            dir.join("hooks").display()
        ),
    )
    .unwrap();
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

/// A command to time: program, arguments, environment.
struct Prog<'a> {
    name: &'a str,
    path: &'a Path,
    args: Vec<String>,
    env: Vec<(&'a str, &'a Path)>,
}

impl Prog<'_> {
    fn command(&self) -> Command {
        let mut cmd = Command::new(self.path);
        cmd.args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Wall time of `runs` runs in a row.
    fn time(&self, runs: usize) -> Duration {
        let t = Instant::now();
        for _ in 0..runs {
            let _ = self.command().status();
        }
        t.elapsed()
    }

    /// Median wall time of single runs (for slow programs).
    fn median(&self, runs: usize) -> Duration {
        let mut times: Vec<Duration> = (0..runs).map(|_| self.time(1)).collect();
        times.sort();
        times[times.len() / 2]
    }
}

/// Paired loops: `rounds` rounds, each timing `runs` runs of every program
/// in turn (the order rotating from round to round). Returns, for each
/// program after the first, the ratios of its time to the first's, one per
/// round, in the rounds' order; and the first's time per run (median of the
/// rounds).
fn paired(progs: &[Prog], rounds: usize, runs: usize) -> (Vec<Vec<f64>>, Duration) {
    let mut ratios = vec![Vec::new(); progs.len() - 1];
    let mut floors = Vec::new();
    for round in 0..rounds {
        let mut times = vec![Duration::ZERO; progs.len()];
        for k in 0..progs.len() {
            let i = (k + round) % progs.len();
            times[i] = progs[i].time(runs);
        }
        floors.push(times[0] / runs as u32);
        for i in 1..progs.len() {
            ratios[i - 1].push(times[i].as_secs_f64() / times[0].as_secs_f64());
        }
    }
    floors.sort();
    (ratios, floors[floors.len() / 2])
}

/// Builds the exec floor: a static Rust program that does nothing, linked
/// as the map is.
fn static_noop(dir: &Path) -> PathBuf {
    static_program(dir, "noop", "fn main() {}\n")
}

/// The floor of a lookup's reads: a static program that makes the same
/// reads as the map (given as `f:FILE`, `d:DIR`, `l:LINK`: read to the end
/// through one buffer, list, read the link) and nothing else.
const REPLAY: &str = r#"use std::io::Read;
use std::os::unix::ffi::OsStrExt;
fn main() {
    let mut buf = [0u8; 16384];
    for arg in std::env::args_os().skip(1) {
        let b = arg.as_bytes();
        if b.len() < 3 { continue; }
        let path = std::path::Path::new(std::ffi::OsStr::from_bytes(&b[2..]));
        match b[0] {
            b'f' => if let Ok(mut f) = std::fs::File::open(path) {
                while f.read(&mut buf).is_ok_and(|n| n > 0) {}
            },
            b'd' => { let _ = std::fs::read_dir(path).map(|d| d.count()); }
            b'l' => { let _ = std::fs::read_link(path); }
            _ => {}
        }
    }
}
"#;

/// Builds a static Rust program from `source`, linked as the map is.
fn static_program(dir: &Path, name: &str, source: &str) -> PathBuf {
    let src = dir.join(format!("{name}.rs"));
    fs::write(&src, source).unwrap();
    let out = dir.join(name);
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let host = String::from_utf8(Command::new(&rustc).arg("-vV").output().unwrap().stdout)
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_string))
        .unwrap();
    let st = Command::new(&rustc)
        .args([
            "-O",
            "-C",
            "panic=abort",
            "-C",
            "target-feature=+crt-static",
        ])
        .args(["-C", "strip=symbols", "--target", &host, "-o"])
        .arg(&out)
        .arg(&src)
        .status()
        .unwrap();
    assert!(st.success(), "building the static {name} failed");
    out
}

/// The files, folders and links one run of `prog` reads (from `strace`),
/// as arguments of the [`REPLAY`] program; without what the Rust runtime
/// and the C library read at every start (the replay reads them itself).
fn reads_of(prog: &Prog, dir: &Path) -> Vec<String> {
    let text = traced(
        prog,
        dir,
        &[
            "-f",
            "-s",
            "4096",
            "-e",
            "trace=openat,open,readlink,readlinkat",
        ],
    );
    let reads: Vec<String> = text
        .lines()
        .filter_map(|line| {
            // `[PID ]call(ARGS) = RESULT`
            let call = line.split('(').next()?.split_whitespace().last()?;
            let path = line.split('"').nth(1)?;
            if matches!(path, "/proc/self/maps" | "/proc/self/exe") {
                return None;
            }
            let kind = if call.starts_with("readlink") {
                'l'
            } else if line.contains("O_DIRECTORY") {
                'd'
            } else {
                'f'
            };
            Some(format!("{kind}:{path}"))
        })
        .collect();
    assert!(!reads.is_empty(), "no reads traced for {}", prog.name);
    reads
}

/// Runs `prog` once under `strace` with `options` and returns the trace.
fn traced(prog: &Prog, dir: &Path, options: &[&str]) -> String {
    let trace = dir.join("strace.out");
    let _ = Command::new("strace")
        .args(options)
        .arg("-o")
        .arg(&trace)
        .arg(prog.path)
        .args(&prog.args)
        .envs(prog.env.iter().map(|(k, v)| (*k, *v)))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    fs::read_to_string(&trace).unwrap_or_default()
}

/// Per run of `prog`: system calls, minor page faults, bytes read.
fn counts(prog: &Prog, dir: &Path) -> (u64, f64, u64) {
    // System calls: strace's summary, its `total` line.
    let summary = traced(prog, dir, &["-f", "-c"]);
    let calls = summary
        .lines()
        .find(|l| l.trim_end().ends_with("total"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    // Bytes read: the results of every read call.
    let bytes = traced(prog, dir, &["-f", "-e", "trace=read,pread64,readv,preadv"])
        .lines()
        .filter_map(|l| {
            l.rsplit_once(") = ")?
                .1
                .split_whitespace()
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum();
    // Minor page faults: the children's, over a batch.
    use nix::sys::resource::{UsageWho, getrusage};
    let runs = 50;
    let mut cmd = prog.command();
    let before = getrusage(UsageWho::RUSAGE_CHILDREN)
        .unwrap()
        .minor_page_faults();
    for _ in 0..runs {
        let _ = cmd.status();
    }
    let after = getrusage(UsageWho::RUSAGE_CHILDREN)
        .unwrap()
        .minor_page_faults();
    (calls, (after - before) as f64 / runs as f64, bytes)
}

fn ms(d: Duration) -> String {
    format!("{:8.3} ms", d.as_secs_f64() * 1000.0)
}

/// `median [min .. max]` of ratios.
fn spread(r: &[f64]) -> String {
    let mut r = r.to_vec();
    r.sort_by(f64::total_cmp);
    format!(
        "{:5.2}x [{:.2} .. {:.2}]",
        r[r.len() / 2],
        r[0],
        r[r.len() - 1]
    )
}

fn main() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("bench: needs root (loop devices, udevd)");
        std::process::exit(1);
    }
    let dir = tempfile::tempdir().unwrap();
    // No test may attach loop devices meanwhile: our rules, given every
    // loop device, would record and grow theirs.
    // (In the tests' order: loop-faults, then udev.)
    let _loops_serial = common::serial("loop-faults");
    let _serial = common::serial("udev");
    let _udevd = ensure_udevd();
    let mut loops = Loops(Vec::new());
    let conf = dir.path().join("gandi.conf");
    write_conf(&conf, dir.path(), &loops);
    let map_link: PathBuf = dir.path().join("auto.gandi");
    std::os::unix::fs::symlink(MAP, &map_link).unwrap();
    // Another build's map to compare with (GANDI_BENCH_BASELINE: its
    // program map, or a gandi-vm binary that acts as the map through a
    // link named auto.gandi), timed in the same paired loops.
    let baseline: Option<PathBuf> = std::env::var_os("GANDI_BENCH_BASELINE").map(|b| {
        let dir = dir.path().join("baseline");
        fs::create_dir_all(&dir).unwrap();
        let link = dir.join("auto.gandi");
        std::os::unix::fs::symlink(fs::canonicalize(&b).unwrap(), &link).unwrap();
        link
    });
    let mut baseline_rows = Vec::new();
    let noop = static_noop(dir.path());
    let replay = static_program(dir.path(), "replay", REPLAY);
    let reference =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/fixtures/reference-auto.gandi");
    let env = vec![
        ("GANDI_CONFIG", conf.as_path()),
        ("GANDI_LOG", Path::new("warn")),
    ];

    // As on a VM: the attach helper's udev rules record every disk.
    let rules = common::RunRules::install("bench", &common::loop_rules(&conf));
    let run = dir.path().join("run");

    println!(
        "program map ({}, {} bytes) against a static no-op ({} bytes), paired loops",
        MAP,
        fs::metadata(MAP).map(|m| m.len()).unwrap_or(0),
        fs::metadata(&noop).map(|m| m.len()).unwrap_or(0)
    );
    println!("7 rounds of 300 runs each; ratio to the no-op: median [min .. max]");
    println!(
        "(its reads: a static program that makes the same reads as the lookup and nothing else)"
    );
    println!(
        "{:>5}  {:>10}  {:<26} {:<26} {:<26} {:<26} {:>9} {:>14} {:>12}",
        "disks",
        "no-op",
        "hit",
        "miss",
        "hit's reads",
        "miss's reads",
        "syscalls",
        "minor faults",
        "bytes read"
    );
    let mut summary = Vec::new();
    for n in [1usize, 32, 128] {
        attach(dir.path(), &mut loops, n);
        // Only the bench's loop devices are data disks (not another loop
        // device of the machine's): named in the settings once attached,
        // then their `add` replayed for the rules to record them.
        write_conf(&conf, dir.path(), &loops);
        let mut trigger = Command::new("udevadm");
        trigger.args(["trigger", "--action=add"]);
        for d in &loops.0 {
            trigger.arg(format!(
                "/sys/class/block/{}",
                d.trim_start_matches("/dev/")
            ));
        }
        assert!(
            trigger.status().unwrap().success(),
            "udevadm trigger failed"
        );
        settle();
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
        let prog = |name, args: &[&str]| Prog {
            name,
            path: &map_link,
            args: args.iter().map(|a| a.to_string()).collect(),
            env: env.clone(),
        };
        let mut progs = vec![
            Prog {
                name: "no-op",
                path: &noop,
                args: Vec::new(),
                env: Vec::new(),
            },
            prog("hit", &[&hit_key]),
            prog("miss", &["no-such-disk"]),
        ];
        for (i, name) in [(1, "hit's reads"), (2, "miss's reads")] {
            let args = reads_of(&progs[i], dir.path());
            progs.push(Prog {
                name,
                path: &replay,
                args,
                env: Vec::new(),
            });
        }
        if let Some(base) = &baseline {
            progs.push(Prog {
                name: "baseline hit",
                path: base,
                args: vec![hit_key.clone()],
                env: env.clone(),
            });
        }
        let (ratios, floor) = paired(&progs, 7, 300);
        if baseline.is_some() {
            // Per round: ours / the baseline's, hits (the baseline is the
            // last program).
            let mut vs: Vec<f64> = ratios[0]
                .iter()
                .zip(&ratios[ratios.len() - 1])
                .map(|(ours, base)| ours / base)
                .collect();
            vs.sort_by(f64::total_cmp);
            baseline_rows.push((n, vs));
        }
        let (calls, faults, bytes) = counts(&progs[1], dir.path());
        let (mcalls, mfaults, mbytes) = counts(&progs[2], dir.path());
        let (ncalls, nfaults, nbytes) = counts(&progs[0], dir.path());
        println!(
            "{n:>5}  {}  {:<26} {:<26} {:<26} {:<26} {:>9} {:>14} {:>12}",
            ms(floor),
            spread(&ratios[0]),
            spread(&ratios[1]),
            spread(&ratios[2]),
            spread(&ratios[3]),
            format!("{calls}/{mcalls}"),
            format!("{faults:.0}/{mfaults:.0}"),
            format!("{bytes}/{mbytes}"),
        );
        if n == 1 {
            println!(
                "{:>5}  {:>10}  (no-op itself: {ncalls} syscalls, {nfaults:.0} minor faults, {nbytes} bytes read)",
                "", ""
            );
        }
        let reference_hit = Prog {
            name: "reference",
            path: &reference,
            args: vec![hit_key.clone()],
            env: Vec::new(),
        };
        let ref_runs = if n >= 128 { 11 } else { 31 };
        let ref_hit = reference_hit.median(ref_runs);
        let ours = progs[1].median(101);
        summary.push((n, ratios, ref_hit, ours, progs[0].name, progs[2].name));
    }
    // Without the helper's records (udev's database only): one more read
    // per disk.
    drop(rules);
    let _ = fs::remove_dir_all(&run);
    let key = format!("benchdisk{}", loops.0.len() - 1);
    let no_records = Prog {
        name: "no records",
        path: &map_link,
        args: vec![key],
        env: env.clone(),
    }
    .median(201);
    println!();
    for (n, ratios, ref_hit, ours, _, _) in &summary {
        println!(
            "{n:>3} disks: hit {} / miss {} the no-op (goal at 32 and 128: <= 1.2x), \
             their reads alone {} / {}; the reference takes {} a hit, {:.0}x ours ({})",
            spread(&ratios[0]),
            spread(&ratios[1]),
            spread(&ratios[2]),
            spread(&ratios[3]),
            ms(*ref_hit).trim(),
            ref_hit.as_secs_f64() / ours.as_secs_f64(),
            ms(*ours).trim()
        );
    }
    for (n, vs) in &baseline_rows {
        println!(
            "{n:>3} disks: a hit takes {} the baseline's ({}), same rounds",
            spread(vs),
            std::env::var("GANDI_BENCH_BASELINE").unwrap_or_default()
        );
    }
    println!(
        "{:>3} disks without the helper's records (udev's database only): {} a hit",
        loops.0.len(),
        ms(no_records).trim()
    );
    drop(loops);
    helper(dir.path(), &conf);
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
    // This loop device is a data disk too (the settings name the bench's).
    let text = fs::read_to_string(conf).unwrap();
    fs::write(
        conf,
        text.replace(
            "CONFIG_DISK_DEVICES=\"",
            &format!("CONFIG_DISK_DEVICES=\"{name} "),
        ),
    )
    .unwrap();
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

    // Attach to served after a miss: the real automount with the shipped
    // master map line, the real udevd with our rules; the key looked up
    // (and missed) just before the disk is attached. Left out where the
    // kernel has no autofs (the VM bench has it).
    if !common::system_test(&["automount", "systemd-udevd"]) {
        println!("  attach to a file read through automount: not measured here");
        return;
    }
    let env = common::Env::new();
    let root = env.path().join("srv");
    // The 18 loop devices it attaches, by name (not `loop*`, which covers
    // the machine's own).
    let names = common::free_loop_names(18);
    assert_eq!(names.len(), 18, "18 free loop device names");
    env.settings(&[
        format!("CONFIG_DISK_DEVICES=\"{}\"", names.join(" ")),
        format!("CONFIG_DISK_ROOT={}", root.display()),
    ]);
    let _rules = common::RunRules::install("bench", &common::loop_rules_for(&env.config(), &names));
    let am = common::Automount::start(&env, &root, 600);
    let content = dir.join("content");
    fs::create_dir_all(&content).unwrap();
    fs::write(content.join("hello"), "hello\n").unwrap();
    let mut lat = Vec::new();
    let mut fresh = Vec::new();
    let mut missed = 0;
    for (i, name) in names.iter().enumerate() {
        // The first 12 after a miss of their key; the rest without one.
        let after_miss = i < 12;
        let img = dir.join(format!("attach{i}.img"));
        fs::File::create(&img).unwrap().set_len(8 << 20).unwrap();
        let label = format!("attach{i}");
        assert!(
            Command::new("mkfs.ext4")
                .args(["-q", "-F", "-L", &label, "-d"])
                .arg(&content)
                .arg(&img)
                .status()
                .unwrap()
                .success()
        );
        let file = root.join(&label).join("hello");
        if after_miss && fs::read(&file).is_err() {
            missed += 1;
        }
        let t = Instant::now();
        assert!(common::attach_loop(name, &img), "{name} taken");
        let _l = Loops(vec![format!("/dev/{name}")]);
        let deadline = Instant::now() + Duration::from_secs(30);
        while fs::read(&file).is_err() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        if after_miss {
            lat.push(t.elapsed());
        } else {
            fresh.push(t.elapsed());
        }
        let _ = Command::new("umount").arg(root.join(&label)).status();
        settle();
    }
    drop(am);
    lat.sort();
    let p90 = lat[(lat.len() * 9).div_ceil(10) - 1];
    println!(
        "  attach to a file read through automount, after a miss of its key: \
         median {}, p90 {} ({} samples, {missed} misses first)",
        ms(lat[lat.len() / 2]).trim(),
        ms(p90).trim(),
        lat.len()
    );
    fresh.sort();
    println!(
        "  the same without a miss first: median {} ({} samples)",
        ms(fresh[fresh.len() / 2]).trim(),
        fresh.len()
    );
}
