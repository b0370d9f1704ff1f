//! The sshd step: our drop-in holds only what the admin did not set, in the
//! global section.

use super::*;

pub(super) const SSHD_SETTINGS: &[&str] = &[
    "PermitRootLogin prohibit-password",
    "PermitEmptyPasswords no",
    "ListenAddress ::",
    "ListenAddress 0.0.0.0",
];

/// SSH host keys when missing (not with `--root`: they must differ per
/// VM); our settings, for the keys the admin set nowhere (see `sshd`), as
/// a drop-in when sshd reads `sshd_config.d` in its global section, else
/// as a marked block at the top of `sshd_config`.
pub(super) fn sshd(t: &Tree, live: bool) -> Result<Done> {
    let config = "/etc/ssh/sshd_config";
    if t.lstat(config).is_err() {
        return Ok(Done::skipped(
            "no sshd_config (openssh-server not installed)",
        ));
    }
    let mut change = Change::Unchanged;
    let mut notes = Vec::new();
    // ssh-keygen -A makes the rsa, ecdsa and ed25519 keys: started only when
    // one is missing (it costs a process at every boot otherwise).
    // A pair cut short (ssh-keygen killed half-way) is made again.
    let mut complete = true;
    for k in ["rsa", "ecdsa", "ed25519"] {
        let key = format!("/etc/ssh/ssh_host_{k}_key");
        let whole = |p: &str| t.lstat(p).is_ok_and(|m| m.is_file() && m.len() > 0);
        if whole(&key) && whole(&format!("{key}.pub")) {
            continue;
        }
        complete = false;
        if live {
            t.remove_file(&key)?;
            t.remove_file(format!("{key}.pub"))?;
        }
    }
    if !complete {
        if live {
            Run::new("ssh-keygen")
                .arg("-A")
                .limit(Duration::from_secs(120))
                .output()?;
            change = Change::Changed;
            notes.push("host keys made".to_string());
        } else {
            notes.push("host keys deferred to the first boot".to_string());
        }
    }
    let admin = crate::boot::sshd::admin_settings(t);
    let (body, theirs) = crate::boot::sshd::left_to_us(&admin, SSHD_SETTINGS);
    let body: Vec<String> = body.iter().map(|s| s.to_string()).collect();
    if !theirs.is_empty() {
        notes.push(format!("the admin sets {}", theirs.join(", ")));
    }
    for file in &admin.unread {
        notes.push(format!("not read: {file}"));
    }
    let dropin = crate::boot::sshd::DROPIN;
    if admin.includes_dropins {
        if body.is_empty() {
            // Nothing left to us: a drop-in of ours goes.
            if t.read_string(dropin).is_ok_and(|d| d.starts_with(OWNED)) {
                t.remove_file(dropin)?;
                change = Change::Changed;
            }
        } else {
            let text = format!("{OWNED}{}\n", body.join("\n"));
            change =
                change.or(t.write_if_changed(dropin, text.as_bytes(), WriteOpts::mode(0o644))?);
            notes.push(dropin.to_string());
        }
        // A block of ours from before sshd read drop-ins goes.
        if t.read_string(config)
            .is_ok_and(|c| matches!(block::find(&c, &block::SSHD), block::Block::Intact { .. }))
        {
            change = change.or(apply::edit_block(t, config, &block::SSHD, &[], Place::Top)?);
        }
    } else {
        // No drop-in folder read in sshd's global section: our block goes
        // first in sshd_config, before any `Match`.
        change = change.or(apply::edit_block(
            t,
            config,
            &block::SSHD,
            &body,
            Place::Top,
        )?);
        if !body.is_empty() {
            notes.push("our block of sshd_config".to_string());
        }
    }
    Ok(Done::of(change, notes.join(", ")))
}
