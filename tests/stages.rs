//! The per-boot `config` stage on temp root trees (`--root`), its live-only
//! steps on a tree of their own, the admin's plugins, and the `postboot`
//! stage with its paths moved to a temp folder.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)] // tests and benches: a failure is a panic, output is the report

mod common;

use common::fixtures::*;
use common::*;
use gandi_vm::base::settings::Settings;
use gandi_vm::base::status::Recorder;
use gandi_vm::base::tree::Tree;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const CRONTAB: &str = "SHELL=/bin/sh\n\
# m h dom mon dow user\tcommand\n\
17 *\t* * *\troot\tcd / && run-parts --report /etc/cron.hourly\n\
25 6\t* * *\troot\ttest -x /usr/sbin/anacron || { cd / && run-parts --report /etc/cron.daily; }\n\
47 6\t* * 7\troot\ttest -x /usr/sbin/anacron || { cd / && run-parts --report /etc/cron.weekly; }\n\
52 6\t1 * *\troot\ttest -x /usr/sbin/anacron || { cd / && run-parts --report /etc/cron.monthly; }\n\
30 2\t* * *\troot\t/usr/local/bin/admin-backup\n";

struct CfgTree {
    env: Env,
    root: PathBuf,
}

/// A tree with the files `config` reads.
fn tree(sshd_include: bool, zoneinfo: bool, extra: &[&str]) -> CfgTree {
    let env = Env::new();
    let root = config_tree(env.path());
    fs::remove_dir(root.join("etc/ssh/sshd_config.d")).unwrap();
    if zoneinfo {
        fs::create_dir_all(root.join("usr/share/zoneinfo/America")).unwrap();
        fs::create_dir_all(root.join("usr/share/zoneinfo/Etc")).unwrap();
        fs::write(root.join("usr/share/zoneinfo/America/New_York"), "TZif-ny").unwrap();
        fs::write(root.join("usr/share/zoneinfo/Etc/UTC"), "TZif-utc").unwrap();
    } else {
        fs::remove_dir_all(root.join("usr/share/zoneinfo")).unwrap();
    }
    fs::write(root.join("etc/crontab"), CRONTAB).unwrap();
    let mut sshd = String::new();
    if sshd_include {
        sshd.push_str("Include /etc/ssh/sshd_config.d/*.conf\n");
    }
    sshd.push_str("# the admin's own\nX11Forwarding no\n");
    fs::write(root.join("etc/ssh/sshd_config"), sshd).unwrap();
    root_settings(&env.config(), extra);
    CfgTree { env, root }
}

fn config(t: &CfgTree, cmdline: Option<&str>) -> std::process::Output {
    config_env(t, cmdline, &[])
}

/// `config`, with more variables in its environment.
fn config_env(
    t: &CfgTree,
    cmdline: Option<&str>,
    env: &[(&str, &std::ffi::OsStr)],
) -> std::process::Output {
    let mut cmd = Command::new(BIN);
    cmd.envs(env.iter().copied());
    cmd.args(["config", "--root"]).arg(&t.root);
    if let Some(line) = cmdline {
        let file = t.env.path().join("cmdline");
        fs::write(&file, line).unwrap();
        cmd.arg("--cmdline").arg(&file);
    }
    cmd.env("GANDI_CONFIG", t.env.config())
        .env_remove("JOURNAL_STREAM")
        .output()
        .unwrap()
}

fn result(t: &CfgTree, step_name: &str) -> String {
    step(&root_status(&t.root), "config", step_name)["result"]
        .as_str()
        .unwrap()
        .to_string()
}

fn read(t: &CfgTree, p: &str) -> String {
    fs::read_to_string(t.root.join(p)).unwrap_or_default()
}

fn files(root: &Path) -> Vec<(PathBuf, (Vec<u8>, u32))> {
    snapshot(root)
        .into_iter()
        .filter(|(p, _)| !p.starts_with(root.join("run")))
        .collect()
}

/// Under `Type=notify`, config tells systemd it is ready (the units after
/// it start) before its last step, and only once.
#[test]
fn config_says_ready_to_systemd_once() {
    let t = tree(true, true, &[]);
    let sock_path = t.env.path().join("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let out = config_env(&t, None, &[("NOTIFY_SOCKET", sock_path.as_os_str())]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut buf = [0u8; 512];
    let n = sock.recv(&mut buf).expect("no notification from config");
    let said = String::from_utf8_lossy(&buf[..n]);
    assert!(said.starts_with("READY=1\n"), "{said}");
    assert!(said.contains("STATUS="), "{said}");
    sock.set_nonblocking(true).unwrap();
    assert!(sock.recv(&mut buf).is_err(), "a second notification");
    // The steps after it still ran (here: noted for the first boot).
    assert_eq!(result(&t, "mount-count"), "deferred");
}

#[test]
fn every_step_on_a_tree_then_a_second_run_changes_nothing() {
    if !system_test(&["ssh-keygen"]) {
        return;
    }
    let t = tree(true, true, &[]);
    let out = config(&t, Some("root=/dev/vda1 gandi=America/New_York quiet"));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("gandi-vm config: ok"));
    // Cron spread; the admin's job kept.
    let cron = read(&t, "etc/crontab");
    assert!(!cron.contains("17 *\t* * *\troot\tcd / && run-parts --report /etc/cron.hourly"));
    assert!(cron.contains("30 2\t* * *\troot\t/usr/local/bin/admin-backup"));
    assert_eq!(cron.lines().filter(|l| l.contains("run-parts")).count(), 4);
    assert_eq!(read(&t, "etc/timezone"), "America/New_York\n");
    assert_eq!(
        fs::read_link(t.root.join("etc/localtime")).unwrap(),
        Path::new("/usr/share/zoneinfo/America/New_York")
    );
    // sshd: the drop-in; no host key made in an image (each VM makes its own).
    let dropin = read(&t, "etc/ssh/sshd_config.d/50-gandi.conf");
    assert!(
        dropin.contains("PermitRootLogin prohibit-password") && dropin.contains("ListenAddress ::")
    );
    assert!(!t.root.join("etc/ssh/ssh_host_ed25519_key").exists());
    assert!(read(&t, "etc/ssh/sshd_config").contains("X11Forwarding no"));
    assert!(read(&t, "etc/motd.d/gandi").contains("/etc/default/gandi"));
    assert!(read(&t, "etc/hosts").contains("127.0.1.1\tweb1.example.net web1"));
    for s in ["hosts", "cron", "timezone", "sshd", "motd"] {
        assert_eq!(result(&t, s), "changed", "{s}");
    }
    // What needs the running system is left for the first boot.
    for s in ["console", "fstab", "mount-count", "plugins", "hook"] {
        assert_eq!(result(&t, s), "deferred", "{s}");
    }
    let before = files(&t.root);
    let out = config(&t, Some("root=/dev/vda1 gandi=America/New_York quiet"));
    assert!(out.status.success());
    assert_eq!(before, files(&t.root));
    for s in ["hosts", "cron", "sshd", "motd"] {
        assert_eq!(result(&t, s), "unchanged", "{s}");
    }
    assert_eq!(result(&t, "timezone"), "kept");
    // Another machine spreads its jobs elsewhere.
    let other = tree(true, true, &[]);
    fs::write(
        other.root.join("etc/machine-id"),
        "fedcba9876543210fedcba9876543210\n",
    )
    .unwrap();
    assert!(config(&other, None).status.success());
    assert_ne!(read(&other, "etc/crontab"), cron);
}

/// The zone written for each command line, with zoneinfo and without; the
/// original's answer beside ours (docs/timezone.md).
#[test]
fn timezones_as_the_platform_sends_them() {
    if !system_test(&[]) {
        return;
    }
    // (cmdline, ours with zoneinfo, ours without, the original)
    let cases = [
        ("gandi=cet", "Europe/Paris", "Europe/Paris", "Europe/Paris"),
        ("gandi=utc", "Etc/UTC", "Etc/UTC", "Etc/UTC"),
        ("gandi=CET", "Etc/UTC", "Etc/UTC", "Etc/UTC"),
        ("gandi=gmt", "Etc/UTC", "Etc/UTC", "Etc/UTC"),
        ("gandi=ab", "Europe/Paris", "Europe/Paris", "(empty)"),
        ("gandi=", "Europe/Paris", "Europe/Paris", "Europe/Paris"),
        (
            "root=/dev/vda1",
            "Europe/Paris",
            "Europe/Paris",
            "Europe/Paris",
        ),
        (
            "gandi=America/New_York",
            "America/New_York",
            "Etc/UTC",
            "Etc/UTC",
        ),
    ];
    for (line, with, without, _original) in cases {
        for (zoneinfo, expect) in [(true, with), (false, without)] {
            let t = tree(true, zoneinfo, &[]);
            let out = config(&t, Some(line));
            assert!(out.status.success(), "{line}: {}", stderr(&out));
            assert_eq!(
                read(&t, "etc/timezone"),
                format!("{expect}\n"),
                "{line}, zoneinfo {zoneinfo}"
            );
            let localtime = fs::read_link(t.root.join("etc/localtime")).ok();
            if zoneinfo {
                assert_eq!(
                    localtime,
                    Some(PathBuf::from(format!("/usr/share/zoneinfo/{expect}"))),
                    "{line}"
                );
            } else {
                assert_eq!(localtime, None, "{line}: a link to a missing zone");
            }
        }
    }
}

#[test]
fn admin_choices_are_kept() {
    if !system_test(&[]) {
        return;
    }
    let t = tree(false, true, &[]);
    // The admin set a timezone; no gandi= on the command line.
    std::os::unix::fs::symlink(
        "/usr/share/zoneinfo/Europe/Paris",
        t.root.join("etc/localtime"),
    )
    .unwrap();
    fs::write(t.root.join("etc/timezone"), "Europe/Paris\n").unwrap();
    assert!(config(&t, Some("root=/dev/vda1")).status.success());
    assert_eq!(read(&t, "etc/timezone"), "Europe/Paris\n");
    let sshd = read(&t, "etc/ssh/sshd_config");
    assert!(
        sshd.starts_with("# BEGIN gandi-vm: sshd settings"),
        "{sshd}"
    );
    assert!(sshd.contains("PermitEmptyPasswords no") && sshd.contains("X11Forwarding no"));
    // The platform's zone once applied, the admin's change stays.
    let u = tree(true, true, &[]);
    assert!(config(&u, Some("gandi=utc")).status.success());
    fs::write(u.root.join("etc/timezone"), "America/New_York\n").unwrap();
    assert!(config(&u, Some("gandi=utc")).status.success());
    assert_eq!(read(&u, "etc/timezone"), "America/New_York\n");
    // An /etc/hosts of the admin's is left as it is.
    let v = tree(true, true, &[]);
    fs::write(v.root.join("etc/hosts"), "127.0.0.1 localhost mine\n").unwrap();
    assert!(config(&v, None).status.success());
    assert_eq!(read(&v, "etc/hosts"), "127.0.0.1 localhost mine\n");
}

#[test]
fn a_damaged_sshd_block_leaves_the_file_byte_for_byte() {
    if !system_test(&[]) {
        return;
    }
    let t = tree(false, true, &[]);
    let text = "# BEGIN gandi-vm: sshd settings (CONFIG_SSHD in /etc/default/gandi; lines outside this block are yours)\n\
                PermitRootLogin prohibit-password\n\
                # END gandi-vm: sshd settings, edited by me\n\
                Port 2222\nPasswordAuthentication no\nSubsystem sftp /usr/lib/openssh/sftp-server\n";
    fs::write(t.root.join("etc/ssh/sshd_config"), text).unwrap();
    let out = config(&t, None);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(read(&t, "etc/ssh/sshd_config"), text);
    assert_eq!(result(&t, "sshd"), "failed");
    assert_eq!(result(&t, "motd"), "changed");
    assert!(stdout(&out).contains("FAILED: sshd"));
}

#[test]
fn flags_off_leave_everything_as_it_was() {
    if !system_test(&[]) {
        return;
    }
    let t = tree(
        true,
        true,
        &[
            "CONFIG_CONSOLE=0",
            "CONFIG_HOSTNAME=0",
            "CONFIG_CRON=0",
            "CONFIG_TIMEZONE=0",
            "CONFIG_SSHD=0",
            "CONFIG_MOTD=0",
        ],
    );
    let before = files(&t.root);
    assert!(config(&t, Some("gandi=America/New_York")).status.success());
    assert_eq!(before, files(&t.root));
    for s in ["console", "hosts", "cron", "timezone", "sshd", "motd"] {
        assert_eq!(result(&t, s), "skipped", "{s}");
    }
}

/// The live-only steps, on a tree of their own: consoles from a fake
/// sysfs, the fstab root line and the mount count on a loop device.
#[test]
fn console_fstab_and_mount_count_steps() {
    if !system_test(&["tune2fs", "blkid", "dumpe2fs"]) {
        return;
    }
    let env = Env::new();
    let root = config_tree(env.path());
    fs::create_dir_all(env.path().join("sys/class/tty/hvc0")).unwrap();
    fs::create_dir_all(env.path().join("proc/self")).unwrap();
    fs::write(
        env.path().join("proc/consoles"),
        "ttyS0                -W- (EC p a)    4:64\n",
    )
    .unwrap();
    let disk = LoopDisk::new(env.path(), "rootfs.img", 32);
    disk.mkfs("ext4", Some("rootfs"));
    fs::write(
        env.path().join("proc/self/mountinfo"),
        format!("22 1 7:0 / / rw,relatime shared:1 - ext4 {} rw\n", disk.dev),
    )
    .unwrap();
    fs::write(
        root.join("etc/fstab"),
        format!("# <fs> <mp> <type>\n{}\t/\text4\terrors=remount-ro 0 1\n/dev/vdb1\t/data\text4\tdefaults 0 2\n", disk.dev),
    )
    .unwrap();
    let settings = Settings::default().with_paths(|p| {
        p.sys_dir = env.path().join("sys");
        p.proc_dir = env.path().join("proc");
    });
    let t = Tree::open(&root).unwrap();
    let done = gandi_vm::boot::config::console(&settings, &t).unwrap();
    assert_eq!(done.detail, "hvc0 ttyS0");
    for tty in ["hvc0", "ttyS0"] {
        let link = root.join(format!(
            "etc/systemd/system/getty.target.wants/serial-getty@{tty}.service"
        ));
        assert_eq!(
            fs::read_link(&link).unwrap(),
            Path::new("/lib/systemd/system/serial-getty@.service")
        );
    }
    // A getty the admin masked stays masked.
    let masked = root.join("etc/systemd/system/getty.target.wants/serial-getty@ttyS0.service");
    fs::remove_file(&masked).unwrap();
    std::os::unix::fs::symlink("/dev/null", &masked).unwrap();
    gandi_vm::boot::config::console(&settings, &t).unwrap();
    assert_eq!(fs::read_link(&masked).unwrap(), Path::new("/dev/null"));
    // fstab by UUID, with a backup and the other lines kept.
    gandi_vm::boot::config::fstab(&settings, &t).unwrap();
    let uuid = sh(Command::new("blkid").args(["-s", "UUID", "-o", "value", &disk.dev]));
    let fstab = fs::read_to_string(root.join("etc/fstab")).unwrap();
    assert!(
        fstab.contains(&format!(
            "UUID={}\t/\text4\terrors=remount-ro 0 1",
            uuid.trim()
        )),
        "{fstab}"
    );
    assert!(fstab.contains("/dev/vdb1\t/data"));
    assert!(
        fs::read_to_string(root.join("etc/fstab.gandi-vm.bak"))
            .unwrap()
            .contains(&disk.dev)
    );
    // The mount count of an ext4 root with none.
    sh(Command::new("tune2fs").args(["-c", "-1", &disk.dev]));
    gandi_vm::boot::config::mount_count(&settings).unwrap();
    let d = sh(Command::new("dumpe2fs").arg("-h").arg(&disk.dev));
    assert!(
        d.lines()
            .any(|l| l.starts_with("Maximum mount count:") && l.trim_end().ends_with("42")),
        "{d}"
    );
    let again = gandi_vm::boot::config::mount_count(&settings).unwrap();
    assert_eq!(again.result, gandi_vm::base::status::Outcome::Unchanged);
}

#[test]
fn the_admins_plugins_run_in_name_order_and_a_failure_does_not_stop_the_next() {
    if !system_test(&[]) {
        return;
    }
    let env = Env::new();
    let dir = env.path().join("plugins.d");
    let log = env.path().join("ran.log");
    for (name, body) in [
        ("20-second", format!("echo 20 >> {}", log.display())),
        ("10-first", format!("echo 10 >> {}; exit 3", log.display())),
        ("30-third", format!("echo 30 >> {}", log.display())),
        ("05-pre-first-x", format!("echo pre >> {}", log.display())),
        ("40-x.dpkg-old", format!("echo dpkg >> {}", log.display())),
        (
            "11-config_ssh",
            format!("echo original >> {}", log.display()),
        ),
    ] {
        script(&dir.join(name), &body);
    }
    fs::write(dir.join("50-not-executable"), "#!/bin/sh\necho no\n").unwrap();
    let mut rec = Recorder::default();
    gandi_vm::boot::plugins::run_all(&dir, &mut rec);
    assert_eq!(fs::read_to_string(&log).unwrap(), "10\n20\n30\n");
    let steps: Vec<(String, String)> = rec
        .stage
        .steps
        .iter()
        .map(|s| (s.step.clone(), s.result.word().to_string()))
        .collect();
    assert_eq!(
        steps,
        vec![
            ("plugin 10-first".to_string(), "FAILED".to_string()),
            ("plugin 11-config_ssh".to_string(), "skipped".to_string()),
            ("plugin 20-second".to_string(), "changed".to_string()),
            ("plugin 30-third".to_string(), "changed".to_string()),
        ]
    );
}

const HASH: &str = "$6$saltsalt$Zx1dQ0z7nX0V9pXqHhG7vY1rN3tW8sL2kJ5mP4oA6bC9dE1fG3hI5jK7lM9nO1pQ3rS5tU7vW9xY1zA3bC5dE7";

/// A postboot setup on the live system with its paths in a temp folder:
/// /gandi, the state, the run dir.
struct Post {
    env: Env,
    gandi: PathBuf,
    log: PathBuf,
}

fn post(run: &str, timeout: u64, init: Option<&str>) -> (Post, String) {
    let env = Env::new();
    let gandi = env.path().join("gandi");
    let log = env.path().join("runs.log");
    env.settings(&[
        format!("GANDI_POSTBOOT_TIMEOUT={timeout}"),
        format!("GANDI_DIR={}", gandi.display()),
        format!("GANDI_STATE_DIR={}", env.path().join("state").display()),
    ]);
    fs::create_dir_all(&gandi).unwrap();
    let run = run.replace("LOG", &log.display().to_string());
    let config = format!(
        r#"{{"vm_hostname": "web1", "vm_conf": {{"password": "{HASH}", "run": {run}}}, "vif": [{{"vif_number": 0}}]}}"#
    );
    fs::write(gandi.join("config"), &config).unwrap();
    if let Some(body) = init {
        let body = body.replace("LOG", &log.display().to_string());
        fs::write(gandi.join("init"), body).unwrap();
        fs::set_permissions(gandi.join("init"), fs::Permissions::from_mode(0o600)).unwrap();
    }
    (Post { env, gandi, log }, config)
}

fn postboot(p: &Post) -> std::process::Output {
    p.env.gandi(&["postboot"])
}

fn post_result(p: &Post, name: &str) -> String {
    let s: serde_json::Value =
        serde_json::from_slice(&fs::read(p.env.path().join("run/status.json")).unwrap()).unwrap();
    step(&s, "postboot", name)["result"]
        .as_str()
        .unwrap()
        .to_string()
}

fn lines(p: &Post) -> Vec<String> {
    fs::read_to_string(&p.log)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// The platform's script, written for Python 2 as the platform's is.
const INIT: &str = "#!/usr/bin/python2\nimport sys\nprint 'init'\n";

#[test]
fn commands_run_once_with_status_and_secrets_are_removed() {
    if !system_test(&["python3"]) {
        return;
    }
    let (p, original) = post(
        r#"["echo hello; echo one >> LOG", "exit 3"]"#,
        60,
        Some(INIT),
    );
    // The customer's script, with its arguments, before the commands.
    script(
        &p.gandi.join("script"),
        "echo \"script $*\" >> LOG"
            .replace("LOG", &p.log.display().to_string())
            .as_str(),
    );
    let mut cfg: serde_json::Value = serde_json::from_str(&original).unwrap();
    cfg["vm_conf"]["script_args"] = "--db 'prod one'".into();
    let original = cfg.to_string();
    fs::write(p.gandi.join("config"), &original).unwrap();
    let out = postboot(&p);
    assert_eq!(out.status.code(), Some(1)); // a command failed
    assert!(stderr(&out).contains("run[0]: hello"), "output not logged");
    assert_eq!(lines(&p), vec!["script --db prod one", "one"]);
    assert_eq!(post_result(&p, "script"), "changed");
    assert_eq!(post_result(&p, "run[0]"), "changed");
    assert_eq!(post_result(&p, "run[1]"), "failed");
    // The platform's own script: not run (CONFIG_PLATFORM_SCRIPT=0).
    assert_eq!(post_result(&p, "init"), "skipped");
    assert_eq!(post_result(&p, "secrets"), "changed");
    assert!(
        !fs::read_to_string(p.gandi.join("config"))
            .unwrap()
            .contains(HASH)
    );
    assert!(!p.gandi.join("init").exists());
    assert!(!p.gandi.join("script").exists());
    let cleaned: serde_json::Value =
        serde_json::from_slice(&fs::read(p.gandi.join("config")).unwrap()).unwrap();
    assert!(cleaned["vm_conf"].get("run").is_none() && cleaned["vm_hostname"] == "web1");
    assert!(cleaned["vm_conf"].get("script_args").is_none());
    assert_eq!(
        fs::metadata(p.gandi.join("config"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    // Again: nothing runs.
    assert!(postboot(&p).status.success());
    assert_eq!(lines(&p).len(), 2);
    // A second boot with the same config (extracted again with its secrets
    // and script): nothing runs, the secrets go again.
    fs::write(p.gandi.join("config"), &original).unwrap();
    fs::write(
        p.gandi.join("init"),
        INIT.replace("LOG", &p.log.display().to_string()),
    )
    .unwrap();
    script(&p.gandi.join("script"), "echo again >> /dev/null");
    assert!(postboot(&p).status.success());
    assert_eq!(lines(&p).len(), 2);
    assert!(
        !fs::read_to_string(p.gandi.join("config"))
            .unwrap()
            .contains(HASH)
    );
    // A new config: a new run.
    fs::write(p.gandi.join("config"), original.replace("web1", "web2")).unwrap();
    assert_eq!(postboot(&p).status.code(), Some(1)); // "exit 3" again
    assert_eq!(lines(&p).iter().filter(|l| *l == "one").count(), 2);
}

/// Step `name`'s detail in the postboot status.
fn post_detail(p: &Post, name: &str) -> String {
    let s: serde_json::Value =
        serde_json::from_slice(&fs::read(p.env.path().join("run/status.json")).unwrap()).unwrap();
    step(&s, "postboot", name)["detail"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn the_platforms_script_runs_only_when_asked_with_its_own_interpreter() {
    if !system_test(&[]) {
        return;
    }
    for (init, mode, ran, why) in [
        // Python 2 where there is none: never handed to python3.
        (INIT, 0o700, false, "Python 2"),
        // Not executable: the original did not run it either.
        (
            "#!/bin/sh\necho init >> LOG\n",
            0o600,
            false,
            "not executable",
        ),
        (
            "#!/bin/sh\necho init \"$@\" >> LOG\n",
            0o700,
            true,
            "changed no file",
        ),
    ] {
        let (p, _) = post(r#""echo run >> LOG""#, 60, None);
        // No value of this config is applied natively on the machine the
        // test runs on: nothing for the stage to put back after it.
        let cfg = r#"{"vm_conf": {"run": "echo run >> LOG"}}"#
            .replace("LOG", &p.log.display().to_string());
        fs::write(p.gandi.join("config"), cfg).unwrap();
        fs::write(
            p.gandi.join("init"),
            init.replace("LOG", &p.log.display().to_string()),
        )
        .unwrap();
        fs::set_permissions(p.gandi.join("init"), fs::Permissions::from_mode(mode)).unwrap();
        let mut lines_now = fs::read_to_string(p.env.config()).unwrap();
        lines_now.push_str("CONFIG_PLATFORM_SCRIPT=1\nCONFIG_HOSTNAME=0\nCONFIG_NAMESERVER=0\n");
        fs::write(p.env.config(), lines_now).unwrap();
        let out = postboot(&p);
        let expect = if ran {
            vec!["run", "init"]
        } else {
            vec!["run"]
        };
        assert_eq!(lines(&p), expect, "{}", stderr(&out));
        let result = post_result(&p, "init");
        assert_eq!(result, if ran { "changed" } else { "skipped" });
        assert!(
            post_detail(&p, "init").contains(why),
            "{}",
            post_detail(&p, "init")
        );
    }
}

#[test]
fn a_command_cut_short_is_reported_and_not_run_again() {
    if !system_test(&[]) {
        return;
    }
    let (p, _) = post(
        r#"["echo $$ > LOG.pid; echo start >> LOG; sleep 600", "echo second >> LOG"]"#,
        900,
        None,
    );
    let mut child = Command::new(BIN)
        .arg("postboot")
        .env("GANDI_CONFIG", p.env.config())
        .env_remove("JOURNAL_STREAM")
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while lines(&p).is_empty() {
        assert!(Instant::now() < deadline, "the command did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The VM loses power: postboot and its command die at once.
    child.kill().unwrap();
    child.wait().unwrap();
    let pid: i32 = fs::read_to_string(p.log.with_extension("log.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // The command's own process group (the runner made one for it).
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{pid}")])
        .output();
    let out = postboot(&p);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(post_result(&p, "run[0]"), "failed");
    assert_eq!(post_result(&p, "run[1]"), "changed");
    assert_eq!(lines(&p), vec!["start", "second"]);
}

#[test]
fn a_hanging_command_is_stopped_at_its_limit() {
    if !system_test(&[]) {
        return;
    }
    let (p, _) = post(
        r#""echo $$ > LOG.pid; sleep 60; echo late >> LOG""#,
        1,
        None,
    );
    let start = Instant::now();
    let out = postboot(&p);
    assert!(start.elapsed() < Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(post_result(&p, "run[0]"), "failed");
    // The command's shell is gone (killed, not left to write later).
    let pid_file = format!("{}.pid", p.log.display());
    let pid: i32 = fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok() {
        assert!(Instant::now() < deadline, "the command's shell still runs");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!p.log.exists());
    let shown = p.env.gandi(&["status"]);
    assert_eq!(shown.status.code(), Some(1));
    let text = stdout(&shown);
    assert!(
        text.contains("postboot: FAILED") && text.contains("killed after 1 s"),
        "{text}"
    );
}

/// Recording is not mounting: with `CONFIG_ALLOW_MOUNT=0` the mount stage
/// still marks the boot as replayed (udev's rule then runs the helper for
/// every event) and records the disks.
#[test]
fn mount_stage_with_allow_mount_off_still_marks_and_records() {
    if !system_test(&[]) {
        return;
    }
    let env = Env::new();
    env.settings(&[
        "CONFIG_ALLOW_MOUNT=0".into(),
        "CONFIG_DISK_DEVICES=\"none\"".into(),
    ]);
    let out = env.gandi(&["mount"]);
    assert!(out.status.success());
    let s: serde_json::Value =
        serde_json::from_slice(&fs::read(env.path().join("run/status.json")).unwrap()).unwrap();
    assert_eq!(step(&s, "mount", "replay")["result"], "unchanged");
    assert!(env.path().join("run/replayed").exists());
}
