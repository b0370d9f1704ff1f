//! Per-device records under `GANDI_RUN_DIR/disks/`, written by the attach
//! helper, and release marks under `GANDI_RUN_DIR/released/`.
//!
//! Readers never lock: records are replaced atomically (rename), so a reader
//! sees a whole old record or a whole new one. A record is only trusted when
//! it still describes the device: same device number, size and (when the
//! kernel has one) attach sequence number.

use crate::disks::{DevNum, Device, FsInfo};

use crate::settings::Settings;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fs;
use std::path::PathBuf;

/// What the attach helper knows of one device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub name: String,
    pub devnum: String,
    pub diskseq: Option<u64>,
    /// Size in bytes when recorded.
    pub size: u64,
    #[serde(flatten)]
    pub fs: FsInfo,
    pub partitioned: bool,
    /// `ready`, `growing`, `grow-failed`, `not-grown` ...
    pub state: String,
    /// Why the device was left as it is, when it was.
    #[serde(default)]
    pub note: Option<String>,
    #[serde(default)]
    pub last_grow: Option<Grow>,
    /// Seconds since the epoch.
    pub updated: u64,
}

/// One growth of a filesystem.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Grow {
    pub before: u64,
    pub after: u64,
    pub time: u64,
    pub tool: String,
}

pub fn disks_dir(settings: &Settings) -> PathBuf {
    settings.run_dir.join("disks")
}

pub fn released_dir(settings: &Settings) -> PathBuf {
    settings.run_dir.join("released")
}

/// Reads the record of `name`, if any (not checked against the device).
pub fn read(settings: &Settings, name: &str) -> Option<Record> {
    let path = disks_dir(settings).join(format!("{name}.json"));
    let text = fs::read(path).ok()?;
    serde_json::from_slice(&text).ok()
}

/// The names that have a record (one directory listing).
pub fn recorded_names(settings: &Settings) -> std::collections::HashSet<String> {
    fs::read_dir(disks_dir(settings))
        .map(|rd| {
            rd.filter_map(|e| {
                let name = e.ok()?.file_name().into_string().ok()?;
                name.strip_suffix(".json").map(str::to_string)
            })
            .collect()
        })
        .unwrap_or_default()
}

/// Whether `record` still describes `dev`.
pub fn matches(record: &Record, dev: &Device) -> bool {
    record.name == dev.name
        && DevNum::parse(&record.devnum) == Some(dev.devnum)
        && record.size == dev.size
        && (dev.diskseq.is_none() || record.diskseq == dev.diskseq)
}

/// The record of `dev`, when one exists and is current.
pub fn lookup(settings: &Settings, dev: &Device) -> Option<Record> {
    read(settings, &dev.name).filter(|r| matches(r, dev))
}

/// Released devices: name to the attach sequence number they were released
/// at (`None` when the kernel has none).
pub fn released(settings: &Settings) -> HashMap<String, Option<u64>> {
    let Ok(rd) = fs::read_dir(released_dir(settings)) else {
        return HashMap::new();
    };
    rd.filter_map(|e| {
        let e = e.ok()?;
        let name = e.file_name().into_string().ok()?;
        let seq = fs::read_to_string(e.path())
            .ok()
            .and_then(|s| s.trim().parse().ok());
        Some((name, seq))
    })
    .collect()
}

/// The folder of the per-key links the map answers with.
pub fn keys_dir(settings: &Settings) -> PathBuf {
    settings.run_dir.join("keys")
}

/// The link for `key`: its name is the key in hex, so any key (blanks,
/// UTF-8) makes a path autofs can carry.
pub fn key_link(settings: &Settings, key: &str) -> PathBuf {
    let hex: String = key.bytes().map(|b| format!("{b:02x}")).collect();
    keys_dir(settings).join(hex)
}

/// Points the link of `key` at `device` (atomically: a new link renamed
/// over the old one). No disk I/O: /run is a tmpfs.
pub fn set_key_link(
    settings: &Settings,
    key: &str,
    device: &std::path::Path,
) -> std::io::Result<PathBuf> {
    let link = key_link(settings, key);
    if fs::read_link(&link).ok().as_deref() == Some(device) {
        return Ok(link);
    }
    fs::create_dir_all(keys_dir(settings))?;
    let tmp = link.with_extension(format!("new{}", std::process::id()));
    let _ = fs::remove_file(&tmp);
    std::os::unix::fs::symlink(device, &tmp)?;
    fs::rename(&tmp, &link)?;
    Ok(link)
}

/// Removes every key link that points at `device`: autofs may have kept
/// the map's answer for those keys, and a mount through a missing link
/// fails. Returns the links removed (see [`restore_key_links`]).
pub fn drop_key_links(settings: &Settings, device: &std::path::Path) -> Vec<PathBuf> {
    let Ok(rd) = fs::read_dir(keys_dir(settings)) else {
        return Vec::new();
    };
    rd.flatten()
        .filter(|e| fs::read_link(e.path()).ok().as_deref() == Some(device))
        .filter(|e| fs::remove_file(e.path()).is_ok())
        .map(|e| e.path())
        .collect()
}

/// Puts back links removed by [`drop_key_links`].
pub fn restore_key_links(links: &[PathBuf], device: &std::path::Path) {
    for link in links {
        let _ = std::os::unix::fs::symlink(device, link);
    }
}
