//! The admin's own steps: every executable file of a folder, run in name
//! order, each bounded and logged, as the original ran its plugins
//! (`GANDI_PLUGIN_DIR`, `/etc/gandi/plugins.d`, at each boot's `config`;
//! `GANDI_BOOTSTRAP_DIR`, `/etc/gandi/bootstrap.d`, at `bootstrap`). A
//! failing plugin is reported and the next one runs.
//!
//! Passed over, as the original did: names holding `pre-first` or `.dpkg`.
//! Passed over and said so: the original's own plugins, whose work our
//! steps do natively (an admin who edited one learns that it no longer
//! runs).

use crate::base::runner::Run;
use crate::base::status::{Done, Recorder};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

/// How long one plugin may run.
pub const PLUGIN_LIMIT: Duration = Duration::from_secs(300);

use crate::automount::migrate::ORIGINAL;

/// Runs the plugins of `dir`, each as a step `plugin NAME` of `rec`.
pub fn run_all(dir: &Path, rec: &mut Recorder) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut names: Vec<String> = rd
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    for name in names {
        let step = format!("plugin {name}");
        if name.contains("pre-first") || name.contains(".dpkg") || name.starts_with('.') {
            continue;
        }
        let path = dir.join(&name);
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
            continue;
        }
        if let Err(why) = crate::base::hooks::check_program(&path) {
            log::warn!("plugin {why}");
            rec.note(&step, Done::failed(why));
            continue;
        }
        if ORIGINAL.contains(&name.as_str()) {
            rec.note(
                &step,
                Done::skipped("the original suite's step: gandi-vm does its work natively"),
            );
            continue;
        }
        rec.step(&step, || {
            let out = Run::new(&path)
                .limit(PLUGIN_LIMIT)
                .log_as(format!("plugin {name}"))
                .outcome()?;
            if out.success() {
                log::info!("{name} executed correctly.");
                Ok(Done::changed(out.ended()))
            } else {
                log::warn!("Problem with {name}.");
                Ok(Done::failed(out.ended()))
            }
        });
    }
}
