//! The swap disk: found by label or partition name, its archive read at
//! 512 KiB, the swap area made (under a mark) and enabled.

use crate::archive::{self};
use crate::runner::Run;
use crate::settings::Settings;
use crate::status::Done;
use crate::tree::{Change, Tree, WriteOpts};
use anyhow::{Context, Result};
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The swap disk, in the original's order; `true` when it is the GPT
/// partition named `gandiswap` (always formatted).
pub fn find_swap_device(settings: &Settings) -> Option<(PathBuf, bool)> {
    let dev = &settings.dev_dir;
    let xen = settings.proc_dir.join("xen").exists();
    let mut candidates = vec![
        ("disk/by-partlabel/gandiswap", true),
        ("disk/by-label/swap", false),
        ("xvdz1", false),
        ("xvdz", false),
        ("da1", false),
    ];
    candidates.push(if xen {
        ("xvda2", false)
    } else {
        ("sdb", false)
    });
    candidates
        .iter()
        .map(|(p, named)| (dev.join(p), *named))
        .find(|(p, _)| p.exists())
        .map(|(p, named)| (fs::canonicalize(&p).unwrap_or(p), named))
}

/// Where the archive may be: when the swap is a partition, the whole disk
/// first (the platform writes at 512 KiB of the disk), then the partition.
pub fn archive_places(settings: &Settings, device: &Path) -> Vec<PathBuf> {
    let Some(name) = device.file_name().and_then(|n| n.to_str()) else {
        return vec![device.to_path_buf()];
    };
    let class = settings.sys_dir.join("class/block").join(name);
    if !class.join("partition").exists() {
        return vec![device.to_path_buf()];
    }
    let disk = fs::read_link(&class)
        .ok()
        .and_then(|l| l.parent()?.file_name().map(|n| n.to_os_string()));
    match disk {
        Some(d) => vec![settings.dev_dir.join(d), device.to_path_buf()],
        None => vec![device.to_path_buf()],
    }
}

/// The first of `places` with an archive at 512 KiB, opened there.
pub fn find_archive(places: &[PathBuf]) -> Result<Option<(PathBuf, fs::File)>> {
    for place in places {
        if let Some(file) = archive::open_at_offset(place)? {
            return Ok(Some((place.clone(), file)));
        }
    }
    Ok(None)
}

/// The label of a swap area: after the 1024 boot bytes, `version`,
/// `last_page`, `nr_badpages` (3 x 4 bytes) and the 16-byte UUID come 16
/// bytes of volume name.
pub(super) fn swap_label(head: &[u8]) -> Option<String> {
    let raw = head.get(1052..1068)?;
    let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    std::str::from_utf8(&raw[..end]).ok().map(str::to_string)
}

/// Whether the first page carries a swap signature.
pub(super) fn swap_signature(head: &[u8]) -> bool {
    head.len() >= 4096 && (&head[4086..4096] == b"SWAPSPACE2" || &head[4086..4096] == b"SWAP-SPACE")
}

/// (Re)creates the swap area with label `swap` and enables it, keeping the
/// original's safety rule: a device that is not swap already is formatted
/// only when its first 512 KiB are zero, or when it is the GPT partition
/// named `gandiswap`.
pub(super) fn swap(
    settings: &Settings,
    tree: &Tree,
    device: &Path,
    named: bool,
    live: bool,
) -> Result<Done> {
    if live {
        let active = fs::read_to_string(settings.proc_dir.join("swaps"))
            .unwrap_or_default()
            .lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().next())
            .any(|p| fs::canonicalize(p).ok().as_deref() == Some(device));
        if active {
            return Ok(Done::unchanged(format!(
                "{} is in use as swap",
                device.display()
            )));
        }
    }
    let mut head = vec![0u8; archive::CONFIG_OFFSET as usize];
    let mut file =
        fs::File::open(device).with_context(|| format!("opening {}", device.display()))?;
    let mut read = 0;
    while read < head.len() {
        let n = file.read(&mut head[read..])?;
        if n == 0 {
            break;
        }
        read += n;
    }
    head.truncate(read);
    let is_swap = swap_signature(&head);
    let labelled = is_swap && swap_label(&head).as_deref() == Some("swap");
    // A format of ours cut short leaves a head that is neither zero nor
    // swap: the mark, written before mkswap, says it is ours to finish.
    let mark = settings.state_dir.join("mkswap-started");
    let ours = tree
        .read_string(&mark)
        .is_ok_and(|d| d.trim() == device.display().to_string());
    let mut change = Change::Unchanged;
    if labelled {
        // Already what we want: formatting again would only change its UUID.
        if ours {
            tree.remove_file(&mark)?;
        }
    } else if is_swap || named || ours || head.iter().all(|&b| b == 0) {
        tree.create_dirs(&settings.state_dir, 0o700)?;
        tree.write_atomic(
            &mark,
            format!("{}\n", device.display()).as_bytes(),
            WriteOpts::mode(0o600),
        )?;
        Run::new("mkswap")
            .args(["-L", "swap"])
            .arg(device)
            .limit(Duration::from_secs(120))
            .output()?;
        tree.remove_file(&mark)?;
        change = Change::Changed;
    } else {
        return Ok(Done::skipped(format!(
            "{} does not seem empty: left untouched",
            device.display()
        )));
    }
    if live {
        swapon(device)?;
        change = Change::Changed;
    }
    Ok(Done::of(change, device.display().to_string()))
}

pub(super) fn swapon(device: &Path) -> Result<()> {
    let c = std::ffi::CString::new(device.as_os_str().as_encoded_bytes())
        .context("a device path with a NUL byte")?;
    // SAFETY: swapon(2) has no wrapper in nix or std; `c` is a valid
    // NUL-terminated path that outlives the call, and no flags are passed.
    if unsafe { libc::swapon(c.as_ptr(), 0) } != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("swapon {}", device.display()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swap_labels() {
        let mut head = vec![0u8; 4096];
        head[1052..1056].copy_from_slice(b"swap");
        assert_eq!(swap_label(&head).as_deref(), Some("swap"));
        assert_eq!(swap_label(&head[..100]), None);
    }
}
