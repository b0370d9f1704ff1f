//! The swap area of the platform's disk (see `disk` for which disk that
//! is): its archive read at 512 KiB, the swap area made (under a mark),
//! the archive's pages kept out of the kernel's use, enabled.
//!
//! The archive sits at 512 KiB of the disk, inside the swap area when the
//! swap is the whole disk: a page the kernel swapped out there could be
//! read as an archive at the next boot, and any local user who can cause
//! swapping could write it. So the swap header lists the archive's pages
//! (and those after it that fit) as bad pages, which the kernel never
//! writes, and once read the archive's first block is zeroed: any archive
//! found there later was written by the platform since this boot.

use crate::base::runner::Run;
use crate::base::settings::Settings;
use crate::base::status::Done;
use crate::base::tree::{Change, Tree, WriteOpts};
use crate::platform::archive::{self};
use anyhow::{Context, Result};
use std::fs;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where the archive may be: when the swap is a partition, the whole disk
/// first (the platform writes at 512 KiB of the disk), then the partition.
pub fn archive_places(settings: &Settings, device: &Path) -> Vec<PathBuf> {
    let Some(name) = device.file_name().and_then(|n| n.to_str()) else {
        return vec![device.to_path_buf()];
    };
    let class = settings.paths.sys_dir.join("class/block").join(name);
    if !class.join("partition").exists() {
        return vec![device.to_path_buf()];
    }
    let disk = fs::read_link(&class)
        .ok()
        .and_then(|l| l.parent()?.file_name().map(|n| n.to_os_string()));
    match disk {
        Some(d) => vec![settings.paths.dev_dir.join(d), device.to_path_buf()],
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
    let page = page_size();
    head.len() >= page
        && (&head[page - 10..page] == b"SWAPSPACE2" || &head[page - 10..page] == b"SWAP-SPACE")
}

/// The system's page size, the unit of the swap header.
fn page_size() -> usize {
    nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .and_then(|n| usize::try_from(n).ok())
        .filter(|n| n.is_power_of_two() && *n >= 4096)
        .unwrap_or(4096)
}

/// The first `len` bytes of `device` (fewer when it is smaller); the open
/// never waits.
pub(super) fn read_head(device: &Path, len: usize) -> std::io::Result<Vec<u8>> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(device)?;
    let mut head = Vec::with_capacity(len);
    file.take(len as u64).read_to_end(&mut head)?;
    Ok(head)
}

/// Where the bad-page list of a swap header starts (after the boot
/// bytes, version, last page, count, UUID, label and padding).
const BADPAGES_AT: usize = 1024 + 3 * 4 + 16 + 16 + 117 * 4;

/// The bad pages a header of `page` bytes can list (637 with 4 KiB).
fn max_badpages(page: usize) -> usize {
    (page - 10 - BADPAGES_AT) / 4
}

/// The header `head` (its first page) with the pages from `first` on (as
/// many as fit, up to its last page) listed as bad: the kernel never
/// writes them. Everything else of the header stays. `None` when it
/// already lists exactly those, or is no header we know.
fn protected_header(head: &[u8], first: u32) -> Option<Vec<u8>> {
    let page = page_size();
    if !swap_signature(head) || first == 0 {
        return None;
    }
    let word = |at: usize| u32::from_ne_bytes([head[at], head[at + 1], head[at + 2], head[at + 3]]);
    let (version, last_page) = (word(1024), word(1028));
    if version != 1 || first > last_page {
        return None;
    }
    let count = (max_badpages(page) as u32).min(last_page - first + 1);
    let wanted: Vec<u32> = (first..first + count).collect();
    let now = word(1032) as usize;
    let listed: Vec<u32> = (0..now.min(max_badpages(page)))
        .map(|i| word(BADPAGES_AT + 4 * i))
        .collect();
    if listed == wanted {
        return None;
    }
    let mut out = head[..page].to_vec();
    out[1032..1036].copy_from_slice(&count.to_ne_bytes());
    for (i, p) in wanted.iter().enumerate() {
        out[BADPAGES_AT + 4 * i..BADPAGES_AT + 4 * i + 4].copy_from_slice(&p.to_ne_bytes());
    }
    Some(out)
}

/// Whether the header `head` lists the pages from `first` on as bad (as
/// many as fit): the kernel that read it never writes them.
fn pages_kept_from_use(head: &[u8], first: u32) -> bool {
    swap_signature(head) && protected_header(head, first).is_none() && {
        let word =
            |at: usize| u32::from_ne_bytes([head[at], head[at + 1], head[at + 2], head[at + 3]]);
        word(1032) > 0 && word(BADPAGES_AT) == first
    }
}

/// The page of the swap device `device` where the archive starts, when it
/// lies inside it: the archive is at 512 KiB of `place` (the device
/// itself, or its whole disk, from which the partition's start is taken).
fn archive_page(settings: &Settings, device: &Path, place: &Path) -> Option<u32> {
    let page = page_size() as u64;
    let start = if place == device {
        0
    } else {
        let name = device.file_name()?.to_str()?;
        let sectors = crate::kernel::views::read_u64(
            &settings
                .paths
                .sys_dir
                .join("class/block")
                .join(name)
                .join("start"),
        )?;
        sectors * 512
    };
    let at = archive::CONFIG_OFFSET.checked_sub(start)?;
    u32::try_from(at / page).ok().filter(|p| *p > 0)
}

/// Lists the archive's pages as bad in the swap header of `device` (see
/// [`protected_header`]); whether it wrote.
fn protect(device: &Path, first: u32) -> Result<bool> {
    let head = read_head(device, page_size())
        .with_context(|| format!("reading the swap header of {}", device.display()))?;
    let Some(new) = protected_header(&head, first) else {
        return Ok(false);
    };
    let file = fs::OpenOptions::new()
        .write(true)
        .open(device)
        .with_context(|| format!("opening {}", device.display()))?;
    file.write_all_at(&new, 0)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing the swap header of {}", device.display()))?;
    Ok(true)
}

/// Zeroes the archive's first block at 512 KiB of `place` and syncs it:
/// an archive found there later was written since.
pub fn consume_archive(place: &Path) -> Result<()> {
    let file = fs::OpenOptions::new()
        .write(true)
        .open(place)
        .with_context(|| format!("opening {}", place.display()))?;
    file.write_all_at(&[0u8; 512], archive::CONFIG_OFFSET)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("clearing the archive of {}", place.display()))
}

/// Whether `device` holds something `mkswap` must not erase: a
/// filesystem, RAID or LVM signature (`blkid -p`, bounded), or content it
/// cannot name for sure.
fn foreign_signature(device: &Path) -> Option<String> {
    let out = match Run::new("blkid")
        .args(["-p", "-o", "export"])
        .arg(device)
        .limit(Duration::from_secs(10))
        .outcome()
    {
        Ok(o) => o,
        Err(e) => return Some(format!("{e:#}")),
    };
    match out.code() {
        Some(2) => None,
        Some(0) => crate::kernel::blkid::parse_blkid_export(&out.stdout_text())
            .into_values()
            .next()
            .and_then(|fs| fs.fstype)
            .filter(|t| t != "swap")
            .map(|t| format!("it holds {t}")),
        Some(8) => Some("it holds more than one signature".into()),
        _ => Some(out.summary("failed", &out.stderr_text())),
    }
}

/// What the swap step works on.
pub(super) struct SwapTarget<'a> {
    pub device: &'a Path,
    /// A partition of the platform's disk (the whole disk's 512 KiB rule
    /// does not apply; a signature still does).
    pub partition: bool,
    /// Where an archive was read this boot (cleared before `swapon`).
    pub archive: Option<&'a Path>,
}

/// (Re)creates the swap area with label `swap`, keeps the archive's pages
/// out of the kernel's use, clears the archive read, and enables it.
/// A device that is not swap already is formatted only when it holds no
/// other signature, and, for a whole disk, when its first 512 KiB are
/// zero (the original's rule).
pub(super) fn swap(
    settings: &Settings,
    tree: &Tree,
    target: &SwapTarget,
    live: bool,
) -> Result<Done> {
    let device = target.device;
    if live {
        let active = fs::read_to_string(settings.paths.proc_dir.join("swaps"))
            .unwrap_or_default()
            .lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().next())
            .any(|p| fs::canonicalize(p).ok().as_deref() == Some(device));
        if active {
            return already_active(settings, tree, target);
        }
    }
    let head = read_head(device, archive::CONFIG_OFFSET as usize)
        .with_context(|| format!("reading {}", device.display()))?;
    let is_swap = swap_signature(&head);
    let labelled = is_swap && swap_label(&head).as_deref() == Some("swap");
    // A format of ours cut short leaves a head that is neither zero nor
    // swap: the mark, written before mkswap, says it is ours to finish.
    let mark = settings.paths.state_dir.join("mkswap-started");
    let ours = tree
        .read_string(&mark)
        .is_ok_and(|d| d.trim() == device.display().to_string());
    let mut change = Change::Unchanged;
    let mut notes = vec![device.display().to_string()];
    if labelled {
        // Already what we want: formatting again would only change its UUID.
        if ours {
            tree.remove_file(&mark)?;
        }
    } else if !is_swap && let Some(why) = foreign_signature(device) {
        return Ok(Done::skipped(format!(
            "{} is not formatted: {why}",
            device.display()
        )));
    } else if is_swap || ours || target.partition || head.iter().all(|&b| b == 0) {
        tree.create_dirs(&settings.paths.state_dir, 0o700)?;
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
    let place = target.archive.unwrap_or(device);
    if let Some(first) = archive_page(settings, device, place)
        && protect(device, first)?
    {
        change = Change::Changed;
        notes.push(format!(
            "pages {first} and after kept from use (the archive's)"
        ));
    }
    if live {
        if let Some(place) = target.archive {
            // What the archive gave is on disk before the archive goes.
            tree.subtree(&settings.paths.gandi_dir)
                .and_then(|g| g.syncfs())
                .or_else(|_| tree.syncfs())?;
            consume_archive(place)?;
            notes.push(format!("archive cleared on {}", place.display()));
        }
        swapon(device)?;
        change = Change::Changed;
    }
    Ok(Done::of(change, notes.join("; ")))
}

/// The swap area was enabled before bootstrap (a swap line of `/etc/fstab`
/// racing it): nothing is formatted; the header gets the archive's pages
/// for the next boot; the archive is cleared only when the kernel, which
/// read the header at its `swapon`, already keeps its pages from use (else
/// it may hold swapped data now).
fn already_active(settings: &Settings, tree: &Tree, target: &SwapTarget) -> Result<Done> {
    let device = target.device;
    let mut notes = vec![format!("{} is in use as swap already", device.display())];
    let place = target.archive.unwrap_or(device);
    let first = archive_page(settings, device, place);
    let head = read_head(device, page_size())
        .with_context(|| format!("reading the swap header of {}", device.display()))?;
    let kept_from_use = first.is_none_or(|f| pages_kept_from_use(&head, f));
    let mut change = Change::Unchanged;
    if let Some(f) = first
        && protect(device, f)?
    {
        change = Change::Changed;
        notes.push(format!(
            "pages {f} and after kept from use from the next boot on"
        ));
    }
    if let Some(place) = target.archive {
        if kept_from_use {
            tree.subtree(&settings.paths.gandi_dir)
                .and_then(|g| g.syncfs())
                .or_else(|_| tree.syncfs())?;
            consume_archive(place)?;
            change = Change::Changed;
            notes.push(format!("archive cleared on {}", place.display()));
        } else {
            notes.push(
                "the archive is left as it is: the area was enabled before its pages were \
                 kept from use"
                    .into(),
            );
        }
    }
    Ok(Done::of(change, notes.join("; ")))
}

#[allow(unsafe_code)] // see the SAFETY comment
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

    /// A header as mkswap writes it: version 1, `pages` pages, no bad one.
    fn header(pages: u32) -> Vec<u8> {
        let mut h = vec![0u8; 4096];
        h[1024..1028].copy_from_slice(&1u32.to_ne_bytes());
        h[1028..1032].copy_from_slice(&(pages - 1).to_ne_bytes());
        h[1052..1056].copy_from_slice(b"swap");
        h[4086..4096].copy_from_slice(b"SWAPSPACE2");
        h
    }

    #[test]
    fn the_archives_pages_are_listed_bad_and_nothing_else_changes() {
        let h = header(16384);
        let p = protected_header(&h, 128).unwrap();
        assert_eq!(u32::from_ne_bytes(p[1032..1036].try_into().unwrap()), 637);
        assert_eq!(
            u32::from_ne_bytes(p[BADPAGES_AT..BADPAGES_AT + 4].try_into().unwrap()),
            128
        );
        let last = BADPAGES_AT + 4 * 636;
        assert_eq!(
            u32::from_ne_bytes(p[last..last + 4].try_into().unwrap()),
            764
        );
        // Everything else of the header stays.
        for (i, (a, b)) in h.iter().zip(&p).enumerate() {
            if !(1032..1036).contains(&i) && !(BADPAGES_AT..BADPAGES_AT + 4 * 637).contains(&i) {
                assert_eq!(a, b, "byte {i}");
            }
        }
        assert_eq!(protected_header(&p, 128), None, "written twice");
        assert!(pages_kept_from_use(&p, 128));
        assert!(!pages_kept_from_use(&h, 128), "an unprotected header");
        assert!(!pages_kept_from_use(&vec![0u8; 4096], 128));
        // A small area: only the pages it has.
        let small = protected_header(&header(200), 128).unwrap();
        assert_eq!(
            u32::from_ne_bytes(small[1032..1036].try_into().unwrap()),
            72
        );
        // Not a header, or an archive outside the area: nothing.
        assert_eq!(protected_header(&vec![0u8; 4096], 128), None);
        assert_eq!(protected_header(&header(100), 128), None);
    }

    #[test]
    fn swap_labels() {
        let mut head = vec![0u8; 4096];
        head[1052..1056].copy_from_slice(b"swap");
        assert_eq!(swap_label(&head).as_deref(), Some("swap"));
        assert_eq!(swap_label(&head[..100]), None);
    }
}
