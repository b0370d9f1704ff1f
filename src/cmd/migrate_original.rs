//! `gandi-vm migrate-original`: run by the packages over the original suite.

use crate::base::settings::Settings;
use anyhow::Result;

pub fn run(settings: &Settings) -> Result<i32> {
    crate::automount::migrate::run(settings)
}
