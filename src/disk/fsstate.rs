//! What must be known of a data disk's filesystem across a reboot (under
//! `GANDI_STATE_DIR`, not the run dir, which is a tmpfs), keyed by the
//! filesystem's UUID:
//!
//! - `resizing/UUID`: an offline resize started and has not ended. A resize
//!   cut short (killed, power lost) can leave the filesystem inconsistent;
//!   the next growth of that filesystem first repairs it (`e2fsck -fy`, as
//!   e2fsprogs advises, then the resize again).
//! - `damaged/UUID`: the last check found errors that were not repaired.
//!
//! The map refuses a filesystem with either mark, with the reason, until a
//! check passes (`gandi-vm disk check KEY`).

use crate::base::settings::Settings;
use anyhow::{Context, Result};
use std::fs;
use std::io::Write;
use std::path::PathBuf;

fn key(uuid: Option<&str>, name: &str) -> String {
    match uuid.filter(|u| !u.is_empty()) {
        Some(u) => u
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect(),
        None => format!("dev-{name}"),
    }
}

fn path(settings: &Settings, kind: &str, uuid: Option<&str>, name: &str) -> PathBuf {
    settings.paths.state_dir.join(kind).join(key(uuid, name))
}

/// Writes a mark and syncs it and its folder: it must survive a power cut.
fn write(path: &PathBuf, text: &str) -> Result<()> {
    let dir = path.parent().context("a mark has a folder")?;
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = path.with_extension("new");
    let mut f = fs::File::create(&tmp).with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    fs::rename(&tmp, path)?;
    fs::File::open(dir)?.sync_all()?;
    Ok(())
}

fn remove(path: &PathBuf) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => {
            if let Some(dir) = path.parent() {
                fs::File::open(dir)?.sync_all()?;
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing {}", path.display())),
    }
}

/// The marks of one filesystem.
pub struct Marks<'a> {
    settings: &'a Settings,
    uuid: Option<String>,
    name: String,
}

impl<'a> Marks<'a> {
    pub fn new(settings: &'a Settings, uuid: Option<&str>, name: &str) -> Marks<'a> {
        Marks {
            settings,
            uuid: uuid.map(str::to_string),
            name: name.to_string(),
        }
    }

    fn path(&self, kind: &str) -> PathBuf {
        path(self.settings, kind, self.uuid.as_deref(), &self.name)
    }

    /// The UUID of the filesystem these marks are of, when known.
    pub fn uuid(&self) -> Option<&str> {
        self.uuid.as_deref()
    }

    /// Records that an offline resize of the filesystem starts (synced
    /// before the resize does).
    pub fn start_resize(&self, detail: &str) -> Result<()> {
        write(&self.path("resizing"), &format!("{detail}\n"))
    }

    pub fn end_resize(&self) -> Result<()> {
        remove(&self.path("resizing"))
    }

    /// What a mark says, when it is there.
    fn read(&self, mark: &str) -> Option<String> {
        fs::read_to_string(self.path(mark))
            .ok()
            .map(|s| s.trim().to_string())
    }

    /// What the interrupted resize was, when one was.
    pub fn interrupted(&self) -> Option<String> {
        self.read("resizing")
    }

    pub fn set_damaged(&self, why: &str) -> Result<()> {
        write(&self.path("damaged"), &format!("{why}\n"))
    }

    pub fn clear_damaged(&self) -> Result<()> {
        remove(&self.path("damaged"))
    }

    /// Why the filesystem is damaged, when its last check said so.
    pub fn damaged(&self) -> Option<String> {
        self.read("damaged")
    }

    /// Why the filesystem must not be served, if it must not: damaged, or
    /// an offline resize cut short and not repaired yet.
    pub fn refusal(&self) -> Option<String> {
        if let Some(why) = self.damaged() {
            return Some(format!("damaged: {why}; `gandi-vm disk check` repairs it"));
        }
        self.interrupted().map(|what| {
            format!("an offline resize was cut short ({what}); its next growth repairs it")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_survive_and_refuse() {
        let dir = tempfile::tempdir().unwrap();
        let s = Settings::default().with_paths(|p| {
            p.state_dir = dir.path().to_path_buf();
        });
        let m = Marks::new(&s, Some("0b9c-AB/../x"), "vdb");
        assert!(m.refusal().is_none());
        m.start_resize("64 MiB to 1 GiB").unwrap();
        assert!(m.refusal().unwrap().contains("cut short"));
        m.end_resize().unwrap();
        m.set_damaged("e2fsck left errors").unwrap();
        assert!(m.refusal().unwrap().contains("damaged"));
        m.clear_damaged().unwrap();
        assert!(m.refusal().is_none());
        // The UUID cannot lead out of its folder.
        assert!(dir.path().join("damaged").exists());
        assert_eq!(
            fs::read_dir(dir.path().join("resizing")).unwrap().count(),
            0
        );
        let other = Marks::new(&s, None, "vdc");
        other.set_damaged("x").unwrap();
        assert!(dir.path().join("damaged/dev-vdc").exists());
    }
}
