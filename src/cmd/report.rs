//! `gandi-vm report [--output FILE]`: one archive for a support ticket.

use crate::base::settings::Settings;
use anyhow::Result;

/// Write one archive with what support needs: the status of this boot
/// and of the last, the journal of our units and udev's lines about our
/// rules, the settings, the disks' records and table, the names of the
/// values applied, versions. No secret goes in it: not the platform's
/// config, no key, no command nor its output.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where the archive goes (a .tar.gz, root-only).
    #[arg(
        long,
        short,
        value_name = "FILE",
        default_value = "gandi-vm-report.tar.gz"
    )]
    pub output: std::path::PathBuf,
}

pub fn run(settings: &Settings, args: Args) -> Result<i32> {
    let output = args.output.as_path();
    let names = crate::support::report::write(settings, output)?;
    crate::base::out::line(&format!(
        "{}: {} parts ({})",
        output.display(),
        names.len(),
        names.join(", ")
    ));
    Ok(0)
}
