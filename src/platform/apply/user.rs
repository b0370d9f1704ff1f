//! The user step: the platform's login user created (or found) with its
//! group, home and shell; account lines removed when a creation fails.

use super::*;

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
pub(super) fn remove_account_lines(t: &Tree, login: &str, own_group: bool) -> Result<()> {
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
