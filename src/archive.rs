//! Safe extraction of tar archives: the platform's config archive at byte
//! 512 KiB of the swap disk, and the kernel modules tarball it carries.
//!
//! Only one tree is taken from an archive (`gandi/`, `lib/modules/R/`),
//! into a fresh root-only staging folder that replaces the target only when
//! every entry was read. Refused, and the whole archive with them: absolute
//! names, `..`, links leading outside the tree, device nodes, FIFOs,
//! oversize content. Nothing of a refused archive is written.

use anyhow::{Context, Result, anyhow, bail};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
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

/// Extracts the entries under `tree` (a relative path such as `gandi`) of
/// the archive read from `reader` into `dest`, which must not exist: it is
/// created (mode 0700) and filled. Returns the number of entries taken; 0
/// means the archive has no such tree (and `dest` is not created). On any
/// error `dest` is removed.
pub fn extract_tree(reader: impl Read, tree: &Path, dest: &Path, limits: Limits) -> Result<usize> {
    let result = extract_inner(reader, tree, dest, limits);
    if result.is_err() || matches!(result, Ok(0)) {
        let _ = fs::remove_dir_all(dest);
    }
    result
}

fn extract_inner(reader: impl Read, tree: &Path, dest: &Path, limits: Limits) -> Result<usize> {
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
        let Ok(rel) = path.strip_prefix(tree) else {
            continue;
        };
        if taken == 0 {
            fs::create_dir(dest).with_context(|| format!("creating {}", dest.display()))?;
            fs::set_permissions(dest, fs::Permissions::from_mode(0o700))?;
        }
        taken += 1;
        let target = dest.join(rel);
        if rel.as_os_str().is_empty() {
            continue; // the tree's own directory
        }
        if let Some(parent) = target.parent() {
            create_dirs(dest, parent)?;
        }
        if kind.is_dir() {
            create_dirs(dest, &target)?;
        } else if kind.is_file() || kind == tar::EntryType::Continuous {
            let size = entry.header().size().unwrap_or(0);
            bytes = bytes.saturating_add(size);
            if bytes > limits.max_bytes {
                bail!("content over {} bytes", limits.max_bytes);
            }
            let exec = entry.header().mode().unwrap_or(0) & 0o111 != 0;
            let mode = if exec { 0o700 } else { 0o600 };
            let mut out = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(mode)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(&target)
                .with_context(|| format!("creating {}", target.display()))?;
            let copied = std::io::copy(&mut (&mut entry).take(size), &mut out)
                .with_context(|| format!("writing {}", target.display()))?;
            if copied != size {
                bail!("{} is truncated", raw.display());
            }
            out.set_permissions(fs::Permissions::from_mode(mode))?;
        } else if kind.is_symlink() {
            let link = entry
                .link_name()
                .context("reading a link target")?
                .ok_or_else(|| anyhow!("link {} without target", raw.display()))?
                .into_owned();
            if link.is_absolute() {
                bail!("link {} leads outside ({})", raw.display(), link.display());
            }
            let base = rel.parent().unwrap_or(Path::new(""));
            if !stays_inside(base, &link) {
                bail!("link {} leads outside ({})", raw.display(), link.display());
            }
            std::os::unix::fs::symlink(&link, &target)
                .with_context(|| format!("creating {}", target.display()))?;
        } else if kind.is_hard_link() {
            let link = entry
                .link_name()
                .context("reading a link target")?
                .ok_or_else(|| anyhow!("link {} without target", raw.display()))?
                .into_owned();
            let link = clean(&link)?;
            let Ok(inside) = link.strip_prefix(tree) else {
                bail!(
                    "hard link {} leads outside ({})",
                    raw.display(),
                    link.display()
                );
            };
            let source = dest.join(inside);
            let meta = fs::symlink_metadata(&source)
                .with_context(|| format!("hard link {} to a missing entry", raw.display()))?;
            if !meta.is_file() {
                bail!("hard link {} to a non-file", raw.display());
            }
            fs::hard_link(&source, &target)
                .with_context(|| format!("creating {}", target.display()))?;
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

/// Whether `link`, relative to folder `base` of the tree, stays inside it.
fn stays_inside(base: &Path, link: &Path) -> bool {
    let mut depth: i64 = base.components().count() as i64;
    for c in link.components() {
        match c {
            Component::ParentDir => depth -= 1,
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            _ => return false,
        }
        if depth < 0 {
            return false;
        }
    }
    true
}

/// Creates `dir` and its parents below `dest` (mode 0700), refusing to go
/// through a symlink.
fn create_dirs(dest: &Path, dir: &Path) -> Result<()> {
    let rel = dir.strip_prefix(dest).unwrap_or(dir);
    let mut cur = dest.to_path_buf();
    for c in rel.components() {
        cur.push(c);
        match fs::symlink_metadata(&cur) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => bail!("{} is in the way of a folder", cur.display()),
            Err(_) => {
                fs::create_dir(&cur).with_context(|| format!("creating {}", cur.display()))?;
                fs::set_permissions(&cur, fs::Permissions::from_mode(0o700))?;
            }
        }
    }
    Ok(())
}

/// Puts a fully extracted `staging` folder in place of `target`, keeping
/// the old one until the new one is there.
pub fn replace_dir(staging: &Path, target: &Path) -> Result<()> {
    let old = target.with_file_name(format!(
        ".{}.old-{}",
        target
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default(),
        std::process::id()
    ));
    let had_old = fs::symlink_metadata(target).is_ok();
    if had_old {
        fs::rename(target, &old).with_context(|| format!("moving {} aside", target.display()))?;
    }
    if let Err(e) = fs::rename(staging, target) {
        if had_old {
            let _ = fs::rename(&old, target);
        }
        return Err(e).with_context(|| format!("putting {} in place", target.display()));
    }
    if had_old {
        let _ = fs::remove_dir_all(&old);
    }
    if let Some(parent) = target.parent() {
        let _ = File::open(parent).and_then(|d| d.sync_all());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_staying_inside() {
        assert!(stays_inside(Path::new("a"), Path::new("../b")));
        assert!(stays_inside(Path::new(""), Path::new("b/c")));
        assert!(!stays_inside(Path::new(""), Path::new("../etc/shadow")));
        assert!(!stays_inside(Path::new("a"), Path::new("../../x")));
    }

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
        let dest = dir.path().join("out");
        let small = Limits {
            max_bytes: 1000,
            max_entries: 10,
        };
        let big = archive(&[("gandi/config", 10), ("gandi/blob", 2000)]);
        let err = extract_tree(&big[..], Path::new("gandi"), &dest, small).unwrap_err();
        assert!(format!("{err:#}").contains("over 1000 bytes"));
        assert!(!dest.exists());
        let names: Vec<(String, usize)> = (0..20).map(|i| (format!("gandi/f{i}"), 1)).collect();
        let refs: Vec<(&str, usize)> = names.iter().map(|(n, s)| (n.as_str(), *s)).collect();
        let many = archive(&refs);
        let err = extract_tree(&many[..], Path::new("gandi"), &dest, small).unwrap_err();
        assert!(format!("{err:#}").contains("more than 10 entries"));
        assert!(!dest.exists());
        // Entries outside the tree are passed over; none inside: nothing made.
        let other = archive(&[("etc/motd", 3)]);
        assert_eq!(
            extract_tree(&other[..], Path::new("gandi"), &dest, small).unwrap(),
            0
        );
        assert!(!dest.exists());
        let ok = archive(&[("etc/motd", 3), ("./gandi/config", 5)]);
        assert_eq!(
            extract_tree(&ok[..], Path::new("gandi"), &dest, small).unwrap(),
            1
        );
        assert_eq!(std::fs::read(dest.join("config")).unwrap(), b"xxxxx");
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
