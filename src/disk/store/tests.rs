use crate::disk::index::*;
use crate::disk::records::*;
use crate::kernel::device::FsInfo;

fn record(name: &str, label: Option<&str>) -> Record {
    Record {
        name: name.into(),
        devnum: "252:16".into(),
        diskseq: Some(7),
        size: 1 << 30,
        fs: FsInfo {
            fstype: Some("ext4".into()),
            usage: Some("filesystem".into()),
            label: label.map(str::to_string),
            uuid: Some("0b9c-AB".into()),
            part_name: None,
            part_table: None,
        },
        partitioned: false,
        state: RecordState::Ready,
        grower: None,
        watcher: None,
        note: None,
        last_grow: None,
        announced: None,
        resumes: 0,
        updated: 1,
    }
}

/// Every entry of an index's text, as a lookup parses them.
fn parse_index(text: &str) -> Option<Vec<IndexEntry<'_>>> {
    let lines = index_lines(text)?;
    let mut entries: Vec<IndexEntry> = lines
        .values()
        .filter_map(|l| IndexEntry::parse(l))
        .collect();
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    Some(entries)
}

#[test]
fn index_lines_round_trip_odd_labels() {
    for label in [
        Some("data"),
        Some("with space"),
        Some("tab\there"),
        Some("new\nline"),
        Some("back\\slash"),
        Some("\\x41 not an escape"),
        Some("-"),
        Some("données"),
        None,
    ] {
        let r = record("cciss!c0d0", label);
        let text = format!("{INDEX_HEADER}\n{}\n", IndexEntry::from_record(&r));
        let entries = parse_index(&text).unwrap();
        assert_eq!(entries.len(), 1, "{label:?}");
        let e = &entries[0];
        assert_eq!(e.name, "cciss!c0d0");
        assert_eq!(e.fs(), r.fs, "{label:?}");
        assert_eq!(
            (e.devnum.as_ref(), e.size, e.diskseq, e.state),
            ("252:16", 1 << 30, Some(7), RecordState::Ready)
        );
    }
}

#[test]
fn index_of_another_format_or_with_bad_lines() {
    let line = IndexEntry::from_record(&record("vdb", Some("x")));
    assert!(parse_index(&format!("[{{\"name\":\"vdb\"}}]\n{line}\n")).is_none());
    assert!(parse_index("").is_none());
    let extra = IndexEntry::from_record(&record("vde", Some("y")));
    let text = format!("{INDEX_HEADER}\nvdc\t1:2\tnot-a-size\n{line}\n\n{extra}\textra\n");
    let entries = parse_index(&text).unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].label.as_deref(), Some("x"));
}

#[test]
fn a_cut_index_yields_only_whole_entries() {
    let a = IndexEntry::from_record(&record("vdb", Some("data")));
    let b = IndexEntry::from_record(&record("vdc", Some("gpt")));
    let text = format!("{INDEX_HEADER}\n{a}\n{b}\n");
    // Cut inside the last field: the shortened value is never read.
    let cut = &text[..text.len() - 2];
    let entries = parse_index(cut).unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].name, "vdb");
    // Cut inside the header: not an index.
    assert!(parse_index(&INDEX_HEADER[..10]).is_none());
}

proptest::proptest! {
    #![proptest_config(crate::testing::proptest_config(256))]

    /// Any prefix of an index, or an index with any byte changed,
    /// gives entries that are each one of the written ones, whole.
    #[test]
    fn prefixes_and_flips_never_give_an_altered_entry(
        labels in proptest::collection::vec(proptest::option::of(r"[ -~\t\n\\é]{0,12}"), 1..6),
        cut in 0usize..2000,
        flip in 0usize..2000,
        byte in 0u8..128,
    ) {
        let records: Vec<Record> = labels
            .iter()
            .enumerate()
            .map(|(i, l)| record(&format!("vd{i}"), l.as_deref()))
            .collect();
        let mut text = format!("{INDEX_HEADER}\n");
        for r in &records {
            text.push_str(&IndexEntry::from_record(r));
            text.push('\n');
        }
        // (An empty label is written as none.)
        let whole: Vec<FsInfo> = parse_index(&text)
            .unwrap_or_default()
            .iter()
            .map(IndexEntry::fs)
            .collect();
        proptest::prop_assert_eq!(whole.len(), records.len());
        let mut cut_at = cut.min(text.len());
        while !text.is_char_boundary(cut_at) {
            cut_at -= 1;
        }
        if let Some(entries) = parse_index(&text[..cut_at]) {
            for e in entries {
                proptest::prop_assert!(whole.contains(&e.fs()), "{:?}", e);
            }
        }
        // One byte changed: an entry may change only where that byte
        // sits (the index is ours, written whole; this checks that the
        // parser never panics nor reads past a line).
        let mut bytes = text.clone().into_bytes();
        let at = flip % bytes.len();
        bytes[at] = byte;
        if let Ok(changed) = String::from_utf8(bytes) {
            let _ = parse_index(&changed);
        }
    }
}

/// A PID no process has: above the kernel's largest.
const DEAD: u32 = 1 << 30;

#[test]
fn growing_only_while_its_grower_or_watcher_lives() {
    let me = std::process::id();
    let mut r = record("vdb", None);
    r.state = RecordState::Growing;
    // Named by an older version without any process: taken at its word.
    assert!(r.growing() && !r.growth_left());
    r.grower = Some(DEAD);
    assert!(!r.growing() && r.growth_left());
    assert_eq!(r.state_now(), RecordState::Pending);
    // Its worker was killed, its watcher lives: not abandoned.
    r.watcher = Some(me);
    assert!(r.growing() && !r.growth_left());
    assert_eq!(r.state_now(), RecordState::Growing);
    r.grower = Some(me);
    r.watcher = Some(DEAD);
    assert!(r.growing());
    // Pending: left undone unless a watcher lives.
    r.state = RecordState::Pending;
    r.grower = None;
    assert!(r.growth_left());
    r.watcher = Some(me);
    assert!(!r.growth_left());
    r.state = RecordState::Ready;
    r.watcher = None;
    assert!(!r.growth_left() && !r.growing());
}

#[test]
fn the_index_keeps_grower_and_watcher() {
    let mut r = record("vdb", Some("data"));
    r.state = RecordState::Growing;
    r.grower = Some(DEAD);
    r.watcher = Some(std::process::id());
    let text = format!("{INDEX_HEADER}\n{}\n", IndexEntry::from_record(&r));
    let entries = parse_index(&text).unwrap();
    assert_eq!(
        (entries[0].grower, entries[0].watcher),
        (Some(DEAD), Some(std::process::id()))
    );
    let indexed = entries[0].fs_and_check();
    assert!(indexed.growing && !indexed.growth_left);
    // An index of the last version (no watcher column) is not read.
    let old = text.replace("index 3", "index 2");
    assert!(parse_index(&old).is_none());
}
