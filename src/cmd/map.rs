//! The map's verb: `/etc/auto.gandi KEY` (the program autofs runs) and
//! `gandi-vm map KEY` both answer through [`run`]: the entry on standard
//! output, exit 0; a refused key exits 2, no disk 1.

use crate::base::settings::Settings;
use crate::disk::map;
use std::ffi::{OsStr, OsString};

/// The autofs program map: print the map entry of the data disk named
/// KEY: its label when the label leads to it, else its kernel name (one
/// path per disk: another of its names, its UUID included, is refused
/// and names that path). Same as /etc/auto.gandi KEY, the program
/// autofs runs.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The name looked up under the mount root.
    pub key: OsString,
}

/// The program map (`maps/main.rs`, installed as `/etc/auto.gandi`):
/// `auto.gandi KEY`.
pub fn main(mut args: Vec<OsString>) -> u8 {
    // autofs runs the map at every lookup: the settings' problems are said
    // by each stage and by `gandi-vm settings`, not at each lookup.
    let Some(settings) = super::load(None, false) else {
        return 1;
    };
    if args.len() != 2 {
        log::error!("usage: auto.gandi KEY");
        return 2;
    }
    let key = args.swap_remove(1);
    u8::try_from(run(&settings, &key)).unwrap_or(1)
}

/// One lookup: the entry for `key` printed, and the exit code.
pub fn run(settings: &Settings, key: &OsStr) -> i32 {
    match map::lookup(settings, key) {
        Ok(answer) => {
            if let Some(w) = &answer.warning {
                log::warn!("{w}");
            }
            // A hit says nothing unless asked (GANDI_LOG=debug): autofs
            // logs the mount, `gandi-vm disks` shows what is served, and a
            // line per lookup costs a syslog connection each time.
            log::debug!(
                "serving {} ({}) for {:?}",
                answer.device.name,
                answer.device.fs.fstype.as_deref().unwrap_or("?"),
                key
            );
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            if writeln!(out, "{}", answer.entry)
                .and_then(|_| out.flush())
                .is_err()
            {
                return 1;
            }
            0
        }
        Err(e @ map::MapError::BadKey(_)) => {
            log::info!("{e}");
            2
        }
        Err(e) => {
            log::info!("{e}");
            1
        }
    }
}
