//! User hooks from `GANDI_HOOK_DIR` (`/etc/gandi/hooks`): executables named
//! after the event, run with a time limit. A hook that fails or hangs is
//! logged (and killed with its process group), never fatal.

use crate::base::runner::Run;
use crate::base::settings::Settings;
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
    (meta.uid() == 0 || meta.uid() == me) && !others_write(meta)
}

fn others_write(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    meta.mode() & 0o002 != 0 || (meta.mode() & 0o020 != 0 && meta.gid() != 0)
}

/// Checks each step down `path` (following its links, as the kernel
/// would): every folder and the file trusted; a folder others may write
/// is passed only when it is sticky (`/tmp`: nobody may replace what is
/// not theirs there). Where it fails, why.
fn check_walk(path: &Path) -> Result<(), String> {
    let mut at = std::path::PathBuf::new();
    let mut parent: Option<std::fs::Metadata> = None;
    for c in path.components() {
        at.push(c);
        let meta = std::fs::metadata(&at).map_err(|e| format!("{}: {e}", at.display()))?;
        if let Some(p) = &parent
            && others_write(p)
            && PermissionsExt::mode(&p.permissions()) & 0o1000 == 0
        {
            return Err(format!(
                "{}, which another user than root may change",
                at.parent().unwrap_or(Path::new("/")).display()
            ));
        }
        let sticky_dir =
            meta.is_dir() && PermissionsExt::mode(&meta.permissions()) & 0o1000 != 0 && {
                use std::os::unix::fs::MetadataExt;
                meta.uid() == 0 || meta.uid() == nix::unistd::geteuid().as_raw()
            };
        if !trusted(&meta) && !sticky_dir {
            return Err(format!(
                "{}, which another user than root may change",
                at.display()
            ));
        }
        parent = Some(meta);
    }
    Ok(())
}

/// Checks that `path` is a program only root could have put there: a
/// regular executable file, and every step down to it, both on the way it
/// is named and where its links lead, trusted (see above). Otherwise why
/// it is refused.
pub fn check_program(path: &Path) -> Result<(), String> {
    let refuse = |why: String| Err(format!("{} is in {why}: not run", path.display()));
    let real = std::fs::canonicalize(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let meta = std::fs::metadata(&real).map_err(|e| format!("{}: {e}", real.display()))?;
    if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
        return Err(format!(
            "{} is not an executable file: not run",
            path.display()
        ));
    }
    if !trusted(&meta) {
        return Err(format!(
            "{} may be changed by another user than root: not run",
            path.display()
        ));
    }
    for p in [path.parent().unwrap_or(Path::new("/")), real.as_path()] {
        if let Err(why) = check_walk(p) {
            return refuse(why);
        }
    }
    Ok(())
}

/// Runs hook `name` with `args`, for at most `limit`; its output goes to
/// the log, line by line. A hook that another user than root could have
/// written (see [`check_program`]) is refused.
pub fn run(settings: &Settings, name: &str, args: &[&str], limit: Duration) -> HookResult {
    run_with(settings, name, args, &[], limit)
}

/// Like [`run`], with `env` added to the hook's environment (the
/// original's interface: `post-iface-attach` gets udev's `INTERFACE` and
/// `ACTION`).
pub fn run_with(
    settings: &Settings,
    name: &str,
    args: &[&str],
    env: &[(&str, &str)],
    limit: Duration,
) -> HookResult {
    let path = settings.paths.hook_dir.join(name);
    if std::fs::symlink_metadata(&path).is_err() {
        return HookResult::Absent;
    }
    if let Err(why) = check_program(&path) {
        log::warn!("hook {why}");
        return HookResult::Refused(why);
    }
    let mut run = Run::new(&path).args(args);
    for (k, v) in env {
        run = run.env(k, v);
    }
    match run.limit(limit).log_as(format!("hook {name}")).outcome() {
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
