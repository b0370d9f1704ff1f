//! The tree's side that follows no link: the files we own read, folders
//! listed and made, files replaced atomically (a temporary in the same
//! folder, synced, renamed, the folder synced), modes, owners, links,
//! renames, removals and locks.

use super::*;

impl Tree {
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
        let labelled = write_in(&dir, name, data, w).with_context(|| self.ctx("writing", &rel))?;
        // A new file, or one that replaced a link or FIFO or whose label
        // the kernel refused: the policy's label.
        if !labelled && self.base() == Path::new("/") {
            label::label_new(&self.base().join(&rel));
        }
        Ok(())
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
        let held = crate::base::lock::lock_open(&file, limit)
            .with_context(|| self.ctx("locking", &rel))?;
        Ok(held.then_some(file))
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
/// Returns whether the file kept the SELinux label of the one it replaced
/// (false for a new file, or with no label to keep).
pub(super) fn write_in(dir: &Dir, name: &OsStr, data: &[u8], mut w: WriteOpts) -> io::Result<bool> {
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
    // Only a regular file's label is kept (a link at the name is replaced,
    // never opened).
    let label = match dir.symlink_metadata(name) {
        Ok(m) if m.is_file() => label::label_of(dir, name)?,
        _ => None,
    };
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
    let result = (|| -> io::Result<bool> {
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
        let labelled = match &label {
            Some(l) => label::set_label(&file, l)?,
            None => false,
        };
        file.write_all(data)?;
        file.sync_all()?;
        dir.rename(&tmp, dir, name)?;
        sync_dir(dir)?;
        Ok(labelled)
    })();
    if result.is_err() {
        let _ = dir.remove_file(&tmp);
    }
    result
}
