//! The records index (`GANDI_RUN_DIR/disks.index`): one line per record, in
//! a format that names its version, read by every lookup in one file instead
//! of one record per disk; rebuilt from the records whenever one changes.

use crate::base::read;
use crate::base::settings::Settings;
use crate::disk::keylinks::key_file_name;
use crate::disk::records::{
    Record, RecordState, growing_by, growth_left_by, read_checked, recorded_names,
};
use crate::kernel::device::{DevNum, Device, FsInfo};
use std::borrow::Cow;
use std::path::PathBuf;

/// The index's first line: names the format and its columns.
pub(crate) const INDEX_HEADER: &str = "# gandi-vm disk index 3: name devnum size diskseq state grower \
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
    Some(Cow::Owned(crate::kernel::escape::unescape_hex(raw)))
}

impl IndexEntry<'_> {
    pub(crate) fn from_record(r: &Record) -> String {
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
    settings.paths.run_dir.join("disks.index")
}

/// Rewrites the index from the records as they are now. Each writer calls
/// it after its own change, under a lock, so the last one to finish leaves
/// every change in the index.
pub fn write_index(settings: &Settings) -> anyhow::Result<()> {
    let _lock =
        crate::base::lock::FileLock::take(&settings.paths.run_dir.join("locks/index.lock"), true)?;
    let mut left_out = false;
    let mut all: Vec<Record> = recorded_names(settings)
        .iter()
        .filter_map(|name| match read_checked(settings, name) {
            Ok(record) => record,
            Err(why) => {
                log::warn!("{name}: left out of the index: {why}");
                left_out = true;
                None
            }
        })
        .collect();
    all.sort_by(|a, b| crate::kernel::device::kernel_order(&a.name, &b.name));
    let mut text = String::from(INDEX_HEADER);
    text.push('\n');
    let lines: Vec<String> = all.iter().map(IndexEntry::from_record).collect();
    for line in &lines {
        text.push_str(line);
        text.push('\n');
    }
    // The index by key goes first: a writer killed between the two leaves
    // no index by key (lookups read the whole index) rather than one of
    // the records before.
    if let Err(e) = std::fs::remove_file(keys_index_path(settings))
        && e.kind() != std::io::ErrorKind::NotFound
    {
        log::warn!("{}: {e}", keys_index_path(settings).display());
    }
    crate::base::tree::write_atomic(&index_path(settings), text.as_bytes(), 0o644)?;
    // The same lines by key, for a lookup that reads only its own; none
    // while a record is left out: its disk, seen by the scan of every
    // device, may answer to a key before the ones recorded.
    if left_out {
        log::warn!("no index by key while a record is left out (lookups read the whole index)");
        return Ok(());
    }
    if let Err(e) = write_key_files(settings, &all, &lines) {
        log::warn!("the index by key was not written (lookups read the whole index): {e:#}");
        let _ = std::fs::remove_file(keys_index_path(settings));
    }
    Ok(())
}

/// The index by key (`GANDI_RUN_DIR/disks.keys`, a link to the folder of
/// the last generation): one file per key a record answers to (its kernel
/// name, label and UUID, in lower case, named as [`key_file_name`]), holding
/// the index's header and the lines of the records that answer to it.
/// A lookup reads its key's file only, however many disks there are.
pub fn keys_index_path(settings: &Settings) -> PathBuf {
    settings.paths.run_dir.join("disks.keys")
}

/// The file of the index by key for `key`.
pub fn key_index_file(settings: &Settings, key: &str) -> PathBuf {
    keys_index_path(settings).join(key_file_name(&key.to_ascii_lowercase()))
}

/// Writes a new generation of the index by key and points the link at it
/// (a rename: a reader sees the old generation or the new one, whole), then
/// removes the other generations (an earlier one, or one a killed writer
/// left half-written: never pointed at). Called under the index's lock.
fn write_key_files(settings: &Settings, all: &[Record], lines: &[String]) -> anyhow::Result<()> {
    use anyhow::Context;
    use std::collections::BTreeMap;
    let mut by_key: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for (r, line) in all.iter().zip(lines) {
        let mut keys: Vec<String> = [
            Some(r.name.as_str()),
            r.fs.label.as_deref(),
            r.fs.uuid.as_deref(),
        ]
        .into_iter()
        .flatten()
        .filter(|k| !k.is_empty())
        .map(str::to_ascii_lowercase)
        .collect();
        keys.sort();
        keys.dedup();
        for k in keys {
            by_key.entry(k).or_default().push(line);
        }
    }
    let run = &settings.paths.run_dir;
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let generation = format!("disks.keys.{}-{stamp}", std::process::id());
    let dir = run.join(&generation);
    std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
    for (key, entries) in &by_key {
        let mut text = String::from(INDEX_HEADER);
        text.push('\n');
        for line in entries {
            text.push_str(line);
            text.push('\n');
        }
        let path = dir.join(key_file_name(key));
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    let link = keys_index_path(settings);
    let tmp = run.join(format!("disks.keys.link-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(&generation, &tmp)
        .with_context(|| format!("linking {}", tmp.display()))?;
    std::fs::rename(&tmp, &link).with_context(|| format!("renaming to {}", link.display()))?;
    // The generations no link points at.
    if let Ok(rd) = std::fs::read_dir(run) {
        for e in rd.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            if name.starts_with("disks.keys.") && name != generation {
                let path = e.path();
                let gone = if name.starts_with("disks.keys.link-") {
                    std::fs::remove_file(&path)
                } else {
                    std::fs::remove_dir_all(&path)
                };
                if let Err(e) = gone {
                    log::debug!("{}: {e}", path.display());
                }
            }
        }
    }
    Ok(())
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
