//! Hostile inputs: what a data disk, a swapped-out page or a local user can
//! write, tried against every place root reads it. Each case is one of the
//! trust boundary's (docs/boot.md, docs/disks.md): on fixture trees, a
//! fixture `/dev` and `/sys`, image files and loop devices; every tree a
//! test writes to has a canary tree beside it, compared before and after;
//! every run that could wait is bounded in time.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)] // tests and benches: a failure is a panic, output is the report

#[path = "../common/mod.rs"]
mod common;

mod admin_files;
mod disks;
mod homes;
mod platform_disk;
mod state;

use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The binary under test: this build's, or the one `GANDI_TEST_BIN` names
/// (to show that a case fails on an earlier build).
pub fn bin() -> PathBuf {
    std::env::var_os("GANDI_TEST_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(BIN))
}

/// Runs `cmd` and fails the test if it has not ended within `limit` (it is
/// killed then): an open of a FIFO, a lock, a stalled read must never hold
/// a run of ours.
pub fn bounded(cmd: &mut Command, limit: Duration) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {cmd:?}: {e}"));
    let deadline = Instant::now() + limit;
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "{cmd:?} still ran after {} s (it waits on something): {}",
                limit.as_secs(),
                stderr(&out)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Makes a FIFO at `path` (nobody ever writes to it).
pub fn fifo(path: &Path) {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).unwrap();
    }
    let _ = std::fs::remove_file(path);
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
}

/// A folder beside a test's root that nothing may touch: compared whole
/// (content, modes, owners, times) at the end of the test.
pub struct Canary {
    dir: PathBuf,
    before: std::collections::BTreeMap<PathBuf, String>,
}

impl Canary {
    pub fn beside(root: &Path) -> Canary {
        let dir = root.parent().unwrap().join("canary");
        std::fs::create_dir_all(dir.join("etc/ssh")).unwrap();
        std::fs::write(dir.join("etc/shadow"), "root:canary:1::::::\n").unwrap();
        std::fs::write(dir.join("etc/ssh/authorized_keys"), "canary\n").unwrap();
        std::fs::write(dir.join("secret"), "s").unwrap();
        let before = fixtures::full_snapshot(&dir);
        Canary { dir, before }
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Fails when anything in the canary changed.
    pub fn check(&self) {
        assert_eq!(
            fixtures::full_snapshot(&self.dir),
            self.before,
            "the canary beside the root changed"
        );
    }
}

/// `gandi-vm ARGS` with the settings `config`, bounded to 60 s.
pub fn gandi(config: &Path, args: &[&str]) -> Output {
    bounded(
        Command::new(bin())
            .args(args)
            .env("GANDI_CONFIG", config)
            .env_remove("JOURNAL_STREAM"),
        Duration::from_secs(60),
    )
}

/// `gandi-vm bootstrap --root ROOT --device DEVICE`.
pub fn bootstrap(env: &Env, root: &Path, device: &Path) -> Output {
    gandi(
        &env.config(),
        &[
            "bootstrap",
            "--kernel-release",
            fixtures::RELEASE,
            "--root",
            root.to_str().unwrap(),
            "--device",
            device.to_str().unwrap(),
        ],
    )
}

/// The result and detail of a step of `stage` run with `--root`.
pub fn step_of(root: &Path, stage: &str, name: &str) -> (String, String) {
    let s = fixtures::root_status(root);
    let st = fixtures::step(&s, stage, name);
    (
        st["result"].as_str().unwrap_or_default().to_string(),
        st["detail"].as_str().unwrap_or_default().to_string(),
    )
}

pub fn text(out: &Output) -> String {
    format!("{}{}", stdout(out), stderr(out))
}
