//! `make bench`: wall time of the boot stages on fixture trees. Prints the
//! total and the time of the steps that run no external tool (the goal
//! excludes mkswap, useradd, depmod and resize tools); asserts nothing
//! about time.

#[path = "../tests/common/mod.rs"]
mod common;

use common::BIN;
use common::fixtures::*;
use std::fs;
use std::process::Command;
use std::time::{Duration, Instant};

/// Steps that call an external program.
const EXTERNAL: &[&str] = &["swap", "modules", "user", "sysctl", "root-disk", "init"];

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    // SAFETY: plain syscall.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("bench: needs root");
        std::process::exit(1);
    }
    println!("boot stages on a fixture tree (median of 15 runs)");
    let mut walls = Vec::new();
    let mut owns = Vec::new();
    let mut steps_by_name: std::collections::BTreeMap<String, Vec<u64>> = Default::default();
    for _ in 0..15 {
        let env = common::Env::new();
        env.settings(&[]);
        let root = root_tree(env.path(), false);
        let img = image(env.path(), "swap.img", &good_archive(env.path()), None);
        let t = Instant::now();
        let out = Command::new(BIN)
            .args(["bootstrap", "--kernel-release", RELEASE, "--root"])
            .arg(&root)
            .arg("--device")
            .arg(&img)
            .env("GANDI_CONFIG", env.config())
            .env("GANDI_LOG", "warn")
            .output()
            .unwrap();
        walls.push(t.elapsed());
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let status: serde_json::Value =
            serde_json::from_slice(&fs::read(env.path().join("run/status.json")).unwrap()).unwrap();
        let mut own = 0u64;
        for s in status["bootstrap"]["steps"].as_array().unwrap() {
            let name = s["step"].as_str().unwrap().to_string();
            let t = s["us"].as_u64().unwrap();
            if !EXTERNAL.contains(&name.as_str()) {
                own += t;
            }
            steps_by_name.entry(name).or_default().push(t);
        }
        owns.push(own);
    }
    walls.sort();
    owns.sort();
    println!(
        "  bootstrap wall time:                 {:7.1} ms",
        ms(walls[walls.len() / 2])
    );
    println!(
        "  bootstrap without external tools:    {:7.2} ms (goal: under 50 ms)",
        owns[owns.len() / 2] as f64 / 1000.0
    );
    for (name, mut v) in steps_by_name {
        v.sort();
        let ext = if EXTERNAL.contains(&name.as_str()) {
            " (external tool)"
        } else {
            ""
        };
        println!(
            "    {name:<12} {:8.3} ms{ext}",
            v[v.len() / 2] as f64 / 1000.0
        );
    }
}
