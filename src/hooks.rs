//! User hooks from `GANDI_HOOK_DIR` (`/etc/gandi/hooks`): executables named
//! after the event, run with a time limit. A hook that fails or hangs is
//! logged (and killed), never fatal.

use crate::settings::Settings;
use crate::util;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
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

/// Runs hook `name` with `args`, for at most `limit`.
pub fn run(settings: &Settings, name: &str, args: &[&str], limit: Duration) -> HookResult {
    let path = settings.hook_dir.join(name);
    let Ok(meta) = std::fs::metadata(&path) else {
        return HookResult::Absent;
    };
    if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
        log::warn!("hook {} is not an executable file: skipped", path.display());
        return HookResult::Absent;
    }
    let mut cmd = Command::new(&path);
    cmd.args(args);
    match util::run_bounded(&mut cmd, limit) {
        Err(e) => {
            log::warn!("hook {name}: {e:#}");
            HookResult::Failed(format!("{e:#}"))
        }
        Ok(out) => {
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                log::info!("hook {name}: {line}");
            }
            for line in String::from_utf8_lossy(&out.stderr).lines() {
                log::info!("hook {name}: {line}");
            }
            match out.status {
                None => {
                    log::warn!("hook {name} killed after {} s", limit.as_secs());
                    HookResult::TimedOut
                }
                Some(s) if s.success() => HookResult::Ok,
                Some(s) => {
                    log::warn!("hook {name} failed ({s})");
                    HookResult::Failed(s.to_string())
                }
            }
        }
    }
}
