//! `gandi-vm report [--output FILE]`: one archive for a support ticket.

use crate::base::settings::Settings;
use anyhow::Result;
use std::path::Path;

pub fn run(settings: &Settings, output: &Path) -> Result<i32> {
    let names = crate::support::report::write(settings, output)?;
    crate::base::out::line(&format!(
        "{}: {} parts ({})",
        output.display(),
        names.len(),
        names.join(", ")
    ));
    Ok(0)
}
