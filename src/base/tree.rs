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

    /// The names in folder `path`, sorted, no link followed on the way (a
    /// link where a folder is expected is an error).
    pub fn list_nofollow(&self, path: impl AsRef<Path>) -> io::Result<Vec<OsString>> {
        let rel = relative(path.as_ref())?;
        let dir = self.dir_nofollow(&rel, None)?;
        let mut names: Vec<OsString> = dir
            .entries()?
            .filter_map(|e| Some(e.ok()?.file_name()))
            .collect();
        names.sort();
        Ok(names)
    }

    /// Makes folder `path` and its missing parents (no link followed):
    /// `path` gets `mode` when made, the parents 0755.
    pub fn create_dirs(&self, path: impl AsRef<Path>, mode: u32) -> Result<()> {
        let rel = relative(path.as_ref())?;
        self.dir_nofollow(&rel, Some(mode))
            .map(drop)
            .with_context(|| self.ctx("creating", &rel))
    }

    /// Opens a file of ours for reading: no link anywhere in its path, and
    /// it must be a regular file of at most [`MAX_READ`] bytes (the open
    /// never waits: a FIFO is refused at once). Returns its content and
    /// metadata.
    pub fn read_owned(&self, path: impl AsRef<Path>) -> io::Result<(Vec<u8>, Metadata)> {
        self.read_owned_limited(path, MAX_READ)
    }

    /// Like [`Tree::read_owned`], at most `max` bytes.
    pub fn read_owned_limited(
        &self,
        path: impl AsRef<Path>,
        max: u64,
    ) -> io::Result<(Vec<u8>, Metadata)> {
        let rel = relative(path.as_ref())?;
        let (parent, name) = split(&rel)?;
        let dir = self.dir_nofollow(parent, None)?;
        let mut opts = OpenOptions::new();
        opts.read(true)
            .follow(FollowSymlinks::No)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY);
        let mut file = dir.open_with(name, &opts).map_err(|e| {
            if is_link_error(&e) {
                io::Error::new(
                    e.kind(),
                    format!("{} is a link: not followed", name.display()),
                )
            } else {
                e
            }
        })?;
        let data = read_bounded(&mut file, name, max)?;
        let meta = file.metadata()?;
        Ok((data, meta))
    }

    /// Opens a file of ours (as [`Tree::read_owned`]) for changes of its
    /// mode and owner.
    fn open_owned(&self, rel: &Path) -> io::Result<cap_std::fs::File> {
        let (parent, name) = split(rel)?;
        let dir = self.dir_nofollow(parent, None)?;
        let mut opts = OpenOptions::new();
        opts.read(true)
            .maybe_dir(true)
            .follow(FollowSymlinks::No)
            .custom_flags(libc::O_NONBLOCK);
        dir.open_with(name, &opts)
    }

    // ---- writes: no link followed

    /// Replaces `path` with `data` atomically: a temporary file in the same
    /// folder, written, given its mode and owner, synced, renamed over the
    /// name, then the folder synced. A reader sees the old content or the
    /// new, never a mix; a link at `path` is replaced, never written
    /// through. Temporary files left by a process that died are removed.
    /// A regular file replaced keeps its owner and group unless `w.owner`
    /// says otherwise (and its mode with [`WriteOpts::keep`]).
    pub fn write_atomic(&self, path: impl AsRef<Path>, data: &[u8], w: WriteOpts) -> Result<()> {
        let rel = relative(path.as_ref())?;
        let (parent, name) = split(&rel)?;
        let dir = self
            .dir_nofollow(parent, Some(w.dir_mode))
            .with_context(|| self.ctx("opening the folder of", &rel))?;
        write_in(&dir, name, data, w).with_context(|| self.ctx("writing", &rel))
    }

    /// Writes `data` unless the file already holds exactly it with `mode`.
    /// An existing file keeps its owner (unless `w.owner` says otherwise);
    /// only the mode is fixed when only the mode differs. A link at `path`
    /// is left alone and reported: it is not ours to replace.
    pub fn write_if_changed(
        &self,
        path: impl AsRef<Path>,
        data: &[u8],
        w: WriteOpts,
    ) -> Result<Change> {
        let rel = relative(path.as_ref())?;
        if self.is_link(&rel) {
            bail!(
                "{} is a link: left as it is (not ours to replace)",
                self.shown(&rel).display()
            );
        }
        match self.read_owned(&rel) {
            Ok((old, meta)) => {
                let owner = w.owner.unwrap_or((meta.uid(), meta.gid()));
                let same_owner = owner == (meta.uid(), meta.gid());
                let mode = if w.keep_mode {
                    meta.mode() & 0o7777
                } else {
                    w.mode
                };
                if old == data && same_owner {
                    if meta.mode() & 0o7777 != mode {
                        self.set_mode(&rel, mode)?;
                        return Ok(Change::Changed);
                    }
                    return Ok(Change::Unchanged);
                }
                self.write_atomic(
                    &rel,
                    data,
                    WriteOpts {
                        owner: Some(owner),
                        mode,
                        keep_mode: false,
                        ..w
                    },
                )?;
                Ok(Change::Changed)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.write_atomic(&rel, data, w)?;
                Ok(Change::Changed)
            }
            Err(e) => Err(e).with_context(|| self.ctx("reading", &rel)),
        }
    }

    /// Sets the mode of a file or folder of ours (no link followed).
    pub fn set_mode(&self, path: impl AsRef<Path>, mode: u32) -> Result<()> {
        let rel = relative(path.as_ref())?;
        let file = self
            .open_owned(&rel)
            .with_context(|| self.ctx("opening", &rel))?;
        file.set_permissions(Permissions::from_mode(mode))
            .with_context(|| self.ctx("changing the mode of", &rel))
    }

    /// Sets the owner of a file or folder of ours (no link followed).
    pub fn chown(&self, path: impl AsRef<Path>, uid: u32, gid: u32) -> Result<()> {
        let rel = relative(path.as_ref())?;
        let file = self
            .open_owned(&rel)
            .with_context(|| self.ctx("opening", &rel))?;
        std::os::unix::fs::fchown(file.as_fd(), Some(uid), Some(gid))
            .with_context(|| self.ctx("changing the owner of", &rel))
    }

    /// Removes a file or link (no link followed on the way). A missing
    /// file is not an error; returns whether one was removed.
    pub fn remove_file(&self, path: impl AsRef<Path>) -> Result<bool> {
        let rel = relative(path.as_ref())?;
        let (parent, name) = split(&rel)?;
        let dir = match self.dir_nofollow(parent, None) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e).with_context(|| self.ctx("removing", &rel)),
        };
        match dir.remove_file_or_symlink(name) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e).with_context(|| self.ctx("removing", &rel)),
        }
    }

    /// Removes a folder and everything in it (links removed, not followed).
    /// A missing folder is not an error.
    pub fn remove_tree(&self, path: impl AsRef<Path>) -> Result<()> {
        let rel = relative(path.as_ref())?;
        let (parent, name) = split(&rel)?;
        let dir = match self.dir_nofollow(parent, None) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e).with_context(|| self.ctx("removing", &rel)),
        };
        match dir.symlink_metadata(name) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Ok(m) if !m.is_dir() => dir
                .remove_file_or_symlink(name)
                .with_context(|| self.ctx("removing", &rel)),
            _ => dir
                .remove_dir_all(name)
                .with_context(|| self.ctx("removing", &rel)),
        }
    }

    /// Points link `path` at `target` (written as given), atomically: a new
    /// link renamed over the name.
    pub fn set_link(&self, path: impl AsRef<Path>, target: &Path) -> Result<Change> {
        let rel = relative(path.as_ref())?;
        if self.read_link(&rel).ok().as_deref() == Some(target) {
            return Ok(Change::Unchanged);
        }
        let (parent, name) = split(&rel)?;
        let dir = self
            .dir_nofollow(parent, Some(0o755))
            .with_context(|| self.ctx("opening the folder of", &rel))?;
        clean_temps(&dir, name);
        let tmp = temp_name(name, 0);
        let _ = dir.remove_file_or_symlink(&tmp);
        dir.symlink_contents(target, &tmp)
            .and_then(|()| dir.rename(&tmp, &dir, name))
            .and_then(|()| sync_dir(&dir))
            .with_context(|| self.ctx("linking", &rel))?;
        Ok(Change::Changed)
    }

    /// Makes link `path` to `target` unless something is there already
    /// (a folder of ours, never written through a link).
    pub fn symlink_new(&self, target: &Path, path: impl AsRef<Path>) -> Result<()> {
        let rel = relative(path.as_ref())?;
        let (parent, name) = split(&rel)?;
        let dir = self
            .dir_nofollow(parent, None)
            .with_context(|| self.ctx("opening the folder of", &rel))?;
        dir.symlink_contents(target, name)
            .with_context(|| self.ctx("linking", &rel))
    }

    /// Renames `from` to `to`, both beneath this root, no link followed on
    /// the way (a link at either name is moved or replaced, not followed).
    pub fn rename(&self, from: impl AsRef<Path>, to: impl AsRef<Path>) -> Result<()> {
        let (from, to) = (relative(from.as_ref())?, relative(to.as_ref())?);
        let (fp, fname) = split(&from)?;
        let (tp, tname) = split(&to)?;
        let fdir = self.dir_nofollow(fp, None)?;
        let tdir = self.dir_nofollow(tp, None)?;
        fdir.rename(fname, &tdir, tname)
            .and_then(|()| sync_dir(&tdir))
            .with_context(|| {
                format!(
                    "renaming {} to {}",
                    self.shown(&from).display(),
                    self.shown(&to).display()
                )
            })
    }

    /// Takes an exclusive lock on the file `path` (made, with its folders,
    /// when missing; no link followed). Waits when `wait`; else `None` when
    /// another process holds it. Released when dropped.
    pub fn lock(&self, path: impl AsRef<Path>, wait: bool) -> Result<Option<std::fs::File>> {
        self.lock_for(
            path,
            if wait {
                None
            } else {
                Some(std::time::Duration::ZERO)
            },
        )
    }

    /// Like [`Tree::lock`], waiting at most `limit` (`None`: no limit).
    pub fn lock_for(
        &self,
        path: impl AsRef<Path>,
        limit: Option<std::time::Duration>,
    ) -> Result<Option<std::fs::File>> {
        let rel = relative(path.as_ref())?;
        let (parent, name) = split(&rel)?;
        let dir = self
            .dir_nofollow(parent, Some(0o755))
            .with_context(|| self.ctx("opening the folder of", &rel))?;
        let mut opts = OpenOptions::new();
        opts.read(true)
            .write(true)
            .create(true)
            .mode(0o600)
            .follow(FollowSymlinks::No);
        let file = dir
            .open_with(name, &opts)
            .with_context(|| self.ctx("opening", &rel))?
            .into_std();
        let Some(limit) = limit else {
            file.lock().with_context(|| self.ctx("locking", &rel))?;
            return Ok(Some(file));
        };
        let deadline = std::time::Instant::now() + limit;
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(Some(file)),
                Err(std::fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(std::fs::TryLockError::WouldBlock) => return Ok(None),
                Err(std::fs::TryLockError::Error(e)) => {
                    return Err(e).with_context(|| self.ctx("locking", &rel));
                }
            }
        }
    }

    /// Writes everything of the filesystem that holds this root to its disk
    /// (`syncfs`): what was written beneath it survives a power cut.
    pub fn syncfs(&self) -> Result<()> {
        // The handle may be a path-only descriptor: opened again to sync.
        let mut opts = OpenOptions::new();
        opts.read(true).maybe_dir(true);
        let dir = self
            .dir
            .open_with(".", &opts)
            .with_context(|| self.ctx("opening", Path::new("")))?;
        nix::unistd::syncfs(dir.as_fd())
            .with_context(|| format!("syncing the filesystem of {}", self.base.display()))
    }

    /// The raw directory handle, for the archive reader.
    pub(crate) fn dir(&self) -> &Dir {
        &self.dir
    }

    /// The folder `rel` opened without following links (for the archive
    /// reader, which creates entries one name at a time).
    pub(crate) fn folder(&self, rel: &Path, create: Option<u32>) -> io::Result<Dir> {
        self.dir_nofollow(rel, create)
    }
}

fn temp_name(name: &OsStr, attempt: u32) -> OsString {
    let mut tmp = OsString::from(".");
    tmp.push(name);
    tmp.push(format!(".gandi-tmp.{}.{attempt}", std::process::id()));
    tmp
}

/// Removes the temporary files of `name` left by processes that are gone
/// (killed between creating and renaming them).
fn clean_temps(dir: &Dir, name: &OsStr) {
    let mut prefix = OsString::from(".");
    prefix.push(name);
    prefix.push(".gandi-tmp.");
    let prefix = prefix.as_encoded_bytes().to_vec();
    let Ok(entries) = dir.entries() else {
        return;
    };
    for e in entries.flatten() {
        let n = e.file_name();
        let Some(rest) = n.as_encoded_bytes().strip_prefix(prefix.as_slice()) else {
            continue;
        };
        let pid = std::str::from_utf8(rest)
            .ok()
            .and_then(|r| r.split('.').next())
            .and_then(|p| p.parse::<u32>().ok());
        if let Some(pid) = pid
            && pid != std::process::id()
            && !Path::new("/proc").join(pid.to_string()).exists()
        {
            let _ = dir.remove_file_or_symlink(&n);
        }
    }
}

fn sync_dir(dir: &Dir) -> io::Result<()> {
    // The handle may be a path-only descriptor: the folder is opened again
    // to be synced.
    let mut opts = OpenOptions::new();
    opts.read(true).maybe_dir(true);
    dir.open_with(".", &opts)?.sync_all()
}

/// The atomic replacement of `name` in `dir` (see [`Tree::write_atomic`]).
fn write_in(dir: &Dir, name: &OsStr, data: &[u8], mut w: WriteOpts) -> io::Result<()> {
    clean_temps(dir, name);
    // The owner the file had, kept where we may set it (a run that is not
    // root, an image builder's, makes its files its own).
    let mut kept_owner = None;
    if let Ok(old) = dir.symlink_metadata(name)
        && old.is_file()
    {
        if w.owner.is_none() {
            kept_owner = Some((old.uid(), old.gid()));
        }
        if w.keep_mode {
            w.mode = old.mode() & 0o7777;
        }
    }
    let mut attempt = 0u32;
    let (tmp, mut file) = loop {
        let tmp = temp_name(name, attempt);
        let mut opts = OpenOptions::new();
        opts.write(true)
            .create_new(true)
            .mode(w.mode)
            .follow(FollowSymlinks::No);
        match dir.open_with(&tmp, &opts) {
            Ok(f) => break (tmp, f),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt < 100 => attempt += 1,
            Err(e) => return Err(e),
        }
    };
    let result = (|| -> io::Result<()> {
        if let Some((uid, gid)) = w.owner {
            std::os::unix::fs::fchown(file.as_fd(), Some(uid), Some(gid))?;
        } else if let Some((uid, gid)) = kept_owner {
            let new = file.metadata()?;
            if (new.uid(), new.gid()) != (uid, gid) {
                match std::os::unix::fs::fchown(file.as_fd(), Some(uid), Some(gid)) {
                    Err(e)
                        if e.raw_os_error() == Some(libc::EPERM)
                            && !nix::unistd::geteuid().is_root() => {}
                    other => other?,
                }
            }
        }
        // After the owner: chown clears the set-id bits.
        file.set_permissions(Permissions::from_mode(w.mode))?;
        file.write_all(data)?;
        file.sync_all()?;
        dir.rename(&tmp, dir, name)?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = dir.remove_file(&tmp);
    }
    result
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
        .with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests;
