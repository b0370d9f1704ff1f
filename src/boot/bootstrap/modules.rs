//! The kernel modules tarball of the archive, unpacked once per tarball
//! beside the admin's own files, then `depmod`.

use crate::base::runner::Run;
use crate::base::status::Done;
use crate::base::tree::{Tree, WriteOpts};
use crate::platform::archive::{self, Limits};
use crate::platform::ledger::Ledger;
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The modules folder of the tree: `/usr/lib/modules` when `/lib` is a link.
pub(super) fn modules_base(tree: &Tree) -> PathBuf {
    if tree.is_link("/lib") {
        PathBuf::from("usr/lib/modules")
    } else {
        PathBuf::from("lib/modules")
    }
}

/// Installs `/gandi/RELEASE-modules.tar.*` additively: its
/// `lib/modules/RELEASE/` and `boot/` files are added or replaced, nothing
/// else is removed (modules of the admin or DKMS stay), then depmod. Done
/// once per kernel release and tarball (the ledger), since /gandi is
/// extracted again at every boot.
pub(super) fn modules(
    tree: &Tree,
    ledger: &mut Ledger,
    gandi: &Path,
    release: &str,
    live: bool,
) -> Result<Done> {
    if release.is_empty() || release.contains('/') || release.starts_with('.') {
        bail!("{release:?} is not a kernel release");
    }
    let tools = [
        ("gz", "gzip"),
        ("bz2", "bzip2"),
        ("xz", "xz"),
        ("zst", "zstd"),
    ];
    let Some((tarball, tool)) = tools
        .iter()
        .map(|(ext, tool)| (gandi.join(format!("{release}-modules.tar.{ext}")), *tool))
        .find(|(p, _)| tree.lstat(p).is_ok())
    else {
        return Ok(Done::skipped(format!("no modules tarball for {release}")));
    };
    let (data, _) = tree
        .read_owned(&tarball)
        .with_context(|| format!("reading {}", tree.shown(&tarball).display()))?;
    let field = format!("modules:{release}");
    if !ledger.is_new(&field, &data) {
        return Ok(Done::kept(format!(
            "modules of {release} installed before from this tarball"
        )));
    }
    let base = modules_base(tree);
    tree.create_dirs(&base, 0o755)?;
    let parent = tree.subtree(&base)?;
    let staging = archive::Staging::new(&parent, &format!("{release}-modules"))?;
    let stage = staging.tree()?;
    // The tarball was read above as a regular file with no link on its path.
    let n = Run::new(tool)
        .arg("-dc")
        .arg(tree.shown(&tarball))
        .limit(Duration::from_secs(600))
        .stream(|r| archive::extract(r, Path::new(""), &stage, Limits::default()))
        .with_context(|| format!("refusing {}", tree.shown(&tarball).display()))?;
    let tree_rel = PathBuf::from(format!("lib/modules/{release}"));
    if stage.lstat(&tree_rel).is_err() {
        bail!("{} holds no lib/modules/{release}", tarball.display());
    }
    let staged = base.join(staging.name());
    let mut left = Vec::new();
    let added = merge(
        tree,
        &staged.join(&tree_rel),
        &base.join(release),
        &|_| true,
        &mut left,
    )?;
    let boot = match stage.lstat("boot") {
        Ok(m) if m.is_dir() => merge(
            tree,
            &staged.join("boot"),
            Path::new("boot"),
            // Only the files of this kernel: the admin's (grub.cfg, other
            // kernels) are never replaced.
            &|name| name.contains(release),
            &mut left,
        )?,
        Ok(_) => {
            left.push("boot (not a folder in the tarball)".to_string());
            0
        }
        Err(_) => 0,
    };
    drop(staging);
    clear_depmod_leftovers(tree, &base.join(release));
    let mut depmod = Run::new("depmod").limit(Duration::from_secs(300));
    if !live {
        depmod = depmod.arg("-b").arg(tree.base());
    }
    depmod.arg(release).output()?;
    ledger.set(&field, &data);
    let mut detail = format!(
        "{n} entries: {added} files into {}, {boot} into /boot; depmod",
        tree.shown(base.join(release)).display()
    );
    if !left.is_empty() {
        detail.push_str(&format!(
            "; left as they are: {}",
            left.iter().take(10).cloned().collect::<Vec<_>>().join(", ")
        ));
    }
    Ok(Done::changed(detail))
}

/// depmod writes each index as `modules.X.PID.N.TIME` then renames it: a
/// depmod killed half-way leaves those. Removed when their process is gone.
pub(super) fn clear_depmod_leftovers(tree: &Tree, dir: &Path) {
    for name in tree.list(dir).unwrap_or_default() {
        let Some(n) = name.to_str() else {
            continue;
        };
        let parts: Vec<&str> = n.rsplitn(4, '.').collect();
        let numeric = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
        if n.starts_with("modules.")
            && parts.len() == 4
            && parts[..3].iter().all(|p| numeric(p))
            && parts[2]
                .parse::<u32>()
                .is_ok_and(|pid| !crate::base::process::alive(pid))
        {
            let _ = tree.remove_file(dir.join(n));
        }
    }
}

/// Moves the entries of `from` into `to` (both beneath `tree`), following
/// no link: a folder goes into the folder of the same name, a file or a
/// link replaces a file or link of the same name when `replace` allows
/// that name, and is added otherwise. What is already there and must stay
/// (a folder where the tarball has a file, a file or link where it has a
/// folder, a name `replace` refuses) is left as it is and named in `left`.
/// Files become 0644 (0755 when executable), folders 0755. Returns the
/// number of entries moved.
pub(super) fn merge(
    tree: &Tree,
    from: &Path,
    to: &Path,
    replace: &dyn Fn(&str) -> bool,
    left: &mut Vec<String>,
) -> Result<usize> {
    tree.create_dirs(to, 0o755)?;
    let mut n = 0;
    for name in tree.list_nofollow(from)? {
        let (src, dst) = (from.join(&name), to.join(&name));
        let meta = tree.lstat(&src)?;
        let there = tree.lstat(&dst).ok();
        let shown = || tree.shown(&dst).display().to_string();
        if meta.is_dir() {
            match there {
                Some(m) if !m.is_dir() => left.push(shown()),
                _ => n += merge(tree, &src, &dst, replace, left)?,
            }
            continue;
        }
        if !meta.is_file() && !meta.file_type().is_symlink() {
            continue;
        }
        match there {
            Some(m) if m.is_dir() => {
                left.push(shown());
                continue;
            }
            Some(_) if !replace(&name.to_string_lossy()) => {
                left.push(shown());
                continue;
            }
            _ => {}
        }
        if meta.is_file() {
            let exec = crate::base::tree::mode_of(&meta) & 0o100 != 0;
            tree.set_mode(&src, if exec { 0o755 } else { 0o644 })?;
        }
        if let Err(e) = tree.rename(&src, &dst) {
            // Another filesystem (/boot): copied.
            if meta.is_file() {
                let (data, m) = tree.read_owned(&src)?;
                tree.write_atomic(&dst, &data, WriteOpts::mode(crate::base::tree::mode_of(&m)))?;
            } else if meta.file_type().is_symlink() {
                tree.set_link(&dst, &tree.read_link(&src)?)?;
            } else {
                return Err(e);
            }
        }
        n += 1;
    }
    Ok(n)
}
