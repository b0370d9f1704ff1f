//! `gandi-vm migrate-original`: run by the packages once gandi-vm is
//! installed over the original suite (`gandi-hosting-vm2`/`-vm3`), whose
//! configuration files share our paths (`/etc/default/gandi` or
//! `/etc/sysconfig/gandi`, the master map entry, `/etc/gandi/sysctl.conf`).
//!
//! The admin's versions are found wherever installing left them: copies the
//! Debian pre-install script made (it then puts ours in place byte for
//! byte, so that dpkg installs ours without a question), `.dpkg-old` or
//! `.rpmsave` copies, or the file left in place (the admin kept it at
//! dpkg's question; RPM keeps a modified file and installs ours as
//! `.rpmnew`). Then:
//!
//! - the admin's settings file is put back over ours (kept as they left it);
//! - the admin's sysctl file is kept when they edited the original's;
//! - the admin's choice in the master map line (a moved root, a line
//!   commented out, as the original's README told them to do) is carried
//!   into our entry, and `CONFIG_DISK_ROOT` with it;
//! - what would mask or duplicate ours and must never run is moved aside
//!   under names that say why: `/etc/udev/rules.d/86-gandi.rules` (it would
//!   mask our rules of the same name) and the original's plugins.
//!
//! Run again, it does nothing.

use crate::automount::master;
use crate::base::settings::Settings;
use anyhow::{Context, Result};
use std::fs;
use std::path::{Path, PathBuf};

/// The original's sysctl file as it shipped it.
/// The original suite's own plugins: done natively by `config` and
/// `bootstrap`, never run (and moved aside here).
pub const ORIGINAL: &[&str] = &[
    "01-config_console",
    "02-config_system_file",
    "03-vm-fix-cron",
    "07-config_timezone",
    "11-config_ssh",
    "13-config_motd",
    "16-vm-fix-ext3",
    "01-config_swap",
    "02-config_sysctl",
    "03-resize_main_disk",
];

const ORIGINAL_SYSCTL: &str = "# Kernel sysctl configuration file\n\n# Controls IP packet forwarding\nnet.ipv4.ip_forward = 0\n\n# Do not accept source routing\nnet.ipv4.conf.default.accept_source_route = 0\n\n# Ignore ICMP broadcast\nnet.ipv4.icmp_echo_ignore_broadcasts=1\n\n# Controls the use of TCP syncookies\nnet.ipv4.tcp_syncookies = 1\n\n# Controls whether core dumps will append the PID to the core filename.\n# Useful for debugging multi-threaded applications.\nkernel.core_uses_pid = 1\n\n# In case of multiple IPs, arp announce\nnet.ipv4.conf.all.arp_announce = 2\nnet.ipv4.conf.all.rp_filter = 2 # Required with systemd\nnet.ipv4.conf.all.arp_filter = 0\nnet.ipv4.conf.default.arp_announce = 2\nnet.ipv4.conf.default.rp_filter = 0\nnet.ipv4.conf.default.arp_filter = 0\n\n# kernel behavior with memory\nvm.swappiness=10\n";

/// Our master map entry as shipped.
const OUR_MASTER_MAP: &str = include_str!("../../auto.master.d/gandi.autofs");

/// The suffix of what is moved aside.
const ASIDE: &str = ".replaced-by-gandi-vm";

/// Where the pre-install script copied a file of the original: the flat
/// name of its path (`etc_default_gandi`).
pub fn saved(settings: &Settings, path: &Path) -> PathBuf {
    let flat = path
        .to_string_lossy()
        .trim_start_matches('/')
        .replace('/', "_");
    settings.paths.state_dir.join("replaced").join(flat)
}

/// The marker that tells the package's scripts a master map choice was
/// carried (so the first-install choice is not made again).
pub fn carried_marker(settings: &Settings) -> PathBuf {
    settings.paths.state_dir.join("replaced/master-map-carried")
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    PathBuf::from(format!("{}{suffix}", path.display()))
}

/// The admin's version of `path` left by the install, if any, and where it
/// was (to be set aside once applied).
fn admins_copy(settings: &Settings, path: &Path) -> Option<(String, PathBuf)> {
    [
        saved(settings, path),
        with_suffix(path, ".dpkg-old"),
        with_suffix(path, ".rpmsave"),
    ]
    .into_iter()
    .find_map(|p| Some((fs::read_to_string(&p).ok()?, p)))
}

/// Marks a copy as applied, so that a second run does nothing.
fn applied(copy: &Path) -> Result<()> {
    fs::rename(copy, with_suffix(copy, ".applied"))
        .with_context(|| format!("setting {} aside", copy.display()))
}

/// Whether a master map text is ours (a `program:` entry).
fn ours_format(text: &str) -> bool {
    master::find_entry(text).is_some_and(|_| {
        text.lines()
            .any(|l| l.contains("program:") && l.contains("auto.gandi"))
    })
}

/// `gandi-vm migrate-original`. Returns what it did, one line per change
/// (none: nothing of the original was there).
pub fn run(settings: &Settings) -> Result<Vec<String>> {
    let mut done = Vec::new();

    // The admin's settings file, as they left it.
    for path in ["/etc/default/gandi", "/etc/sysconfig/gandi"].map(Path::new) {
        if let Some((theirs, copy)) = admins_copy(settings, path) {
            if path.parent().is_some_and(Path::exists) {
                crate::base::tree::write_atomic(path, theirs.as_bytes(), 0o644)?;
                done.push(format!("{}: the admin's settings kept", path.display()));
            }
            applied(&copy)?;
        }
    }
    // The admin's sysctl file, when they edited the original's.
    let sysctl = Path::new("/etc/gandi/sysctl.conf");
    if let Some((theirs, copy)) = admins_copy(settings, sysctl) {
        if theirs != ORIGINAL_SYSCTL {
            crate::base::tree::write_atomic(sysctl, theirs.as_bytes(), 0o644)?;
            done.push(format!(
                "{}: the admin's edited file kept",
                sysctl.display()
            ));
        }
        applied(&copy)?;
    }
    done.extend(master_map(settings)?);
    // What would mask or duplicate ours.
    let rules = Path::new("/etc/udev/rules.d/86-gandi.rules");
    if let Ok(text) = fs::read_to_string(rules)
        && !text.contains("gandi-vm disk-event")
    {
        let aside = with_suffix(rules, ASIDE);
        fs::rename(rules, &aside)?;
        done.push(format!(
            "{} moved to {} (it masked our rules of the same name)",
            rules.display(),
            aside.display()
        ));
    }
    for name in ORIGINAL {
        let p = settings.paths.plugin_dir.join(name);
        if fs::symlink_metadata(&p).is_ok() {
            let aside_dir = settings.paths.state_dir.join("replaced/plugins.d");
            fs::create_dir_all(&aside_dir)?;
            fs::rename(&p, aside_dir.join(name))?;
            done.push(format!(
                "{} moved to {} (gandi-vm does its work natively)",
                p.display(),
                aside_dir.display()
            ));
        }
    }
    Ok(done)
}

/// Carries the admin's master map line into ours.
fn master_map(settings: &Settings) -> Result<Vec<String>> {
    let path = settings.paths.master_map.as_path();
    let current = fs::read_to_string(path).unwrap_or_default();
    let (theirs, copy) = match admins_copy(settings, path) {
        Some((t, c)) => (t, Some(c)),
        // Kept in place (the admin's answer at dpkg's question, or RPM).
        None if !current.is_empty() && !ours_format(&current) => (current.clone(), None),
        None => return Ok(Vec::new()),
    };
    let mut done = Vec::new();
    if !ours_format(&current) {
        let new = [".dpkg-new", ".rpmnew"]
            .iter()
            .map(|s| with_suffix(path, s))
            .find_map(|p| fs::read_to_string(p).ok())
            .unwrap_or_else(|| OUR_MASTER_MAP.to_string());
        crate::base::tree::write_atomic(path, new.as_bytes(), 0o644)?;
    }
    match master::find_entry(&theirs) {
        Some(entry) => {
            done.extend(
                master::carry_entry(settings, &entry)
                    .context("carrying the master map line of the original")?,
            );
            let marker = carried_marker(settings);
            if let Some(dir) = marker.parent() {
                fs::create_dir_all(dir)?;
            }
            fs::write(&marker, format!("{}\n", entry.root.display()))?;
        }
        None => done.push(format!(
            "the original's master map had no auto.gandi line: ours is used ({})",
            path.display()
        )),
    }
    if let Some(c) = copy {
        applied(&c)?;
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_formats() {
        let s = Settings::default();
        assert_eq!(
            saved(&s, Path::new("/etc/auto.master.d/gandi.autofs")),
            PathBuf::from("/var/lib/gandi/replaced/etc_auto.master.d_gandi.autofs")
        );
        assert!(ours_format(OUR_MASTER_MAP));
        assert!(!ours_format(
            "/srv /etc/auto.gandi --timeout=2592000,sync,nodev,nosuid,noatime\n"
        ));
        assert!(!ours_format("#/srv\t/etc/auto.gandi --timeout=2592000\n"));
        let e = master::find_entry("#/srv\t/etc/auto.gandi --timeout=2592000\n").unwrap();
        assert!(e.disabled);
    }
}
