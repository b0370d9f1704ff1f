//! Every command that prints ends quietly when its reader has gone
//! (`gandi-vm status | head -1`): the same exit code as with a reader (or
//! 141, as shells expect), and no panic.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)] // tests and benches: a failure is a panic, output is the report

mod common;

use common::*;
use std::fs;
use std::process::{Command, Stdio};

/// Runs `args` with standard output a pipe whose reader is already gone.
fn closed(env: &Env, args: &[&str]) -> std::process::Output {
    let (r, w) = nix::unistd::pipe().unwrap();
    drop(r);
    Command::new(BIN)
        .args(args)
        .env("GANDI_CONFIG", env.config())
        .env_remove("JOURNAL_STREAM")
        .stdout(Stdio::from(w))
        .stderr(Stdio::piped())
        .output()
        .unwrap()
}

#[test]
fn printing_commands_end_quietly_when_their_reader_is_gone() {
    let env = Env::new();
    env.settings(&[]);
    // A status with every stage, so there is much to print.
    let run = env.path().join("run");
    fs::create_dir_all(&run).unwrap();
    let steps: Vec<String> = (0..200)
        .map(|i| {
            format!(
                r#"{{"step": "s{i}", "result": "changed", "detail": "{}", "us": 1}}"#,
                "x".repeat(200)
            )
        })
        .collect();
    let stage = format!(r#"{{"steps": [{}], "finished": 1}}"#, steps.join(","));
    fs::write(
        run.join("status.json"),
        format!(
            r#"{{"bootstrap": {stage}, "config": {stage}, "mount": {stage}, "postboot": {stage}}}"#
        ),
    )
    .unwrap();
    // A config with 2000 problems for validate to print.
    let bad = env.path().join("bad.json");
    let names: Vec<String> = (0..2000).map(|i| format!("\"x{i}\"")).collect();
    fs::write(&bad, format!(r#"{{"nameservers": [{}]}}"#, names.join(","))).unwrap();
    let bad = bad.to_str().unwrap().to_string();
    for args in [
        vec!["status"],
        vec!["status", "--json"],
        vec!["disks"],
        vec!["disks", "--json"],
        vec!["settings"],
        vec!["validate", &bad],
        vec!["--help"],
        vec!["--version"],
        vec!["map", "no-such-disk"],
    ] {
        let normal = Command::new(BIN)
            .args(&args)
            .env("GANDI_CONFIG", env.config())
            .env_remove("JOURNAL_STREAM")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        let out = closed(&env, &args);
        let stderr = stderr(&out);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        let code = out.status.code();
        assert!(
            code == normal.code()
                || code.is_none()
                    && std::os::unix::process::ExitStatusExt::signal(&out.status) == Some(13),
            "{args:?}: exit {:?} (with a reader: {:?}); {stderr}",
            out.status,
            normal
        );
    }
}
