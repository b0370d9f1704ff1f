//! `auto.gandi KEY` (autofs's program map) and `gandi-vm map KEY`.

use std::ffi::OsString;

/// The map run by autofs through a link named `auto.*`: `auto.gandi KEY`.
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
    u8::try_from(crate::disk::map::run(&settings, &key)).unwrap_or(1)
}
