//! Growing a data disk's filesystem to the size of its device.
//!
//! ext2/3/4: checked with `e2fsck -p` then `resize2fs` when unmounted,
//! `resize2fs` online when mounted. XFS and btrfs grow only while mounted:
//! when they are not, they are mounted in a private mount namespace that no
//! user and no autofs lookup can see, grown, and unmounted. Never shrinks;
//! never touches a filesystem with errors `e2fsck -p` cannot fix.

use crate::runner::Run;
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
        let hex = |r: std::ops::Range<usize>| -> String {
            u[r].iter().map(|b| format!("{b:02x}")).collect()
        };
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
}

/// Grows the filesystem on `dev` (`fstype`) to `dev_size` bytes. `mounted`
/// is where it is mounted now, if anywhere. `scratch` is a folder where a
/// private mount point may be made.
pub fn grow(
    dev: &Path,
    fstype: &str,
    dev_size: u64,
    mounted: Option<&Path>,
    scratch: &Path,
) -> Result<Outcome> {
    let before = fs_size_at(dev, fstype, mounted)?;
    if before.saturating_add(MIN_GROWTH) > dev_size {
        return Ok(Outcome::Fits { size: before });
    }
    let tool = match (fstype, mounted) {
        ("ext2" | "ext3" | "ext4", Some(_)) => {
            Run::new("resize2fs").arg(dev).limit(GROW_LIMIT).output()?;
            "resize2fs (online)"
        }
        ("ext2" | "ext3" | "ext4", None) => {
            e2fsck(dev)?;
            Run::new("resize2fs").arg(dev).limit(GROW_LIMIT).output()?;
            "resize2fs"
        }
        ("xfs" | "btrfs", Some(mp)) => {
            grow_mounted(fstype, mp)?;
            if fstype == "xfs" {
                "xfs_growfs"
            } else {
                "btrfs filesystem resize"
            }
        }
        ("xfs" | "btrfs", None) => {
            grow_in_private_namespace(dev, fstype, scratch)?;
            if fstype == "xfs" {
                "xfs_growfs (private mount)"
            } else {
                "btrfs filesystem resize (private mount)"
            }
        }
        (other, _) => bail!("growing {other} filesystems is not supported"),
    };
    let after = fs_size_at(dev, fstype, mounted)?;
    Ok(Outcome::Grown {
        before,
        after,
        tool: tool.to_string(),
    })
}

/// `e2fsck -p -f`: 0 (clean) and 1 (errors fixed) let the resize go on;
/// anything else (errors left, or fsck failed) stops it.
fn e2fsck(dev: &Path) -> Result<()> {
    let out = Run::new("e2fsck")
        .args(["-p", "-f"])
        .arg(dev)
        .limit(GROW_LIMIT)
        .outcome()?;
    match out.code() {
        Some(0 | 1) => Ok(()),
        _ => bail!(
            "{} found errors it cannot fix ({}); the filesystem is left as it is: {}",
            out.command,
            out.ended(),
            String::from_utf8_lossy(&out.stdout).trim()
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
    let grown = grow_mounted(fstype, mount_point);
    let unmounted = umount2(mount_point, MntFlags::empty())
        .with_context(|| format!("unmounting {}", mount_point.display()));
    grown?;
    unmounted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ext_superblock() {
        let mut sb = [0u8; 1024];
        sb[0x38..0x3a].copy_from_slice(&0xEF53u16.to_le_bytes());
        sb[0x04..0x08].copy_from_slice(&16384u32.to_le_bytes());
        sb[0x18..0x1c].copy_from_slice(&2u32.to_le_bytes());
        sb[0x36..0x38].copy_from_slice(&(-1i16).to_le_bytes());
        let s = ExtSuper::parse(&sb).unwrap();
        assert_eq!(s.size, 16384 * 4096);
        assert_eq!(s.max_mount_count, -1);
        sb[0x60..0x64].copy_from_slice(&0x80u32.to_le_bytes());
        sb[0x150..0x154].copy_from_slice(&1u32.to_le_bytes());
        assert_eq!(
            ExtSuper::parse(&sb).unwrap().size,
            ((1u64 << 32) + 16384) * 4096
        );
        for (i, b) in sb[0x68..0x78].iter_mut().enumerate() {
            *b = 0xa0 + i as u8;
        }
        assert_eq!(
            ExtSuper::parse(&sb).unwrap().uuid,
            "a0a1a2a3-a4a5-a6a7-a8a9-aaabacadaeaf"
        );
        sb[0x38] = 0;
        assert!(ExtSuper::parse(&sb).is_none());
    }

    #[test]
    fn superblock_sizes() {
        let xfs = "dblocks = 81920\nblocksize = 4096\n";
        assert_eq!(parse_xfs_db(xfs), Some(81920 * 4096));
        let btrfs = "total_bytes\t\t\t134217728\ndev_item.total_bytes\t67108864\n";
        assert_eq!(parse_btrfs_super(btrfs), Some(67108864));
        let info = "meta-data=/dev/loop0p1 isize=512 agcount=4, agsize=20480 blks\n\
                    data     =                       bsize=4096   blocks=262144, imaxpct=25\n";
        assert_eq!(parse_xfs_info(info), Some(262144 * 4096));
    }
}
