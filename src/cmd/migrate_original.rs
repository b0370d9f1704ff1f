//! `gandi-vm migrate-original`: run by the packages over the original suite.

use crate::settings::Settings;
use anyhow::Result;

pub fn run(settings: &Settings) -> Result<i32> {
    crate::migrate::run(settings)
}
