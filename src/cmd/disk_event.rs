//! `gandi-vm disk-event [ACTION DEVICE]`: a block event, from udev (its
//! environment) or by hand.

use crate::base::settings::Settings;
use crate::base::status::Ended;
use crate::disk::event;
use anyhow::Result;

/// Handle a block event. Without arguments (as udev runs it), read the
/// event from the environment (ACTION, DEVPATH, DEVNAME, MAJOR, MINOR,
/// ID_FS_*), record the disk and hand its growth to
/// gandi-disk@NAME.service. With arguments (by hand), record and grow
/// synchronously, or forget the disk on remove.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// add, change or remove.
    #[arg(requires = "device")]
    pub action: Option<String>,
    /// The device: vdb or /dev/vdb.
    pub device: Option<String>,
}

pub fn run(settings: &Settings, args: Args) -> Result<Ended> {
    let Args { action, device } = args;
    match (action, device) {
        (Some(action), Some(device)) => {
            event::Action::parse(&action).and_then(|a| event::by_hand(settings, a, &device))
        }
        _ => {
            let env = std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                .collect();
            event::from_udev(settings, &env)
        }
    }
}
