//! `gandi-vm status [--json] [--previous] [--wait [--timeout S]]`: this
//! boot's stages (or the previous boot's), as they run.

use crate::base::settings::Settings;
use anyhow::Result;

pub fn run(settings: &Settings, opts: &crate::base::status::ShowOptions) -> Result<i32> {
    crate::base::status::show(settings, opts)
}
