//! `gandi-vm iface NAME [--remove]`: what `gandi-iface@NAME.service` runs.

use crate::base::settings::Settings;
use crate::hotplug::iface;
use anyhow::Result;
use std::path::Path;

pub fn run(settings: &Settings, name: &str, remove: bool, root: &Path) -> Result<i32> {
    if remove {
        iface::detach(settings, root, name)
    } else {
        iface::attach(settings, root, name)
    }
}
