//! The hand-off from udev's worker to a process allowed to run long:
//! `gandi-disk@NAME.service` started without waiting, or a detached grower
//! where systemd is not the init; a resume queued on a timer.

use crate::base::settings::Settings;
use crate::base::status::now;
use anyhow::{Context, Result};
use std::fs;
use std::os::unix::fs::OpenOptionsExt;
use std::process::{Command, Stdio};

/// Escapes a kernel name for a unit instance as `systemd-escape` does
/// (`cciss!c0d0` -> `cciss\x21c0d0`); the unit's `%I` undoes it.
pub fn unit_escape(name: &str) -> String {
    name.chars()
        .enumerate()
        .map(|(i, c)| {
            if c.is_ascii_alphanumeric() || c == '_' || c == ':' || (c == '.' && i > 0) {
                c.to_string()
            } else {
                format!("\\x{:02x}", c as u32)
            }
        })
        .collect()
}

/// Starts the growth outside udev's sandbox; without systemd, returns the
/// watcher's PID.
pub fn hand_off(settings: &Settings, name: &str) -> Result<Option<u32>> {
    if settings.paths.systemd_dir.is_dir() {
        let unit = format!("gandi-disk@{}.service", unit_escape(name));
        crate::base::runner::Run::new("systemctl")
            .args(["--no-block", "start", &unit])
            .limit(std::time::Duration::from_secs(30))
            .output()?;
        log::info!("{name}: started {unit}");
        return Ok(None);
    }
    // No systemd: a detached process in its own session, not killed with
    // the udev worker.
    let exe = std::env::current_exe().context("finding our own executable")?;
    let log_path = crate::disk::adopt::grow_log(settings);
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&log_path)
        .with_context(|| format!("opening {}", log_path.display()))?;
    let mut cmd = Command::new(exe);
    cmd.args(["disk-grow", name])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    // A process group of its own (the udev worker's end does not reach
    // it), none of the worker's descriptors.
    crate::base::runner::detach(&mut cmd);
    let child = cmd
        .spawn()
        .with_context(|| format!("starting {}", crate::base::runner::describe(&cmd)))?;
    log::info!("{name}: growth started in the background (no systemd)");
    Ok(Some(child.id()))
}

/// Starts `gandi-disk@NAME.service` again once this run of it has ended.
/// Not with `systemctl start` from its own `ExecStopPost=`: systemd merges
/// that into the unit's start job, which is ending (it fails or succeeds
/// with this run), and the start is lost. A transient timer (systemd 218)
/// asks for it two seconds later, as a job of its own.
pub fn requeue(name: &str) -> Result<()> {
    let unit = format!("gandi-disk@{}.service", unit_escape(name));
    let systemctl =
        crate::base::runner::find_program("systemctl").context("systemctl is not in PATH")?;
    let timer = format!("gandi-disk-again-{}-{}", unit_escape(name), now());
    crate::base::runner::Run::new("systemd-run")
        .args([
            "--no-block",
            "--on-active=2",
            "--timer-property=AccuracySec=100ms",
        ])
        .arg(format!("--unit={timer}"))
        .arg(format!("--description=gandi-vm: start {unit} again"))
        .arg(systemctl)
        .args(["--no-block", "start", &unit])
        .limit(std::time::Duration::from_secs(30))
        .output()?;
    Ok(())
}
