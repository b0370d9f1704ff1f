//! The project's shell scripts: no reader that may stop early after a pipe
//! under `pipefail` (the writer then fails with SIGPIPE, and the check
//! with it, at random under load).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)] // tests and benches: a failure is a panic, output is the report

use std::fs;

#[test]
fn no_early_exiting_reader_after_a_pipe_under_pipefail() {
    let mut offenders = Vec::new();
    for dir in ["scripts", ".ci"] {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
        for e in fs::read_dir(dir).unwrap().flatten() {
            let text = fs::read_to_string(e.path()).unwrap_or_default();
            if !text.contains("pipefail") {
                continue;
            }
            for (i, line) in text.lines().enumerate() {
                let code = line.split(" #").next().unwrap_or(line);
                let after_pipe: Vec<&str> = code.split('|').skip(1).collect();
                if after_pipe.iter().any(|p| {
                    let p = p.trim_start();
                    p.starts_with("grep -q")
                        || p.starts_with("grep -m")
                        || p.starts_with("head")
                        || (p.starts_with("grep") && p.contains(" -q"))
                }) {
                    offenders.push(format!("{}:{}: {}", e.path().display(), i + 1, line.trim()));
                }
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "capture first, then test:\n{}",
        offenders.join("\n")
    );
}
