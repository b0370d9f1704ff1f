//! `gandi-vm migrate-original`: run by the packages over the original suite;
//! says what it moved or kept.

use crate::base::out;
use crate::base::settings::Settings;
use anyhow::Result;

pub fn run(settings: &Settings) -> Result<i32> {
    let done = crate::automount::migrate::run(settings)?;
    if done.is_empty() {
        out::line("nothing of the original suite to migrate");
    }
    for d in &done {
        out::line(d);
    }
    Ok(0)
}
