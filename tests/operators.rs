//! What an operator of many VMs relies on: log lines by priority, stages
//! seen while they run (and waited for), the previous boot's status, the
//! support report without secrets, the off switch, settings and configs
//! checked with clear words.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)] // tests and benches: a failure is a panic, output is the report

mod common;

use common::fixtures::{HASH, USER_KEY};
use common::*;
use std::fs;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// `gandi-vm ARGS` with stderr in a file that `JOURNAL_STREAM` names (as
/// systemd sets it for a unit whose stderr is the journal) when
/// `journal`; returns stderr's text.
fn stderr_of(env: &Env, args: &[&str], journal: bool) -> String {
    let file = env.path().join("stderr");
    let err = fs::File::create(&file).unwrap();
    let meta = err.metadata().unwrap();
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env("GANDI_CONFIG", env.config())
        .stdout(Stdio::null())
        .stderr(err);
    if journal {
        cmd.env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()));
    } else {
        cmd.env_remove("JOURNAL_STREAM");
    }
    cmd.status().unwrap();
    fs::read_to_string(&file).unwrap()
}

/// The priority journald gives a line written to a stream: a leading
/// `<N>` (one digit, 0 to 7) is taken as it, else the stream's level (6).
fn journald_priority(line: &str) -> (u8, &str) {
    let b = line.as_bytes();
    if b.len() >= 3 && b[0] == b'<' && b[2] == b'>' && (b'0'..=b'7').contains(&b[1]) {
        (b[1] - b'0', &line[3..])
    } else {
        (6, line)
    }
}

#[test]
fn under_the_journal_each_line_carries_its_priority() {
    let env = Env::new();
    env.settings(&[
        "CONFIG_MOTD=maybe".into(),
        "CONFIG_MOTDD=1".into(),
        format!("GANDI_DIR={}", env.path().join("nothing").display()),
    ]);
    // A warning for each problem of the settings file, an error for a
    // failed command.
    let text = stderr_of(&env, &["disk-grow", "no/such"], true);
    let lines: Vec<(u8, &str)> = text.lines().map(journald_priority).collect();
    assert!(
        lines
            .iter()
            .any(|(p, l)| *p == 4 && l.contains("CONFIG_MOTD: \"maybe\"")),
        "{text}"
    );
    assert!(
        lines
            .iter()
            .any(|(p, l)| *p == 4 && l.contains("CONFIG_MOTDD: not a setting")),
        "{text}"
    );
    assert!(lines.iter().any(|(p, _)| *p == 3), "no error line: {text}");
    // Every line has its priority: none is left at the stream's level by
    // accident.
    for line in text.lines() {
        assert!(line.starts_with('<'), "{line:?} in {text}");
    }
    // Elsewhere (a terminal, a file, syslog beside): no prefix.
    let plain = stderr_of(&env, &["disk-grow", "no/such"], false);
    assert!(!plain.is_empty());
    assert!(plain.lines().all(|l| !l.starts_with('<')), "{plain}");
    assert!(
        plain
            .lines()
            .any(|l| l.starts_with("warning: ") && l.contains("CONFIG_MOTDD: not a setting")),
        "{plain}"
    );
    assert!(plain.lines().any(|l| l.starts_with("error: ")), "{plain}");
}

#[test]
fn the_units_and_rules_say_gandi_and_obey_the_off_switch() {
    let units = Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/system");
    let mut seen = 0;
    for entry in fs::read_dir(&units).unwrap() {
        let path = entry.unwrap().path();
        let text = fs::read_to_string(&path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if !name.ends_with(".service") {
            continue;
        }
        seen += 1;
        assert!(text.contains("\nSyslogIdentifier=gandi\n"), "{name}");
        // The growth of a disk goes on while gandi-vm is off (the map
        // keeps serving the disks already there); everything else stops.
        if name != "gandi-disk@.service" {
            assert!(
                text.contains("\nConditionPathExists=!/etc/gandi/disabled\n"),
                "{name}"
            );
            assert!(
                text.contains("\nConditionKernelCommandLine=!gandi.disabled=1\n"),
                "{name}"
            );
            // Both older than our floor (239); ExecCondition= needs 243.
            assert!(!text.contains("ExecCondition="), "{name}");
        }
    }
    assert!(seen >= 6, "{seen} units");
    let rules = fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("udev/rules.d/85-gandi-hotplug.rules"),
    )
    .unwrap();
    assert!(rules.contains("TEST==\"/etc/gandi/disabled\""), "{rules}");
    assert!(rules.contains("gandi.disabled=1"), "{rules}");
}

/// A postboot on the live system with its paths in `env`, running `run`.
fn postboot_env(run: &str) -> Env {
    let env = Env::new();
    let gandi = env.path().join("gandi");
    fs::create_dir_all(&gandi).unwrap();
    env.settings(&[
        format!("GANDI_DIR={}", gandi.display()),
        "GANDI_POSTBOOT_TIMEOUT=120".into(),
    ]);
    let config = format!(
        r#"{{"vm_hostname": "web1", "vm_conf": {{"user": "alice", "password": "{HASH}",
           "ssh_key": "{USER_KEY}", "run": {}}}}}"#,
        serde_json::to_string(run).unwrap()
    );
    fs::write(gandi.join("config"), config).unwrap();
    env
}

fn status_json(env: &Env, previous: bool) -> serde_json::Value {
    let mut args = vec!["status", "--json"];
    if previous {
        args.push("--previous");
    }
    let out = env.gandi(&args);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(&out)))
}

/// Kills `child` and what it started.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        kill_tree(&mut self.0);
    }
}

#[test]
fn a_running_stage_is_shown_waited_for_and_a_killed_one_is_cut_short() {
    if !system_test(&[]) {
        return;
    }
    // It runs until the test says GO: seen running however slow the
    // machine.
    let env = postboot_env("while [ ! -e GO_FILE ]; do sleep 0.05; done; echo done > RUNLOG");
    let runlog = env.path().join("ran");
    let go = env.path().join("go");
    let env_cfg = fs::read_to_string(env.path().join("gandi/config"))
        .unwrap()
        .replace("RUNLOG", &runlog.display().to_string())
        .replace("GO_FILE", &go.display().to_string());
    fs::write(env.path().join("gandi/config"), env_cfg).unwrap();
    let child = Command::new(BIN)
        .arg("postboot")
        .env("GANDI_CONFIG", env.config())
        .env_remove("JOURNAL_STREAM")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = Reaped(child);
    // Seen while it runs: started, running, no finish time yet.
    let deadline = Instant::now() + Duration::from_secs(60);
    let running = loop {
        let s = status_json(&env, false);
        if s["postboot"]["running"] == true {
            break s;
        }
        assert!(Instant::now() < deadline, "never seen running: {s}");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(running["postboot"]["started"].as_u64().unwrap() > 0);
    assert_eq!(running["postboot"]["finished"], 0);
    let shown = String::from_utf8_lossy(&env.gandi(&["status"]).stdout).to_string();
    assert!(shown.contains("postboot: running"), "{shown}");
    fs::write(&go, "").unwrap();
    // --wait returns once it ended, with its result.
    let waited = env.gandi(&["status", "--wait", "--timeout", "120"]);
    let text = stdout(&waited);
    assert_eq!(waited.status.code(), Some(0), "{text}");
    assert_eq!(fs::read_to_string(&runlog).unwrap(), "done\n");
    assert!(text.contains("postboot: ok ("), "{text}");
    assert!(text.contains(" UTC)"), "{text}");
    let _ = child.0.wait();
    let done = status_json(&env, false);
    assert!(
        done["postboot"]["finished"].as_u64().unwrap()
            >= done["postboot"]["started"].as_u64().unwrap()
    );
    assert!(done["postboot"].get("running").is_none(), "{done}");

    // A second one that hangs: --timeout ends the wait with 3; killed, it
    // reads as cut short, and the status says it failed.
    let env = postboot_env("sleep 600");
    let child = Command::new(BIN)
        .arg("postboot")
        .env("GANDI_CONFIG", env.config())
        .env_remove("JOURNAL_STREAM")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = Reaped(child);
    let deadline = Instant::now() + Duration::from_secs(60);
    while status_json(&env, false)["postboot"]["running"] != true {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(20));
    }
    let waited = env.gandi(&["status", "--wait", "--timeout", "1"]);
    assert_eq!(waited.status.code(), Some(3), "{}", stdout(&waited));
    assert!(stdout(&waited).contains("postboot"));
    kill_tree(&mut child.0);
    let shown = env.gandi(&["status"]);
    let text = stdout(&shown);
    assert!(text.contains("postboot: CUT SHORT"), "{text}");
    assert_eq!(shown.status.code(), Some(1), "{text}");
    // Nothing runs any more: --wait returns at once.
    let waited = env.gandi(&["status", "--wait", "--timeout", "30"]);
    assert_eq!(waited.status.code(), Some(1));
}

#[test]
fn the_previous_boots_status_is_kept_beside() {
    if !system_test(&[]) {
        return;
    }
    let env = postboot_env("true");
    // What the last boot kept: another boot's id.
    let state = env.path().join("state");
    fs::create_dir_all(&state).unwrap();
    let earlier = r#"{"postboot": {"steps": [{"step": "run[0]", "result": "failed", "us": 5}],
        "started": 1700000000, "finished": 1700000001, "boot_id": "0-earlier-boot"}}"#;
    fs::write(state.join("status.json"), earlier).unwrap();
    let out = env.gandi(&["postboot"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let previous = status_json(&env, true);
    assert_eq!(
        previous["postboot"]["boot_id"], "0-earlier-boot",
        "{previous}"
    );
    let shown = env.gandi(&["status", "--previous"]);
    let text = stdout(&shown);
    assert!(text.contains("postboot: FAILED"), "{text}");
    assert!(text.contains("2023-11-14 22:13:21 UTC"), "{text}");
    assert_eq!(shown.status.code(), Some(1));
    // This boot's, kept for the next one, is this boot's.
    let kept: serde_json::Value =
        serde_json::from_slice(&fs::read(state.join("status.json")).unwrap()).unwrap();
    assert_ne!(kept["postboot"]["boot_id"], "0-earlier-boot");
    assert_eq!(env.gandi(&["status"]).status.code(), Some(0));
    // A second stage of this same boot leaves the previous one alone.
    let out = env.gandi(&["postboot"]);
    assert!(out.status.success());
    assert_eq!(
        status_json(&env, true)["postboot"]["boot_id"],
        "0-earlier-boot"
    );
}

#[test]
fn turned_off_by_its_file_postboot_runs_nothing_and_says_why() {
    if !system_test(&[]) {
        return;
    }
    let env = postboot_env("echo ran > RAN");
    let ran = env.path().join("ran");
    let cfg = fs::read_to_string(env.path().join("gandi/config"))
        .unwrap()
        .replace("RAN", &ran.display().to_string());
    fs::write(env.path().join("gandi/config"), cfg).unwrap();
    fs::write(env.path().join("disabled"), "").unwrap();
    let out = env.gandi(&["postboot"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!ran.exists(), "a command ran while turned off");
    let s = status_json(&env, false);
    assert_eq!(s["postboot"]["steps"][0]["step"], "disabled", "{s}");
    assert_eq!(s["postboot"]["steps"][0]["result"], "skipped", "{s}");
    let shown = String::from_utf8_lossy(&env.gandi(&["status"]).stdout).to_string();
    assert!(shown.contains("gandi-vm is turned off"), "{shown}");
    // Back on: it runs.
    fs::remove_file(env.path().join("disabled")).unwrap();
    let out = env.gandi(&["postboot"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(fs::read_to_string(&ran).unwrap(), "ran\n");
}

#[test]
fn turned_off_on_the_kernel_command_line() {
    let env = Env::new();
    let proc_dir = env.path().join("proc");
    fs::create_dir_all(&proc_dir).unwrap();
    for (cmdline, off) in [
        ("root=/dev/vda1 gandi.disabled=1 quiet\n", true),
        ("root=/dev/vda1 gandi.disabled=10\n", false),
        ("root=/dev/vda1 xgandi.disabled=1\n", false),
        ("root=/dev/vda1\n", false),
    ] {
        fs::write(proc_dir.join("cmdline"), cmdline).unwrap();
        env.settings(&[format!("GANDI_PROC_DIR={}", proc_dir.display())]);
        let shown = String::from_utf8_lossy(&env.gandi(&["status"]).stdout).to_string();
        assert_eq!(
            shown.contains("turned off (gandi.disabled=1 on the kernel command line)"),
            off,
            "{cmdline}: {shown}"
        );
    }
}

/// The text of every file of a .tar.gz, named.
fn archive_files(path: &Path) -> Vec<(String, Vec<u8>)> {
    let dir = tempdir();
    let out = Command::new("tar")
        .arg("-xzf")
        .arg(path)
        .arg("-C")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let mut files = Vec::new();
    let mut stack = vec![dir.path().to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let mut data = Vec::new();
                fs::File::open(&p).unwrap().read_to_end(&mut data).unwrap();
                let name = p.strip_prefix(dir.path()).unwrap().display().to_string();
                files.push((name, data));
            }
        }
    }
    files.sort();
    files
}

#[test]
fn the_report_holds_what_support_needs_and_no_secret() {
    if !system_test(&["tar"]) {
        return;
    }
    let env = postboot_env("echo OUTPUT-OF-RUN-7f3a; true SECRET-IN-RUN-9c2e");
    let out = env.gandi(&["postboot"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // A disk record, and a ledger that tracks the password and keys.
    let disks = env.path().join("run/disks");
    fs::create_dir_all(&disks).unwrap();
    fs::write(
        disks.join("vdb.json"),
        r#"{"name":"vdb","devnum":"252:16","diskseq":null,"size":1073741824,"fstype":"ext4",
           "usage":"filesystem","label":"data","uuid":"0b9c","partitioned":false,
           "state":"ready","grower":null,"updated":1}"#,
    )
    .unwrap();
    let ledger = env.path().join("state/applied.json");
    fs::create_dir_all(ledger.parent().unwrap()).unwrap();
    fs::write(
        &ledger,
        format!(
            r#"{{"version": 1, "values": {{"password": "{HASH}", "keys:alice": "{USER_KEY}"}}}}"#
        ),
    )
    .unwrap();
    let report = env.path().join("out/report.tar.gz");
    fs::create_dir_all(report.parent().unwrap()).unwrap();
    let out = env.gandi(&["report", "--output", report.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let meta = fs::metadata(&report).unwrap();
    assert_eq!(meta.mode() & 0o077, 0, "the report is readable by others");
    let files = archive_files(&report);
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    for wanted in [
        "gandi-vm-report/versions.txt",
        "gandi-vm-report/status.json",
        "gandi-vm-report/settings.txt",
        "gandi-vm-report/records/vdb.json",
        "gandi-vm-report/ledger-fields.txt",
        "gandi-vm-report/disks.txt",
    ] {
        assert!(names.contains(&wanted), "{wanted} missing from {names:?}");
    }
    let fields = &files
        .iter()
        .find(|(n, _)| n.ends_with("ledger-fields.txt"))
        .unwrap()
        .1;
    let fields = String::from_utf8_lossy(fields);
    assert!(fields.contains("password"), "{fields}");
    let key_body = USER_KEY.split_whitespace().nth(1).unwrap();
    let hash_tail = &HASH[HASH.len() - 20..];
    for (name, data) in &files {
        let text = String::from_utf8_lossy(data);
        for secret in [
            hash_tail,
            key_body,
            "SECRET-IN-RUN-9c2e",
            "OUTPUT-OF-RUN-7f3a",
        ] {
            assert!(!text.contains(secret), "{secret} in {name}:\n{text}");
        }
    }
    // Written again over a link an attacker planted: the link is replaced,
    // its target untouched.
    let target = env.path().join("target");
    fs::write(&target, "precious").unwrap();
    fs::remove_file(&report).unwrap();
    std::os::unix::fs::symlink(&target, &report).unwrap();
    let out = env.gandi(&["report", "--output", report.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(fs::read_to_string(&target).unwrap(), "precious");
    assert!(
        !fs::symlink_metadata(&report)
            .unwrap()
            .file_type()
            .is_symlink()
    );
}

#[test]
fn unknown_keys_and_typos_get_named() {
    let env = Env::new();
    env.settings(&["CONFIG_MOTD=1".into(), "CONFIG_MOTDD=0".into()]);
    let out = env.gandi(&["settings"]);
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("CONFIG_MOTDD: not a setting of gandi-vm"),
        "{text}"
    );
    // At each stage's start too (any command logs them).
    let out = env.gandi(&["status"]);
    assert!(stderr(&out).contains("CONFIG_MOTDD"));
    let out = env.gandi(&["dsks"]);
    assert_eq!(out.status.code(), Some(2));
    let said = stderr(&out);
    assert!(
        said.contains("similar subcommand") && said.contains("disks"),
        "{said}"
    );
}

#[test]
fn validate_reads_stdin_and_lists_problems_in_order() {
    let env = Env::new();
    env.settings(&[]);
    let config = br#"{
  "vm_hostname": "bad host!",
  "vm_conf": {"user": "root", "ssh_key": 42},
  "nameservers": ["not-an-ip"]
}"#;
    let mut child = Command::new(BIN)
        .args(["validate", "-"])
        .env("GANDI_CONFIG", env.config())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(config).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}{}", stderr(&out));
    let places: Vec<(u64, u64)> = text
        .lines()
        .filter_map(|l| {
            let (at, _) = l.split_once(": ")?;
            let (line, col) = at.rsplit(':').next().zip(at.rsplit(':').nth(1))?;
            Some((col.parse().ok()?, line.parse().ok()?))
        })
        .collect();
    assert!(places.len() >= 3, "{text}");
    assert!(places.is_sorted(), "{places:?}\n{text}");
    // The same from a file.
    let file = env.path().join("config.json");
    fs::write(&file, config).unwrap();
    let from_file = env.gandi(&["validate", file.to_str().unwrap()]);
    assert_eq!(from_file.status.code(), Some(1));
}

#[test]
fn the_motd_names_the_mount_root_in_force() {
    let env = Env::new();
    let root = PathBuf::from(env.path()).join("tree");
    for d in ["etc/ssh", "etc/default"] {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    env.settings(&[
        "CONFIG_DISK_ROOT=/data".into(),
        "CONFIG_CRON=0".into(),
        "CONFIG_TIMEZONE=0".into(),
        "CONFIG_SSHD=0".into(),
        "CONFIG_CONSOLE=0".into(),
    ]);
    let out = env.gandi(&["config", "--root", root.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let motd = fs::read_to_string(root.join("etc/motd.d/gandi")).unwrap();
    assert!(motd.contains("/data/LABEL"), "{motd}");
    assert!(!motd.contains("/srv"), "{motd}");
}

/// Kills a child and its descendants.
fn kill_tree(child: &mut std::process::Child) {
    let pid = child.id() as i32;
    let mut all = vec![pid];
    let mut i = 0;
    while i < all.len() {
        let p = all[i];
        if let Ok(text) = fs::read_to_string(format!("/proc/{p}/task/{p}/children")) {
            all.extend(
                text.split_whitespace()
                    .filter_map(|c| c.parse::<i32>().ok()),
            );
        }
        i += 1;
    }
    for p in all {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(p),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    let _ = child.wait();
}
