//! The grower watched: a watcher runs the grow job as its child and starts it
//! again when a signal killed it (at most a few times per attach); a watcher
//! killed in turn is resumed by the unit's stop command or adopted by the next
//! lookup or event.

use crate::base::settings::Settings;
use crate::base::status::Ended;
use crate::base::status::now;
use crate::disk::disklock::DiskLock;
use crate::disk::handoff::requeue;
use crate::disk::records::{self, RecordState};
use crate::disk::store;
use anyhow::{Context, Result};
use std::process::Command;

/// How many times a grower killed (or whose unit ended without growing
/// the disk) is started again for one attach.
const MAX_RESUMES: u32 = 5;

/// What [`mark_resumed`] found.
#[derive(Debug, PartialEq, Eq)]
enum Resume {
    /// Set back to pending: start the work again.
    Again,
    /// Nothing left to do (grown, gone, another grower at work).
    Done,
    /// Started again too many times for this attach: the record says so.
    Spent,
}

/// Under the disk's lock: when the record says the growth is not done and
/// no grower works on it, writes it as pending again, watched by this
/// process, counting the resume.
fn mark_resumed(settings: &Settings, name: &str, why: &str) -> Result<Resume> {
    let Some(mut record) = records::read_or_report(settings, name) else {
        return Ok(Resume::Done);
    };
    let ours = record.watcher == Some(std::process::id());
    let left = match record.state {
        // Its worker is gone; this process watched it.
        RecordState::Growing | RecordState::Pending if ours => {
            !record.grower.is_some_and(crate::base::process::alive_ours)
        }
        _ => record.growth_left(),
    };
    if !left {
        return Ok(Resume::Done);
    }
    record.grower = None;
    record.updated = now();
    if record.resumes >= MAX_RESUMES {
        record.state = RecordState::GrowFailed;
        record.watcher = None;
        record.note = Some(format!(
            "its growth was started again {MAX_RESUMES} times and stopped again ({why}): not \
             started again until its next attach or `gandi-vm disk-event change {name}`"
        ));
        store::write(settings, &record)?;
        log::error!("{name}: its growth was started again {MAX_RESUMES} times: given up");
        return Ok(Resume::Spent);
    }
    record.resumes += 1;
    record.state = RecordState::Pending;
    record.watcher = Some(std::process::id());
    record.note = Some(format!("{why}: growth resumed"));
    store::write(settings, &record)?;
    Ok(Resume::Again)
}

/// `gandi-vm disk-grow NAME`: the grower, watched. The work runs in a
/// child (`disk-grow --worker`, named in the record beside this watcher);
/// when a signal kills it, the record is set back to pending and the work
/// starts again, so the disk ends grown without a new event, with systemd
/// or without. The record never says `growing` once neither process
/// lives. Under systemd the unit's `ExecStopPost=` (`disk-grow --resume`)
/// covers this watcher's own death; without, the next lookup or event
/// does (`disk-grow --adopt`).
pub fn grow_supervised(settings: &Settings, name: &str) -> Result<Ended> {
    let exe = std::env::current_exe().context("finding our own executable")?;
    // The tools of a worker that is killed (a resize2fs, an e2fsck) live
    // on, and come to this process: waited for before the work starts
    // again, so that two tools never work on the disk at once.
    if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
        log::warn!("{name}: the watcher cannot adopt its worker's tools: {e}");
    }
    let mut again = 0;
    loop {
        let status = Command::new(&exe)
            .args(["disk-grow", "--worker", name])
            .status()
            .with_context(|| format!("starting the grower of {name}"))?;
        use std::os::unix::process::ExitStatusExt;
        let Some(sig) = status.signal() else {
            // An event that came once the worker let the disk go (the
            // change udev sends after a growth, a resize) recorded it as
            // pending, and its start of this unit was merged into this
            // run: its work is done here.
            if again < 3 && pending_since_worker(settings, name) {
                again += 1;
                log::info!("{name}: an event came meanwhile; once more");
                continue;
            }
            return Ok(Ended::from_code(status.code()));
        };
        log::warn!("{name}: its grower was killed (signal {sig})");
        while nix::sys::wait::wait().is_ok() {}
        let _lock = DiskLock::take(settings, name, true)?;
        match mark_resumed(
            settings,
            name,
            &format!("its grower was killed (signal {sig})"),
        )? {
            Resume::Again => log::info!("{name}: growth resumed"),
            Resume::Done => return Ok(Ended::Ok),
            Resume::Spent => return Ok(Ended::Failed),
        }
    }
}

/// Whether the record says pending (an event wrote it) while no worker
/// lives and no other watcher than this process (or a dead one) has it.
fn pending_since_worker(settings: &Settings, name: &str) -> bool {
    let me = std::process::id();
    records::read(settings, name).is_some_and(|r| {
        r.state == RecordState::Pending
            && r.watcher
                .is_none_or(|w| w == me || !crate::base::process::alive_ours(w))
            && !r.grower.is_some_and(crate::base::process::alive_ours)
    })
}

/// `gandi-vm disk-grow --resume NAME`: what `gandi-disk@NAME.service` runs
/// once it stopped (`ExecStopPost=`, also after a kill of the whole unit):
/// when the record says the growth is not done and no grower lives, the
/// unit is started again (bounded). After a run that succeeded, only for
/// an event that came at its very end (its start of the unit was merged
/// into that run).
pub fn resume(settings: &Settings, name: &str) -> Result<Ended> {
    // Stopped for the shutdown: the next boot's event grows it.
    let state = crate::base::runner::Run::new("systemctl")
        .arg("is-system-running")
        .limit(std::time::Duration::from_secs(10))
        .outcome()
        .map(|o| o.stdout_text())
        .unwrap_or_default();
    if state.trim() == "stopping" {
        return Ok(Ended::Ok);
    }
    // Stopped on request (`systemctl stop`, an isolate): systemd ended it
    // with SIGTERM (or the admin sent INT or HUP). Only a kill it did not
    // ask for (SIGKILL: the OOM killer, `kill -9`) is resumed.
    let env = |k: &str| std::env::var(k).unwrap_or_default();
    if env("EXIT_CODE") == "killed" && matches!(env("EXIT_STATUS").as_str(), "TERM" | "INT" | "HUP")
    {
        log::info!(
            "{name}: its unit was stopped ({}): not started again",
            env("EXIT_STATUS")
        );
        return Ok(Ended::Ok);
    }
    if env("SERVICE_RESULT") == "success" {
        if pending_since_worker(settings, name) {
            requeue(name)?;
            log::info!("{name}: an event came as its growth ended: started again");
        }
        return Ok(Ended::Ok);
    }
    let Some(_lock) = DiskLock::take_for(settings, name, std::time::Duration::from_secs(5))? else {
        return Ok(Ended::Ok);
    };
    let why = format!("its unit ended ({})", env("SERVICE_RESULT"));
    if mark_resumed(settings, name, &why)? == Resume::Again {
        // The unit's own processes are gone: no watcher of this one.
        if let Some(mut record) = records::read(settings, name) {
            record.watcher = None;
            store::write(settings, &record)?;
        }
        requeue(name)?;
        log::info!("{name}: growth resumed after its unit ended");
    }
    Ok(Ended::Ok)
}

/// `gandi-vm disk-grow --adopt NAME`: started by a lookup or by the helper
/// of another event when the record of NAME says its growth is not done
/// and no grower lives (they were killed, without systemd to start them
/// again). Ends at once when a grower holds the disk.
pub fn adopt(settings: &Settings, name: &str) -> Result<Ended> {
    {
        let Some(_lock) = DiskLock::take(settings, name, false)? else {
            return Ok(Ended::Ok);
        };
        if mark_resumed(settings, name, "its grower was gone")? != Resume::Again {
            return Ok(Ended::Ok);
        }
        log::info!("{name}: its growth was left undone (its grower is gone): resumed");
    }
    grow_supervised(settings, name)
}
