//! `gandi-vm validate FILE`: a platform config checked.

use crate::base::out;
use crate::platform::config;
use std::path::Path;

/// Check a platform config file (JSON; - reads standard input): print
/// each problem with its place, in the order of the file, then notes on
/// fields the platform does not write; exit 0 when valid.
#[derive(Debug, clap::Args)]
pub struct Args {
    pub file: std::path::PathBuf,
}

/// `gandi-vm validate FILE`: every problem, each with its line and column,
/// then the notes (fields the platform's config does not have, ignored);
/// exit 1 when there is a problem (notes alone leave it valid).
pub fn run(args: Args) -> anyhow::Result<i32> {
    let file = args.file.as_path();
    use anyhow::Context;
    let text = if file == Path::new("-") {
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin().lock(), &mut data)
            .context("reading standard input")?;
        data
    } else {
        std::fs::read(file).with_context(|| format!("reading {}", file.display()))?
    };
    let (mut problems, notes) = match config::read(&text) {
        Ok(c) => (c.problems, c.notes),
        Err(p) => (vec![p], Vec::new()),
    };
    // In the order of the file.
    problems.sort_by_key(|p| p.at.unwrap_or((0, 0)));
    let shown = if file == Path::new("-") {
        "-".to_string()
    } else {
        file.display().to_string()
    };
    for p in &problems {
        out::line(&format!("{shown}:{p}"));
    }
    for n in &notes {
        out::line(&format!("{shown}:{n} (note)"));
    }
    if problems.is_empty() {
        out::line(&format!("{shown}: valid"));
        return Ok(0);
    }
    Ok(1)
}
