//! The admin's files: only the lines we own change, owner, group and mode
//! stay, the admin's backups are never taken for leftovers, and programs
//! run as root only when root alone could have written them.

use super::common::fixtures::*;
use super::common::*;
use super::*;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

fn config(env: &Env, root: &Path) -> Output {
    gandi(&env.config(), &["config", "--root", root.to_str().unwrap()])
}

#[test]
fn the_crontab_keeps_every_line_it_does_not_own_byte_for_byte() {
    let env = Env::new();
    root_settings(&env.config(), &[]);
    let root = config_tree(env.path());
    let canary = Canary::beside(&root);
    let admin = "SHELL=/bin/sh\r\n\
        MAILTO=ops@example.net # runs run-parts for /etc/cron.monthly\r\n\
        # m h dom mon dow user\tcommand\r\n\
        17 *\t* * *\troot\tcd / && run-parts --report /etc/cron.hourly\r\n\
        0 3 * * * root /usr/local/bin/backup /etc/cron.daily\r\n\
        30 2\t* * *\troot\ttest -x /usr/sbin/anacron || { cd / && run-parts --report /etc/cron.daily; }\r\n\
        47 6 * * 7 cd / && run-parts --report /etc/cron.weekly\r\n\
        @reboot root /usr/local/bin/at-boot\r\n\
        52 6\t1 * *\troot\ttest -x /usr/sbin/anacron || { cd / && run-parts --report /etc/cron.monthly; }";
    fs::write(root.join("etc/crontab"), admin).unwrap();
    fs::set_permissions(root.join("etc/crontab"), fs::Permissions::from_mode(0o600)).unwrap();
    let root_run = nix::unistd::geteuid().is_root();
    if root_run {
        std::os::unix::fs::chown(root.join("etc/crontab"), Some(0), Some(42)).unwrap();
    }
    let out = config(&env, &root);
    assert!(out.status.success(), "{}", text(&out));
    let now = fs::read_to_string(root.join("etc/crontab")).unwrap();
    let (old_lines, new_lines): (Vec<&str>, Vec<&str>) =
        (admin.split('\n').collect(), now.split('\n').collect());
    assert_eq!(old_lines.len(), new_lines.len(), "{now}");
    for (i, (a, b)) in old_lines.iter().zip(&new_lines).enumerate() {
        match i {
            // The two stock lines at their stock time: re-timed, their
            // layout and CRLF kept.
            3 | 8 => {
                assert_ne!(a, b, "line {i} not spread");
                let tail = |l: &str| l.splitn(3, [' ', '\t']).nth(2).unwrap().to_string();
                assert_eq!(tail(a), tail(b), "line {i}");
                assert_eq!(a.ends_with('\r'), b.ends_with('\r'));
            }
            _ => assert_eq!(a, b, "line {i} changed"),
        }
    }
    let meta = fs::metadata(root.join("etc/crontab")).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o600);
    if root_run {
        assert_eq!(meta.gid(), 42);
    }
    // Again: nothing changes.
    let once = fs::read(root.join("etc/crontab")).unwrap();
    assert!(config(&env, &root).status.success());
    assert_eq!(fs::read(root.join("etc/crontab")).unwrap(), once);
    canary.check();
}

#[test]
fn sshd_settings_never_override_the_admins() {
    let env = Env::new();
    root_settings(&env.config(), &[]);
    let root = config_tree(env.path());
    let canary = Canary::beside(&root);
    fs::write(
        root.join("etc/ssh/sshd_config"),
        "Include /etc/ssh/sshd_config.d/*.conf\nPermitRootLogin no\nListenAddress 10.0.0.5\n",
    )
    .unwrap();
    let out = config(&env, &root);
    assert!(out.status.success(), "{}", text(&out));
    let dropin = fs::read_to_string(root.join("etc/ssh/sshd_config.d/50-gandi.conf")).unwrap();
    assert!(!dropin.contains("PermitRootLogin"), "{dropin}");
    assert!(!dropin.contains("ListenAddress"), "{dropin}");
    assert!(dropin.contains("PermitEmptyPasswords no"), "{dropin}");
    let (_, detail) = step_of(&root, "config", "sshd");
    assert!(
        detail.contains("the admin sets listenaddress, permitrootlogin"),
        "{detail}"
    );
    // In another drop-in too; and every key the admin's: ours goes.
    fs::write(
        root.join("etc/ssh/sshd_config.d/10-admin.conf"),
        "PermitEmptyPasswords no\n",
    )
    .unwrap();
    assert!(config(&env, &root).status.success());
    assert!(!root.join("etc/ssh/sshd_config.d/50-gandi.conf").exists());
    // The drop-ins included only inside a Match block: our block goes at
    // the top of sshd_config, before the Match.
    fs::remove_file(root.join("etc/ssh/sshd_config.d/10-admin.conf")).unwrap();
    fs::write(
        root.join("etc/ssh/sshd_config"),
        "PermitRootLogin no\nMatch User backup\n  Include /etc/ssh/sshd_config.d/*.conf\n",
    )
    .unwrap();
    assert!(config(&env, &root).status.success());
    let main = fs::read_to_string(root.join("etc/ssh/sshd_config")).unwrap();
    let block = main.find("# BEGIN gandi-vm").expect("our block");
    assert!(block < main.find("Match").unwrap(), "{main}");
    assert!(!main[block..main.find("# END gandi-vm").unwrap()].contains("PermitRootLogin"));
    assert!(!root.join("etc/ssh/sshd_config.d/50-gandi.conf").exists());
    canary.check();
}

#[test]
fn the_admins_backups_and_the_shadow_group_survive_a_user_creation() {
    if !system_test(&["mkswap", "useradd", "blkid"]) {
        return;
    }
    let env = Env::new();
    root_settings(&env.config(), &[]);
    let root = root_tree(env.path(), false);
    let canary = Canary::beside(&root);
    for f in ["shadow", "gshadow"] {
        std::os::unix::fs::chown(root.join("etc").join(f), Some(0), Some(42)).unwrap();
    }
    let backups = [
        ("shadow.20240101", "root:*:1::::::\n"),
        ("passwd.20240101", "root:x:0:0::/root:/bin/sh\n"),
        ("group.1999", "root:x:0:\n"),
        ("gshadow.424242", "root:*::\n"),
        ("subuid.99999", "alice:100000:65536\n"),
    ];
    for (name, body) in backups {
        fs::write(root.join("etc").join(name), body).unwrap();
    }
    // A lock of a process that is gone, and its FILE.PID, as shadow writes
    // them (the PID's string with its NUL), and one with a newline.
    fs::write(root.join("etc/passwd.lock"), "4194000\0").unwrap();
    fs::write(root.join("etc/passwd.4194000"), "4194000\0").unwrap();
    fs::write(root.join("etc/group.lock"), "4194003\n").unwrap();
    // A FILE.PID of a tool killed before it wrote its PID (empty, 0600),
    // and an admin's empty file that is not (0644): kept.
    for (name, mode) in [("group.4194001", 0o600), ("gshadow.4194002", 0o644)] {
        let path = root.join("etc").join(name);
        fs::write(&path, "").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
    }
    // A creation of ours cut short (the lines are taken out again).
    fs::create_dir_all(root.join("var/lib/gandi")).unwrap();
    fs::write(root.join("var/lib/gandi/useradd-started"), "alice\t0\n").unwrap();
    let config = format!(
        r#"{{"vm_conf": {{"user": "alice", "ssh_key": "{USER_KEY}", "password": "{HASH}"}}}}"#
    );
    let img = image(
        env.path(),
        "swap.img",
        &tar(&[("gandi/config", config.as_bytes(), 0o600)]),
        None,
    );
    let out = bootstrap(&env, &root, &img);
    let (result, detail) = step_of(&root, "bootstrap", "user");
    assert_eq!(result, "changed", "{detail} {}", text(&out));
    for (name, body) in backups {
        assert_eq!(
            fs::read_to_string(root.join("etc").join(name)).unwrap(),
            body,
            "{name}"
        );
    }
    assert!(!root.join("etc/passwd.lock").exists());
    assert!(!root.join("etc/group.lock").exists());
    assert!(!root.join("etc/passwd.4194000").exists());
    assert!(!root.join("etc/group.4194001").exists());
    assert!(root.join("etc/gshadow.4194002").exists());
    for f in ["shadow", "gshadow"] {
        let m = fs::metadata(root.join("etc").join(f)).unwrap();
        assert_eq!(m.gid(), 42, "{f} lost its group");
    }
    assert!(
        fs::read_to_string(root.join("etc/shadow"))
            .unwrap()
            .contains(HASH)
    );
    canary.check();
}

#[test]
fn a_creation_cut_short_never_takes_a_group_that_was_there() {
    if !system_test(&["mkswap", "useradd", "blkid"]) {
        return;
    }
    let env = Env::new();
    root_settings(&env.config(), &[]);
    let root = root_tree(env.path(), false);
    let canary = Canary::beside(&root);
    // The login is also the name of a group of the system's (docker), the
    // user is made in `users`; its creation was cut short after passwd.
    fs::write(
        root.join("etc/group"),
        "root:x:0:\ndaemon:x:1:\nusers:x:100:\ndocker:x:999:admin\n",
    )
    .unwrap();
    fs::write(
        root.join("etc/gshadow"),
        "root:*::\ndaemon:*::\nusers:*::\ndocker:!::admin\n",
    )
    .unwrap();
    let mut p = fs::read_to_string(root.join("etc/passwd")).unwrap();
    p.push_str("docker:x:1000:100::/home/docker:/bin/bash\n");
    fs::write(root.join("etc/passwd"), p).unwrap();
    fs::create_dir_all(root.join("var/lib/gandi")).unwrap();
    fs::write(root.join("var/lib/gandi/useradd-started"), "docker\t0\t0\n").unwrap();
    let config = r#"{"vm_conf": {"user": "docker"}}"#;
    let img = image(
        env.path(),
        "swap.img",
        &tar(&[("gandi/config", config.as_bytes(), 0o600)]),
        None,
    );
    let out = bootstrap(&env, &root, &img);
    assert_eq!(
        step_of(&root, "bootstrap", "user").0,
        "changed",
        "{}",
        text(&out)
    );
    assert!(
        fs::read_to_string(root.join("etc/group"))
            .unwrap()
            .contains("docker:x:999:admin\n")
    );
    assert!(
        fs::read_to_string(root.join("etc/gshadow"))
            .unwrap()
            .contains("docker:!::admin\n")
    );
    canary.check();
}

#[test]
fn hooks_and_plugins_others_could_write_never_run() {
    if !system_test(&[]) {
        return;
    }
    let env = Env::new();
    let ran = env.path().join("ran");
    let hooks = env.path().join("hooks");
    let plugins = env.path().join("plugins.d");
    script(
        &hooks.join("post-vm-config"),
        &format!("echo hook >> {}", ran.display()),
    );
    script(
        &plugins.join("10-mine"),
        &format!("echo mine >> {}", ran.display()),
    );
    script(
        &plugins.join("20-theirs"),
        &format!("echo theirs >> {}", ran.display()),
    );
    std::os::unix::fs::chown(plugins.join("20-theirs"), Some(1000), Some(1000)).unwrap();
    let mut rec = gandi_vm::base::status::Recorder::default();
    gandi_vm::boot::plugins::run_all(&plugins, &mut rec);
    let lines = fs::read_to_string(&ran).unwrap_or_default();
    assert_eq!(lines, "mine\n");
    let theirs = rec
        .stage
        .steps
        .iter()
        .find(|s| s.step == "plugin 20-theirs")
        .unwrap();
    assert_eq!(theirs.result, gandi_vm::base::status::Outcome::Failed);
    assert!(
        theirs.detail.contains("another user than root"),
        "{}",
        theirs.detail
    );
    // A folder others may write: nothing in it runs; sticky, like /tmp,
    // what root owns there still does.
    fs::set_permissions(&plugins, fs::Permissions::from_mode(0o1777)).unwrap();
    fs::remove_file(&ran).unwrap();
    let mut rec = gandi_vm::base::status::Recorder::default();
    gandi_vm::boot::plugins::run_all(&plugins, &mut rec);
    assert_eq!(fs::read_to_string(&ran).unwrap_or_default(), "mine\n");
    fs::set_permissions(&plugins, fs::Permissions::from_mode(0o777)).unwrap();
    fs::remove_file(&ran).unwrap();
    let mut rec = gandi_vm::base::status::Recorder::default();
    gandi_vm::boot::plugins::run_all(&plugins, &mut rec);
    assert!(!ran.exists(), "a plugin ran from a folder others may write");
    assert!(
        rec.stage
            .steps
            .iter()
            .all(|s| s.result == gandi_vm::base::status::Outcome::Failed)
    );
    // A hook, group-writable by a group that is not root's; then a FIFO.
    env.settings(&[format!("GANDI_HOOK_DIR={}", hooks.display())]);
    let settings = gandi_vm::base::settings::Settings::load_from(&env.config()).unwrap();
    std::os::unix::fs::chown(hooks.join("post-vm-config"), Some(0), Some(100)).unwrap();
    fs::set_permissions(
        hooks.join("post-vm-config"),
        fs::Permissions::from_mode(0o775),
    )
    .unwrap();
    let r = gandi_vm::base::hooks::run(&settings, "post-vm-config", &[], Duration::from_secs(5));
    assert!(
        matches!(r, gandi_vm::base::hooks::HookResult::Refused(_)),
        "{r}"
    );
    fifo(&hooks.join("post-vm-config"));
    let started = Instant::now();
    let r = gandi_vm::base::hooks::run(&settings, "post-vm-config", &[], Duration::from_secs(5));
    assert!(
        matches!(r, gandi_vm::base::hooks::HookResult::Refused(_)),
        "{r}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(!ran.exists());
}
