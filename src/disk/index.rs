//! The records index (`GANDI_RUN_DIR/disks.index`): one line per record, in
//! a format that names its version, read by every lookup in one file instead
//! of one record per disk; rebuilt from the records whenever one changes.

use crate::base::read;
use crate::base::settings::Settings;
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
