//! Boot stages killed at random moments.

use super::*;

#[test]
#[ignore = "make fault-test"]
fn boot_stages_killed_at_random_moments_end_as_an_uninterrupted_run() {
    if !system_test(&["mkswap", "useradd", "depmod", "gzip"]) {
        return;
    }
    let mut rng = Rng(0xb007_1511);
    kill_stage("bootstrap", &mut rng, &|dir| {
        let root = root_tree(dir, false);
        let img = image(dir, "swap.img", &good_archive(dir), None);
        root_settings(&dir.join("gandi.conf"), &[]);
        let mut c = Command::new(BIN);
        c.args(["bootstrap", "--kernel-release", RELEASE, "--root"])
            .arg(&root)
            .arg("--device")
            .arg(&img)
            .env("GANDI_CONFIG", dir.join("gandi.conf"))
            .env_remove("JOURNAL_STREAM");
        (c, root)
    });
    kill_stage("config", &mut rng, &|dir| {
        let root = config_tree(dir);
        fs::write(
            root.join("etc/crontab"),
            "17 *\t* * *\troot\tcd / && run-parts --report /etc/cron.hourly\n",
        )
        .unwrap();
        root_settings(&dir.join("gandi.conf"), &[]);
        let cmdline = dir.join("cmdline");
        fs::write(&cmdline, "gandi=cet").unwrap();
        let mut c = Command::new(BIN);
        c.args(["config", "--root"])
            .arg(&root)
            .arg("--cmdline")
            .arg(&cmdline)
            .env("GANDI_CONFIG", dir.join("gandi.conf"))
            .env_remove("JOURNAL_STREAM");
        (c, root)
    });
    // postboot runs commands: each at most once, however often it is cut.
    for round in 0..20 {
        let dir = tempdir();
        let gandi = dir.path().join("gandi");
        fs::create_dir_all(&gandi).unwrap();
        let log = dir.path().join("ran.log");
        fs::write(
            gandi.join("config"),
            format!(
                r#"{{"vm_conf": {{"password": "{HASH}", "run": ["echo one >> {l}", "sleep 0.05; echo two >> {l}"]}}}}"#,
                l = log.display()
            ),
        )
        .unwrap();
        let conf = dir.path().join("gandi.conf");
        fs::write(
            &conf,
            format!(
                "GANDI_DIR={}\nGANDI_STATE_DIR={}\nGANDI_RUN_DIR={}\n",
                gandi.display(),
                dir.path().join("state").display(),
                dir.path().join("run").display()
            ),
        )
        .unwrap();
        let post = || {
            let mut c = Command::new(BIN);
            c.arg("postboot")
                .env("GANDI_CONFIG", &conf)
                .env_remove("JOURNAL_STREAM")
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            c
        };
        let mut child = post().spawn().unwrap();
        std::thread::sleep(Duration::from_millis(rng.below(150)));
        kill_tree(&mut child);
        let _ = post().status().unwrap();
        let _ = post().status().unwrap();
        let lines = fs::read_to_string(&log).unwrap_or_default();
        for cmd in ["one", "two"] {
            let n = lines.lines().filter(|l| *l == cmd).count();
            assert!(n <= 1, "postboot round {round}: {cmd} ran {n} times");
        }
        let config = fs::read_to_string(gandi.join("config")).unwrap();
        assert!(
            !config.contains(HASH),
            "postboot round {round}: the hash stayed"
        );
        let left: Vec<_> = fs::read_dir(&gandi)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .filter(|n| n != "config")
            .collect();
        assert!(
            left.is_empty(),
            "postboot round {round}: {left:?} left behind"
        );
    }
}
