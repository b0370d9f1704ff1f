//! `gandi-vm automount enable|disable|auto` and `gandi-vm mount-root PATH
//! [--force]`: the verbs that edit the automount setup, and the one place
//! their outcome is said.

use crate::automount::master::{self, Edit, EditResult};
use crate::base::out;
use crate::base::settings::Settings;
use anyhow::Result;
use std::path::Path;

pub fn run(settings: &Settings, action: &str) -> Result<i32> {
    let edit = match action {
        "auto" => master::automount_auto(settings)?,
        a => master::automount(settings, a == "enable")?,
    };
    Ok(say(&edit))
}

pub fn mount_root(settings: &Settings, path: &Path, force: bool) -> Result<i32> {
    Ok(say(&master::mount_root(settings, path, force)?))
}

/// Prints what an edit did; its exit code.
fn say(edit: &Edit) -> i32 {
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
