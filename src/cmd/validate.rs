//! `gandi-vm validate FILE`: a platform config checked.

use crate::out;
use crate::platform;
use std::path::Path;

/// `gandi-vm validate FILE`: every problem, each with its line and column;
/// exit 1 when there is one.
pub fn run(file: &Path) -> anyhow::Result<i32> {
    use anyhow::Context;
    let text = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let problems = match platform::read(&text) {
        Ok(c) => c.problems,
        Err(p) => vec![p],
    };
    if problems.is_empty() {
        out::line(&format!("{}: valid", file.display()));
        return Ok(0);
    }
    for p in problems {
        out::line(&format!("{}:{p}", file.display()));
    }
    Ok(1)
}
