//! Applying the platform's values to a system tree: password, users, SSH
//! keys, hostname, resolvers. Every function works beneath the tree's root
//! (see `tree`), writes atomically, changes only the lines it owns (see
//! `marked`), and reports whether anything changed.

use crate::base::block::{self, Place};
use crate::base::runner::Run;
use crate::base::tree::{Change, Tree, WriteOpts};
use crate::platform::ledger::{Ledger, fingerprint};
use anyhow::{Context, Result, bail};
use cap_std::fs::MetadataExt;
use std::collections::HashSet;
use std::net::IpAddr;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

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

/// An account of `/etc/passwd`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
}

/// The account of `user` in the tree's `/etc/passwd`.
pub fn account(t: &Tree, user: &str) -> Option<Account> {
    let text = t.read_string("/etc/passwd").ok()?;
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 7 && f[0] == user).then(|| {
            Some(Account {
                uid: f[2].parse().ok()?,
                gid: f[3].parse().ok()?,
                home: PathBuf::from(f[5]),
            })
        })?
    })
}

/// The lowest UID of a person's account; below are system accounts.
pub const FIRST_USER_UID: u32 = 1000;

/// The most an `authorized_keys` we edit may hold.
pub const MAX_KEYS_FILE: u64 = 1 << 20;

/// Whether `uid` is a system account's: below 1000, `nobody` and
/// `nfsnobody` (65534), and the two values that mean "no user" (-1, -2).
pub fn system_uid(uid: u32) -> bool {
    uid < FIRST_USER_UID || uid == 65534 || uid >= u32::MAX - 1
}

/// The group the platform's user is created in, as the original chose it:
/// the first of `wheel`, `admin`, `users` the tree has; `None` when it has
/// none (the user then gets a group of its own).
pub fn user_group(t: &Tree) -> Option<&'static str> {
    let groups = t.read_string("/etc/group").unwrap_or_default();
    ["wheel", "admin", "users"]
        .into_iter()
        .find(|g| groups.lines().any(|l| l.split(':').next() == Some(g)))
}

/// Creates `login` (with a home and `/bin/bash`, in the group
/// [`user_group`] names) unless it exists; returns what it did and the
/// group. An existing system account (UID below 1000) is refused: its home
/// is not a place for keys.
///
/// `useradd` writes four files and a home, and is not crash-safe across
/// them: a mark in `state_dir` (synced) says a creation of ours started,
/// and whether the home was there before it. When a creation was cut short,
/// what it made is removed and it starts again, which ends as an
/// uninterrupted run does. The home's skeleton is the tree's `/etc/skel`
/// (`useradd --prefix` would copy the host's).
pub fn create_user(t: &Tree, login: &str, state_dir: &Path) -> Result<(Change, String)> {
    let group = user_group(t);
    let shown = group.unwrap_or(login).to_string();
    let mark = state_dir.join("useradd-started");
    // The mark: the login, whether its home was there, whether a group of
    // its own was made (marks of earlier versions, without it, made one).
    let cut_short = t.read_string(&mark).ok().and_then(|m| {
        let mut f = m.trim().split('\t');
        let (who, home_existed, own_group) = (f.next()?, f.next()?, f.next().unwrap_or("1"));
        (who == login).then_some((home_existed == "1", own_group == "1"))
    });
    if let Some((home_existed, own_group)) = cut_short {
        log::warn!("{login}: a creation cut short: made again");
        if let Some(a) = account(t, login)
            && !home_existed
            && !system_uid(a.uid)
        {
            t.remove_tree(&a.home)?;
        }
        remove_account_lines(t, login, own_group)?;
    } else if let Some(a) = account(t, login) {
        if system_uid(a.uid) {
            bail!(
                "{login} is a system account (UID {}): no keys are given to it",
                a.uid
            );
        }
        return Ok((Change::Unchanged, shown));
    }
    let home = Path::new("/home").join(login);
    let home_existed = t.lstat(&home).is_ok();
    t.create_dirs(state_dir, 0o700)?;
    t.write_atomic(
        &mark,
        format!(
            "{login}\t{}\t{}\n",
            u8::from(home_existed),
            u8::from(group.is_none())
        )
        .as_bytes(),
        WriteOpts::mode(0o600),
    )?;
    clear_stale_shadow_locks(t);
    let mut run = Run::new("useradd").limit(Duration::from_secs(60));
    if t.base() != Path::new("/") {
        run = run.arg("--prefix").arg(t.base());
    }
    run = run.arg("--skel").arg(t.shown("/etc/skel"));
    run = match group {
        Some(g) => run.args(["--gid", g]),
        None => run.arg("--user-group"),
    };
    run.args(["--create-home", "--shell", "/bin/bash", login])
        .output()?;
    t.remove_file(&mark)?;
    Ok((Change::Changed, shown))
}

/// Removes the lines of `login` from the account files (and of the group
/// named after it when the creation made one: `own_group`), under the
/// shadow lock. A group of that name that was there before (`users`,
/// `docker`) is never taken.
fn remove_account_lines(t: &Tree, login: &str, own_group: bool) -> Result<()> {
    let _lock = pwd_lock(t)?;
    let files: &[&str] = if own_group {
        &["/etc/passwd", "/etc/shadow", "/etc/group", "/etc/gshadow"]
    } else {
        &["/etc/passwd", "/etc/shadow"]
    };
    for file in files.iter().copied() {
        let Ok((data, meta)) = t.read_owned(file) else {
            continue;
        };
        let text = String::from_utf8_lossy(&data);
        let kept: String = text
            .split_inclusive('\n')
            .filter(|l| l.split(':').next() != Some(login))
            .collect();
        if kept != text {
            t.write_atomic(file, kept.as_bytes(), WriteOpts::mode(meta.mode() & 0o7777))?;
        }
    }
    Ok(())
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
fn clear_stale_shadow_locks(t: &Tree) {
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
fn boot_time() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// What became of the platform's keys for one user.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct KeysOutcome {
    pub change: Option<Change>,
    pub added: usize,
    pub removed: usize,
    /// Given again by the platform, but removed by the admin since it was
    /// applied: left out.
    pub left_out: usize,
}

impl KeysOutcome {
    pub fn detail(&self, given: usize) -> String {
        let mut parts = vec![format!("{given} given")];
        if self.added > 0 {
            parts.push(format!("{} added", self.added));
        }
        if self.removed > 0 {
            parts.push(format!("{} no longer given, removed", self.removed));
        }
        if self.left_out > 0 {
            parts.push(format!(
                "{} kept out (removed by the admin since applied)",
                self.left_out
            ));
        }
        parts.join(", ")
    }
}

/// Puts the platform's `keys` in the marked block of `user`'s
/// `authorized_keys`: a key is added when it is new (never applied before),
/// stays while the platform gives it, and goes when the platform no longer
/// does; a key the admin removed from the block stays removed while the
/// platform gives it. Lines outside the block are the admin's.
pub fn set_keys(t: &Tree, ledger: &mut Ledger, user: &str, keys: &[String]) -> Result<KeysOutcome> {
    let acct = account(t, user)
        .with_context(|| format!("{user} is not in {}", t.shown("/etc/passwd").display()))?;
    if user != "root" && system_uid(acct.uid) {
        bail!(
            "{user} is a system account (UID {}): no keys are given to it",
            acct.uid
        );
    }
    // The home is found through the links root made (`/home ->
    // data/home`); what lies inside it is the user's, so nothing there is
    // followed, waited on or read unbounded.
    let home = match t.subtree_trusted(&acct.home) {
        Ok(home) => home,
        Err(e) if t.lstat(&acct.home).is_err() => {
            bail!(
                "the home of {user}, {}, is missing ({e:#})",
                t.shown(&acct.home).display()
            )
        }
        Err(e) => return Err(e),
    };
    let prefix = format!("key:{user}:");
    if ledger.keeps_all() {
        // The ledger was damaged: what the admin did with the keys cannot
        // be told, so the file is left, and the keys given are recorded.
        for k in keys {
            ledger.set(
                &format!("{prefix}{}", fingerprint("key", k.as_bytes())),
                b"1",
            );
        }
        return Ok(KeysOutcome {
            change: Some(Change::Unchanged),
            left_out: keys.len(),
            ..KeysOutcome::default()
        });
    }
    let dir = Path::new(".ssh");
    let path = dir.join("authorized_keys");
    let shown = t.shown(acct.home.join(&path));
    let mut out = KeysOutcome::default();
    let mut change = Change::Unchanged;
    if home.lstat(dir).is_err() {
        home.create_dirs(dir, 0o700)?;
        home.chown(dir, acct.uid, acct.gid)?;
        change = Change::Changed;
    }
    let (old, mode) = match home.read_owned_limited(&path, MAX_KEYS_FILE) {
        Ok((data, meta)) => {
            if meta.nlink() > 1 {
                bail!(
                    "{} has other names (a hard link): left as it is",
                    shown.display()
                );
            }
            if meta.uid() != acct.uid && meta.uid() != 0 {
                bail!(
                    "{} belongs to UID {}, neither {user} nor root: left as it is",
                    shown.display(),
                    meta.uid()
                );
            }
            let text = String::from_utf8(data)
                .with_context(|| format!("{} is not UTF-8", shown.display()))?;
            // The user's own mode, less what sshd refuses (group or
            // others writing).
            (text, meta.mode() & 0o7755 & !0o022)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (String::new(), 0o600),
        Err(e) => return Err(e).with_context(|| format!("reading {}", shown.display())),
    };
    let current = block::ours(&old, &block::SSH_KEYS).map_err(|why| {
        anyhow::anyhow!(
            "{}: our block is damaged ({why}): left as it is",
            shown.display()
        )
    })?;
    let applied: HashSet<String> = ledger.fields(&prefix).into_iter().collect();
    let given: Vec<(String, &String)> = keys
        .iter()
        .map(|k| (fingerprint("key", k.as_bytes()), k))
        .collect();
    let given_set: HashSet<&str> = keys.iter().map(String::as_str).collect();
    let mut block: Vec<String> = Vec::new();
    for line in &current {
        if given_set.contains(line.as_str()) && !block.contains(line) {
            block.push(line.clone());
        } else {
            out.removed += 1;
        }
    }
    for (fp, key) in &given {
        if block.contains(key) {
            continue;
        }
        if applied.contains(fp) {
            out.left_out += 1;
        } else {
            block.push((*key).clone());
            out.added += 1;
        }
    }
    let new = block::replace(&old, &block::SSH_KEYS, &block, Place::Bottom)
        .map_err(|why| anyhow::anyhow!("our block is damaged ({why})"))?;
    let c = home.write_if_changed(
        &path,
        new.as_bytes(),
        WriteOpts {
            mode,
            owner: Some((acct.uid, acct.gid)),
            dir_mode: 0o700,
            keep_mode: false,
        },
    )?;
    for f in ledger.fields(&prefix) {
        ledger.remove(&format!("{prefix}{f}"));
    }
    for (fp, _) in &given {
        ledger.set(&format!("{prefix}{fp}"), b"1");
    }
    out.change = Some(change.or(c));
    Ok(out)
}

/// The line of `/etc/hosts` that names this VM: with eth0's static IPv4
/// address when it has one (as the platform's script writes it), else
/// 127.0.1.1 (Debian's convention without a fixed address).
fn hosts_line(hostname: &str, addr: Option<IpAddr>) -> String {
    let short = hostname.split('.').next().unwrap_or(hostname);
    let at = addr.map_or_else(|| "127.0.1.1".to_string(), |a| a.to_string());
    if short == hostname {
        format!("{at}\t{hostname}")
    } else {
        format!("{at}\t{hostname} {short}")
    }
}

/// A line earlier versions wrote for the hostname.
fn legacy_hosts_line(line: &str) -> bool {
    line.starts_with("127.0.1.1\t") && line.ends_with(" # gandi-vm")
}

/// `/etc/hosts` with our block naming `hostname` (at `addr`, else
/// 127.0.1.1) right after the `127.0.0.1` line (earlier versions' line
/// replaced).
pub fn hosts_text(old: &str, hostname: &str, addr: Option<IpAddr>) -> Result<String, String> {
    let old: String = old
        .split_inclusive('\n')
        .filter(|l| !legacy_hosts_line(l.trim_end_matches('\n')))
        .collect();
    block::replace(
        &old,
        &block::HOSTS,
        &[hosts_line(hostname, addr)],
        Place::After(|l| l.starts_with("127.0.0.1")),
    )
}

/// `/etc/hostname`, `/etc/mailname` and our block of `/etc/hosts` (the
/// name at `addr`, eth0's static IPv4 address, when there is one).
pub fn set_hostname(t: &Tree, hostname: &str, addr: Option<IpAddr>) -> Result<Change> {
    let c1 = t.write_if_changed(
        "/etc/hostname",
        format!("{hostname}\n").as_bytes(),
        WriteOpts::keep(0o644),
    )?;
    let c0 = t.write_if_changed(
        "/etc/mailname",
        format!("{hostname}\n").as_bytes(),
        WriteOpts::keep(0o644),
    )?;
    Ok(c0.or(c1).or(set_hosts(t, hostname, addr)?))
}

/// Our block of `/etc/hosts`: `hostname` at `addr` (else 127.0.1.1).
pub fn set_hosts(t: &Tree, hostname: &str, addr: Option<IpAddr>) -> Result<Change> {
    let old = match t.read_owned("/etc/hosts") {
        Ok((d, _)) => String::from_utf8_lossy(&d).into_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => default_hosts(),
        Err(e) => return Err(e).context("reading /etc/hosts"),
    };
    let new = hosts_text(&old, hostname, addr).map_err(|why| {
        anyhow::anyhow!("/etc/hosts: our block is damaged ({why}): left as it is")
    })?;
    t.write_if_changed("/etc/hosts", new.as_bytes(), WriteOpts::keep(0o644))
}

/// A minimal `/etc/hosts`.
pub fn default_hosts() -> String {
    "127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n\
     ff02::1\t\tip6-allnodes\nff02::2\t\tip6-allrouters\n"
        .to_string()
}

/// The live hostname.
pub fn set_live_hostname(hostname: &str) -> Result<()> {
    nix::unistd::sethostname(hostname).context("sethostname")
}

/// Who owns `/etc/resolv.conf`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResolvOwner {
    /// A plain file: our block in it.
    File,
    /// systemd-resolved's stub: a drop-in.
    Resolved,
    /// resolvconf: a block in its `head` file, which it puts first.
    Resolvconf,
    /// NetworkManager writes it (a link to its file, or a file it
    /// generated): a global DNS drop-in it reads.
    NetworkManager,
    /// A link to something else (NetworkManager, ...): not ours.
    Other(PathBuf),
}

pub fn resolv_owner(t: &Tree) -> ResolvOwner {
    match t.read_link("/etc/resolv.conf") {
        Err(_) => {
            let head = t.read("/etc/resolv.conf").unwrap_or_default();
            let head = String::from_utf8_lossy(&head[..head.len().min(512)]).into_owned();
            if head.contains("Generated by NetworkManager") {
                ResolvOwner::NetworkManager
            } else {
                ResolvOwner::File
            }
        }
        Ok(target) => {
            let s = target.to_string_lossy();
            if s.contains("systemd/resolve/") {
                ResolvOwner::Resolved
            } else if s.contains("resolvconf/") {
                ResolvOwner::Resolvconf
            } else if s.contains("NetworkManager/") {
                ResolvOwner::NetworkManager
            } else {
                ResolvOwner::Other(target)
            }
        }
    }
}

/// The addresses joined by `sep`.
fn join(servers: &[IpAddr], sep: &str) -> String {
    servers
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(sep)
}

/// A resolver service's drop-in of ours, `body` under our header.
fn dns_dropin(t: &Tree, service: &str, dropin: &str, body: &str) -> Result<(Change, String)> {
    let text = format!("# Written by gandi-vm from the platform's config.\n{body}\n");
    let c = t.write_if_changed(dropin, text.as_bytes(), WriteOpts::mode(0o644))?;
    Ok((c, format!("{service} drop-in {dropin}")))
}

/// The options the platform's resolvers come with.
pub const RESOLVER_OPTIONS: &str = "timeout:1 attempts:3 rotate";

/// The resolvers the platform means, of those it gives: two IPv4 and one
/// IPv6, or three IPv6 on an IPv6-only VM (glibc reads three). The
/// platform picks at random; we pick per machine (`seed`: its machine id),
/// the same at every boot, different between machines. The config's order
/// is kept among those picked, IPv4 first.
pub fn choose_resolvers(servers: &[IpAddr], ipv6_only: bool, seed: &str) -> Vec<IpAddr> {
    let pick = |want: bool, n: usize| -> Vec<IpAddr> {
        let mut family: Vec<&IpAddr> = servers.iter().filter(|s| s.is_ipv4() == want).collect();
        let mut ranked = family.clone();
        ranked.sort_by_key(|a| fingerprint("resolver", format!("{seed}\0{a}").as_bytes()));
        ranked.truncate(n);
        family.retain(|a| ranked.contains(a));
        family.into_iter().copied().collect()
    };
    if ipv6_only {
        pick(false, 3)
    } else {
        let mut out = pick(true, 2);
        out.extend(pick(false, 1));
        out
    }
}

/// Resolvers, through whatever owns `resolv.conf`; a link is never
/// replaced. With the platform's options (`timeout:1 attempts:3 rotate`)
/// where the owner takes them: our block of the file and resolvconf's
/// `head` take an `options` line, NetworkManager's `[global-dns]` an
/// `options=`; systemd-resolved has no such options (its own timeouts and
/// server order apply). Returns the change and where they went.
pub fn set_resolvers(t: &Tree, servers: &[IpAddr]) -> Result<(Change, String)> {
    let mut lines: Vec<String> = servers.iter().map(|s| format!("nameserver {s}")).collect();
    lines.push(format!("options {RESOLVER_OPTIONS}"));
    match resolv_owner(t) {
        ResolvOwner::Resolved => dns_dropin(
            t,
            "systemd-resolved (no rotate: its own server order)",
            "/etc/systemd/resolved.conf.d/gandi.conf",
            &format!("[Resolve]\nDNS={}", join(servers, " ")),
        ),
        ResolvOwner::Resolvconf => {
            let head = "/etc/resolvconf/resolv.conf.d/head";
            let c = edit_block(t, head, &block::RESOLVERS, &lines, Place::Top)?;
            if c == Change::Changed && t.base() == Path::new("/") {
                // resolvconf puts the head first when it writes the file.
                let _ = Run::new("resolvconf")
                    .arg("-u")
                    .limit(Duration::from_secs(30))
                    .outcome();
            }
            Ok((c, format!("resolvconf's {head}")))
        }
        ResolvOwner::NetworkManager => dns_dropin(
            t,
            "NetworkManager",
            "/etc/NetworkManager/conf.d/50-gandi-dns.conf",
            &format!(
                "[global-dns]\noptions={}\n\n[global-dns-domain-*]\nservers={}",
                RESOLVER_OPTIONS.replace(' ', ","),
                join(servers, ",")
            ),
        ),
        ResolvOwner::File => {
            let c = edit_block(t, "/etc/resolv.conf", &block::RESOLVERS, &lines, Place::Top)?;
            Ok((c, "our block of /etc/resolv.conf".into()))
        }
        ResolvOwner::Other(target) => bail!(
            "/etc/resolv.conf is a link to {} (another program manages it): left as it is",
            target.display()
        ),
    }
}

/// Puts `lines` in our marked block of the file at `path` (made when
/// missing); a damaged block leaves the file as it is.
pub fn edit_block(
    t: &Tree,
    path: &str,
    m: &block::Markers,
    lines: &[String],
    place: Place,
) -> Result<Change> {
    let (old, mode) = match t.read_owned(path) {
        Ok((d, meta)) => (
            String::from_utf8(d).with_context(|| format!("{path} is not UTF-8"))?,
            meta.mode() & 0o7777,
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (String::new(), 0o644),
        Err(e) => return Err(e).with_context(|| format!("reading {}", t.shown(path).display())),
    };
    let new = block::replace(&old, m, lines, place).map_err(|why| {
        anyhow::anyhow!(
            "{}: our block is damaged ({why}): left as it is",
            t.shown(path).display()
        )
    })?;
    t.write_if_changed(path, new.as_bytes(), WriteOpts::keep(mode))
}

#[cfg(test)]
mod tests;
