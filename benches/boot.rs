//! `make bench`: wall time of the boot stages on fixture trees. Prints the
//! total and the time of the steps that run no external tool (the goal
//! excludes mkswap, useradd, depmod and resize tools); asserts nothing
//! about time.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)] // tests and benches: a failure is a panic, output is the report

#[path = "../tests/common/mod.rs"]
mod common;

use common::BIN;
use common::fixtures::*;
use std::fs;
use std::process::Command;
use std::time::{Duration, Instant};

/// Steps that call an external program.
const EXTERNAL: &[&str] = &[
    "swap",
    "modules",
    "user",
    "sysctl",
    "root-disk",
    "init",
    "sshd",
    "mount-count",
    "hook",
    "init --postboot",
];

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Runs `gandi-vm ARGS` on fresh fixtures 15 times; prints the median wall
/// time, the median time of the steps without external tools, and each
/// step's median.
/// `setup` makes the fixtures and settings of one run: it returns the
/// arguments and where the stage's status will be.
fn stage(
    label: &str,
    stage: &str,
    setup: &dyn Fn(&common::Env) -> (Vec<String>, std::path::PathBuf),
) {
    let mut walls = Vec::new();
    let mut owns = Vec::new();
    let mut by_step: std::collections::BTreeMap<String, Vec<u64>> = Default::default();
    for _ in 0..15 {
        let env = common::Env::new();
        let (args, status_file) = setup(&env);
        let t = Instant::now();
        let out = Command::new(BIN)
            .args(&args)
            .env("GANDI_CONFIG", env.config())
            .env("GANDI_LOG", "warn")
            .output()
            .unwrap();
        walls.push(t.elapsed());
        assert!(
            out.status.success(),
            "{label}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let status: serde_json::Value =
            serde_json::from_slice(&fs::read(&status_file).unwrap()).unwrap();
        let mut own = 0u64;
        for s in status[stage]["steps"].as_array().unwrap() {
            let name = s["step"].as_str().unwrap().to_string();
            let t = s["us"].as_u64().unwrap();
            if !EXTERNAL.contains(&name.as_str()) && !name.starts_with("run[") {
                own += t;
            }
            by_step.entry(name).or_default().push(t);
        }
        owns.push(own);
    }
    walls.sort();
    owns.sort();
    println!("{label} (median of 15 runs)");
    println!(
        "  wall time:                {:7.1} ms",
        ms(walls[walls.len() / 2])
    );
    println!(
        "  without external tools:   {:7.2} ms",
        owns[owns.len() / 2] as f64 / 1000.0
    );
    for (name, mut v) in by_step {
        v.sort();
        let ext = if EXTERNAL.contains(&name.as_str()) || name.starts_with("run[") {
            " (external tool)"
        } else {
            ""
        };
        println!(
            "    {name:<16} {:8.3} ms{ext}",
            v[v.len() / 2] as f64 / 1000.0
        );
    }
}

fn main() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("bench: needs root");
        std::process::exit(1);
    }
    stage(
        "bootstrap --root on a fixture swap image (goal: under 50 ms without external tools)",
        "bootstrap",
        &|env| {
            root_settings(&env.config(), &[]);
            let root = root_tree(env.path(), false);
            let img = image(env.path(), "swap.img", &good_archive(env.path()), None);
            let status = root.join("run/gandi/status.json");
            (
                vec![
                    "bootstrap".into(),
                    "--kernel-release".into(),
                    RELEASE.into(),
                    "--root".into(),
                    root.display().to_string(),
                    "--device".into(),
                    img.display().to_string(),
                ],
                status,
            )
        },
    );
    stage(
        "config --root on a fixture tree (goal: under 20 ms without external tools)",
        "config",
        &|env| {
            root_settings(&env.config(), &[]);
            let root = config_tree(env.path());
            let cmdline = env.path().join("cmdline");
            fs::write(&cmdline, "gandi=Europe/Paris").unwrap();
            let status = root.join("run/gandi/status.json");
            (
                vec![
                    "config".into(),
                    "--root".into(),
                    root.display().to_string(),
                    "--cmdline".into(),
                    cmdline.display().to_string(),
                ],
                status,
            )
        },
    );
    stage(
        "postboot with one command, its paths in a temp folder (goal: under 20 ms without external tools)",
        "postboot",
        &|env| {
            let gandi = env.path().join("gandi");
            env.settings(&[
                format!("GANDI_DIR={}", gandi.display()),
                format!("GANDI_STATE_DIR={}", env.path().join("state").display()),
            ]);
            fs::create_dir_all(&gandi).unwrap();
            fs::write(
                gandi.join("config"),
                format!(r#"{{"vm_conf": {{"password": "{HASH}", "run": ["true"]}}}}"#),
            )
            .unwrap();
            (vec!["postboot".into()], env.path().join("run/status.json"))
        },
    );
}
