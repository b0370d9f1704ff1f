//! The keys step: the platform's SSH keys added to a user's
//! `authorized_keys`, opened without following a link or waiting on a FIFO,
//! the admin's lines kept.

use super::*;

/// The most an `authorized_keys` we edit may hold.
pub const MAX_KEYS_FILE: u64 = 1 << 20;

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
