//! `gandi-udhcpc EVENT`: the script udhcpc runs.

use crate::base::settings::Settings;
use crate::base::status::Ended;
use anyhow::Result;
use std::ffi::OsString;

pub fn run(_settings: &Settings, args: &[OsString]) -> Result<Ended> {
    // udhcpc runs its script as `SCRIPT EVENT`.
    let event = args
        .get(1)
        .map(|a| a.to_string_lossy().into_owned())
        .unwrap_or_default();
    crate::hotplug::iface::udhcpc_event(&event)
}
