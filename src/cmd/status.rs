//! `gandi-vm status [--json] [--previous] [--wait [--timeout S]]`: this
//! boot's stages (or the previous boot's), as they run.

use crate::settings::Settings;
use anyhow::Result;

pub fn run(settings: &Settings, opts: &crate::status::ShowOptions) -> Result<i32> {
    crate::status::show(settings, opts)
}
