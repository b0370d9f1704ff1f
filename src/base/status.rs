//! `GANDI_RUN_DIR/status.json`: each boot stage's steps with their result
//! and duration; `gandi-vm status [--json]` shows them.

use crate::base::out;
use crate::base::settings::Settings;
use crate::base::tree::{Change, Tree, WriteOpts};
use anyhow::Result;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Changed,
    Unchanged,
    /// The platform's value was applied before: the system is left as the
    /// admin has it.
    Kept,
    Skipped,
    /// Left for the system's first real boot (`--root`).
    Deferred,
    Failed,
}

impl Outcome {
    pub fn word(self) -> &'static str {
        match self {
            Outcome::Changed => "changed",
            Outcome::Unchanged => "unchanged",
            Outcome::Kept => "kept",
            Outcome::Skipped => "skipped",
            Outcome::Deferred => "deferred",
            Outcome::Failed => "FAILED",
        }
    }
}

/// What one step did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Done {
    pub result: Outcome,
    pub detail: String,
}

impl Done {
    pub fn new(result: Outcome, detail: impl Into<String>) -> Done {
        Done {
            result,
            detail: detail.into(),
        }
    }

    pub fn of(change: Change, detail: impl Into<String>) -> Done {
        Done::new(
            match change {
                Change::Changed => Outcome::Changed,
                Change::Unchanged => Outcome::Unchanged,
            },
            detail,
        )
    }

    pub fn changed(detail: impl Into<String>) -> Done {
        Done::new(Outcome::Changed, detail)
    }

    pub fn unchanged(detail: impl Into<String>) -> Done {
        Done::new(Outcome::Unchanged, detail)
    }

    pub fn kept(detail: impl Into<String>) -> Done {
        Done::new(Outcome::Kept, detail)
    }

    pub fn skipped(detail: impl Into<String>) -> Done {
        Done::new(Outcome::Skipped, detail)
    }

    pub fn deferred(detail: impl Into<String>) -> Done {
        Done::new(Outcome::Deferred, detail)
    }

    pub fn failed(detail: impl Into<String>) -> Done {
        Done::new(Outcome::Failed, detail)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Step {
    pub step: String,
    pub result: Outcome,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
    /// Duration in microseconds.
    pub us: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Stage {
    pub steps: Vec<Step>,
    /// When it started, seconds since the epoch (0: unknown).
    #[serde(default)]
    pub started: u64,
    /// When it ended, seconds since the epoch; 0 while it runs.
    pub finished: u64,
    /// It runs still (it writes its state as it starts, after a failed
    /// step or a slow one, and as it ends).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub running: bool,
    /// Its process, while it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// The boot it ran in (`/proc/sys/kernel/random/boot_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_id: Option<String>,
}

/// The stages of a boot, in their order.
pub const STAGES: [&str; 4] = ["bootstrap", "config", "mount", "postboot"];

pub fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

impl Stage {
    pub fn failed(&self) -> bool {
        self.steps.iter().any(|s| s.result == Outcome::Failed)
    }

    /// Whether it still runs: said so, and its process alive (a stage
    /// killed half-way has ended, as failed).
    pub fn is_running(&self) -> bool {
        self.running && self.pid.is_some_and(crate::base::process::alive_ours)
    }

    /// Whether it ended badly: a step failed, or it was cut short.
    pub fn bad(&self) -> bool {
        self.failed() || (self.running && !self.is_running())
    }

    /// One line: `ok (N steps)`, or which steps failed.
    pub fn summary(&self) -> String {
        let failed: Vec<&str> = self
            .steps
            .iter()
            .filter(|s| s.result == Outcome::Failed)
            .map(|s| s.step.as_str())
            .collect();
        if failed.is_empty() {
            format!("ok ({})", plural(self.steps.len(), "step"))
        } else {
            format!(
                "FAILED: {} (of {}; `gandi-vm status` says why)",
                failed.join(", "),
                plural(self.steps.len(), "step")
            )
        }
    }
}

/// How a stage or a job ended: what the library returns where a verb
/// needs an exit code (the verb maps it, `cmd` prints).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Everything it set out to do is done (or had nothing to do).
    Ok,
    /// A step failed or a disk was left as it was; said in the log and the
    /// status.
    Failed,
}

impl Ended {
    /// The exit code: 0, else 1.
    pub fn code(self) -> i32 {
        match self {
            Ended::Ok => 0,
            Ended::Failed => 1,
        }
    }

    /// From a child's exit code (a watched worker's): anything but 0 failed.
    pub fn from_code(code: Option<i32>) -> Ended {
        if code == Some(0) {
            Ended::Ok
        } else {
            Ended::Failed
        }
    }
}

/// Seconds since the epoch, now.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `2026-12-02 10:11:12 UTC` (no time zone library: the civil date of a
/// day number, as Howard Hinnant's algorithm gives it).
pub fn utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// This boot's identity.
pub fn boot_id(settings: &Settings) -> Option<String> {
    crate::base::read::read_small(&settings.paths.proc_dir.join("sys/kernel/random/boot_id"))
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// Where a stage's state goes as it runs.
struct Saver {
    tree: Tree,
    settings: Settings,
    name: String,
    /// When the state was last written.
    at: Instant,
    /// Steps recorded since.
    unsaved: bool,
}

/// How long a stage's steps go unwritten at most: a step is written at
/// once when it failed or when this long passed since the last write, so
/// a stage of quick steps writes its state twice (as it starts and as it
/// ends) and a slow one shows its progress. Each write is the whole
/// status, read and written again atomically under its lock: under
/// emulation a dozen of them were a tenth of a stage's CPU.
pub const SAVE_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

/// Collects a stage's steps as they run; with [`Recorder::start`], writes
/// the stage's state when it starts, after a step that failed or that
/// ends [`SAVE_EVERY`] or more after the last write, when asked
/// ([`Recorder::flush`], before a program of the admin's or the
/// customer's runs), and as it ends; a stage that returns early (an error)
/// writes its steps as the recorder is dropped.
#[derive(Default)]
pub struct Recorder {
    pub stage: Stage,
    saver: Option<Saver>,
}

impl Recorder {
    /// Starts stage `name` beneath `tree`: recorded as running at once,
    /// then as its steps go (see [`Recorder`]). On the live system, the first stage of a boot
    /// keeps the previous boot's status beside (`status.previous.json` of
    /// the state folder).
    pub fn start(tree: &Tree, settings: &Settings, name: &str) -> Recorder {
        let live = tree.base() == std::path::Path::new("/");
        let boot = if live { boot_id(settings) } else { None };
        // Once a stage of this boot has written its status (in the run
        // folder, emptied at each boot), the kept one was seen to already.
        if live && tree.lstat(path(settings)).is_err() {
            keep_previous(tree, settings, boot.as_deref());
        }
        let stage = Stage {
            started: now(),
            running: true,
            pid: Some(std::process::id()),
            boot_id: boot,
            ..Stage::default()
        };
        let saver = Tree::open(tree.base()).ok().map(|t| Saver {
            tree: t,
            settings: settings.clone(),
            name: name.to_string(),
            at: Instant::now(),
            unsaved: false,
        });
        let mut rec = Recorder { stage, saver };
        rec.save();
        rec
    }

    fn save(&mut self) {
        if let Some(s) = &mut self.saver {
            if let Err(e) = save(&s.tree, &s.settings, &s.name, self.stage.clone()) {
                log::warn!("the status of {}: {e:#}", s.name);
            }
            s.at = Instant::now();
            s.unsaved = false;
        }
    }

    /// Writes the steps not written yet: before a step that runs a
    /// program that may take long or hang (a plugin, a hook, the
    /// customer's command), so that the status shows how far the stage
    /// got if it is killed there.
    pub fn flush(&mut self) {
        if self.saver.as_ref().is_some_and(|s| s.unsaved) {
            self.save();
        }
    }

    /// Runs `f` as step `name`, logging and recording what it did; an
    /// error is a failed step.
    pub fn step(&mut self, name: &str, f: impl FnOnce() -> Result<Done>) {
        let start = Instant::now();
        let done = f().unwrap_or_else(|e| Done::failed(format!("{e:#}")));
        self.push(name, done, start.elapsed().as_micros() as u64);
    }

    /// Records a step that did not run (`Skipped`, `Deferred`, ...).
    pub fn note(&mut self, name: &str, done: Done) {
        self.push(name, done, 0);
    }

    pub fn skip(&mut self, name: &str, why: &str) {
        self.note(name, Done::skipped(why));
    }

    fn push(&mut self, name: &str, done: Done, us: u64) {
        let detail = if done.detail.is_empty() {
            String::new()
        } else {
            format!(": {}", done.detail)
        };
        match done.result {
            Outcome::Failed => log::error!("{name}{detail}"),
            o => log::info!("{name}: {}{detail}", o.word()),
        }
        let failed = done.result == Outcome::Failed;
        self.stage.steps.push(Step {
            step: name.to_string(),
            result: done.result,
            detail: done.detail,
            us,
        });
        if let Some(s) = &mut self.saver {
            s.unsaved = true;
        }
        if failed
            || self
                .saver
                .as_ref()
                .is_some_and(|s| s.at.elapsed() >= SAVE_EVERY)
        {
            self.save();
        }
    }

    /// Saves the stage as ended, prints its one-line summary (the units
    /// send it to the console too, where support looks first) and returns
    /// how it ended: failed when a step failed.
    pub fn finish(mut self, tree: &Tree, settings: &Settings, name: &str) -> Result<Ended> {
        // Written here, not again as it is dropped.
        self.saver = None;
        self.stage.finished = now();
        self.stage.running = false;
        self.stage.pid = None;
        if self.stage.started == 0 {
            self.stage.started = self.stage.finished;
        }
        let failed = self.stage.failed();
        out::line(&format!("gandi-vm {name}: {}", self.stage.summary()));
        // On the live system, also what the next boot shows as the
        // previous one's.
        let live = tree.base() == std::path::Path::new("/");
        save_all(tree, settings, name, self.stage.clone(), live)?;
        Ok(if failed { Ended::Failed } else { Ended::Ok })
    }
}

impl Drop for Recorder {
    /// A stage that returned before [`Recorder::finish`] (an error): its
    /// steps are written, the stage still running, so that `gandi-vm
    /// status` shows it cut short once its process is gone, with what it did.
    fn drop(&mut self) {
        self.flush();
    }
}

/// The kept status of the last boot that ran a stage, moved aside as the
/// previous one when this boot is another.
fn keep_previous(tree: &Tree, settings: &Settings, boot: Option<&str>) {
    let kept = settings.paths.state_dir.join("status.json");
    let Ok((data, _)) = tree.read_owned_limited(&kept, MAX_STATUS) else {
        return;
    };
    let Ok(all) = serde_json::from_slice::<BTreeMap<String, Stage>>(&data) else {
        return;
    };
    let other = all.values().any(|s| s.boot_id.as_deref() != boot);
    if other && boot.is_some() {
        let _ = tree.rename(&kept, settings.paths.state_dir.join("status.previous.json"));
    }
}

pub fn path(settings: &Settings) -> PathBuf {
    settings.paths.run_dir.join("status.json")
}

/// The most a status file may hold.
pub const MAX_STATUS: u64 = 4 << 20;

/// All stages recorded this boot (on the live system); a status that
/// cannot be read (damaged, not a regular file) is empty here, see
/// [`read_checked`].
pub fn read(settings: &Settings) -> BTreeMap<String, Stage> {
    read_checked(settings).unwrap_or_default()
}

/// All stages recorded this boot: `Err` saying why when the status file is
/// there but cannot be used.
pub fn read_checked(settings: &Settings) -> Result<BTreeMap<String, Stage>, String> {
    let p = path(settings);
    match crate::base::read::read_state(&p, MAX_STATUS) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(e) => Err(format!("{}: {e}", p.display())),
        Ok(text) => {
            serde_json::from_slice(&text).map_err(|e| format!("{} is damaged ({e})", p.display()))
        }
    }
}

/// Records `stage` under `name` in the status beneath `tree`, keeping the
/// other stages.
pub fn save(tree: &Tree, settings: &Settings, name: &str, stage: Stage) -> Result<()> {
    save_all(tree, settings, name, stage, false)
}

/// [`save`]; with `keep`, the status written is also the boot's kept copy
/// (`GANDI_STATE_DIR/status.json`), written under the same lock, so that
/// two stages ending at once keep the later status.
fn save_all(tree: &Tree, settings: &Settings, name: &str, stage: Stage, keep: bool) -> Result<()> {
    let p = path(settings);
    // Stages may finish at once (bootstrap by hand while mount runs).
    let _lock = tree.lock(settings.paths.run_dir.join("status.lock"), true)?;
    let mut all: BTreeMap<String, Stage> = match tree.read_owned_limited(&p, MAX_STATUS) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
        Err(e) => {
            log::warn!("{}: {e}: written anew", tree.shown(&p).display());
            BTreeMap::new()
        }
        Ok((text, _)) => serde_json::from_slice(&text).unwrap_or_else(|e| {
            log::warn!(
                "{} is damaged ({e}): written anew",
                tree.shown(&p).display()
            );
            BTreeMap::new()
        }),
    };
    all.insert(name.to_string(), stage);
    let mut json = serde_json::to_vec_pretty(&all)?;
    json.push(b'\n');
    tree.write_atomic(&p, &json, WriteOpts::mode(0o644))?;
    if keep {
        let _ = tree.create_dirs(&settings.paths.state_dir, 0o700);
        if let Err(e) = tree.write_atomic(
            settings.paths.state_dir.join("status.json"),
            &json,
            WriteOpts::mode(0o644),
        ) {
            log::warn!("keeping this boot's status: {e:#}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
