//! The grow job of one attached disk (`gandi-vm disk-grow NAME`, its worker):
//! under the disk's lock, the record set `growing`, the filesystem grown
//! online or offline, the result recorded and the `post-disk-attach` hook run.

use crate::base::hooks;
use crate::base::settings::Settings;
use crate::base::status::Ended;
use crate::base::status::now;
use crate::disk::disklock::{DiskLock, fs_lock};
use crate::disk::fsgrow;
use crate::disk::fsstate::Marks;
use crate::disk::map::served_key;
use crate::disk::records::{self, Grow, Record, RecordState};
use crate::disk::scan::Scan;
use crate::disk::store;
use crate::kernel::device::{Exclusion, FsInfo};
use anyhow::Result;
use std::path::PathBuf;

/// Where the ext filesystem of `dev` (`fs`) is mounted through another
/// device, if it is: the superblocks of the mounted ext filesystems are
/// compared by UUID (a read of each, only in the grower, never in the map).
fn mounted_elsewhere(settings: &Settings, dev: &std::path::Path, fs: &FsInfo) -> Option<String> {
    let uuid = fs.uuid.as_deref()?;
    if !matches!(fs.fstype.as_deref(), Some("ext2" | "ext3" | "ext4")) {
        return None;
    }
    let mi =
        crate::kernel::views::read_proc(&settings.paths.proc_dir.join("self/mountinfo")).ok()?;
    crate::kernel::mounts::parse_mountinfo(&mi)
        .into_iter()
        .filter(|m| matches!(m.fstype.as_str(), "ext2" | "ext3" | "ext4"))
        .filter(|m| m.source.starts_with('/') && std::path::Path::new(&m.source) != dev)
        .find(|m| {
            fsgrow::ExtSuper::read(std::path::Path::new(&m.source))
                .is_ok_and(|sb| sb.uuid.eq_ignore_ascii_case(uuid))
        })
        .map(|m| format!("{} at {}", m.source, m.mount_point.display()))
}

/// `gandi-vm disk-grow NAME`: what `gandi-disk@NAME.service` runs. Takes
/// the device's lock (waiting for another growth of it), grows, records,
/// runs `post-disk-attach` when the disk became ready for a new attach.
/// Checks the device again afterwards, in case it changed meanwhile.
pub fn grow_disk(settings: &Settings, name: &str, watcher: Option<u32>) -> Result<Ended> {
    let _lock = DiskLock::take(settings, name, true)?;
    let mut code = Ended::Ok;
    let mut killed_tools = 0;
    // One scan per pass: the one that found a change ends a pass and
    // starts the next.
    let mut scan = Scan::new(settings)?;
    for _ in 0..6 {
        let previous = records::read_or_report(settings, name);
        let Some(mut dev) = scan.describe(&[name.to_string()]).pop() else {
            log::info!("{name}: gone");
            store::forget(settings, name)?;
            return Ok(Ended::Ok);
        };
        let dev_path = scan.dev_path(name);
        let mut record = Record {
            name: name.to_string(),
            devnum: dev.devnum.to_string(),
            diskseq: dev.diskseq,
            size: dev.size,
            fs: dev.fs.clone(),
            partitioned: !dev.partitions.is_empty() || dev.fs.part_table.is_some(),
            state: RecordState::Ready,
            grower: None,
            watcher: None,
            note: None,
            last_grow: previous.as_ref().and_then(|r| r.last_grow.clone()),
            announced: previous.as_ref().and_then(|r| r.announced.clone()),
            resumes: previous.as_ref().map_or(0, |r| r.resumes),
            updated: now(),
        };
        let fstype = dev.fs.fstype.clone().unwrap_or_default();
        if matches!(
            dev.excluded,
            Some(Exclusion::Growing | Exclusion::Interrupted(_))
        ) {
            // Left by a growth that was interrupted: ours to finish.
            dev.excluded = None;
        }
        match &dev.excluded {
            Some(Exclusion::Partitioned) => {
                record.state = RecordState::NotGrown;
                record.note = Some("partitioned: only whole-disk filesystems are grown".into());
            }
            Some(Exclusion::Damaged(why)) => {
                record.state = RecordState::Damaged;
                record.note = Some(why.clone());
                code = Ended::Failed;
            }
            Some(why) => {
                record.state = RecordState::Excluded;
                record.note = Some(why.to_string());
            }
            None if dev.parent.is_some() => {
                record.note =
                    Some("a partition: not grown (only whole-disk filesystems are)".into());
            }
            None if !fsgrow::supported(&fstype) => {
                record.note = Some(format!("growing {fstype} is not supported"));
            }
            None => {
                // One grower per filesystem, whatever device shows it: a
                // mark of a resize under way is then never taken for one
                // cut short.
                let _fs_lock = fs_lock(settings, dev.fs.uuid.as_deref())?;
                let marks = Marks::new(settings, dev.fs.uuid.as_deref(), name);
                let mounted_now = dev.mounts.first().map(PathBuf::as_path);
                // Mounted through another device (the same disk attached
                // twice): growing it here would write under that mount.
                if mounted_now.is_none()
                    && let Some(other) = mounted_elsewhere(settings, &dev_path, &dev.fs)
                {
                    record.state = RecordState::NotGrown;
                    record.note = Some(format!(
                        "its filesystem is mounted through {other}: grown once that is unmounted"
                    ));
                    store::write(settings, &record)?;
                    return finish(settings, &scan, &dev, &record, previous.as_ref(), code);
                }
                if !fsgrow::needs_work(&dev_path, &fstype, dev.size, mounted_now, &marks)
                    .unwrap_or(true)
                {
                    // Fits already (an event that changed nothing): the
                    // disk is never marked, so never refused, for it.
                    record.updated = now();
                    store::write(settings, &record)?;
                    return finish(settings, &scan, &dev, &record, previous.as_ref(), code);
                }
                // Marked first: from now on the map refuses the disk, so no
                // mount starts during an offline resize. Then the mounts are
                // read again, after the mark.
                record.state = RecordState::Growing;
                record.grower = Some(std::process::id());
                record.watcher = watcher;
                store::write(settings, &record)?;
                record.grower = None;
                let mounts = scan.mounts_now(&dev);
                let mounted = mounts.first().map(PathBuf::as_path);
                let grown = fsgrow::grow(
                    &dev_path,
                    &fstype,
                    dev.size,
                    mounted,
                    &settings.paths.run_dir,
                    &marks,
                );
                match grown {
                    Ok(fsgrow::Outcome::Fits { .. }) => record.state = RecordState::Ready,
                    Ok(fsgrow::Outcome::Damaged { why }) => {
                        log::error!("{name}: {fstype} is damaged: {why}");
                        record.state = RecordState::Damaged;
                        record.note = Some(why);
                        code = Ended::Failed;
                    }
                    Ok(fsgrow::Outcome::Grown {
                        before,
                        after,
                        tool,
                    }) => {
                        log::info!(
                            "{name}: {fstype} grown from {before} to {after} bytes ({tool})"
                        );
                        record.state = RecordState::Ready;
                        record.last_grow = Some(Grow {
                            before,
                            after,
                            time: now(),
                            tool,
                        });
                    }
                    // Its tool was killed (not failed): the growth is not
                    // done; once more (a resize cut short is repaired
                    // first, by its mark).
                    Err(e) if crate::base::runner::killed(&e) && killed_tools < 3 => {
                        killed_tools += 1;
                        log::warn!("{name}: growing {fstype}: {e:#}; once more");
                        record.state = RecordState::Pending;
                        record.grower = Some(std::process::id());
                        record.watcher = watcher;
                        record.note = Some(format!("its tool was killed ({e:#}): growth resumed"));
                        record.updated = now();
                        store::write(settings, &record)?;
                        scan = Scan::new(settings)?;
                        continue;
                    }
                    Err(e) => {
                        log::error!("{name}: growing {fstype}: {e:#}");
                        record.state = RecordState::GrowFailed;
                        record.note = Some(format!("{e:#}"));
                        code = Ended::Failed;
                    }
                }
            }
        }
        if record.state == RecordState::Ready {
            record.resumes = 0;
        }
        record.updated = now();
        store::write(settings, &record)?;

        // Changed while we worked (resized again, reattached)? Once more.
        let next = Scan::new(settings)?;
        let again = next.describe(&[name.to_string()]).pop();
        if again
            .as_ref()
            .is_some_and(|d| d.size != dev.size || d.diskseq != dev.diskseq)
        {
            log::info!("{name}: changed while being grown; once more");
            scan = next;
            continue;
        }

        return finish(settings, &scan, &dev, &record, previous.as_ref(), code);
    }
    // Every round ended in another one (the device kept changing, its tool
    // kept being killed): said so, never left pending with no one on it.
    if let Some(mut record) = records::read(settings, name)
        && record.state == RecordState::Pending
    {
        record.state = RecordState::GrowFailed;
        record.grower = None;
        record.watcher = None;
        record.note = Some("its growth kept being cut short: given up until its next event".into());
        record.updated = now();
        store::write(settings, &record)?;
        log::error!("{name}: its growth kept being cut short: given up");
    }
    Ok(Ended::Failed)
}

/// Runs `post-disk-attach` when the disk is ready and the hook has not run
/// for this attach yet (once per attach: a growth makes udev send a change
/// that records the disk again); returns `code`.
fn finish(
    settings: &Settings,
    scan: &Scan,
    dev: &crate::kernel::device::Device,
    record: &Record,
    _previous: Option<&Record>,
    code: Ended,
) -> Result<Ended> {
    let key = records::attach_key(record);
    let announced = records::read(settings, &dev.name).and_then(|r| r.announced);
    if record.state != RecordState::Ready
        || dev.excluded.is_some()
        || announced.as_deref() == Some(key.as_str())
    {
        return Ok(code);
    }
    let devices = scan.devices();
    let mount_point = served_key(&devices, dev, &settings.disk_root)
        .map(|k| settings.disk_root.join(k))
        .unwrap_or_else(|| settings.disk_root.join(&dev.name));
    let fstype = dev.fs.fstype.clone().unwrap_or_default();
    // Marked first: a hook cut short is not run again for this attach.
    let mut marked = record.clone();
    marked.announced = Some(key);
    store::write(settings, &marked)?;
    hooks::run(
        settings,
        "post-disk-attach",
        &[
            &scan.dev_path(&dev.name).display().to_string(),
            &fstype,
            &mount_point.display().to_string(),
        ],
        hooks::HOOK_LIMIT,
    );
    Ok(code)
}
