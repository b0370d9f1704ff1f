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
