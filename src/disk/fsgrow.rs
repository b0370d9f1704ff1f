//! Growing a data disk's filesystem to the size of its device.
//!
//! Every filesystem grows online where the kernel allows it: where it is
//! mounted, else mounted in a private mount namespace that no user and no
//! autofs lookup can see, grown, and unmounted. ext2/3/4 fall back to an
//! offline `resize2fs` (after `e2fsck -p -f`) only when the kernel refuses
//! online resizing, under a mark that survives a reboot (see [`grow`]).
//! Never shrinks; never touches a filesystem with errors a check cannot
//! fix: such a filesystem is marked damaged.

use crate::base::runner::Run;
use crate::disk::fsstate::Marks;
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long a growth tool may run: a large filesystem takes minutes.
const GROW_LIMIT: Duration = Duration::from_secs(3600);
/// How long a tool that only reads a superblock may run.
const READ_LIMIT: Duration = Duration::from_secs(60);

/// Growth smaller than this is not worth a resize (block rounding).
pub const MIN_GROWTH: u64 = 1 << 20;

/// The filesystem types we can grow.
pub fn supported(fstype: &str) -> bool {
    matches!(fstype, "ext2" | "ext3" | "ext4" | "xfs" | "btrfs")
}

/// The size of the filesystem on `dev`, in bytes, read from its superblock
/// with the filesystem's own tool.
pub fn fs_size(dev: &Path, fstype: &str) -> Result<u64> {
    match fstype {
        "ext2" | "ext3" | "ext4" => Ok(ExtSuper::read(dev)?.size),
        "xfs" => {
            let out = Run::new("xfs_db")
                .args([
                    "-r",
                    "-c",
                    "sb 0",
                    "-c",
                    "print dblocks",
                    "-c",
                    "print blocksize",
                ])
                .arg(dev)
                .limit(READ_LIMIT)
                .output()?;
            parse_xfs_db(&out).context("reading the XFS superblock")
        }
        "btrfs" => {
            let out = Run::new("btrfs")
                .args(["inspect-internal", "dump-super"])
                .arg(dev)
                .limit(READ_LIMIT)
                .output()?;
            parse_btrfs_super(&out).context("reading the btrfs superblock")
        }
        other => bail!("cannot read the size of a {other} filesystem"),
    }
}

/// Like [`fs_size`], but a mounted XFS is asked through its mount point:
/// its on-disk superblock lags behind a growth until the log is written.
pub fn fs_size_at(dev: &Path, fstype: &str, mounted: Option<&Path>) -> Result<u64> {
    match (fstype, mounted) {
        ("xfs", Some(mp)) => {
            let out = Run::new("xfs_info").arg(mp).limit(READ_LIMIT).output()?;
            parse_xfs_info(&out).context("reading xfs_info")
        }
        _ => fs_size(dev, fstype),
    }
}

/// `bsize` x `blocks` of the `data` line of `xfs_info`.
pub fn parse_xfs_info(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.trim_start().starts_with("data"))?;
    let num = |key: &str| -> Option<u64> {
        let rest = &line[line.find(key)? + key.len()..];
        rest.chars()
            .take_while(|c| c.is_ascii_digit())
            .collect::<String>()
            .parse()
            .ok()
    };
    num("bsize=")?.checked_mul(num("blocks=")?)
}

/// What we read of an ext2/3/4 superblock, without a tool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtSuper {
    /// Filesystem size in bytes.
    pub size: u64,
    /// `s_max_mnt_count`: -1 (or 0) means unlimited.
    pub max_mount_count: i16,
    /// `s_uuid`, as blkid prints it.
    pub uuid: String,
}

impl ExtSuper {
    /// Reads the superblock at byte 1024 of `dev`.
    pub fn read(dev: &Path) -> Result<ExtSuper> {
        use std::os::unix::fs::FileExt;
        let file =
            std::fs::File::open(dev).with_context(|| format!("opening {}", dev.display()))?;
        let mut sb = [0u8; 1024];
        file.read_exact_at(&mut sb, 1024)
            .with_context(|| format!("reading the superblock of {}", dev.display()))?;
        ExtSuper::parse(&sb)
            .with_context(|| format!("{} holds no ext2/3/4 filesystem", dev.display()))
    }

    /// Parses a 1024-byte ext2/3/4 superblock.
    pub fn parse(sb: &[u8; 1024]) -> Option<ExtSuper> {
        let le32 = |o: usize| u32::from_le_bytes([sb[o], sb[o + 1], sb[o + 2], sb[o + 3]]);
        if u16::from_le_bytes([sb[0x38], sb[0x39]]) != 0xEF53 {
            return None;
        }
        let log_block = le32(0x18);
        if log_block > 16 {
            return None;
        }
        let block_size = 1024u64 << log_block;
        let incompat = le32(0x60);
        let mut blocks = u64::from(le32(0x04));
        // 64bit feature: the high half of the block count.
        if incompat & 0x80 != 0 {
            blocks |= u64::from(le32(0x150)) << 32;
        }
        let u = &sb[0x68..0x78];
        let hex = |r: std::ops::Range<usize>| crate::base::fingerprint::hex(&u[r]);
        Some(ExtSuper {
            size: blocks.checked_mul(block_size)?,
            max_mount_count: i16::from_le_bytes([sb[0x36], sb[0x37]]),
            uuid: format!(
                "{}-{}-{}-{}-{}",
                hex(0..4),
                hex(4..6),
                hex(6..8),
                hex(8..10),
                hex(10..16)
            ),
        })
    }
}

fn field<'a>(text: &'a str, name: &str, sep: char) -> Option<&'a str> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(sep)?;
        (k.trim() == name).then(|| v.trim())
    })
}

/// `dblocks` x `blocksize` of `xfs_db -r -c "sb 0" -c "print dblocks" ...`.
pub fn parse_xfs_db(text: &str) -> Option<u64> {
    let count: u64 = field(text, "dblocks", '=')?.parse().ok()?;
    let size: u64 = field(text, "blocksize", '=')?.parse().ok()?;
    count.checked_mul(size)
}

/// This device's share of a btrfs filesystem (`dev_item.total_bytes`).
pub fn parse_btrfs_super(text: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let mut words = l.split_whitespace();
        (words.next()? == "dev_item.total_bytes")
            .then(|| words.next()?.parse().ok())
            .flatten()
    })
}

/// The result of one growth attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Already the size of its device.
    Fits { size: u64 },
    Grown {
        before: u64,
        after: u64,
        tool: String,
    },
    /// A check found errors it could not repair: left as it is, marked, and
    /// refused by the map until `gandi-vm disk check` repairs it.
    Damaged { why: String },
}

/// Whether the filesystem on `dev` needs work: smaller than its device, or
/// an offline resize of it was cut short. Cheap (a superblock read for
/// ext), so that an event for a disk that fits changes nothing.
pub fn needs_work(
    dev: &Path,
    fstype: &str,
    dev_size: u64,
    mounted: Option<&Path>,
    marks: &Marks,
) -> Result<bool> {
    if is_ext(fstype) && mounted.is_none() && marks.interrupted().is_some() {
        return Ok(true);
    }
    Ok(fs_size_at(dev, fstype, mounted)?.saturating_add(MIN_GROWTH) <= dev_size)
}

/// Marks the filesystem damaged (refused until `disk check` repairs it),
/// unless the device holds another filesystem now: the errors found are
/// then not this one's.
fn damaged(dev: &Path, marks: &Marks, why: String) -> Result<Outcome> {
    still_ours(dev, marks).with_context(|| format!("not marked damaged ({why})"))?;
    marks.set_damaged(&why)?;
    Ok(Outcome::Damaged { why })
}

/// Fails when the ext filesystem on `dev` is not the one `marks` are of:
/// the device was detached and another disk attached under its name since
/// the grower looked (a loop device used again). Checks, repairs, resizes
/// and marks then concern another filesystem, and must not be done or
/// written for this one. Passes when either UUID is unknown.
pub fn still_ours(dev: &Path, marks: &Marks) -> Result<()> {
    let (Some(ours), Ok(now)) = (marks.uuid(), ExtSuper::read(dev)) else {
        return Ok(());
    };
    if !now.uuid.eq_ignore_ascii_case(ours) {
        bail!(
            "{} holds another filesystem now (UUID {}, not {ours})",
            dev.display(),
            now.uuid
        );
    }
    Ok(())
}

fn is_ext(fstype: &str) -> bool {
    matches!(fstype, "ext2" | "ext3" | "ext4")
}

/// Grows the filesystem on `dev` (`fstype`) to `dev_size` bytes. `mounted`
/// is where it is mounted now, if anywhere. `scratch` is a folder where a
/// private mount point may be made. `marks` are the filesystem's marks
/// that survive a reboot.
///
/// ext2/3/4 grow online (journaled, in the kernel): where they are mounted,
/// else mounted in a private mount namespace. Only when the kernel refuses
/// online resizing is the filesystem grown offline, and then under a mark
/// written (and synced) first: a resize cut short is detected at the next
/// growth, also after a reboot, and repaired before anything else
/// (`e2fsck -fy`, then the resize again, as e2fsprogs advises). XFS and
/// btrfs only grow online.
pub fn grow(
    dev: &Path,
    fstype: &str,
    dev_size: u64,
    mounted: Option<&Path>,
    scratch: &Path,
    marks: &Marks,
) -> Result<Outcome> {
    let mut notes = Vec::new();
    if is_ext(fstype) {
        still_ours(dev, marks)?;
    }
    if is_ext(fstype)
        && mounted.is_none()
        && let Some(what) = marks.interrupted()
    {
        log::warn!(
            "{}: an offline resize was cut short ({what}): repairing",
            dev.display()
        );
        if let Err(why) = e2fsck(dev, true)? {
            return damaged(dev, marks, why);
        }
        notes.push("a resize cut short repaired (e2fsck -fy)".to_string());
    }
    let before = fs_size_at(dev, fstype, mounted)?;
    if before.saturating_add(MIN_GROWTH) > dev_size {
        if is_ext(fstype) && mounted.is_none() {
            marks.end_resize()?;
        }
        return Ok(Outcome::Fits { size: before });
    }
    log::info!(
        "{}: growing {fstype} from {before} to {dev_size} bytes",
        dev.display()
    );
    let tool = match (fstype, mounted) {
        (t, Some(_)) if is_ext(t) => {
            Run::new("resize2fs").arg(dev).limit(GROW_LIMIT).output()?;
            "resize2fs (online)".to_string()
        }
        (t, None) if is_ext(t) => match grow_in_private_namespace(dev, fstype, scratch) {
            Ok(()) => "resize2fs (online, private mount)".to_string(),
            Err(online) => {
                log::info!(
                    "{}: online resizing refused ({online:#}); resizing offline",
                    dev.display()
                );
                if let Err(why) = e2fsck(dev, false)? {
                    return damaged(dev, marks, why);
                }
                still_ours(dev, marks)?;
                marks.start_resize(&format!("{before} bytes to {dev_size}"))?;
                let out = Run::new("resize2fs")
                    .arg(dev)
                    .env("LC_ALL", "C")
                    .limit(GROW_LIMIT)
                    .outcome()?;
                if !out.success() && went_online(&out) {
                    // Mounted between our look and resize2fs's own (a mount
                    // begun before the mark, finished after it): resize2fs
                    // then asks the kernel for an online resize, which it
                    // refused, and writes nothing itself (offline it holds
                    // the device exclusively, so no mount lands during its
                    // work). Not cut short: the mark would refuse a disk
                    // that nothing repairs before its next event.
                    marks.end_resize()?;
                }
                out.check()?;
                marks.end_resize()?;
                "resize2fs (offline)".to_string()
            }
        },
        ("xfs" | "btrfs", Some(mp)) => {
            grow_mounted(fstype, mp)?;
            if fstype == "xfs" {
                "xfs_growfs".to_string()
            } else {
                "btrfs filesystem resize".to_string()
            }
        }
        ("xfs" | "btrfs", None) => {
            grow_in_private_namespace(dev, fstype, scratch)?;
            if fstype == "xfs" {
                "xfs_growfs (private mount)".to_string()
            } else {
                "btrfs filesystem resize (private mount)".to_string()
            }
        }
        (other, _) => bail!("growing {other} filesystems is not supported"),
    };
    let after = fs_size_at(dev, fstype, mounted)?;
    notes.insert(0, tool);
    Ok(Outcome::Grown {
        before,
        after,
        tool: notes.join("; "),
    })
}

/// Whether a failed `resize2fs` found the filesystem mounted and tried the
/// kernel's online resize instead (its message, in the C locale).
fn went_online(out: &crate::base::runner::Outcome) -> bool {
    out.stdout_text().contains("on-line resizing required")
}

/// Checks an unmounted ext2/3/4. Before a growth (`repair` false): a
/// read-only check first (`e2fsck -f -n`), and only on a clean filesystem
/// `e2fsck -f -p` (which records the check `resize2fs` asks for):
/// `e2fsck -p` on a badly damaged filesystem (its primary group
/// descriptors gone, say) "fixes" what it misreads, clearing the journal
/// or the root folder, before it gives up, where `e2fsck -f -y` would have
/// repaired everything from the backup copy. With `repair`:
/// `e2fsck -f -y` (fixes everything it can). `Ok(Ok(()))` when the
/// filesystem is clean or was repaired; `Ok(Err(why))` when errors remain
/// (nothing was written without `repair`); `Err` when e2fsck could not
/// run.
pub fn e2fsck(dev: &Path, repair: bool) -> Result<Result<(), String>> {
    if repair {
        return e2fsck_with(dev, &["-f", "-y"]);
    }
    match e2fsck_with(dev, &["-f", "-n"])? {
        Ok(()) => e2fsck_with(dev, &["-f", "-p"]),
        Err(why) => Ok(Err(format!(
            "{why}; nothing was changed: run `gandi-vm disk check` to repair it"
        ))),
    }
}

fn e2fsck_with(dev: &Path, flags: &[&str]) -> Result<Result<(), String>> {
    let out = Run::new("e2fsck")
        .args(flags)
        .arg(dev)
        .limit(GROW_LIMIT)
        .outcome()?;
    match out.code() {
        // 0: clean; 1: errors fixed; 2: fixed, reboot advised (a root).
        Some(0) => Ok(Ok(())),
        Some(1..=2) if !flags.contains(&"-n") => Ok(Ok(())),
        Some(c) if c & 4 != 0 || (flags.contains(&"-n") && c & 3 != 0) => {
            let said = out.stdout_text();
            let last = said
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or_default()
                .trim()
                .to_string();
            Ok(Err(out.summary("found errors", &last)))
        }
        _ => bail!(
            "{} could not check the filesystem ({}): {}",
            out.command,
            out.ended(),
            out.stderr_text()
        ),
    }
}

fn grow_mounted(fstype: &str, mount_point: &Path) -> Result<()> {
    match fstype {
        "xfs" => Run::new("xfs_growfs")
            .arg(mount_point)
            .limit(GROW_LIMIT)
            .output()
            .map(drop),
        "btrfs" => Run::new("btrfs")
            .args(["filesystem", "resize", "max"])
            .arg(mount_point)
            .limit(GROW_LIMIT)
            .output()
            .map(drop),
        other => bail!("cannot grow a mounted {other} filesystem"),
    }
}

/// Mounts `dev` in a new, private mount namespace (a child process of
/// ours), grows it and unmounts it. The mount is never visible outside that
/// child, and disappears with it even if it is killed.
fn grow_in_private_namespace(dev: &Path, fstype: &str, scratch: &Path) -> Result<()> {
    let mount_point: PathBuf = scratch.join(format!(
        "grow-{}",
        dev.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default()
    ));
    std::fs::create_dir_all(&mount_point)
        .with_context(|| format!("creating {}", mount_point.display()))?;
    let exe = std::env::current_exe().context("finding our own executable")?;
    // The child makes its own private mount namespace before it mounts.
    let result = Run::new(exe)
        .env("GANDI_GROWER_PID", std::process::id().to_string())
        .arg("grow-private")
        .arg(dev)
        .arg(fstype)
        .arg(&mount_point)
        .limit(GROW_LIMIT)
        .log_as("grow-private")
        .output()
        .map(drop);
    let _ = std::fs::remove_dir(&mount_point);
    result
}

/// `gandi-vm grow-private DEV FSTYPE DIR` (run only by [`grow`]): enters a
/// mount namespace of its own, whose mounts no other process sees and
/// which vanishes with it even if it is killed, then mounts, grows and
/// unmounts.
pub fn grow_private(dev: &Path, fstype: &str, mount_point: &Path) -> Result<()> {
    use nix::mount::{MntFlags, MsFlags, mount, umount2};
    // Dies with the grower that started it (killed, or its unit stopped):
    // no orphan keeps the filesystem mounted and busy.
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
        .context("tying this process to its grower")?;
    let parent = std::env::var("GANDI_GROWER_PID")
        .ok()
        .and_then(|p| p.parse::<i32>().ok());
    if parent.is_some_and(|p| nix::unistd::getppid().as_raw() != p) {
        bail!("the grower that started this is gone");
    }
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
        .context("entering a private mount namespace")?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .context("making the mounts of the namespace private")?;
    let opts = (fstype == "xfs").then_some("nouuid");
    mount(Some(dev), mount_point, Some(fstype), MsFlags::empty(), opts)
        .with_context(|| format!("mounting {} on {}", dev.display(), mount_point.display()))?;
    let grown = if is_ext(fstype) {
        // Online: resize2fs on the device while it is mounted.
        Run::new("resize2fs")
            .arg(dev)
            .limit(GROW_LIMIT)
            .output()
            .map(drop)
    } else {
        grow_mounted(fstype, mount_point)
    };
    let unmounted = umount2(mount_point, MntFlags::empty())
        .with_context(|| format!("unmounting {}", mount_point.display()));
    grown?;
    unmounted
}

#[cfg(test)]
mod tests;
