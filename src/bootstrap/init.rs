//! The platform's own script, `/gandi/init`, run as the original ran it,
//! once per config.

use crate::ledger::Ledger;
use crate::runner::Run;
use crate::settings::Settings;
use crate::status::Done;
use crate::tree::Tree;
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The interpreters the original tried for the platform's Python script.
pub(super) const PYTHONS: &[&str] = &["python3", "python2", "python"];

/// Runs the platform's script as the original did (`python3 /gandi/init
/// [ARGS]`, else python2, else python; never through its shebang), bounded,
/// its output to the log. The script must be a regular file of /gandi (no
/// link anywhere on its path).
pub fn run_platform_script(
    tree: &Tree,
    init: &Path,
    args: &[&str],
    limit: Duration,
) -> Result<crate::runner::Outcome> {
    let (_, meta) = tree
        .read_owned(init)
        .with_context(|| format!("{} cannot be run", tree.shown(init).display()))?;
    if meta.len() == 0 {
        bail!("{} is empty", tree.shown(init).display());
    }
    let path = tree.shown(init);
    let python = PYTHONS
        .iter()
        .find(|p| which(p).is_some())
        .with_context(|| {
            format!(
                "no Python ({}) to run {}",
                PYTHONS.join(", "),
                path.display()
            )
        })?;
    Run::new(python)
        .arg(&path)
        .args(args)
        .current_dir(tree.base())
        .limit(limit)
        .log_as("init")
        .outcome()
}

/// The path of `program` in PATH.
pub fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .unwrap_or_default()
        .to_string_lossy()
        .split(':')
        .map(|d| Path::new(d).join(program))
        .find(|p| p.is_file())
}

/// Runs `/gandi/init` once per config: a mark of the config's fingerprint
/// is kept in the state folder.
pub(super) fn run_init_once(
    settings: &Settings,
    tree: &Tree,
    ledger: &mut Ledger,
    init: &Path,
) -> Result<Done> {
    let config = tree
        .read(settings.gandi_dir.join("config"))
        .unwrap_or_default();
    if !ledger.is_new("init", &config) {
        return Ok(Done::unchanged("already ran for this config"));
    }
    // Marked first: a script cut short is reported, not run again.
    ledger.set("init", &config);
    ledger.save(tree)?;
    let out = run_platform_script(tree, init, &[], Duration::from_secs(600))?;
    if !out.success() {
        // Logged, not fatal, as the original.
        return Ok(Done::changed(format!(
            "the platform's script failed ({})",
            out.ended()
        )));
    }
    Ok(Done::changed(out.ended()))
}
