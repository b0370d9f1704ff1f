//! `GANDI_RUN_DIR/status.json`: each boot stage's steps with their result
//! and duration; `gandi-vm status [--json]` shows them.

use crate::out;
use crate::settings::Settings;
use crate::tree::{Change, Tree, WriteOpts};
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
    /// Seconds since the epoch.
    pub finished: u64,
}

impl Stage {
    pub fn failed(&self) -> bool {
        self.steps.iter().any(|s| s.result == Outcome::Failed)
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
            format!("ok ({} steps)", self.steps.len())
        } else {
            format!(
                "FAILED: {} (of {} steps; `gandi-vm status` says why)",
                failed.join(", "),
                self.steps.len()
            )
        }
    }
}

/// Collects a stage's steps as they run.
#[derive(Debug, Default)]
pub struct Recorder {
    pub stage: Stage,
}

impl Recorder {
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
        self.stage.steps.push(Step {
            step: name.to_string(),
            result: done.result,
            detail: done.detail,
            us,
        });
    }

    /// Saves the stage, prints its one-line summary (the units send it to
    /// the console too, where support looks first) and returns the exit
    /// code: 1 when a step failed.
    pub fn finish(mut self, tree: &Tree, settings: &Settings, name: &str) -> Result<i32> {
        self.stage.finished = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let failed = self.stage.failed();
        out::line(&format!("gandi-vm {name}: {}", self.stage.summary()));
        save(tree, settings, name, self.stage)?;
        Ok(if failed { 1 } else { 0 })
    }
}

fn path(settings: &Settings) -> PathBuf {
    settings.run_dir.join("status.json")
}

/// The most a status file may hold.
const MAX_STATUS: u64 = 4 << 20;

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
    match crate::util::read_state(&p, MAX_STATUS) {
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
    let p = path(settings);
    // Stages may finish at once (bootstrap by hand while mount runs).
    let _lock = tree.lock(settings.run_dir.join("status.lock"), true)?;
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
    tree.write_atomic(&p, &json, WriteOpts::mode(0o644))
}

/// `gandi-vm status [--json]`: non-zero when a step failed.
pub fn show(settings: &Settings, json: bool) -> Result<i32> {
    let all = match read_checked(settings) {
        Ok(all) => all,
        Err(why) => {
            out::line(&format!("the status cannot be read: {why}"));
            return Ok(1);
        }
    };
    let failed = all.values().any(Stage::failed);
    if json {
        out::line(&serde_json::to_string_pretty(&all)?);
    } else if all.is_empty() {
        out::line(&format!(
            "no stage has run this boot ({})",
            path(settings).display()
        ));
    } else {
        for stage in ["bootstrap", "config", "mount", "postboot"] {
            let Some(s) = all.get(stage) else {
                out::line(&format!("{stage}: not run"));
                continue;
            };
            let total: u64 = s.steps.iter().map(|s| s.us).sum();
            out::line(&format!(
                "{stage}: {} ({} steps, {:.1} ms)",
                if s.failed() { "FAILED" } else { "ok" },
                s.steps.len(),
                total as f64 / 1000.0
            ));
            for st in &s.steps {
                let detail = if st.detail.is_empty() {
                    String::new()
                } else {
                    format!(": {}", st.detail)
                };
                out::line(&format!(
                    "  {:<14} {:<9} {:>7.1} ms{detail}",
                    st.step,
                    st.result.word(),
                    st.us as f64 / 1000.0
                ));
            }
        }
    }
    Ok(if failed { 1 } else { 0 })
}
