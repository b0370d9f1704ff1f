//! `gandi-vm report [--output FILE]`: one archive for a support ticket.

use crate::settings::Settings;
use anyhow::Result;
use std::path::Path;

pub fn run(settings: &Settings, output: &Path) -> Result<i32> {
    let names = crate::report::write(settings, output)?;
    crate::out::line(&format!(
        "{}: {} parts ({})",
        output.display(),
        names.len(),
        names.join(", ")
    ));
    Ok(0)
}
