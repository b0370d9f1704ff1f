//! Our sysctl settings: linked into `/etc/sysctl.d` and loaded, unless
//! `CONFIG_SYSCTL=0`.

use crate::base::settings::Settings;
use crate::base::status::Done;
use crate::base::tree::Tree;
use anyhow::Result;
use std::fs;
use std::path::{Path, PathBuf};

/// The original's sysctl settings, shipped outside the folders
/// systemd-sysctl reads (a config file of ours, which the admin may edit);
/// `CONFIG_SYSCTL=1` links it into `/etc/sysctl.d`, where it is
/// loaded at every boot in order with the admin's files (a later file of
/// theirs wins). When the link is new, the settings are loaded at once.
pub const SYSCTL_FILE: &str = "/etc/gandi/sysctl.conf";
pub const SYSCTL_LINK: &str = "/etc/sysctl.d/60-gandi.conf";

pub(super) fn sysctl(settings: &Settings, tree: &Tree, live: bool) -> Result<Done> {
    let linked = tree.read_link(SYSCTL_LINK).ok();
    let ours = linked.as_deref() == Some(Path::new(SYSCTL_FILE));
    if !settings.sysctl {
        if ours {
            tree.remove_file(SYSCTL_LINK)?;
            return Ok(Done::changed(format!(
                "CONFIG_SYSCTL=0: {SYSCTL_LINK} removed (its values stay until the next boot)"
            )));
        }
        return Ok(Done::skipped("CONFIG_SYSCTL=0"));
    }
    if !tree.exists(SYSCTL_FILE) {
        return Ok(Done::skipped(format!("{SYSCTL_FILE} is missing")));
    }
    if ours {
        return Ok(Done::unchanged(format!(
            "{SYSCTL_LINK} loaded by systemd-sysctl at boot"
        )));
    }
    if tree.lstat(SYSCTL_LINK).is_ok() {
        return Ok(Done::skipped(format!(
            "{SYSCTL_LINK} is the admin's: left as it is"
        )));
    }
    tree.set_link(SYSCTL_LINK, Path::new(SYSCTL_FILE))?;
    if !live {
        return Ok(Done::changed(format!(
            "{SYSCTL_LINK} linked (loaded at boot)"
        )));
    }
    // Loaded now with every file in order, so the admin's later files win.
    let n = load_sysctl_files(settings)?;
    Ok(Done::changed(format!(
        "{SYSCTL_LINK} linked; {n} settings loaded"
    )))
}

/// Loads the sysctl files as systemd-sysctl orders them (by name across
/// its folders, /etc first for a name given twice), writing each value
/// under `/proc/sys`.
pub(super) fn load_sysctl_files(settings: &Settings) -> Result<usize> {
    let dirs = [
        "/etc/sysctl.d",
        "/run/sysctl.d",
        "/usr/local/lib/sysctl.d",
        "/usr/lib/sysctl.d",
        "/lib/sysctl.d",
    ];
    let mut files: std::collections::BTreeMap<String, PathBuf> = Default::default();
    for d in dirs {
        for e in fs::read_dir(d).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.ends_with(".conf") {
                files.entry(name).or_insert(e.path());
            }
        }
    }
    let mut n = 0;
    for path in files.values() {
        let text = fs::read_to_string(path).unwrap_or_default();
        n += load_sysctl(&settings.paths.proc_dir.join("sys"), &text);
    }
    if let Ok(text) = fs::read_to_string("/etc/sysctl.conf") {
        n += load_sysctl(&settings.paths.proc_dir.join("sys"), &text);
    }
    Ok(n)
}

/// Writes the `key = value` lines of a sysctl file under `proc_sys`
/// (`/proc/sys`), as `sysctl -p -e` does: a key missing on this kernel, or
/// a line that cannot be read, is logged and passed over.
pub fn load_sysctl(proc_sys: &Path, text: &str) -> usize {
    let mut n = 0;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            log::warn!("sysctl: not a setting: {line:?}");
            continue;
        };
        // A comment after the value (the original's file has one).
        let value = value
            .find(" #")
            .or_else(|| value.find("\t#"))
            .map_or(value, |i| &value[..i]);
        let key = key.trim().trim_start_matches('-');
        if key.is_empty() || key.split(['.', '/']).any(|p| p.is_empty() || p == "..") {
            log::warn!("sysctl: not a key: {key:?}");
            continue;
        }
        if key.contains('*') {
            continue; // globs are systemd-sysctl's
        }
        let path = proc_sys.join(key.replace('.', "/"));
        match fs::write(&path, value.trim()) {
            Ok(()) => n += 1,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                log::debug!("sysctl {key}: not on this kernel")
            }
            Err(e) => log::warn!("sysctl {key}: {e}"),
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysctl_lines_go_to_proc_sys() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("vm")).unwrap();
        fs::create_dir_all(dir.path().join("net/ipv4/conf/all")).unwrap();
        fs::write(dir.path().join("vm/swappiness"), "60").unwrap();
        fs::write(dir.path().join("net/ipv4/conf/all/rp_filter"), "1").unwrap();
        let text = "# comment\nvm.swappiness = 10\nnet.ipv4.conf.all.rp_filter=2\nno.such.key = 1\ngarbage\nvm...x = 1\n";
        assert_eq!(load_sysctl(dir.path(), text), 2);
        assert_eq!(
            fs::read_to_string(dir.path().join("vm/swappiness")).unwrap(),
            "10"
        );
        assert_eq!(
            fs::read_to_string(dir.path().join("net/ipv4/conf/all/rp_filter")).unwrap(),
            "2"
        );
        // The shipped file parses: every line is a setting.
        let shipped = include_str!("../../../etc/gandi/sysctl.conf");
        let settings = shipped
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
            .count();
        assert!(settings >= 12, "{settings}");
        assert!(
            shipped
                .lines()
                .all(|l| l.trim().is_empty() || l.starts_with('#') || l.contains(" = "))
        );
    }
}
