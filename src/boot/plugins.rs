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

/// The executable files of `dir` a run looks at, in name order (those
/// passed over silently left out).
fn candidates(dir: &Path) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = rd
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| !(n.contains("pre-first") || n.contains(".dpkg") || n.starts_with('.')))
        .filter(|n| {
            std::fs::metadata(dir.join(n))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
        .collect();
    names.sort();
    names
}

/// Whether `dir` holds a plugin that [`run_all`] would run.
pub fn any(dir: &Path) -> bool {
    candidates(dir)
        .iter()
        .any(|n| !ORIGINAL.contains(&n.as_str()))
}

/// Runs the plugins of `dir`, each as a step `plugin NAME` of `rec`.
pub fn run_all(dir: &Path, rec: &mut Recorder) {
    for name in candidates(dir) {
        // Killed or hung in a plugin, the status shows which.
        rec.flush();
        let step = format!("plugin {name}");
        let path = dir.join(&name);
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn any_sees_only_what_a_run_runs_or_reports() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        assert!(!any(&d.join("missing")));
        let write = |name: &str, mode: u32| {
            let p = d.join(name);
            fs::write(&p, "#!/bin/sh\n").unwrap();
            fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
        };
        write("10-notes", 0o644);
        write(".hidden", 0o755);
        write("20-x.dpkg-old", 0o755);
        write("30-pre-first", 0o755);
        fs::create_dir(d.join("40-folder")).unwrap();
        write(ORIGINAL[0], 0o755);
        assert!(!any(d), "{:?}", candidates(d));
        write("50-mine", 0o700);
        assert!(any(d));
        assert_eq!(candidates(d).last().map(String::as_str), Some("50-mine"));
    }
}
