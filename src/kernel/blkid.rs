//! The last-resort probe: `blkid -p` in a child process, bounded in time
//! and killed at its limit, so that a dead disk never holds a lookup.

use crate::kernel::device::FsInfo;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Duration;

/// Probes devices with `blkid -p` in one child process, for at most
/// `limit`. `None` when the probe failed or timed out.
pub fn probe(paths: &[PathBuf], limit: Duration) -> Option<HashMap<PathBuf, FsInfo>> {
    let outcome = match crate::base::runner::Run::new("blkid")
        .args(["-p", "-o", "export"])
        .args(paths)
        .limit(limit)
        .outcome()
    {
        Ok(o) => o,
        Err(e) => {
            log::warn!("{e:#}");
            return None;
        }
    };
    match outcome.code() {
        // 2: nothing found on some device; 8: ambivalent result.
        Some(0 | 2 | 8) => Some(parse_blkid_export(&outcome.stdout_text())),
        _ => {
            log::warn!(
                "{} did not answer ({}): {}",
                outcome.command,
                outcome.ended(),
                outcome.stderr_text()
            );
            None
        }
    }
}

/// Parses `blkid -o export` output for several devices.
pub fn parse_blkid_export(text: &str) -> HashMap<PathBuf, FsInfo> {
    let mut found = HashMap::new();
    for block in text.split("\n\n") {
        let mut props: BTreeMap<&str, String> = BTreeMap::new();
        for line in block.lines() {
            if let Some((k, v)) = line.split_once('=') {
                props.insert(k, unescape_backslash(v));
            }
        }
        let Some(dev) = props.get("DEVNAME") else {
            continue;
        };
        let get = |k: &str| props.get(k).filter(|v| !v.is_empty()).cloned();
        found.insert(
            PathBuf::from(dev),
            FsInfo {
                fstype: get("TYPE"),
                usage: get("USAGE"),
                label: get("LABEL"),
                uuid: get("UUID"),
                part_name: get("PART_ENTRY_NAME"),
                part_table: get("PTTYPE"),
            },
        );
    }
    found
}

fn unescape_backslash(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn blkid_export_parsing() {
        let text = "DEVNAME=/dev/loop0\nLABEL=my\\ disk\nUUID=abc\nTYPE=ext4\nUSAGE=filesystem\n\n\
                    DEVNAME=/dev/loop1\nPTTYPE=gpt\n";
        let found = parse_blkid_export(text);
        let a = &found[Path::new("/dev/loop0")];
        assert_eq!(a.label.as_deref(), Some("my disk"));
        assert_eq!(a.fstype.as_deref(), Some("ext4"));
        let b = &found[Path::new("/dev/loop1")];
        assert_eq!(b.part_table.as_deref(), Some("gpt"));
        assert_eq!(b.fstype, None);
    }
}
