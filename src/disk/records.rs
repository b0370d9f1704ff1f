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
use crate::base::tree;
use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
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
fn growing_by(state: RecordState, grower: Option<u32>, watcher: Option<u32>) -> bool {
    state == RecordState::Growing
        && (grower.is_none() && watcher.is_none()
            || grower.is_some_and(crate::base::process::alive_ours)
            || watcher.is_some_and(crate::base::process::alive_ours))
}

/// Whether `state` with these processes says the growth is not done while
/// no process of ours works on it (its grower and watcher were killed):
/// `Growing` by processes that are gone, or `Pending` with neither a
/// watcher nor a grower alive.
fn growth_left_by(state: RecordState, grower: Option<u32>, watcher: Option<u32>) -> bool {
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
    settings.run_dir.join("disks")
}

pub fn released_dir(settings: &Settings) -> PathBuf {
    settings.run_dir.join("released")
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

/// Writes `record` atomically, then the index.
pub fn write(settings: &Settings, record: &Record) -> anyhow::Result<()> {
    let dir = disks_dir(settings);
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut json = serde_json::to_vec_pretty(record)?;
    json.push(b'\n');
    tree::write_atomic(&path(settings, &record.name), &json, 0o644)?;
    write_index(settings)
}

/// Forgets a device: its record, its release mark and the key links that
/// point at it.
pub fn forget(settings: &Settings, name: &str) -> anyhow::Result<()> {
    drop_key_links(settings, &settings.dev_dir.join(name.replace('!', "/")));
    let record = path(settings, name);
    let mut removed_record = false;
    for path in [&record, &released_dir(settings).join(name)] {
        match fs::remove_file(path) {
            Ok(()) => {
                log::info!("{name}: removed {}", path.display());
                removed_record |= path == &record;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("removing {}", path.display())),
        }
    }
    if removed_record {
        write_index(settings)?;
    }
    Ok(())
}

/// The index's first line: names the format and its columns.
const INDEX_HEADER: &str = "# gandi-vm disk index 3: name devnum size diskseq state grower \
                            watcher fstype usage label uuid part_name part_table";

/// What the index keeps of a record: what a lookup matches on, what tells
/// whether the record still describes the device, and what `describe`
/// needs. Fields borrow from the index's text unless they had to be
/// unescaped, so a lookup over many disks allocates little.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry<'a> {
    pub name: Cow<'a, str>,
    pub devnum: Cow<'a, str>,
    pub size: u64,
    pub diskseq: Option<u64>,
    pub state: RecordState,
    pub grower: Option<u32>,
    pub watcher: Option<u32>,
    pub fstype: Option<Cow<'a, str>>,
    pub usage: Option<Cow<'a, str>>,
    pub label: Option<Cow<'a, str>>,
    pub uuid: Option<Cow<'a, str>>,
    pub part_name: Option<Cow<'a, str>>,
    pub part_table: Option<Cow<'a, str>>,
}

/// One index field: `-` when absent; tab, newline, backslash, control
/// characters and a lone `-` written as `\xNN`.
fn index_field(value: Option<&str>) -> String {
    match value {
        None | Some("") => "-".to_string(),
        Some("-") => "\\x2d".to_string(),
        Some(v) => {
            let mut out = String::with_capacity(v.len());
            for c in v.chars() {
                if c == '\\' || c.is_control() {
                    for b in c.to_string().bytes() {
                        out.push_str(&format!("\\x{b:02x}"));
                    }
                } else {
                    out.push(c);
                }
            }
            out
        }
    }
}

/// Reads one index field back (see [`index_field`]).
fn parse_field(raw: &str) -> Option<Cow<'_, str>> {
    if raw == "-" {
        return None;
    }
    if !raw.as_bytes().contains(&b'\\') {
        return Some(Cow::Borrowed(raw));
    }
    Some(Cow::Owned(crate::kernel::views::unescape_hex(raw)))
}

impl IndexEntry<'_> {
    fn from_record(r: &Record) -> String {
        let num = |n: Option<u64>| n.map_or_else(|| "-".to_string(), |n| n.to_string());
        [
            index_field(Some(&r.name)),
            index_field(Some(&r.devnum)),
            r.size.to_string(),
            num(r.diskseq),
            r.state.as_str().to_string(),
            num(r.grower.map(u64::from)),
            num(r.watcher.map(u64::from)),
            index_field(r.fs.fstype.as_deref()),
            index_field(r.fs.usage.as_deref()),
            index_field(r.fs.label.as_deref()),
            index_field(r.fs.uuid.as_deref()),
            index_field(r.fs.part_name.as_deref()),
            index_field(r.fs.part_table.as_deref()),
        ]
        .join("\t")
    }

    /// One line of the index; `None` when malformed.
    pub fn parse(line: &str) -> Option<IndexEntry<'_>> {
        let mut f = line.split('\t');
        let mut next = || f.next();
        let entry = IndexEntry {
            name: parse_field(next()?)?,
            devnum: parse_field(next()?)?,
            size: next()?.parse().ok()?,
            diskseq: match next()? {
                "-" => None,
                n => Some(n.parse().ok()?),
            },
            state: RecordState::parse(next()?)?,
            grower: match next()? {
                "-" => None,
                n => Some(n.parse().ok()?),
            },
            watcher: match next()? {
                "-" => None,
                n => Some(n.parse().ok()?),
            },
            fstype: parse_field(next()?),
            usage: parse_field(next()?),
            label: parse_field(next()?),
            uuid: parse_field(next()?),
            part_name: parse_field(next()?),
            part_table: parse_field(next()?),
        };
        next().is_none().then_some(entry)
    }

    /// The filesystem metadata, owned.
    pub fn fs(&self) -> FsInfo {
        let own = |v: &Option<Cow<str>>| v.as_deref().map(str::to_string);
        FsInfo {
            fstype: own(&self.fstype),
            usage: own(&self.usage),
            label: own(&self.label),
            uuid: own(&self.uuid),
            part_name: own(&self.part_name),
            part_table: own(&self.part_table),
        }
    }

    /// What `describe` needs of the entry, owned.
    pub fn fs_and_check(&self) -> Indexed {
        Indexed {
            devnum: DevNum::parse(&self.devnum),
            size: self.size,
            diskseq: self.diskseq,
            growing: growing_by(self.state, self.grower, self.watcher),
            growth_left: growth_left_by(self.state, self.grower, self.watcher),
            fs: self.fs(),
        }
    }
}

/// An index entry kept for one device: its metadata, and what tells whether
/// it still describes the device.
#[derive(Debug, Clone)]
pub struct Indexed {
    pub devnum: Option<DevNum>,
    pub size: u64,
    pub diskseq: Option<u64>,
    /// Being grown by a process that still runs.
    pub growing: bool,
    /// Its growth is not done and no process of ours works on it.
    pub growth_left: bool,
    pub fs: FsInfo,
}

impl Indexed {
    /// Whether it still describes `dev` (as [`matches`] for records).
    pub fn describes(&self, dev: &Device) -> bool {
        self.devnum == Some(dev.devnum)
            && self.size == dev.size
            && (dev.diskseq.is_none() || self.diskseq == dev.diskseq)
    }
}

/// The index of all records: one file, rewritten after every change of a
/// record, so that a lookup reads one file and not one per device. A text
/// file with one line per device and tab-separated columns (see
/// `INDEX_HEADER`), parsed without allocating.
pub fn index_path(settings: &Settings) -> PathBuf {
    settings.run_dir.join("disks.index")
}

/// Rewrites the index from the records as they are now. Each writer calls
/// it after its own change, under a lock, so the last one to finish leaves
/// every change in the index.
pub fn write_index(settings: &Settings) -> anyhow::Result<()> {
    let _lock =
        crate::base::lock::FileLock::take(&settings.run_dir.join("locks/index.lock"), true)?;
    let mut all: Vec<Record> = recorded_names(settings)
        .iter()
        .filter_map(|name| match read_checked(settings, name) {
            Ok(record) => record,
            Err(why) => {
                log::warn!("{name}: left out of the index: {why}");
                None
            }
        })
        .collect();
    all.sort_by(|a, b| crate::kernel::device::kernel_order(&a.name, &b.name));
    let mut text = String::from(INDEX_HEADER);
    text.push('\n');
    for r in &all {
        text.push_str(&IndexEntry::from_record(r));
        text.push('\n');
    }
    crate::base::tree::write_atomic(&index_path(settings), text.as_bytes(), 0o644)
}

/// The index's text; `None` when there is no index (nothing was recorded
/// yet).
pub fn read_index(settings: &Settings) -> Option<String> {
    read::read_small(&index_path(settings))
}

/// The lines of an index's text by device name, unparsed: a lookup parses
/// only the lines of its candidates, one at a time ([`IndexEntry::parse`]).
/// `None` when it is not an index of this format. A last line without its
/// newline was cut short and is left out.
pub fn index_lines(text: &str) -> Option<std::collections::HashMap<&str, &str>> {
    let whole = match text.rfind('\n') {
        Some(end) => &text[..=end],
        None => return None,
    };
    let mut lines = whole.lines();
    if lines.next()? != INDEX_HEADER {
        return None;
    }
    Some(
        lines
            .filter_map(|line| Some((line.split_once('\t')?.0, line)))
            .collect(),
    )
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

/// The folder of the per-key links the map answers with.
pub fn keys_dir(settings: &Settings) -> PathBuf {
    settings.run_dir.join("keys")
}

/// The link for `key`: its name is the key in hex, so any key (blanks,
/// UTF-8) makes a path autofs can carry; a key over 100 bytes (whose hex
/// would pass the 255 bytes a name may hold) is named by its SHA-256.
pub fn key_link(settings: &Settings, key: &str) -> PathBuf {
    let hex = |bytes: &[u8]| -> String { bytes.iter().map(|b| format!("{b:02x}")).collect() };
    let name = if key.len() <= 100 {
        hex(key.as_bytes())
    } else {
        use sha2::Digest;
        format!("sha256-{}", hex(&sha2::Sha256::digest(key.as_bytes())))
    };
    keys_dir(settings).join(name)
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

#[cfg(test)]
mod tests;
