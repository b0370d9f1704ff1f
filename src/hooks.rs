//! User hooks from `GANDI_HOOK_DIR` (`/etc/gandi/hooks`): executables named
//! after the event, run with a time limit. A hook that fails or hangs is
//! logged (and killed with its process group), never fatal.

use crate::runner::Run;
use crate::settings::Settings;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

/// How long a hook may run before it is killed.
pub const HOOK_LIMIT: Duration = Duration::from_secs(60);

/// What became of a hook.
#[derive(Debug, PartialEq, Eq)]
pub enum HookResult {
    /// No executable hook of that name.
    Absent,
    Ok,
    Failed(String),
    TimedOut,
}

impl std::fmt::Display for HookResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HookResult::Absent => write!(f, "absent"),
            HookResult::Ok => write!(f, "ran"),
            HookResult::Failed(why) => write!(f, "failed ({why})"),
            HookResult::TimedOut => write!(f, "killed at its time limit"),
        }
    }
}

/// Runs hook `name` with `args`, for at most `limit`; its output goes to
/// the log, line by line.
pub fn run(settings: &Settings, name: &str, args: &[&str], limit: Duration) -> HookResult {
    let path = settings.hook_dir.join(name);
    let Ok(meta) = std::fs::metadata(&path) else {
        return HookResult::Absent;
    };
    if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
        log::warn!("hook {} is not an executable file: skipped", path.display());
        return HookResult::Absent;
    }
    match Run::new(&path)
        .args(args)
        .limit(limit)
        .log_as(format!("hook {name}"))
        .outcome()
    {
        Err(e) => {
            log::warn!("hook {name}: {e:#}");
            HookResult::Failed(format!("{e:#}"))
        }
        Ok(out) => match out.status {
            None => HookResult::TimedOut,
            Some(s) if s.success() => HookResult::Ok,
            Some(_) => {
                log::warn!("hook {name} failed ({})", out.ended());
                HookResult::Failed(out.ended())
            }
        },
    }
}
