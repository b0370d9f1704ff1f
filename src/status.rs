//! `GANDI_RUN_DIR/status.json`: each boot stage's steps with their result
//! and duration; `gandi-vm status [--json]` shows them.

use crate::settings::Settings;
use crate::util;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Changed,
    Unchanged,
    Skipped,
    Failed,
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
}

/// Collects a stage's steps as they run.
#[derive(Debug, Default)]
pub struct Recorder {
    pub stage: Stage,
}

impl Recorder {
    /// Runs `f` as step `name`, logging and recording its outcome.
    pub fn step<T>(
        &mut self,
        name: &str,
        f: impl FnOnce() -> Result<(Outcome, String, T)>,
    ) -> Option<T> {
        let start = Instant::now();
        let (result, detail, value) = match f() {
            Ok((o, d, v)) => (o, d, Some(v)),
            Err(e) => (Outcome::Failed, format!("{e:#}"), None),
        };
        let us = start.elapsed().as_micros() as u64;
        match result {
            Outcome::Failed => log::error!("{name}: {detail}"),
            Outcome::Skipped => log::info!("{name}: skipped: {detail}"),
            ref o => log::info!(
                "{name}: {}{}",
                if *o == Outcome::Changed {
                    "changed"
                } else {
                    "unchanged"
                },
                if detail.is_empty() {
                    String::new()
                } else {
                    format!(" ({detail})")
                }
            ),
        }
        self.stage.steps.push(Step {
            step: name.to_string(),
            result,
            detail,
            us,
        });
        value
    }

    pub fn skip(&mut self, name: &str, why: &str) {
        self.step(name, || Ok((Outcome::Skipped, why.to_string(), ())));
    }
}

fn path(settings: &Settings) -> PathBuf {
    settings.run_dir.join("status.json")
}

/// All stages recorded this boot.
pub fn read(settings: &Settings) -> BTreeMap<String, Stage> {
    fs::read(path(settings))
        .ok()
        .and_then(|t| serde_json::from_slice(&t).ok())
        .unwrap_or_default()
}

/// Records `stage` under `name`, keeping the other stages.
pub fn save(settings: &Settings, name: &str, mut stage: Stage) -> Result<()> {
    stage.finished = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut all = read(settings);
    all.insert(name.to_string(), stage);
    fs::create_dir_all(&settings.run_dir)
        .with_context(|| format!("creating {}", settings.run_dir.display()))?;
    let mut json = serde_json::to_vec_pretty(&all)?;
    json.push(b'\n');
    util::write_atomic(&path(settings), &json, 0o644)
}

/// `gandi-vm status [--json]`: non-zero when a step failed.
pub fn show(settings: &Settings, json: bool) -> Result<i32> {
    let all = read(settings);
    let failed = all.values().any(Stage::failed);
    if json {
        println!("{}", serde_json::to_string_pretty(&all)?);
    } else if all.is_empty() {
        println!("no stage has run this boot ({})", path(settings).display());
    } else {
        for stage in ["bootstrap", "config", "mount", "postboot"] {
            let Some(s) = all.get(stage) else {
                println!("{stage}: not run");
                continue;
            };
            let total: u64 = s.steps.iter().map(|s| s.us).sum();
            println!(
                "{stage}: {} ({} steps, {:.1} ms)",
                if s.failed() { "FAILED" } else { "ok" },
                s.steps.len(),
                total as f64 / 1000.0
            );
            for st in &s.steps {
                let result = match st.result {
                    Outcome::Changed => "changed",
                    Outcome::Unchanged => "unchanged",
                    Outcome::Skipped => "skipped",
                    Outcome::Failed => "FAILED",
                };
                let detail = if st.detail.is_empty() {
                    String::new()
                } else {
                    format!(": {}", st.detail)
                };
                println!(
                    "  {:<14} {result:<9} {:>7.1} ms{detail}",
                    st.step,
                    st.us as f64 / 1000.0
                );
            }
        }
    }
    Ok(if failed { 1 } else { 0 })
}
