//! `gandi-vm validate FILE`: a platform config checked.

use crate::out;
use crate::platform;
use std::path::Path;

/// `gandi-vm validate FILE`: every problem, each with its line and column,
/// then the notes (fields the platform's config does not have, ignored);
/// exit 1 when there is a problem (notes alone leave it valid).
pub fn run(file: &Path) -> anyhow::Result<i32> {
    use anyhow::Context;
    let text = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let (problems, notes) = match platform::read(&text) {
        Ok(c) => (c.problems, c.notes),
        Err(p) => (vec![p], Vec::new()),
    };
    for p in &problems {
        out::line(&format!("{}:{p}", file.display()));
    }
    for n in &notes {
        out::line(&format!("{}:{n} (note)", file.display()));
    }
    if problems.is_empty() {
        out::line(&format!("{}: valid", file.display()));
        return Ok(0);
    }
    Ok(1)
}
