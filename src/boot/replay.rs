//! `gandi-vm mount`: the replay of block events at boot.

use crate::base::runner::Run;
use crate::base::settings::Settings;
use crate::base::status::Ended;
use crate::base::status::{Done, Recorder};
use crate::base::tree::Tree;
use crate::disk::records;
use crate::disk::scan::Scan;
use anyhow::{Result, bail};
use std::time::Duration;

/// Makes sure that every data disk attached during boot was handed to the
/// attach helper before services start. Waits for udev's queue (the events
/// of the boot's coldplug), at most `limit`; then replays `add` for the
/// candidate disks the helper has not recorded yet (attached before our
/// rules were loaded, or whose event was lost), and waits for those events.
/// Disks that udev already handed over are not processed twice. With
/// `all`, replays `add` for every block device, as the original did.
pub fn run(settings: &Settings, limit: Duration, all: bool) -> Result<Ended> {
    let root = Tree::open(std::path::Path::new("/"))?;
    let mut rec = Recorder::start(&root, settings, "mount");
    if let Some(why) = crate::base::settings::disabled(settings) {
        rec.skip("disabled", &format!("gandi-vm is turned off: {why}"));
    } else if !settings.allow_mount {
        rec.skip("replay", "CONFIG_ALLOW_MOUNT=0");
    } else if all {
        rec.step("replay", || {
            Run::new("udevadm")
                .args(["trigger", "--action=add", "--subsystem-match=block"])
                .limit(Duration::from_secs(60))
                .output()?;
            settle(limit)?;
            Ok(Done::changed("add replayed for every block device"))
        });
    } else {
        rec.step("replay", || {
            // Every candidate recorded already (the usual case: udev ran
            // our rule during the coldplug): nothing to wait for.
            let missing = unrecorded(settings)?;
            if missing.is_empty() {
                return Ok(Done::unchanged("every candidate disk already recorded"));
            }
            // Else their events may still be in udev's queue.
            settle(limit)?;
            let missing = unrecorded(settings)?;
            if missing.is_empty() {
                return Ok(Done::unchanged(
                    "every candidate disk recorded once udev's queue emptied",
                ));
            }
            Run::new("udevadm")
                .args(["trigger", "--action=add"])
                .args(
                    missing
                        .iter()
                        .map(|name| settings.paths.sys_dir.join("class/block").join(name)),
                )
                .limit(Duration::from_secs(60))
                .output()?;
            settle(limit)?;
            Ok(Done::changed(format!(
                "add replayed for {}",
                missing.join(" ")
            )))
        });
    }
    rec.finish(&root, settings, "mount")
}

/// The candidate disks with no current record. A current record means
/// udev ran our rule for the disk; its growth, if any, was handed to
/// gandi-disk@ then.
fn unrecorded(settings: &Settings) -> Result<Vec<String>> {
    let scan = Scan::new(settings)?;
    Ok(scan
        .devices()
        .into_iter()
        .filter(|d| records::lookup(settings, d).is_none())
        .map(|d| d.name)
        .collect())
}

/// `udevadm settle`, at most `limit`.
fn settle(limit: Duration) -> Result<()> {
    let secs = limit.as_secs().max(1).to_string();
    let out = Run::new("udevadm")
        .args(["settle", "--timeout", &secs])
        .limit(limit + Duration::from_secs(5))
        .outcome()?;
    if !out.success() {
        bail!("udev's queue did not empty within {secs} s");
    }
    Ok(())
}
