//! `gandi-vm automount enable|disable|auto`.

use crate::automount::master;
use crate::base::settings::Settings;
use anyhow::Result;

pub fn run(settings: &Settings, action: &str) -> Result<i32> {
    match action {
        "auto" => master::automount_auto(settings),
        a => master::automount(settings, a == "enable"),
    }
}
