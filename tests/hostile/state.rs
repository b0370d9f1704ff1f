//! Our own files and the platform's: secrets never reach a file others
//! read, damaged state is reported and keeps what the system has, the
//! modules tarball replaces no admin file and follows no link.

use super::common::fixtures::*;
use super::common::*;
use super::*;
use std::fs;
use std::os::unix::fs::{MetadataExt, symlink};

const SECRET: &str = "DB_PASSWORD=hunter2-s3cr3t";

#[test]
fn a_command_that_cannot_start_leaves_its_secret_nowhere_others_read() {
    // Too long for one argument (E2BIG) with the system's shell; any
    // command with no shell at all.
    let long = format!("{SECRET} /opt/setup.sh {}", "x".repeat(200_000));
    for (commands, no_shell) in [
        (vec![long.clone()], false),
        (vec![format!("{SECRET} ./deploy --now"), long], true),
    ] {
        let env = Env::new();
        let gandi = env.path().join("gandi");
        fs::create_dir_all(&gandi).unwrap();
        let config = serde_json::json!({ "vm_conf": { "run": commands } });
        fs::write(gandi.join("config"), config.to_string()).unwrap();
        let bin = env.path().join("bin");
        fs::create_dir_all(&bin).unwrap();
        env.settings(&[
            format!("GANDI_DIR={}", gandi.display()),
            "GANDI_POSTBOOT_TIMEOUT=30".into(),
        ]);
        let mut cmd = Command::new(super::bin());
        cmd.arg("postboot")
            .env("GANDI_CONFIG", env.config())
            .env_remove("JOURNAL_STREAM");
        if no_shell {
            cmd.env("PATH", &bin);
        }
        let out = bounded(&mut cmd, Duration::from_secs(60));
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        let status = env.path().join("run/status.json");
        let text_of = fs::read_to_string(&status).unwrap();
        assert!(!text_of.contains("hunter2"), "{text_of}");
        assert!(text_of.contains("run[0]"), "{text_of}");
        assert!(!text(&out).contains("hunter2"), "{}", text(&out));
        assert_eq!(fs::metadata(&status).unwrap().mode() & 0o777, 0o644);
    }
}

/// Whether any process's command line holds `needle` now.
fn in_some_cmdline(needle: &str) -> bool {
    fs::read_dir("/proc").unwrap().flatten().any(|e| {
        fs::read(e.path().join("cmdline"))
            .is_ok_and(|c| c.windows(needle.len()).any(|w| w == needle.as_bytes()))
    })
}

#[test]
fn a_running_command_shows_its_secret_to_no_one() {
    let env = Env::new();
    let gandi = env.path().join("gandi");
    fs::create_dir_all(&gandi).unwrap();
    let mark = env.path().join("started");
    let go = env.path().join("go");
    // Split so that this test's own command line does not hold it.
    let secret = format!("{}-{}", "hunter3", "s3cr3t");
    // It runs until the test has looked.
    let cmd = format!(
        "DB_PASSWORD={secret} sh -c 'touch {}; while [ ! -e {} ]; do sleep 0.05; done'",
        mark.display(),
        go.display()
    );
    fs::write(
        gandi.join("config"),
        serde_json::json!({ "vm_conf": { "run": cmd } }).to_string(),
    )
    .unwrap();
    env.settings(&[format!("GANDI_DIR={}", gandi.display())]);
    let mut child = Command::new(bin())
        .arg("postboot")
        .env("GANDI_CONFIG", env.config())
        .env_remove("JOURNAL_STREAM")
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !mark.exists() {
        assert!(Instant::now() < deadline, "the command did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let seen = in_some_cmdline(&secret);
    assert!(
        child.try_wait().unwrap().is_none(),
        "the stage ended before the test looked"
    );
    fs::write(&go, "").unwrap();
    let _ = child.wait();
    assert!(
        !seen,
        "the secret was in a process's command line while it ran"
    );
    // Nor left on disk after it.
    assert!(
        !fs::read_dir(env.path().join("run/commands"))
            .map(|d| d.count() > 0)
            .unwrap_or(false)
    );
}

#[test]
fn after_a_damaged_ledger_no_command_runs_again() {
    let env = Env::new();
    let gandi = env.path().join("gandi");
    fs::create_dir_all(&gandi).unwrap();
    let log = env.path().join("ran");
    let config =
        serde_json::json!({ "vm_conf": { "run": format!("echo ran >> {}", log.display()) } })
            .to_string();
    fs::write(gandi.join("config"), &config).unwrap();
    env.settings(&[format!("GANDI_DIR={}", gandi.display())]);
    // Written again by bootstrap after a damage, this boot: postboot cannot
    // tell whether the command ran before.
    fs::create_dir_all(env.path().join("state")).unwrap();
    fs::write(
        env.path().join("state/applied.json"),
        r#"{"format": "gandi-vm applied values 1", "instance": null, "values": {}, "recovered": true}"#,
    )
    .unwrap();
    let out = super::gandi(&env.config(), &["postboot"]);
    assert!(!log.exists(), "{}", text(&out));
    let s: serde_json::Value =
        serde_json::from_slice(&fs::read(env.path().join("run/status.json")).unwrap()).unwrap();
    let st = step(&s, "postboot", "run[0]");
    assert!(
        st["detail"].as_str().unwrap().contains("cannot be told"),
        "{st}"
    );
    // The next boot, the same config: still not (it is marked); another
    // config: it runs.
    fs::write(gandi.join("config"), &config).unwrap();
    let _ = super::gandi(&env.config(), &["postboot"]);
    assert!(!log.exists());
    fs::write(
        gandi.join("config"),
        config.replace("echo ran", "echo again"),
    )
    .unwrap();
    let out = super::gandi(&env.config(), &["postboot"]);
    assert_eq!(
        fs::read_to_string(&log).unwrap_or_default(),
        "again\n",
        "{}",
        text(&out)
    );
}

#[test]
fn a_damaged_ledger_keeps_what_the_system_has_and_is_reported() {
    if !system_test(&["mkswap", "blkid", "useradd", "depmod", "gzip"]) {
        return;
    }
    let env = Env::new();
    root_settings(&env.config(), &[]);
    let root = root_tree(env.path(), false);
    let canary = Canary::beside(&root);
    let img = image(env.path(), "swap.img", &good_archive(env.path()), None);
    assert!(bootstrap(&env, &root, &img).status.success());
    // The admin's own hostname and keys; then the ledger is damaged.
    fs::write(root.join("etc/hostname"), "mine\n").unwrap();
    let keys = fs::read_to_string(root.join("root/.ssh/authorized_keys"))
        .unwrap()
        .replace(&format!("{PLATFORM_KEY}\n"), "");
    fs::write(root.join("root/.ssh/authorized_keys"), &keys).unwrap();
    let ledger = root.join("var/lib/gandi/applied.json");
    for damage in [
        "{\"format\": \"gandi-vm applied values 1\", \"values\": [",
        "",
        "\0\0\0",
    ] {
        fs::write(&ledger, damage).unwrap();
        let out = bootstrap(&env, &root, &img);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        let (result, detail) = step_of(&root, "bootstrap", "state");
        assert_eq!(result, "failed");
        assert!(detail.contains("damaged"), "{detail}");
        assert_eq!(
            fs::read_to_string(root.join("etc/hostname")).unwrap(),
            "mine\n"
        );
        assert_eq!(
            fs::read_to_string(root.join("root/.ssh/authorized_keys")).unwrap(),
            keys
        );
        assert_eq!(step_of(&root, "bootstrap", "hostname").0, "kept");
        assert!(ledger.with_extension("json.damaged").exists());
        // The next run: tracked again, nothing re-applied.
        let out = bootstrap(&env, &root, &img);
        assert!(out.status.success(), "{}", text(&out));
        assert_eq!(
            fs::read_to_string(root.join("etc/hostname")).unwrap(),
            "mine\n"
        );
    }
    // A FIFO in its place: reported at once.
    fifo(&ledger);
    let out = bootstrap(&env, &root, &img);
    assert_eq!(
        step_of(&root, "bootstrap", "state").0,
        "failed",
        "{}",
        text(&out)
    );
    canary.check();
}

#[test]
fn a_damaged_or_odd_status_says_so() {
    let env = Env::new();
    env.settings(&[]);
    fs::create_dir_all(env.path().join("run")).unwrap();
    let status = env.path().join("run/status.json");
    for bad in ["{\"bootstrap\": {\"steps\": [", "garbage"] {
        fs::write(&status, bad).unwrap();
        let out = gandi(&env.config(), &["status"]);
        assert_eq!(out.status.code(), Some(1));
        assert!(text(&out).contains("damaged"), "{}", text(&out));
    }
    fifo(&status);
    let out = gandi(&env.config(), &["status"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("not a regular file"), "{}", text(&out));
    fs::remove_file(&status).unwrap();
    let out = gandi(&env.config(), &["status"]);
    assert!(text(&out).contains("no stage has run"), "{}", text(&out));
    // The settings file itself a FIFO: read at once (as empty).
    let cfg = env.path().join("fifo.conf");
    fifo(&cfg);
    let out = gandi(&cfg, &["settings"]);
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn the_modules_tarball_follows_no_link_and_replaces_no_admin_file() {
    if !system_test(&["mkswap", "blkid", "depmod", "gzip"]) {
        return;
    }
    let env = Env::new();
    root_settings(&env.config(), &[]);
    let root = root_tree(env.path(), false);
    let canary = Canary::beside(&root);
    fs::create_dir_all(root.join("boot/grub")).unwrap();
    fs::write(root.join("boot/grub/grub.cfg"), "admin's\n").unwrap();
    fs::write(root.join("boot/notes"), "admin's file\n").unwrap();
    fs::create_dir_all(root.join("etc/motd.d")).unwrap();
    // A tarball whose boot/ is a link to the tree's /etc, another whose
    // entries would replace the admin's files in /boot.
    let as_gz = |raw: Vec<u8>| {
        let p = env.path().join("m.tar");
        fs::write(&p, raw).unwrap();
        sh(Command::new("gzip").arg("-nkf").arg(&p));
        fs::read(env.path().join("m.tar.gz")).unwrap()
    };
    let module = format!("lib/modules/{RELEASE}/kernel/x.ko");
    let link_boot = as_gz(with_end(
        [
            raw_entry(&module, b'0', "", b"ko"),
            raw_entry("boot", b'2', "../../etc", b""),
        ]
        .concat(),
    ));
    let over_admin = as_gz(tar(&[
        (&module, b"ko", 0o644),
        ("boot/grub/grub.cfg", b"theirs\n", 0o644),
        ("boot/notes/inner", b"a folder over a file\n", 0o644),
        (&format!("boot/vmlinuz-{RELEASE}"), b"kernel\n", 0o644),
    ]));
    for tarball in [link_boot, over_admin] {
        let archive = tar(&[
            ("gandi/config", b"{}", 0o600),
            (&format!("gandi/{RELEASE}-modules.tar.gz"), &tarball, 0o644),
        ]);
        let img = image(env.path(), "swap.img", &archive, None);
        let etc_before = full_snapshot(&root.join("etc"));
        let out = bootstrap(&env, &root, &img);
        let (result, detail) = step_of(&root, "bootstrap", "modules");
        assert_eq!(result, "changed", "{detail} {}", text(&out));
        assert_eq!(
            fs::read_to_string(root.join("boot/grub/grub.cfg")).unwrap(),
            "admin's\n"
        );
        assert_eq!(
            fs::read_to_string(root.join("boot/notes")).unwrap(),
            "admin's file\n"
        );
        // /etc saw nothing of the tarball (the status and state are not
        // in /etc).
        let etc_now = full_snapshot(&root.join("etc"));
        assert!(
            etc_now.keys().all(|k| etc_before.contains_key(k)),
            "the tarball wrote into /etc: {:?}",
            etc_now
                .keys()
                .filter(|k| !etc_before.contains_key(*k))
                .collect::<Vec<_>>()
        );
        assert!(root.join(&module).exists());
    }
    assert_eq!(
        fs::read_to_string(root.join(format!("boot/vmlinuz-{RELEASE}"))).unwrap(),
        "kernel\n"
    );
    let (_, detail) = step_of(&root, "bootstrap", "modules");
    assert!(
        detail.contains("left as they are") && detail.contains("grub.cfg"),
        "{detail}"
    );
    let _ = symlink::<&str, &str>;
    canary.check();
}
