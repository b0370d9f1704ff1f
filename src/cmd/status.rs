//! `gandi-vm status [--json] [--previous] [--wait [--timeout S]]`: this
//! boot's stages (or the previous boot's), as they run; the verb prints,
//! `base::status` records and reads.

use crate::base::out;
use crate::base::settings::Settings;
use crate::base::status::{MAX_STATUS, STAGES, Stage, path, plural, read_checked, utc};
use anyhow::Result;
use std::collections::BTreeMap;
use std::time::Instant;

/// Show the stages of this boot as they run and their steps (result,
/// detail, duration, start and end): 0 when all went well, 1 when a
/// step failed or a stage was cut short, 3 when --wait ran out of time.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// The previous boot's stages instead of this boot's.
    #[arg(long, conflicts_with = "wait")]
    pub previous: bool,
    /// Wait until every stage of this boot has ended (a stage whose
    /// unit is disabled, masked or skipped by its condition counts as
    /// ended), then show them and exit with their result.
    #[arg(long)]
    pub wait: bool,
    /// The longest wait, in seconds.
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 3600,
        requires = "wait"
    )]
    pub timeout: u64,
}

/// What `gandi-vm status` shows.
#[derive(Debug, Clone, Default)]
pub struct ShowOptions {
    pub json: bool,
    /// The previous boot's, kept in the state folder.
    pub previous: bool,
    /// Wait (at most this long) until every stage of this boot has ended.
    pub wait: Option<std::time::Duration>,
}

/// The exit code of a wait that ran out of time.
pub const TIMED_OUT: i32 = 3;

/// What systemd says of the unit of a stage that wrote no status yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    /// A job is queued for it, or it is starting: it may still run.
    Coming,
    /// It failed before it wrote anything (its settings unreadable, its
    /// program missing).
    Failed,
    /// Disabled, masked, skipped by its condition, or no systemd: it does
    /// not run this boot.
    Idle,
}

fn unit_of_stage(settings: &Settings, name: &str) -> Unit {
    if !settings.paths.systemd_dir.is_dir() {
        return Unit::Idle;
    }
    let unit = format!("gandi-{name}.service");
    let Ok(out) = crate::base::runner::Run::new("systemctl")
        .args(["show", "-p", "ActiveState", "-p", "Job", &unit])
        .limit(std::time::Duration::from_secs(10))
        .output()
    else {
        return Unit::Idle;
    };
    let value = |key: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .unwrap_or("")
            .trim()
            .to_string()
    };
    let job = value("Job");
    let state = value("ActiveState");
    if (!job.is_empty() && job != "0") || state == "activating" || state == "reloading" {
        Unit::Coming
    } else if state == "failed" {
        Unit::Failed
    } else {
        Unit::Idle
    }
}

/// The stages that have not ended yet.
fn pending(settings: &Settings, all: &BTreeMap<String, Stage>) -> Vec<&'static str> {
    STAGES
        .iter()
        .copied()
        .filter(|name| match all.get(*name) {
            Some(s) => s.is_running(),
            None => unit_of_stage(settings, name) == Unit::Coming,
        })
        .collect()
}

/// `gandi-vm status [--json] [--previous] [--wait [--timeout S]]`:
/// non-zero when a step failed (1), or when the wait ran out of time (3).
pub fn show(settings: &Settings, opts: &ShowOptions) -> Result<i32> {
    if let Some(why) = crate::base::settings::disabled(settings) {
        let said = format!("gandi-vm is turned off ({why}): no boot stage runs");
        if opts.json {
            log::warn!("{said}");
        } else {
            out::line(&said);
        }
    }
    let read_all = || {
        if opts.previous {
            let p = settings.paths.state_dir.join("status.previous.json");
            match crate::base::read::read_state(&p, MAX_STATUS) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
                Err(e) => Err(format!("{}: {e}", p.display())),
                Ok(text) => serde_json::from_slice(&text)
                    .map_err(|e| format!("{} is damaged ({e})", p.display())),
            }
        } else {
            read_checked(settings)
        }
    };
    let mut timed_out = Vec::new();
    let all = loop {
        let all = match read_all() {
            Ok(all) => all,
            Err(why) => {
                out::line(&format!("the status cannot be read: {why}"));
                return Ok(1);
            }
        };
        let Some(limit) = opts.wait.filter(|_| !opts.previous) else {
            break all;
        };
        static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        let start = *START.get_or_init(Instant::now);
        let left = pending(settings, &all);
        if left.is_empty() {
            break all;
        }
        if start.elapsed() >= limit {
            timed_out = left;
            break all;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    };
    let mut all = all;
    if opts.previous {
        // That boot is over: a stage it shows running was cut short (its
        // PID means nothing now).
        for s in all.values_mut() {
            s.pid = None;
        }
    }
    // A stage whose unit failed before it wrote anything failed too.
    let unit_failed: Vec<&str> = if opts.previous {
        Vec::new()
    } else {
        STAGES
            .iter()
            .copied()
            .filter(|n| !all.contains_key(*n) && unit_of_stage(settings, n) == Unit::Failed)
            .collect()
    };
    let failed = all.values().any(Stage::bad) || !unit_failed.is_empty();
    if opts.json {
        out::line(&serde_json::to_string_pretty(&all)?);
    } else if all.is_empty() {
        out::line(&if opts.previous {
            "no status of a previous boot is kept".to_string()
        } else {
            format!("no stage has run this boot ({})", path(settings).display())
        });
    } else {
        if opts.previous
            && let Some(boot) = all.values().find_map(|s| s.boot_id.as_deref())
        {
            out::line(&format!("the boot {boot}:"));
        }
        for stage in STAGES {
            let Some(s) = all.get(stage) else {
                if unit_failed.contains(&stage) {
                    out::line(&format!(
                        "{stage}: FAILED (its unit failed before it started: \
                         `journalctl -u gandi-{stage}` says why)"
                    ));
                } else {
                    out::line(&format!("{stage}: not run"));
                }
                continue;
            };
            let total: u64 = s.steps.iter().map(|s| s.us).sum();
            let (word, when) = if s.is_running() {
                ("running", format!("started {}", utc(s.started)))
            } else if s.running {
                (
                    "CUT SHORT",
                    format!("started {}, its process is gone", utc(s.started)),
                )
            } else if s.failed() {
                ("FAILED", format!("ended {}", utc(s.finished)))
            } else {
                ("ok", format!("ended {}", utc(s.finished)))
            };
            out::line(&format!(
                "{stage}: {word} ({}, {:.1} ms, {when})",
                plural(s.steps.len(), "step"),
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
    if !timed_out.is_empty() {
        let said = format!(
            "still running after {} s: {}",
            opts.wait.map_or(0, |w| w.as_secs()),
            timed_out.join(", ")
        );
        // The JSON on stdout stays JSON.
        if opts.json {
            log::warn!("{said}");
        } else {
            out::line(&said);
        }
        return Ok(TIMED_OUT);
    }
    Ok(if failed { 1 } else { 0 })
}

pub fn run(settings: &Settings, args: Args) -> Result<i32> {
    let opts = ShowOptions {
        json: args.json,
        previous: args.previous,
        wait: args
            .wait
            .then(|| std::time::Duration::from_secs(args.timeout)),
    };
    show(settings, &opts)
}
