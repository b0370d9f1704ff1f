//! Starting again, in the background, a growth that its grower left
//! undone (killed, without systemd to start it again): from a lookup of
//! the map or from the helper of an event, neither of which may wait.

use crate::base::settings::Settings;
use std::fs;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// Where a background growth logs when there is no systemd (and so no
/// journal to keep what it says).
pub fn grow_log(settings: &Settings) -> PathBuf {
    settings.paths.run_dir.join("disk-grow.log")
}

/// Starts `disk-grow --adopt` for each disk whose growth was left undone,
/// without waiting for it: in its own process group, holding none of our
/// descriptors (autofs reads the map's output to its end), so a lookup
/// never waits on it. Without systemd only: under systemd the unit's
/// `ExecStopPost=` resumes it.
pub fn adopt_left(settings: &Settings, devices: &[crate::kernel::device::Device]) {
    // Most lookups have nothing left: no look at systemd for them.
    if !devices.iter().any(|d| d.growth_left) || settings.paths.systemd_dir.is_dir() {
        return;
    }
    for dev in devices.iter().filter(|d| d.growth_left).take(8) {
        start_adopter(settings, &dev.name);
    }
}

/// Starts `disk-grow --adopt NAME`, detached, without waiting for it.
pub fn start_adopter(settings: &Settings, name: &str) {
    let exe = suite_exe(settings);
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
        .open(grow_log(settings));
    let mut cmd = Command::new(&exe);
    cmd.args(["disk-grow", "--adopt", name])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log.map_or_else(|_| Stdio::null(), Stdio::from));
    crate::base::runner::detach(&mut cmd);
    match cmd.spawn() {
        Ok(_) => log::info!("{name}: its growth was left undone: started again"),
        Err(e) => log::warn!("{name}: starting {}: {e}", exe.display()),
    }
}

/// The suite's program: this one when it is `gandi-vm`, else (the map, a
/// program of its own) the one the settings name.
fn suite_exe(settings: &Settings) -> PathBuf {
    match std::env::current_exe() {
        Ok(exe) if exe.file_name().is_some_and(|n| n == "gandi-vm") => exe,
        _ => settings.paths.bin.clone(),
    }
}
