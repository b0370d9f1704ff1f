//! Hot-plugged memory: a memory block put online (`gandi-vm memory-online`,
//! from the udev rule).

use crate::base::settings::Settings;
use crate::base::status::Ended;
use anyhow::{Context, Result, bail};
use std::fs;

/// Onlines an added memory block that is offline, with the zone policy of
/// `CONFIG_MEMORY_ONLINE` (`online`, or `online_movable`).
pub fn memory_online(settings: &Settings, block: &str) -> Result<Ended> {
    if !block.starts_with("memory")
        || !block[6..].chars().all(|c| c.is_ascii_digit())
        || block.len() == 6
    {
        bail!("{block:?} is not a memory block");
    }
    let state = settings
        .paths
        .sys_dir
        .join("devices/system/memory")
        .join(block)
        .join("state");
    let now = fs::read_to_string(&state).with_context(|| format!("reading {}", state.display()))?;
    if now.trim() != "offline" {
        log::debug!("{block}: {} already", now.trim());
        return Ok(Ended::Ok);
    }
    fs::write(&state, &settings.memory_online)
        .with_context(|| format!("writing {} to {}", settings.memory_online, state.display()))?;
    log::info!("{block}: {}", settings.memory_online);
    Ok(Ended::Ok)
}
