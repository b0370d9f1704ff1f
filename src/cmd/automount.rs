//! `gandi-vm automount enable|disable|auto` and `gandi-vm mount-root PATH
//! [--force]`: the verbs that edit the automount setup, and the one place
//! their outcome is said.

use crate::automount::master::{self, Edit, EditResult};
use crate::base::out;
use crate::base::settings::Settings;
use anyhow::Result;

/// Turn automounting on or off: the master map entry (commented out
/// when off) and CONFIG_ALLOW_MOUNT, then reload autofs. `auto` (run by
/// the package on first install) enables it unless another autofs map
/// already owns the mount root, and says so when autofs is missing.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(value_parser = ["enable", "disable", "auto"])]
    pub action: String,
}

pub fn run(settings: &Settings, args: Args) -> Result<i32> {
    let edit = match args.action.as_str() {
        "auto" => master::automount_auto(settings)?,
        a => master::automount(settings, a == "enable")?,
    };
    Ok(say(&edit))
}

/// Prints what an edit did; its exit code.
pub(super) fn say(edit: &Edit) -> i32 {
    for note in &edit.notes {
        out::line(note);
    }
    match &edit.result {
        EditResult::Unchanged(why) => out::line(why),
        EditResult::Changed { changes, reload } => {
            for c in changes {
                out::line(c);
            }
            out::line(reload);
        }
    }
    0
}
