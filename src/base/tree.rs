//! Files beneath a root folder, resolved by the kernel.
//!
//! Every file the suite reads or writes in a system tree (`/` on the live
//! system, `DIR` with `--root`, the staging folder of an archive, `/gandi`,
//! a modules tree) goes through a [`Tree`]: a handle on the root folder
//! from which every path is resolved by the kernel, never by string checks.
//! The handle is a `cap_std` directory: `openat2(RESOLVE_BENEATH)` where
//! the kernel has it (5.6 and later), and an equivalent walk of the path,
//! one component at a time from the root's descriptor, on older kernels,
//! which guests of this platform still run. A path that would lead outside
//! the root, through `..` or through any chain of links, fails.
//!
//! Two ways to resolve:
//! - reads ([`Tree::read`], [`Tree::exists`], ...) follow links that stay
//!   beneath the root (a `--root` tree on merged /usr has `lib -> usr/lib`);
//! - writes ([`Tree::write_if_changed`], [`Tree::set_mode`], ...) and the
//!   files we own ([`Tree::read_owned`]) follow no link at all: every
//!   folder of the path is opened with `O_NOFOLLOW`, and the file itself is
//!   created, replaced (by rename) or changed through its own descriptor.
//!   A link where a folder or a file of ours is expected is an error that
//!   names it; nothing is written through it.

use anyhow::{Context, Result, bail};
use cap_fs_ext::{DirExt, FollowSymlinks, OpenOptionsFollowExt, OpenOptionsMaybeDirExt};
use cap_std::fs::{Dir, DirBuilder, DirBuilderExt, Metadata, OpenOptions, OpenOptionsExt};
use cap_std::fs::{MetadataExt, Permissions, PermissionsExt};
use std::ffi::{OsStr, OsString};
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::path::{Component, Path, PathBuf};

/// What a write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Changed,
    Unchanged,
}

impl Change {
    pub fn or(self, other: Change) -> Change {
        if self == Change::Changed || other == Change::Changed {
            Change::Changed
        } else {
            Change::Unchanged
        }
    }

    pub fn from_bool(changed: bool) -> Change {
        if changed {
            Change::Changed
        } else {
            Change::Unchanged
        }
    }
}

/// A root folder; every path given to its methods is taken beneath it
/// (`/etc/shadow` and `etc/shadow` name the same file).
pub struct Tree {
    dir: Dir,
    base: PathBuf,
}

/// The parts of a path beneath a root: only plain names (`.` and a leading
/// `/` are dropped, `..` is refused).
pub fn relative(path: &Path) -> io::Result<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{} holds '..'", path.display()),
                ));
            }
        }
    }
    Ok(out)
}

fn split(rel: &Path) -> io::Result<(&Path, &OsStr)> {
    match (rel.parent(), rel.file_name()) {
        (Some(parent), Some(name)) => Ok((parent, name)),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the root itself is not a file",
        )),
    }
}

fn is_link_error(e: &io::Error) -> bool {
    // O_NOFOLLOW on a link: ELOOP; O_DIRECTORY|O_NOFOLLOW on a link: ENOTDIR.
    matches!(e.raw_os_error(), Some(libc::ELOOP) | Some(libc::ENOTDIR))
}

/// The permission bits of a file's metadata.
pub fn mode_of(meta: &Metadata) -> u32 {
    meta.mode() & 0o7777
}

/// Options of a write.
#[derive(Debug, Clone, Copy)]
pub struct WriteOpts {
    pub mode: u32,
    /// Owner and group of the new file; `None` keeps the old file's (root
    /// for a new one).
    pub owner: Option<(u32, u32)>,
    /// Folders made on the way get this mode.
    pub dir_mode: u32,
    /// An existing file keeps its own mode; `mode` is for a new one.
    pub keep_mode: bool,
}

impl WriteOpts {
    /// Exactly `mode`, for files that are ours.
    pub fn mode(mode: u32) -> WriteOpts {
        WriteOpts {
            mode,
            owner: None,
            dir_mode: 0o755,
            keep_mode: false,
        }
    }

    /// For a file of the admin's (`/etc/crontab`, `/etc/shadow`): an
    /// existing file keeps its mode, owner and group; a new one gets
    /// `mode`, root's.
    pub fn keep(mode: u32) -> WriteOpts {
        WriteOpts {
            keep_mode: true,
            ..WriteOpts::mode(mode)
        }
    }
}

/// The most a read of a system file takes in (a larger file is refused,
/// never read whole into memory).
pub const MAX_READ: u64 = 64 << 20;

/// A file that is not what it should be: a FIFO, a device, a folder, or
/// larger than its bound.
fn not_regular(name: &OsStr, meta: &Metadata, max: u64) -> Option<io::Error> {
    if !meta.is_file() {
        let what = if meta.is_dir() {
            "a folder"
        } else if meta.file_type().is_symlink() {
            "a link"
        } else {
            "not a regular file (a FIFO, socket or device)"
        };
        return Some(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is {what}: not read", name.display()),
        ));
    }
    if meta.len() > max {
        return Some(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{} is {} bytes, over the {max} this file may hold: not read",
                name.display(),
                meta.len()
            ),
        ));
    }
    None
}

/// Reads an open regular file to its end, at most `max` bytes (a file
/// that grows past it while read is refused too).
fn read_bounded(file: &mut cap_std::fs::File, name: &OsStr, max: u64) -> io::Result<Vec<u8>> {
    let meta = file.metadata()?;
    if let Some(e) = not_regular(name, &meta, max) {
        return Err(e);
    }
    let mut data = Vec::with_capacity(meta.len() as usize);
    file.take(max + 1).read_to_end(&mut data)?;
    if data.len() as u64 > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} grew over {max} bytes while read", name.display()),
        ));
    }
    Ok(data)
}

impl Tree {
    /// Opens the folder `path` as a root. The folder itself is the caller's
    /// choice (`/`, `--root DIR`); only what lies beneath it is guarded.
    pub fn open(path: &Path) -> Result<Tree> {
        let dir = Dir::open_ambient_dir(path, cap_std::ambient_authority())
            .with_context(|| format!("opening {}", path.display()))?;
        Ok(Tree {
            dir,
            base: path.to_path_buf(),
        })
    }

    /// The root's own path, for messages.
    pub fn base(&self) -> &Path {
        &self.base
    }

    /// `path` as seen from outside, for messages.
    pub fn shown(&self, path: impl AsRef<Path>) -> PathBuf {
        let rel = relative(path.as_ref()).unwrap_or_else(|_| path.as_ref().to_path_buf());
        self.base.join(rel)
    }

    fn ctx(&self, what: &str, path: &Path) -> String {
        format!("{what} {}", self.shown(path).display())
    }

    // ---- reads: links beneath the root are followed

    /// The content of a file (links beneath the root followed). Only a
    /// regular file of at most [`MAX_READ`] bytes is read: the open never
    /// waits (`O_NONBLOCK`: a FIFO put in its place is refused at once).
    pub fn read(&self, path: impl AsRef<Path>) -> io::Result<Vec<u8>> {
        self.read_limited(path, MAX_READ)
    }

    /// Like [`Tree::read`], at most `max` bytes.
    pub fn read_limited(&self, path: impl AsRef<Path>, max: u64) -> io::Result<Vec<u8>> {
        let rel = relative(path.as_ref())?;
        let mut opts = OpenOptions::new();
        opts.read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY);
        let mut file = self.dir.open_with(&rel, &opts)?;
        read_bounded(&mut file, rel.as_os_str(), max)
    }

    /// The content of a text file; invalid UTF-8 is an error.
    pub fn read_string(&self, path: impl AsRef<Path>) -> io::Result<String> {
        String::from_utf8(self.read(path)?)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "not UTF-8 text"))
    }

    /// Whether `path` exists (links beneath the root followed).
    pub fn exists(&self, path: impl AsRef<Path>) -> bool {
        relative(path.as_ref()).is_ok_and(|r| self.dir.exists(r))
    }

    /// Whether `path` is a folder (links beneath the root followed).
    pub fn is_dir(&self, path: impl AsRef<Path>) -> bool {
        relative(path.as_ref()).is_ok_and(|r| self.dir.is_dir(r))
    }

    /// Whether `path` is a regular file (links beneath the root followed).
    pub fn is_file(&self, path: impl AsRef<Path>) -> bool {
        relative(path.as_ref()).is_ok_and(|r| self.dir.is_file(r))
    }

    /// The metadata of `path` itself (a link is not followed).
    pub fn lstat(&self, path: impl AsRef<Path>) -> io::Result<Metadata> {
        self.dir.symlink_metadata(relative(path.as_ref())?)
    }

    /// Whether `path` is a link.
    pub fn is_link(&self, path: impl AsRef<Path>) -> bool {
        self.lstat(path).is_ok_and(|m| m.file_type().is_symlink())
    }

    /// The target of a link, as written (absolute targets included).
    pub fn read_link(&self, path: impl AsRef<Path>) -> io::Result<PathBuf> {
        self.dir.read_link_contents(relative(path.as_ref())?)
    }

    /// The names in a folder, sorted (links beneath the root followed).
    pub fn list(&self, path: impl AsRef<Path>) -> io::Result<Vec<OsString>> {
        let rel = relative(path.as_ref())?;
        let rd = if rel.as_os_str().is_empty() {
            self.dir.entries()?
        } else {
            self.dir.read_dir(rel)?
        };
        let mut names: Vec<OsString> = rd.filter_map(|e| Some(e.ok()?.file_name())).collect();
        names.sort();
        Ok(names)
    }

    // ---- the no-follow walk

    /// Opens folder `rel` following no link, making the missing folders
    /// when `create` is given: the last one with that mode, the ones above
    /// it 0755.
    fn dir_nofollow(&self, rel: &Path, create: Option<u32>) -> io::Result<Dir> {
        let mut dir = self.dir.try_clone()?;
        let count = rel.components().count();
        for (i, c) in rel.components().enumerate() {
            let name = c.as_os_str();
            dir = match dir.open_dir_nofollow(name) {
                Ok(d) => d,
                Err(e) if e.kind() == io::ErrorKind::NotFound && create.is_some() => {
                    let mut b = DirBuilder::new();
                    let mode = if i + 1 == count {
                        create.unwrap_or(0o755)
                    } else {
                        0o755
                    };
                    b.mode(mode);
                    match dir.create_dir_with(name, &b) {
                        Ok(()) => {}
                        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                        Err(e) => return Err(e),
                    }
                    dir.open_dir_nofollow(name)?
                }
                Err(e) if is_link_error(&e) => {
                    return Err(io::Error::new(
                        e.kind(),
                        format!("{} is a link or not a folder: not followed", name.display()),
                    ));
                }
                Err(e) => return Err(e),
            };
        }
        Ok(dir)
    }

    /// A subtree: folder `path` (every folder of it opened without
    /// following links) as a root of its own.
    pub fn subtree(&self, path: impl AsRef<Path>) -> Result<Tree> {
        let rel = relative(path.as_ref())?;
        let dir = self
            .dir_nofollow(&rel, None)
            .with_context(|| self.ctx("opening", &rel))?;
        Ok(Tree {
            dir,
            base: self.base.join(rel),
        })
    }

    /// Folder `path` as a root of its own, its links followed only where
    /// nobody but root could have made them: a link counts when the folder
    /// holding it belongs to root (or to the owner of this tree's root, for
    /// an image builder's tree) and no one else may write there. So
    /// `/home -> data/home` is followed, while a link a user made in a
    /// folder of theirs (their home, `~/.ssh`) is refused. Every step is
    /// taken beneath this root; a link that leads above it fails.
    pub fn subtree_trusted(&self, path: impl AsRef<Path>) -> Result<Tree> {
        let rel = relative(path.as_ref())?;
        let resolved = self
            .resolve_trusted(&rel)
            .with_context(|| self.ctx("resolving", &rel))?;
        self.subtree(&resolved)
    }

    fn resolve_trusted(&self, rel: &Path) -> io::Result<PathBuf> {
        let anchor_uid = self.dir.dir_metadata()?.uid();
        let trusted =
            |m: &Metadata| (m.uid() == 0 || m.uid() == anchor_uid) && m.mode() & 0o022 == 0;
        let mut resolved = PathBuf::new();
        let mut todo: std::collections::VecDeque<OsString> = rel
            .components()
            .map(|c| c.as_os_str().to_os_string())
            .collect();
        let mut hops = 0;
        while let Some(c) = todo.pop_front() {
            if c == "." || c.is_empty() {
                continue;
            }
            if c == ".." {
                if !resolved.pop() {
                    return Err(io::Error::other("a link leads above the root"));
                }
                continue;
            }
            let candidate = resolved.join(&c);
            let meta = self.dir.symlink_metadata(&candidate)?;
            if meta.file_type().is_symlink() {
                hops += 1;
                let holder = if resolved.as_os_str().is_empty() {
                    self.dir.dir_metadata()?
                } else {
                    self.dir.symlink_metadata(&resolved)?
                };
                if hops > 40 || !trusted(&holder) {
                    return Err(io::Error::new(
                        io::ErrorKind::PermissionDenied,
                        format!(
                            "{} is a link in a folder others may write: not followed",
                            candidate.display()
                        ),
                    ));
                }
                let target = self.dir.read_link_contents(&candidate)?;
                if target.is_absolute() {
                    resolved = PathBuf::new();
                }
                let mut next: Vec<OsString> = target
                    .components()
                    .filter(|c| !matches!(c, Component::RootDir | Component::Prefix(_)))
                    .map(|c| c.as_os_str().to_os_string())
                    .collect();
                next.extend(todo.drain(..));
                todo = next.into();
            } else if meta.is_dir() {
                resolved = candidate;
            } else {
                return Err(io::Error::new(
                    io::ErrorKind::NotADirectory,
                    format!("{} is not a folder", candidate.display()),
                ));
            }
        }
        Ok(resolved)
    }
}

/// Replaces the file at the absolute `path` atomically (see
/// [`Tree::write_atomic`]), for our own state files (`GANDI_RUN_DIR`),
/// whose folder is made (0755) when missing.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .with_context(|| format!("{} has no file name", path.display()))?;
    std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    let dir = Dir::open_ambient_dir(parent, cap_std::ambient_authority())
        .with_context(|| format!("opening {}", parent.display()))?;
    write_in(&dir, name, data, WriteOpts::mode(mode))
        .map(|_| ())
        .with_context(|| format!("writing {}", path.display()))
}

pub mod label;
mod nofollow;
use nofollow::write_in;

#[cfg(test)]
mod tests;
