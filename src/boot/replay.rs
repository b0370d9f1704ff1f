//! `gandi-vm mount`: the replay of block events at boot.

use crate::base::runner::Run;
use crate::base::settings::Settings;
use crate::base::status::Ended;
use crate::base::status::{Done, Recorder};
use crate::base::tree::Tree;
use crate::disk::records;
use crate::disk::scan::Scan;
use anyhow::{Result, bail};
use std::os::unix::fs::OpenOptionsExt;
use std::time::Duration;

/// Makes sure that every data disk attached during boot was handed to the
/// attach helper before services start. udev's rule leaves the disks of the
/// boot's coldplug (a synthetic `add`, before this replay ran) to this
/// process, which records them all: one process instead of one per disk.
/// The mark that it ran comes first, whatever else happens (turned off,
/// `CONFIG_ALLOW_MOUNT=0`: recording is not mounting), so that udev's rule
/// runs the helper for every later event. A disk whose udev entry was
/// written before the mark (its event was left here) and is of its
/// current attach is recorded at once; for the others (udev has not
/// handled them yet, or handles them now with the helper), udev's queue is
/// waited for (at most `limit`), then those still without a record get an
/// `add` replayed, which the rule then hands to the helper. Disks already
/// recorded are not processed twice. With `all`, replays `add` for every
/// block device, as the original did.
pub fn run(settings: &Settings, limit: Duration, all: bool) -> Result<Ended> {
    let root = Tree::open(std::path::Path::new("/"))?;
    let mut rec = Recorder::start(&root, settings, "mount");
    let marked = match mark_replayed(settings) {
        Ok(t) => Some(t),
        Err(e) => {
            rec.note("mark", Done::failed(format!("{e:#}")));
            None
        }
    };
    // Turned off, the disks are recorded all the same, as udev's helper
    // records them then (recording is not mounting): the unit does not
    // start while turned off, so this stage runs turned off only where its
    // test and udev's rule's disagree (a dangling link at the switch's
    // place, the switch moved), and then udev left the coldplug here.
    if let Some(why) = crate::base::settings::disabled(settings) {
        log::info!("gandi-vm is turned off ({why}): the disks are recorded all the same");
    }
    if all && marked.is_some() {
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
            // Without the mark, udev's rule leaves every coldplug event
            // here: those it handled once its queue emptied.
            let cutoff = match marked {
                Some(t) => t,
                None => {
                    // Whatever udev has done by then is recorded, the
                    // queue emptied or not.
                    if let Err(e) = settle(limit) {
                        log::warn!("{e:#}");
                    }
                    std::time::SystemTime::now()
                }
            };
            let missing = unrecorded(settings)?;
            if missing.is_empty() {
                return Ok(Done::unchanged("every candidate disk already recorded"));
            }
            let (here, later) = record_here(settings, &missing, cutoff);
            if later.is_empty() {
                return Ok(Done::changed(format!("recorded {}", here.join(" "))));
            }
            // udev's queue first: those it handles now get the helper.
            settle(limit)?;
            let missing = unrecorded(settings)?;
            if missing.is_empty() {
                return Ok(Done::changed(format!(
                    "recorded {}; the others once udev's queue emptied",
                    if here.is_empty() {
                        "none here".into()
                    } else {
                        here.join(" ")
                    }
                )));
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

/// The mark that this boot's replay ran (`GANDI_RUN_DIR/replayed`): udev's
/// rule then runs the helper for a synthetic `add` too.
pub fn replayed_mark(settings: &Settings) -> std::path::PathBuf {
    settings.paths.run_dir.join("replayed")
}

/// Writes the mark (kept if there) and returns its time: udev wrote the
/// entries of the events its rule left here before it.
fn mark_replayed(settings: &Settings) -> Result<std::time::SystemTime> {
    use anyhow::Context;
    let path = replayed_mark(settings);
    std::fs::create_dir_all(&settings.paths.run_dir)
        .and_then(|()| {
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
                .mode(0o644)
                .open(&path)?
                .metadata()?
                .modified()
        })
        .with_context(|| format!("writing {}", path.display()))
}

/// Records, in this process, the disks whose udev entry was written before
/// `cutoff` (udev's rule left their event here, and ran no helper) and is
/// of their current attach, as udev's helper would from their event.
/// Returns those recorded and those left to udev.
fn record_here(
    settings: &Settings,
    missing: &[String],
    cutoff: std::time::SystemTime,
) -> (Vec<String>, Vec<String>) {
    let (mut here, mut later) = (Vec::new(), Vec::new());
    for name in missing {
        let done = crate::disk::event::present_event(settings, name, cutoff)
            .map(|ev| crate::disk::event::record_event(settings, &ev));
        match done {
            Some(Ok(_)) => here.push(name.clone()),
            Some(Err(e)) => {
                log::warn!("{name}: {e:#}");
                later.push(name.clone());
            }
            _ => later.push(name.clone()),
        }
    }
    (here, later)
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
