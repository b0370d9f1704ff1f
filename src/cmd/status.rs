//! `gandi-vm status [--json]`: this boot's steps.

use crate::settings::Settings;
use anyhow::Result;

pub fn run(settings: &Settings, json: bool) -> Result<i32> {
    crate::status::show(settings, json)
}
