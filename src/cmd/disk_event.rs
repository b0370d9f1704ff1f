//! `gandi-vm disk-event [ACTION DEVICE]`: a block event, from udev (its
//! environment) or by hand.

use crate::base::settings::Settings;
use crate::disk::event;
use anyhow::Result;

pub fn run(settings: &Settings, action: Option<String>, device: Option<String>) -> Result<i32> {
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
