//! Whether postboot has anything to do in this boot, decided by bootstrap
//! once it is done with this boot's config: when not, a mark in the run
//! folder stops postboot's unit from starting a process
//! (`ConditionPathExists=!`), and its stage is recorded as skipped.

use crate::base::settings::Settings;
use crate::base::status::Recorder;
use crate::base::tree::Tree;
use std::path::PathBuf;

/// Marks the platform's config file once postboot removed its secrets and
/// commands.
pub const CLEANED: &str = "gandi_vm_cleaned";

/// The mark that postboot has nothing to do in this boot
/// (`GANDI_RUN_DIR/postboot-idle`): its unit then starts no process
/// (`ConditionPathExists=!`).
pub fn idle_mark(settings: &Settings) -> PathBuf {
    settings.paths.run_dir.join("postboot-idle")
}

/// Whether postboot would do nothing in this boot: the platform's config
/// is there and was dealt with already (its commands run, its secrets
/// removed: a later config is a new file, not marked), no damaged ledger
/// to see to, mounting allowed (else postboot stops autofs). Any doubt
/// (no config, one that does not parse) is work to do.
fn idle(settings: &Settings, tree: &Tree, recovered: bool) -> bool {
    if recovered || !settings.allow_mount {
        return false;
    }
    let config = settings.paths.gandi_dir.join("config");
    tree.read_owned(&config).is_ok_and(|(text, _)| {
        serde_json::from_slice::<serde_json::Value>(&text).is_ok_and(|v| v.get(CLEANED).is_some())
    })
}

/// Called by bootstrap, once it is done with this boot's config: marks
/// postboot idle (and records its stage as skipped, for `gandi-vm status`)
/// or removes the mark. Postboot's unit runs unless the mark is there: a
/// bootstrap that did not get here leaves postboot to run.
pub fn plan(settings: &Settings, tree: &Tree, recovered: bool) {
    let mark = idle_mark(settings);
    if !idle(settings, tree, recovered) {
        if let Err(e) = std::fs::remove_file(&mark)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            log::warn!("{}: {e}", mark.display());
        }
        return;
    }
    let mut rec = Recorder::start(tree, settings, "postboot");
    rec.skip(
        "commands",
        "already run for this config (cleaned): no process started",
    );
    if let Err(e) = rec.finish(tree, settings, "postboot") {
        log::warn!("the status of postboot: {e:#}");
    }
    if let Err(e) =
        std::fs::create_dir_all(&settings.paths.run_dir).and_then(|()| std::fs::write(&mark, b""))
    {
        log::warn!("{}: {e}", mark.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::settings::RawConfig;
    use std::path::Path;

    #[test]
    fn postboot_is_idle_only_once_its_config_was_dealt_with() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let settings = |extra: &str| {
            Settings::from_raw(
                &RawConfig::parse(&format!(
                    "GANDI_DIR={}/gandi\nGANDI_RUN_DIR={}/run\nGANDI_STATE_DIR={}/state\n{extra}",
                    d.display(),
                    d.display(),
                    d.display()
                )),
                None,
            )
        };
        let s = settings("");
        let tree = Tree::open(Path::new("/")).unwrap();
        std::fs::create_dir_all(d.join("gandi")).unwrap();
        let mark = idle_mark(&s);
        // No config, or one not dealt with: postboot runs.
        plan(&s, &tree, false);
        assert!(!mark.exists());
        std::fs::write(d.join("gandi/config"), r#"{"vm_conf": {"run": "true"}}"#).unwrap();
        plan(&s, &tree, false);
        assert!(!mark.exists());
        std::fs::write(d.join("gandi/config"), "{not json").unwrap();
        plan(&s, &tree, false);
        assert!(!mark.exists());
        // Dealt with: idle, and its stage says so.
        std::fs::write(d.join("gandi/config"), format!(r#"{{"{CLEANED}": 1}}"#)).unwrap();
        plan(&s, &tree, false);
        assert!(mark.exists());
        let status = crate::base::status::read(&s);
        assert_eq!(
            status["postboot"].steps[0].result,
            crate::base::status::Outcome::Skipped
        );
        // A damaged ledger, or mounting turned off: work for postboot, and
        // the mark of an earlier bootstrap goes.
        plan(&s, &tree, true);
        assert!(!mark.exists());
        plan(&s, &tree, false);
        assert!(mark.exists());
        plan(&settings("CONFIG_ALLOW_MOUNT=0"), &tree, false);
        assert!(!mark.exists());
    }
}
