//! Per-device records under `GANDI_RUN_DIR/disks/`, written by the attach
//! helper, and release marks under `GANDI_RUN_DIR/released/`.
//!
//! Readers never lock: records are replaced atomically (rename), so a reader
//! sees a whole old record or a whole new one. A record is only trusted when
//! it still describes the device: same device number, size and (when the
//! kernel has one) attach sequence number.

use crate::kernel::device::{DevNum, Device, FsInfo};

use crate::base::read;
use crate::base::settings::Settings;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fs;
use std::path::PathBuf;

/// Where a device stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RecordState {
    /// Recorded by udev; its growth handed to the grower.
    Pending,
    Ready,
    /// Its filesystem is being grown (by `grower`).
    Growing,
    GrowFailed,
    /// Partitioned: its partitions are the candidates.
    NotGrown,
    Excluded,
    /// A check found errors it could not repair.
    Damaged,
}

impl RecordState {
    pub fn as_str(self) -> &'static str {
        match self {
            RecordState::Pending => "pending",
            RecordState::Ready => "ready",
            RecordState::Growing => "growing",
            RecordState::GrowFailed => "grow-failed",
            RecordState::NotGrown => "not-grown",
            RecordState::Excluded => "excluded",
            RecordState::Damaged => "damaged",
        }
    }

    pub fn parse(s: &str) -> Option<RecordState> {
        [
            RecordState::Pending,
            RecordState::Ready,
            RecordState::Growing,
            RecordState::GrowFailed,
            RecordState::NotGrown,
            RecordState::Excluded,
            RecordState::Damaged,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
    }
}

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
    pub state: RecordState,
    /// The process growing it, while `Growing`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grower: Option<u32>,
    /// The process watching that grower (`disk-grow NAME`), which starts
    /// the work again when a signal kills it: while it lives the growth is
    /// not abandoned, even between two growers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watcher: Option<u32>,
    /// Why the device was left as it is, when it was.
    #[serde(default)]
    pub note: Option<String>,
    #[serde(default)]
    pub last_grow: Option<Grow>,
    /// The attach `post-disk-attach` ran for ([`attach_key`]): once per
    /// attach, whatever events follow (the change udev sends after a
    /// growth).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub announced: Option<String>,
    /// How many times its growth was started again after its grower was
    /// killed (bounded; back to 0 once it is grown).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub resumes: u32,
    /// Seconds since the epoch.
    pub updated: u64,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Whether `state` with these processes says a grower works on the disk
/// now: `Growing` by a process that lives (or by none named, as records
/// of older versions have it).
pub fn growing_by(state: RecordState, grower: Option<u32>, watcher: Option<u32>) -> bool {
    state == RecordState::Growing
        && (grower.is_none() && watcher.is_none()
            || grower.is_some_and(crate::base::process::alive_ours)
            || watcher.is_some_and(crate::base::process::alive_ours))
}

/// Whether `state` with these processes says the growth is not done while
/// no process of ours works on it (its grower and watcher were killed):
/// `Growing` by processes that are gone, or `Pending` with neither a
/// watcher nor a grower alive.
pub fn growth_left_by(state: RecordState, grower: Option<u32>, watcher: Option<u32>) -> bool {
    match state {
        RecordState::Growing => !growing_by(state, grower, watcher),
        RecordState::Pending => {
            !watcher.is_some_and(crate::base::process::alive_ours)
                && !grower.is_some_and(crate::base::process::alive_ours)
        }
        _ => false,
    }
}

impl Record {
    /// A grower works on the disk now (see [`Record::growth_left`]).
    pub fn growing(&self) -> bool {
        growing_by(self.state, self.grower, self.watcher)
    }

    /// The growth is not done and no process of ours works on it: the next
    /// lookup or event starts it again.
    pub fn growth_left(&self) -> bool {
        growth_left_by(self.state, self.grower, self.watcher)
    }

    /// The state as it stands: `growing` only while its grower lives.
    pub fn state_now(&self) -> RecordState {
        if self.state == RecordState::Growing && !self.growing() {
            RecordState::Pending
        } else {
            self.state
        }
    }
}

/// What tells one attach of a disk from another: its device number,
/// attach sequence number (when the kernel has one) and filesystem UUID.
pub fn attach_key(record: &Record) -> String {
    format!(
        "{} {} {}",
        record.devnum,
        record
            .diskseq
            .map_or_else(|| "-".to_string(), |s| s.to_string()),
        record.fs.uuid.as_deref().unwrap_or("-")
    )
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
    settings.paths.run_dir.join("disks")
}

pub fn released_dir(settings: &Settings) -> PathBuf {
    settings.paths.run_dir.join("released")
}

/// Reads the record of `name`, if any (not checked against the device).
/// A record that cannot be read is no record: nothing is trusted that was
/// torn or damaged.
pub fn read(settings: &Settings, name: &str) -> Option<Record> {
    read_checked(settings, name).ok().flatten()
}

/// Reads the record of `name`: `Ok(None)` when there is none, `Err` with
/// the reason when there is one that cannot be used (empty, truncated,
/// garbage, another format).
pub fn read_checked(settings: &Settings, name: &str) -> Result<Option<Record>, String> {
    let path = disks_dir(settings).join(format!("{name}.json"));
    let text = match read::read_state(&path, 1 << 20) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    serde_json::from_slice(&text)
        .map(Some)
        .map_err(|e| format!("{}: not a record ({e})", path.display()))
}

/// Reads the record of `name` as a writer does: one that cannot be used is
/// reported and treated as missing (the writer then replaces it).
pub fn read_or_report(settings: &Settings, name: &str) -> Option<Record> {
    read_checked(settings, name).unwrap_or_else(|why| {
        log::warn!("{name}: ignoring its record: {why}; it is written anew");
        None
    })
}

/// Where the record of `name` is.
pub fn path(settings: &Settings, name: &str) -> PathBuf {
    disks_dir(settings).join(format!("{name}.json"))
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
        let seq = read::read_state(&e.path(), 64)
            .ok()
            .and_then(|s| String::from_utf8(s).ok()?.trim().parse().ok());
        Some((name, seq))
    })
    .collect()
}
