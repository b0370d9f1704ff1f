//! `gandi-vm automount enable|disable|auto`.

use crate::admin;
use crate::settings::Settings;
use anyhow::Result;

pub fn run(settings: &Settings, action: &str) -> Result<i32> {
    match action {
        "auto" => admin::automount_auto(settings),
        a => admin::automount(settings, a == "enable"),
    }
}
