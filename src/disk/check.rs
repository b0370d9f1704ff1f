//! `gandi-vm disk check KEY`: checks and repairs a data disk's filesystem
//! by hand (it must not be mounted), and clears its `damaged` mark when the
//! check passes, so that the map serves it again. A resize cut short is
//! completed afterwards by a growth.

use crate::base::runner::Run;
use crate::base::settings::Settings;
use crate::base::status::Ended;
use crate::disk::disklock::DiskLock;
use crate::disk::fsstate::Marks;
use crate::disk::growjob;
use crate::disk::map;
use crate::disk::scan::Scan;
use crate::kernel::device::Exclusion;
use anyhow::{Result, bail};
use std::ffi::OsStr;
use std::time::Duration;

/// How long a repair may run (a large filesystem takes long).
const REPAIR_LIMIT: Duration = Duration::from_secs(4 * 3600);

/// `gandi-vm disk check KEY`. Returns 0 when the filesystem checks clean
/// (repaired or not), 1 when errors remain.
pub fn run(settings: &Settings, key: &str, say: crate::disk::release::Say) -> Result<Ended> {
    map::check_key(OsStr::new(key))?;
    let scan = Scan::new(settings)?;
    let devices = scan.devices();
    let root = settings.disk_root.display().to_string();
    // Served or not: a damaged one is what we look for.
    let dev = map::find_for_admin(&devices, key, &root, |_| true)?.clone();
    if let Some(at) = dev.mounts.first() {
        bail!(
            "{} is mounted at {}: release it first (gandi-vm disk release {key})",
            dev.name,
            at.display()
        );
    }
    if matches!(
        dev.excluded,
        Some(Exclusion::RootDisk | Exclusion::Swap | Exclusion::PlatformDisk)
    ) {
        bail!("{} is not a data disk", dev.name);
    }
    let fstype = dev.fs.fstype.clone().unwrap_or_default();
    let dev_path = scan.dev_path(&dev.name);
    let marks = Marks::new(settings, dev.fs.uuid.as_deref(), &dev.name);
    let outcome = {
        let _lock = DiskLock::take(settings, &dev.name, true)?;
        match fstype.as_str() {
            "ext2" | "ext3" | "ext4" => crate::disk::fsgrow::e2fsck(&dev_path, true)?,
            "xfs" => repair(
                Run::new("xfs_repair").arg(&dev_path).log_as("xfs_repair"),
                "",
            )?,
            // btrfs check --repair can make things worse: only checked.
            "btrfs" => repair(
                Run::new("btrfs")
                    .args(["check", "--readonly"])
                    .arg(&dev_path)
                    .log_as("btrfs check"),
                "; repairing btrfs is left to you",
            )?,
            other => bail!("checking {other:?} filesystems is not supported"),
        }
    };
    // The check's verdict is only this filesystem's while the device still
    // holds it.
    if matches!(fstype.as_str(), "ext2" | "ext3" | "ext4") {
        crate::disk::fsgrow::still_ours(&dev_path, &marks)?;
    }
    match outcome {
        Ok(()) => {
            marks.clear_damaged()?;
            say(&format!("{} ({fstype}) checks clean", dev.name));
            // A resize cut short is completed, the record written again.
            if marks.interrupted().is_some() || dev.excluded.is_some() {
                growjob::grow_disk(settings, &dev.name, None)?;
            }
            Ok(Ended::Ok)
        }
        Err(why) => {
            marks.set_damaged(&why)?;
            growjob::grow_disk(settings, &dev.name, None)?;
            say(&format!("{}: {why}; the map refuses it", dev.name));
            Ok(Ended::Failed)
        }
    }
}

/// Runs a repair tool (within [`REPAIR_LIMIT`]): `Ok(Err(why))` when it
/// failed, `why` ending with `then`.
fn repair(run: Run, then: &str) -> Result<Result<(), String>> {
    let out = run.limit(REPAIR_LIMIT).outcome()?;
    Ok(if out.success() {
        Ok(())
    } else {
        Err(format!("{} failed ({}){then}", out.command, out.ended()))
    })
}
