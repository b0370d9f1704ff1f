//! User hooks from `GANDI_HOOK_DIR` (`/etc/gandi/hooks`): executables named
//! after the event, run with a time limit. A hook that fails or hangs is
//! logged (and killed with its process group), never fatal.

use crate::runner::Run;
use crate::settings::Settings;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

/// How long a hook may run before it is killed.
pub const HOOK_LIMIT: Duration = Duration::from_secs(60);

/// What became of a hook.
#[derive(Debug, PartialEq, Eq)]
pub enum HookResult {
    /// No hook of that name.
    Absent,
    /// Not run: another user than root could have written it, or it is not
    /// an executable file.
    Refused(String),
    Ok,
    Failed(String),
    TimedOut,
}

impl std::fmt::Display for HookResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HookResult::Absent => write!(f, "absent"),
            HookResult::Refused(why) => write!(f, "refused ({why})"),
            HookResult::Ok => write!(f, "ran"),
            HookResult::Failed(why) => write!(f, "failed ({why})"),
            HookResult::TimedOut => write!(f, "killed at its time limit"),
        }
    }
}

/// Whether a file or folder may hold or be a program we run as root:
/// owned by root (or by the user we run as, who gains nothing), and
/// writable by no one else (a group may write only when it is root's).
fn trusted(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    let me = nix::unistd::geteuid().as_raw();
    (meta.uid() == 0 || meta.uid() == me)
        && meta.mode() & 0o002 == 0
        && (meta.mode() & 0o020 == 0 || meta.gid() == 0)
}

/// Checks that `path` is a program only root could have put there: a
/// regular executable file, trusted (see above), and so is every folder
/// above it, both on the way it is named and where its links lead.
/// Otherwise why it is refused.
pub fn check_program(path: &Path) -> Result<(), String> {
    let refuse = |p: &Path, why: &str| Err(format!("{} {why}: not run", p.display()));
    let real = match std::fs::canonicalize(path) {
        Ok(r) => r,
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let meta = match std::fs::metadata(&real) {
        Ok(m) => m,
        Err(e) => return Err(format!("{}: {e}", real.display())),
    };
    if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
        return refuse(path, "is not an executable file");
    }
    if !trusted(&meta) {
        return refuse(path, "may be changed by another user than root");
    }
    let above = path.ancestors().skip(1).chain(real.ancestors().skip(1));
    for dir in above.filter(|d| !d.as_os_str().is_empty()) {
        match std::fs::metadata(dir) {
            Ok(m) if trusted(&m) => {}
            Ok(_) => {
                return refuse(
                    path,
                    &format!(
                        "is in {}, which another user than root may change",
                        dir.display()
                    ),
                );
            }
            Err(e) => return Err(format!("{}: {e}", dir.display())),
        }
    }
    Ok(())
}

/// Runs hook `name` with `args`, for at most `limit`; its output goes to
/// the log, line by line. A hook that another user than root could have
/// written (see [`check_program`]) is refused.
pub fn run(settings: &Settings, name: &str, args: &[&str], limit: Duration) -> HookResult {
    let path = settings.hook_dir.join(name);
    if std::fs::symlink_metadata(&path).is_err() {
        return HookResult::Absent;
    }
    if let Err(why) = check_program(&path) {
        log::warn!("hook {why}");
        return HookResult::Refused(why);
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
