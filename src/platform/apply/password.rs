//! The password step: the platform's hash set in `/etc/shadow` under the
//! lock `passwd` and `useradd` take, stale locks of dead processes removed.

use super::*;

/// The lock `/etc/.pwd.lock` that shadow tools (useradd, passwd) take, as
/// `lckpwdf(3)` does: an fcntl write lock, waited for up to 15 s. Released
/// when dropped (the descriptor closes).
pub struct PwdLock(#[allow(dead_code)] std::fs::File);

pub fn pwd_lock(t: &Tree) -> Result<PwdLock> {
    let rel = Path::new("etc/.pwd.lock");
    if !t.exists(rel) {
        t.write_atomic(rel, b"", WriteOpts::mode(0o600))?;
    }
    let file = t
        .dir()
        .open_with(rel, cap_std::fs::OpenOptions::new().read(true).write(true))
        .with_context(|| format!("opening {}", t.shown(rel).display()))?
        .into_std();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let lock = libc::flock {
            l_type: libc::F_WRLCK as i16,
            l_whence: libc::SEEK_SET as i16,
            l_start: 0,
            l_len: 0,
            l_pid: 0,
        };
        match nix::fcntl::fcntl(file.as_fd(), nix::fcntl::FcntlArg::F_SETLK(&lock)) {
            Ok(_) => return Ok(PwdLock(file)),
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => bail!(
                "{} is held by another program ({e})",
                t.shown(rel).display()
            ),
        }
    }
}

/// Sets the password hash of `user` in `/etc/shadow`, under the shadow
/// lock; the file keeps its owner, group and mode.
pub fn set_password(t: &Tree, user: &str, hash: &str) -> Result<Change> {
    let _lock = pwd_lock(t)?;
    let rel = Path::new("etc/shadow");
    let (data, meta) = t
        .read_owned(rel)
        .with_context(|| format!("reading {}", t.shown(rel).display()))?;
    let text = String::from_utf8(data).context("/etc/shadow is not UTF-8")?;
    let mut found = false;
    let mut out = String::with_capacity(text.len() + hash.len());
    for line in text.split_inclusive('\n') {
        let body = line.strip_suffix('\n').unwrap_or(line);
        let mut fields: Vec<&str> = body.split(':').collect();
        if fields.first() == Some(&user) && fields.len() >= 2 && !found {
            found = true;
            fields[1] = hash;
            out.push_str(&fields.join(":"));
            out.push('\n');
        } else {
            out.push_str(line);
        }
    }
    if !found {
        bail!("{} has no line for {user}", t.shown(rel).display());
    }
    t.write_if_changed(
        rel,
        out.as_bytes(),
        WriteOpts::mode(meta.mode() & 0o7777 & 0o640),
    )
}

/// The files shadow's tools lock by linking `FILE.lock` to `FILE.PID`.
/// shadow removes a lock whose process is gone by itself, but it cannot
/// tell a PID of an earlier boot from a process of this one: after a power
/// cut, the PID in a leftover lock is often alive again (another program),
/// and every later `useradd` fails. A lock is stale when its process is
/// gone, or when it was made before this boot (live system only).
///
/// `FILE.PID` is removed only when it is a leftover of that lock: a
/// regular file of at most 20 bytes holding exactly that PID, and stale.
/// The name alone cannot tell: an admin's backup `/etc/shadow.20240101`
/// or `group.1999` has the same shape, and is never touched.
pub(super) fn clear_stale_shadow_locks(t: &Tree) {
    let live = t.base() == Path::new("/");
    let booted = if live { boot_time() } else { None };
    let stale = |rel: &str, pid: u32| -> bool {
        let before_boot = booted.is_some_and(|b| {
            t.lstat(rel)
                .ok()
                .and_then(|m| m.modified().ok())
                .and_then(|m| m.into_std().duration_since(std::time::UNIX_EPOCH).ok())
                .is_some_and(|m| m.as_secs() < b)
        });
        before_boot || !crate::base::process::alive(pid)
    };
    // The PID a lock file holds, when it is one: a small regular file of
    // digits, as shadow writes it (its string's NUL included; a newline
    // allowed).
    let lock_pid = |rel: &str| -> Option<u32> {
        let (data, meta) = t.read_owned_limited(rel, 20).ok()?;
        if !meta.is_file() {
            return None;
        }
        let text = std::str::from_utf8(&data).ok()?;
        let text = text.strip_suffix('\0').unwrap_or(text);
        let digits = text.strip_suffix('\n').unwrap_or(text);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        digits.parse().ok()
    };
    // A tool killed between creating `FILE.PID` (mode 0600) and writing
    // its PID leaves it empty. Such a file is taken for a leftover only
    // when it was made in this boot (live system): an admin's empty file
    // of an earlier boot is never touched, and a leftover of an earlier
    // boot is harmless (shadow reads `FILE.lock` only).
    let just_created = |rel: &str| -> bool {
        t.lstat(rel).is_ok_and(|m| {
            let made_this_boot = match booted {
                Some(b) => m
                    .modified()
                    .ok()
                    .and_then(|m| m.into_std().duration_since(std::time::UNIX_EPOCH).ok())
                    .is_some_and(|m| m.as_secs() >= b),
                None => !live,
            };
            m.is_file() && m.len() == 0 && m.mode() & 0o7777 == 0o600 && made_this_boot
        })
    };
    let names: Vec<String> = t
        .list_nofollow("/etc")
        .unwrap_or_default()
        .into_iter()
        .filter_map(|n| n.into_string().ok())
        .collect();
    for file in ["passwd", "group", "shadow", "gshadow", "subuid", "subgid"] {
        let lock = format!("/etc/{file}.lock");
        if let Some(pid) = lock_pid(&lock)
            && stale(&lock, pid)
        {
            log::warn!("{lock}: a lock of process {pid}, which is gone: removed");
            let _ = t.remove_file(&lock);
        }
        // FILE.PID left by a tool killed before it linked or removed it.
        let prefix = format!("{file}.");
        for n in &names {
            let Some(pid) = n.strip_prefix(&prefix).and_then(|p| p.parse::<u32>().ok()) else {
                continue;
            };
            let rel = format!("/etc/{n}");
            let leftover = lock_pid(&rel) == Some(pid) || just_created(&rel);
            if leftover && stale(&rel, pid) {
                log::warn!("{rel}: left by process {pid}, which is gone: removed");
                let _ = t.remove_file(&rel);
            }
        }
    }
}

/// When this boot began, in seconds since the epoch (`btime` of
/// `/proc/stat`).
pub(super) fn boot_time() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}
