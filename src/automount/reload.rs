//! autofs told to read its maps again (`systemctl reload autofs`, or a HUP
//! to the running daemon without systemd), and what it said.

use crate::base::settings::Settings;
use anyhow::{Context, Result};
use std::fs;

/// Asks autofs to read its master map again: `systemctl reload` under
/// systemd, else SIGHUP to the automount daemon named by its PID file
/// (and no other).
pub fn reload_autofs(settings: &Settings) -> Result<String> {
    if settings.paths.systemd_dir.is_dir() {
        // Started when it is not running: autofs stops once its last map
        // is gone, as after `automount disable`.
        crate::base::runner::Run::new("systemctl")
            .args(["reload-or-restart", "autofs.service"])
            .limit(std::time::Duration::from_secs(90))
            .output()?;
        return Ok("reloaded autofs.service".into());
    }
    let pid_file = &settings.paths.autofs_pid_file;
    let pid = fs::read_to_string(pid_file)
        .ok()
        .and_then(|t| t.trim().parse::<i32>().ok())
        .filter(|&pid| pid > 1);
    let Some(pid) = pid else {
        return Ok(format!(
            "autofs is not running (no PID in {}): the change applies when it starts",
            pid_file.display()
        ));
    };
    // The PID file may be left from a daemon that is gone, its number
    // taken since: only an automount process is signalled.
    let comm = fs::read_to_string(settings.paths.proc_dir.join(pid.to_string()).join("comm"))
        .unwrap_or_default();
    if comm.trim() != "automount" {
        return Ok(format!(
            "autofs is not running ({} names PID {pid}, not automount): the change applies \
             when it starts",
            pid_file.display()
        ));
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGHUP,
    )
    .with_context(|| format!("signalling automount ({pid})"))?;
    Ok(format!("sent SIGHUP to automount ({pid})"))
}
