//! Admin commands that change the autofs setup: `mount-root PATH` moves
//! the automount root, `automount enable|disable` turns it on and off.
//! Both rewrite our master-map entry atomically, keep `/etc/default/gandi`
//! in step (only the line of the key changes, `setting`), reload autofs
//! (`reload`) and return what they changed; run twice, they change nothing.

use crate::automount::reload::reload_autofs;
use crate::automount::setting::set_setting;
use crate::base::settings::Settings;
use crate::base::tree;
use crate::base::tree::Change;
use crate::kernel::mounts::parse_mountinfo;
use anyhow::{Context, Result, bail};
use std::fs;
use std::path::{Component, Path, PathBuf};

/// Folders a data-disk root may not be in (or be).
const SYSTEM_DIRS: &[&str] = &[
    "/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/proc", "/root",
    "/run", "/sbin", "/sys", "/usr", "/var",
];

/// Our entry in the master map: its line, root, and whether it is
/// commented out (disabled).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub index: usize,
    pub root: PathBuf,
    pub disabled: bool,
}

/// Finds the line that hands a root to `auto.gandi`, commented or not.
pub fn find_entry(text: &str) -> Option<Entry> {
    text.lines().enumerate().find_map(|(index, line)| {
        let (disabled, body) = match line.trim_start().strip_prefix('#') {
            Some(rest) => (true, rest.trim_start()),
            None => (false, line.trim_start()),
        };
        let mut words = body.split_whitespace();
        let root = words.next()?;
        let map = words.next()?;
        (root.starts_with('/') && map.contains("auto.gandi")).then(|| Entry {
            index,
            root: PathBuf::from(root),
            disabled,
        })
    })
}

/// The line with its root replaced and its comment state set.
fn rewrite_line(line: &str, root: &Path, disabled: bool) -> String {
    let body = line.trim_start();
    let body = body.strip_prefix('#').map(str::trim_start).unwrap_or(body);
    let rest = body
        .split_once(char::is_whitespace)
        .map(|(_, r)| r)
        .unwrap_or("");
    let entry = format!("{} {}", root.display(), rest.trim_start());
    if disabled { format!("#{entry}") } else { entry }
}

/// The roots of the other autofs maps: the system master map (and the
/// folders it includes with `+dir:`), and the autofs mounts in place.
fn other_roots(settings: &Settings) -> Vec<PathBuf> {
    let mut roots = Vec::new();
    let mut files = vec![settings.paths.auto_master.clone()];
    if let Ok(text) = fs::read_to_string(&settings.paths.auto_master) {
        for line in text.lines() {
            if let Some(dir) = line.trim().strip_prefix("+dir:")
                && let Ok(rd) = fs::read_dir(dir.trim())
            {
                let mut more: Vec<PathBuf> = rd
                    .flatten()
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|e| e == "autofs"))
                    .collect();
                more.sort();
                files.extend(more);
            }
        }
    }
    for file in files {
        if file == settings.paths.master_map {
            continue;
        }
        let Ok(text) = fs::read_to_string(&file) else {
            continue;
        };
        for line in text.lines() {
            let line = line.trim();
            if line.starts_with('#') || line.starts_with('+') {
                continue;
            }
            if let Some(root) = line.split_whitespace().next()
                && root.starts_with('/')
                && root != "/-"
                && !line.contains("auto.gandi")
            {
                roots.push(PathBuf::from(root));
            }
        }
    }
    let mi = fs::read_to_string(settings.paths.proc_dir.join("self/mountinfo")).unwrap_or_default();
    for m in parse_mountinfo(&mi) {
        if m.fstype == "autofs" && !m.source.contains("auto.gandi") {
            roots.push(m.mount_point);
        }
    }
    roots
}

/// Checks a new mount root.
pub fn check_root(settings: &Settings, path: &Path) -> Result<PathBuf> {
    if !path.is_absolute() {
        bail!("{} is not an absolute path", path.display());
    }
    let mut clean = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::RootDir => {}
            Component::Normal(n) => {
                let s = n.to_string_lossy();
                if s.chars()
                    .any(|c| c.is_whitespace() || c.is_control() || "#$&\\\"'".contains(c))
                {
                    bail!(
                        "{} holds characters a master map cannot carry",
                        path.display()
                    );
                }
                clean.push(n);
            }
            _ => bail!("{} is not a plain path (no '.' or '..')", path.display()),
        }
    }
    if clean == Path::new("/") {
        bail!("/ cannot be the mount root");
    }
    for sys in SYSTEM_DIRS {
        if clean.starts_with(sys) {
            bail!("{} is in the system folder {sys}", clean.display());
        }
    }
    for other in other_roots(settings) {
        if clean.starts_with(&other) || other.starts_with(&clean) {
            bail!(
                "{} overlaps the root {} of another autofs map",
                clean.display(),
                other.display()
            );
        }
    }
    Ok(clean)
}

fn read_map(settings: &Settings) -> Result<(String, Entry)> {
    let text = fs::read_to_string(&settings.paths.master_map)
        .with_context(|| format!("reading {}", settings.paths.master_map.display()))?;
    let entry = find_entry(&text).with_context(|| {
        format!(
            "{} has no auto.gandi entry",
            settings.paths.master_map.display()
        )
    })?;
    Ok((text, entry))
}

fn write_map(
    settings: &Settings,
    text: &str,
    entry: &Entry,
    root: &Path,
    disabled: bool,
) -> Result<Change> {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let new = rewrite_line(&lines[entry.index], root, disabled);
    if lines[entry.index] == new {
        return Ok(Change::Unchanged);
    }
    lines[entry.index] = new;
    tree::write_atomic(
        &settings.paths.master_map,
        (lines.join("\n") + "\n").as_bytes(),
        0o644,
    )?;
    Ok(Change::Changed)
}

/// Carries `theirs` (the original's master map line: its root, and
/// whether it is commented out) into our entry, with `CONFIG_DISK_ROOT`.
/// Returns what changed.
pub fn carry_entry(settings: &Settings, theirs: &Entry) -> Result<Vec<String>> {
    let (text, entry) = read_map(settings)?;
    let mut changes = Vec::new();
    if write_map(settings, &text, &entry, &theirs.root, theirs.disabled)? == Change::Changed {
        changes.push(format!(
            "{}: the original's line carried (root {}{})",
            settings.paths.master_map.display(),
            theirs.root.display(),
            if theirs.disabled {
                ", commented out"
            } else {
                ""
            }
        ));
    }
    let (file, c) = set_setting(
        settings,
        "CONFIG_DISK_ROOT",
        &theirs.root.display().to_string(),
    )?;
    if c == Change::Changed {
        changes.push(format!(
            "{}: CONFIG_DISK_ROOT={}",
            file.display(),
            theirs.root.display()
        ));
    }
    Ok(changes)
}

/// What an edit of the automount setup did, for the verb to say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edit {
    /// What the admin should know first (another map owns the root, autofs
    /// missing).
    pub notes: Vec<String>,
    pub result: EditResult,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EditResult {
    /// Nothing to change: the setup already says so (why, in words).
    Unchanged(String),
    /// Each change made, and what the reload of autofs said.
    Changed {
        changes: Vec<String>,
        reload: String,
    },
}

impl Edit {
    fn of(changes: Vec<String>, unchanged: String, settings: &Settings) -> Result<Edit> {
        let result = if changes.is_empty() {
            EditResult::Unchanged(unchanged)
        } else {
            EditResult::Changed {
                changes,
                reload: reload_autofs(settings)?,
            }
        };
        Ok(Edit {
            notes: Vec::new(),
            result,
        })
    }
}

/// `gandi-vm mount-root PATH [--force]`: the master map's root moved, the
/// setting with it, the folder made.
pub fn mount_root(settings: &Settings, path: &Path, force: bool) -> Result<Edit> {
    let new_root = check_root(settings, path)?;
    let (text, entry) = read_map(settings)?;
    let old_root = entry.root.clone();
    if old_root != new_root {
        let mi =
            fs::read_to_string(settings.paths.proc_dir.join("self/mountinfo")).unwrap_or_default();
        let busy: Vec<String> = parse_mountinfo(&mi)
            .into_iter()
            .filter(|m| m.fstype != "autofs" && m.mount_point.starts_with(&old_root))
            .map(|m| format!("{} on {}", m.source, m.mount_point.display()))
            .collect();
        if !busy.is_empty() && !force {
            bail!(
                "disks are mounted under {}: {}; release them first \
                 (gandi-vm disk release KEY) or use --force (nothing was changed)",
                old_root.display(),
                busy.join(", ")
            );
        }
    }
    let mut changes = Vec::new();
    if write_map(settings, &text, &entry, &new_root, entry.disabled)? == Change::Changed {
        changes.push(format!(
            "{}: root {} -> {}",
            settings.paths.master_map.display(),
            old_root.display(),
            new_root.display()
        ));
    }
    let (file, c) = set_setting(
        settings,
        "CONFIG_DISK_ROOT",
        &new_root.display().to_string(),
    )?;
    if c == Change::Changed {
        changes.push(format!(
            "{}: CONFIG_DISK_ROOT={}",
            file.display(),
            new_root.display()
        ));
    }
    if !new_root.is_dir() {
        fs::create_dir_all(&new_root)
            .with_context(|| format!("creating {}", new_root.display()))?;
        changes.push(format!("created {}", new_root.display()));
    }
    let unchanged = format!(
        "nothing to change: the mount root is {}",
        new_root.display()
    );
    Edit::of(changes, unchanged, settings)
}

/// `gandi-vm automount enable|disable`: our master map entry and
/// `CONFIG_ALLOW_MOUNT` set together.
pub fn automount(settings: &Settings, enable: bool) -> Result<Edit> {
    let (text, entry) = read_map(settings)?;
    let mut changes = Vec::new();
    if write_map(settings, &text, &entry, &entry.root, !enable)? == Change::Changed {
        changes.push(format!(
            "{}: entry for {} {}",
            settings.paths.master_map.display(),
            entry.root.display(),
            if enable { "enabled" } else { "commented out" }
        ));
    }
    let (file, c) = set_setting(
        settings,
        "CONFIG_ALLOW_MOUNT",
        if enable { "1" } else { "0" },
    )?;
    if c == Change::Changed {
        changes.push(format!(
            "{}: CONFIG_ALLOW_MOUNT={}",
            file.display(),
            if enable { 1 } else { 0 }
        ));
    }
    let unchanged = format!(
        "nothing to change: automounting is {}",
        if enable { "on" } else { "off" }
    );
    Edit::of(changes, unchanged, settings)
}

/// `gandi-vm automount auto`: the original's install-time choice. When
/// another autofs map owns our root, ours is turned off (and the admin told
/// how to move it); otherwise it is turned on.
pub fn automount_auto(settings: &Settings) -> Result<Edit> {
    let (_, entry) = read_map(settings)?;
    let clash = other_roots(settings)
        .into_iter()
        .find(|o| entry.root.starts_with(o) || o.starts_with(&entry.root));
    if let Some(other) = clash {
        let mut edit = automount(settings, false)?;
        edit.notes.push(format!(
            "another autofs map owns {}: gandi-vm leaves it alone; move ours with \
             `gandi-vm mount-root PATH` and turn it on with `gandi-vm automount enable`",
            other.display()
        ));
        return Ok(edit);
    }
    let has_automount = ["/usr/sbin/automount", "/sbin/automount"]
        .iter()
        .any(|p| Path::new(p).exists());
    let mut edit = automount(settings, true)?;
    if !has_automount {
        edit.notes.push(format!(
            "autofs is not installed: data disks are recorded and grown, and served under {} \
             once autofs is installed",
            entry.root.display()
        ));
    }
    Ok(edit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries() {
        let text = "# comment\n/srv program:/etc/auto.gandi --timeout=5 -sync\n";
        let e = find_entry(text).unwrap();
        assert_eq!(
            e,
            Entry {
                index: 1,
                root: "/srv".into(),
                disabled: false
            }
        );
        let line = text.lines().nth(1).unwrap();
        assert_eq!(
            rewrite_line(line, Path::new("/data"), false),
            "/data program:/etc/auto.gandi --timeout=5 -sync"
        );
        let off = rewrite_line(line, Path::new("/srv"), true);
        assert_eq!(off, "#/srv program:/etc/auto.gandi --timeout=5 -sync");
        let e = find_entry(&off).unwrap();
        assert!(e.disabled);
        assert_eq!(rewrite_line(&off, Path::new("/srv"), false), line);
        assert!(find_entry("# /srv is where disks go\n").is_none());
    }
}
