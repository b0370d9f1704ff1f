//! Safe extraction of tar archives: the platform's config archive at byte
//! 512 KiB of the swap disk, and the kernel modules tarball it carries.
//!
//! Only one tree is taken from an archive (`gandi/`, `lib/modules/R/`),
//! into a fresh root-only staging folder that replaces the target only
//! when every entry was read. Every entry is created by its own name in a
//! folder opened without following links, beneath the staging folder (see
//! `tree`): a path through a link, an absolute name or `..` fails, so
//! nothing outside the staging folder can be created, changed or opened,
//! whatever chain of links the archive holds. Links are kept as entries
//! (module trees carry them) and never followed; a hard link may only name
//! a regular file already extracted. Refused, and the whole archive with
//! them: device nodes, FIFOs, a name given twice, oversize content.

use crate::base::tree::{self, Tree};
use anyhow::{Context, Result, anyhow, bail};
use cap_fs_ext::{FollowSymlinks, OpenOptionsFollowExt};
use cap_std::fs::{Dir, OpenOptions, OpenOptionsExt, Permissions, PermissionsExt};
use std::ffi::OsStr;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Component, Path, PathBuf};

/// Where the platform writes its archive on the swap disk.
pub const CONFIG_OFFSET: u64 = 512 * 1024;

/// Bounds on what an archive may hold.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Total size of the files taken.
    pub max_bytes: u64,
    pub max_entries: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bytes: 512 << 20,
            max_entries: 100_000,
        }
    }
}

/// Whether the 512 bytes are a tar header: not all zero, and its checksum
/// adds up.
pub fn is_tar_header(block: &[u8; 512]) -> bool {
    if block.iter().all(|&b| b == 0) {
        return false;
    }
    let stored = std::str::from_utf8(&block[148..156])
        .ok()
        .map(|s| s.trim_matches(|c: char| c == '\0' || c == ' '))
        .and_then(|s| u32::from_str_radix(s, 8).ok());
    let sum: u32 = block
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u32::from(b)
            }
        })
        .sum();
    stored == Some(sum)
}

/// Opens `device` at the archive offset; `None` when no archive starts there.
pub fn open_at_offset(device: &Path) -> Result<Option<File>> {
    let mut file = File::open(device).with_context(|| format!("opening {}", device.display()))?;
    file.seek(SeekFrom::Start(CONFIG_OFFSET))
        .with_context(|| format!("seeking in {}", device.display()))?;
    let mut block = [0u8; 512];
    match file.read_exact(&mut block) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", device.display())),
    }
    if !is_tar_header(&block) {
        return Ok(None);
    }
    file.seek(SeekFrom::Start(CONFIG_OFFSET))?;
    Ok(Some(file))
}

/// The relative path of an entry, with a leading `./` dropped; an error for
/// absolute names and `..`.
fn clean(path: &Path) -> Result<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => {
                bail!("absolute name {}", path.display())
            }
            Component::ParentDir => bail!("name with '..': {}", path.display()),
        }
    }
    Ok(out)
}

/// A staging folder `NAME` in `parent`, removed on drop unless kept.
pub struct Staging<'a> {
    parent: &'a Tree,
    name: String,
    keep: bool,
}

impl<'a> Staging<'a> {
    /// Makes a fresh folder `.PREFIX.new-PID` (mode 0700) in `parent`,
    /// after removing the ones left by processes that are gone.
    pub fn new(parent: &'a Tree, prefix: &str) -> Result<Staging<'a>> {
        clean_leftovers(parent, prefix);
        let name = format!(".{prefix}.new-{}", std::process::id());
        parent.remove_tree(&name)?;
        parent.create_dirs(&name, 0o700)?;
        parent.set_mode(&name, 0o700)?;
        Ok(Staging {
            parent,
            name,
            keep: false,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn tree(&self) -> Result<Tree> {
        self.parent.subtree(&self.name)
    }

    /// Puts the staging folder in place of `target` (a name in the parent):
    /// both are swapped in one step (`RENAME_EXCHANGE`), so `target` is
    /// never missing; then the old one is removed.
    pub fn replace(mut self, target: &str) -> Result<()> {
        let dir = self.parent.dir();
        let exists = self.parent.lstat(target).is_ok();
        if exists {
            nix::fcntl::renameat2(
                dir,
                OsStr::new(&self.name),
                dir,
                OsStr::new(target),
                nix::fcntl::RenameFlags::RENAME_EXCHANGE,
            )
            .with_context(|| format!("putting {} in place", self.parent.shown(target).display()))?;
            // The old tree now has the staging name: Drop removes it.
        } else {
            self.parent.rename(&self.name, target)?;
            self.keep = true;
        }
        Ok(())
    }
}

impl Drop for Staging<'_> {
    fn drop(&mut self) {
        if !self.keep {
            let _ = self.parent.remove_tree(&self.name);
        }
    }
}

/// Removes `.PREFIX.new-PID` folders of processes that are gone.
fn clean_leftovers(parent: &Tree, prefix: &str) {
    let start = format!(".{prefix}.new-");
    for name in parent.list("").unwrap_or_default() {
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(&start))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !Path::new("/proc").join(pid.to_string()).exists() {
            let _ = parent.remove_tree(&name);
        }
    }
}

/// Extracts the entries under `prefix` (a relative path such as `gandi`)
/// of the archive read from `reader` into `dest` (an empty folder).
/// Returns the number of entries taken; 0 means the archive has no such
/// tree. On an error, what was extracted is left for the caller to drop.
pub fn extract(reader: impl Read, prefix: &Path, dest: &Tree, limits: Limits) -> Result<usize> {
    let mut archive = tar::Archive::new(reader);
    let mut taken = 0usize;
    let mut bytes = 0u64;
    let mut seen = 0usize;
    for entry in archive.entries().context("reading the archive")? {
        let mut entry = entry.context("reading an archive entry")?;
        seen += 1;
        if seen > limits.max_entries {
            bail!("more than {} entries", limits.max_entries);
        }
        let raw = entry.path().context("reading an entry name")?.into_owned();
        let path = clean(&raw)?;
        let kind = entry.header().entry_type();
        // Every entry is checked, even outside the tree: a hostile entry
        // anywhere marks the archive as hostile.
        if kind.is_block_special() || kind.is_character_special() || kind.is_fifo() {
            bail!("device node or FIFO {}", raw.display());
        }
        let Ok(rel) = path.strip_prefix(prefix) else {
            continue;
        };
        taken += 1;
        if rel.as_os_str().is_empty() {
            continue; // the tree's own folder
        }
        let shown = || dest.shown(rel).display().to_string();
        let parent_rel = rel.parent().unwrap_or(Path::new(""));
        let name = rel
            .file_name()
            .ok_or_else(|| anyhow!("entry {} has no name", raw.display()))?;
        if kind.is_dir() {
            dest.create_dirs(rel, 0o700)
                .with_context(|| format!("entry {}", raw.display()))?;
            continue;
        }
        let dir = dest
            .folder(parent_rel, Some(0o700))
            .with_context(|| format!("entry {}: its folder", raw.display()))?;
        if kind.is_file() || kind == tar::EntryType::Continuous {
            let size = entry.header().size().unwrap_or(0);
            bytes = bytes.saturating_add(size);
            if bytes > limits.max_bytes {
                bail!("content over {} bytes", limits.max_bytes);
            }
            let exec = entry.header().mode().unwrap_or(0) & 0o111 != 0;
            let mode = if exec { 0o700 } else { 0o600 };
            let mut out = create_new(&dir, name, mode)
                .with_context(|| format!("entry {}: creating {}", raw.display(), shown()))?;
            let copied = std::io::copy(&mut (&mut entry).take(size), &mut out)
                .with_context(|| format!("writing {}", shown()))?;
            if copied != size {
                bail!("{} is truncated", raw.display());
            }
            out.set_permissions(Permissions::from_mode(mode))?;
        } else if kind.is_symlink() {
            let target = link_target(&entry, &raw)?;
            // Kept as an entry; nothing we do follows it.
            dir.symlink_contents(&target, name)
                .with_context(|| format!("entry {}: linking {}", raw.display(), shown()))?;
        } else if kind.is_hard_link() {
            let target = link_target(&entry, &raw)?;
            let target = clean(&target)?;
            let Ok(inside) = target.strip_prefix(prefix) else {
                bail!(
                    "hard link {} leads outside ({})",
                    raw.display(),
                    target.display()
                );
            };
            let (src_parent, src_name) = match (inside.parent(), inside.file_name()) {
                (Some(p), Some(n)) => (p, n),
                _ => bail!("hard link {} to the tree itself", raw.display()),
            };
            let src_dir = dest
                .folder(src_parent, None)
                .with_context(|| format!("hard link {} to a missing entry", raw.display()))?;
            let meta = src_dir
                .symlink_metadata(src_name)
                .with_context(|| format!("hard link {} to a missing entry", raw.display()))?;
            if !meta.is_file() {
                bail!(
                    "hard link {} to something that is not a file",
                    raw.display()
                );
            }
            src_dir
                .hard_link(src_name, &dir, name)
                .with_context(|| format!("entry {}: linking {}", raw.display(), shown()))?;
        } else if matches!(
            kind,
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader | tar::EntryType::GNULongName
        ) {
            continue;
        } else {
            bail!("unsupported entry type {:?} for {}", kind, raw.display());
        }
    }
    Ok(taken)
}

/// Creates file `name` in `dir`: it must not exist (a name given twice is
/// refused), and it is never opened through a link.
/// The target of a link entry (`raw` is its name, for the error).
fn link_target<R: Read>(entry: &tar::Entry<R>, raw: &Path) -> Result<PathBuf> {
    Ok(entry
        .link_name()
        .context("reading a link target")?
        .ok_or_else(|| anyhow!("link {} without target", raw.display()))?
        .into_owned())
}

fn create_new(dir: &Dir, name: &OsStr, mode: u32) -> std::io::Result<cap_std::fs::File> {
    let mut opts = OpenOptions::new();
    opts.write(true)
        .create_new(true)
        .mode(mode)
        .follow(FollowSymlinks::No);
    dir.open_with(name, &opts).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            std::io::Error::new(e.kind(), format!("{} is given twice", name.display()))
        } else {
            e
        }
    })
}

/// The same as [`extract`] into a fresh staging folder of `parent`, which
/// is put in place of `target` when every entry was read. Returns the
/// number of entries; 0 (and nothing changed) when the archive has no such
/// tree.
pub fn extract_to(
    reader: impl Read,
    prefix: &Path,
    parent: &Tree,
    target: &str,
    limits: Limits,
) -> Result<usize> {
    let staging = Staging::new(parent, target.trim_start_matches('.'))?;
    let n = extract(reader, prefix, &staging.tree()?, limits)?;
    if n > 0 {
        staging.replace(target)?;
    }
    Ok(n)
}

/// The archive's modes for the files we install for everyone (modules):
/// files 0644 (0755 when executable), folders 0755; links untouched.
pub fn make_readable(t: &Tree, rel: &Path) -> Result<()> {
    t.set_mode(rel, 0o755)?;
    for name in t.list(rel)? {
        let p = rel.join(&name);
        let meta = t.lstat(&p)?;
        if meta.is_dir() {
            make_readable(t, &p)?;
        } else if meta.is_file() {
            let exec = tree::mode_of(&meta) & 0o100 != 0;
            t.set_mode(&p, if exec { 0o755 } else { 0o644 })?;
        }
    }
    Ok(())
}

/// Kept for callers writing our own state files.
pub use tree::write_atomic;

#[cfg(test)]
mod tests {
    use super::*;

    fn archive(entries: &[(&str, usize)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, size) in entries {
            let data = vec![b'x'; *size];
            let mut h = tar::Header::new_gnu();
            h.set_size(*size as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, name, &data[..]).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn caps_size_and_entries_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let parent = Tree::open(dir.path()).unwrap();
        let small = Limits {
            max_bytes: 1000,
            max_entries: 10,
        };
        let big = archive(&[("gandi/config", 10), ("gandi/blob", 2000)]);
        let err = extract_to(&big[..], Path::new("gandi"), &parent, "gandi", small).unwrap_err();
        assert!(format!("{err:#}").contains("over 1000 bytes"));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        let names: Vec<(String, usize)> = (0..20).map(|i| (format!("gandi/f{i}"), 1)).collect();
        let refs: Vec<(&str, usize)> = names.iter().map(|(n, s)| (n.as_str(), *s)).collect();
        let many = archive(&refs);
        let err = extract_to(&many[..], Path::new("gandi"), &parent, "gandi", small).unwrap_err();
        assert!(format!("{err:#}").contains("more than 10 entries"));
        // Entries outside the tree are passed over; none inside: nothing made.
        let other = archive(&[("etc/motd", 3)]);
        assert_eq!(
            extract_to(&other[..], Path::new("gandi"), &parent, "gandi", small).unwrap(),
            0
        );
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        let ok = archive(&[("etc/motd", 3), ("./gandi/config", 5)]);
        assert_eq!(
            extract_to(&ok[..], Path::new("gandi"), &parent, "gandi", small).unwrap(),
            1
        );
        assert_eq!(
            std::fs::read(dir.path().join("gandi/config")).unwrap(),
            b"xxxxx"
        );
        // Again: swapped in, the old one gone.
        let ok2 = archive(&[("gandi/config", 2)]);
        extract_to(&ok2[..], Path::new("gandi"), &parent, "gandi", small).unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("gandi/config")).unwrap(),
            b"xx"
        );
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        // A name given twice.
        let twice = archive(&[("gandi/config", 2), ("gandi/config", 3)]);
        let err = extract_to(&twice[..], Path::new("gandi"), &parent, "gandi", small).unwrap_err();
        assert!(format!("{err:#}").contains("given twice"), "{err:#}");
        assert_eq!(
            std::fs::read(dir.path().join("gandi/config")).unwrap(),
            b"xx"
        );
    }

    #[test]
    fn headers() {
        let a = archive(&[("gandi/config", 1)]);
        let block: [u8; 512] = a[..512].try_into().unwrap();
        assert!(is_tar_header(&block));
        let mut bad = block;
        bad[0] ^= 1;
        assert!(!is_tar_header(&bad));
        assert!(!is_tar_header(&[0u8; 512]));
    }

    #[test]
    fn names() {
        assert_eq!(
            clean(Path::new("./gandi/config")).unwrap(),
            PathBuf::from("gandi/config")
        );
        assert!(clean(Path::new("/etc/passwd")).is_err());
        assert!(clean(Path::new("gandi/../../etc")).is_err());
    }
}
