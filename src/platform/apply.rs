//! Applying the platform's values to a system tree: password, users, SSH
//! keys, hostname, resolvers. Every function works beneath the tree's root
//! (see `tree`), writes atomically, changes only the lines it owns (see
//! `block`), and reports whether anything changed. One file per step.

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

mod hostname;
mod keys;
mod password;
mod resolvers;
mod user;
pub use hostname::{default_hosts, hosts_text, set_hostname, set_hosts, set_live_hostname};
pub use keys::{KeysOutcome, MAX_KEYS_FILE, set_keys};
use password::clear_stale_shadow_locks;
pub use password::{PwdLock, pwd_lock, set_password};
pub use resolvers::{RESOLVER_OPTIONS, ResolvOwner, choose_resolvers, resolv_owner, set_resolvers};
pub use user::{Account, FIRST_USER_UID, account, create_user, system_uid, user_group};

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
