//! `gandi-vm postboot`: the customer's commands given by the platform
//! (`/gandi/script` with `vm_conf.script_args`, then `vm_conf.run`), each
//! with a time limit, output to the journal, result to `status.json`; the
//! platform's own script `/gandi/init` only when `CONFIG_PLATFORM_SCRIPT=1`
//! (see `bootstrap::init`); then the command material and the password
//! hash are removed from disk. It starts once the `config` stage has ended
//! (its plugins and hook included): systemd starts it when `config` says
//! it is ready, and it waits on `config`'s lock.
//!
//! At most once per platform config: before a command starts, a mark is
//! written (and synced) in the state folder, as cloud-init does; a command
//! cut short (the VM lost power, the unit was killed) is reported at the
//! next boot and not run again.
//!
//! With `--root DIR` nothing runs: the commands are reported as deferred
//! and nothing is recorded that would stop them from running at the
//! image's first boot (`gandi-vm postboot` run in the tree, as its first
//! boot does, runs them once).

use crate::base::runner::Run;
use crate::base::settings::Settings;
use crate::base::status::Ended;
use crate::base::status::{Done, Recorder};
use crate::base::tree::{Tree, WriteOpts};
use crate::boot::bootstrap;
use crate::platform::config;
use crate::platform::ledger::Ledger;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::boot::idle::CLEANED;

pub struct Options {
    pub root: PathBuf,
}

/// One post-boot command.
enum Command {
    /// A shell command line, and how it is shown (never its text).
    Shell(String, String),
    /// The platform's script, with its interpreter.
    Init(bootstrap::Interpreter),
}

/// The longest postboot waits for the config stage (its plugins) to end.
const CONFIG_WAIT: Duration = Duration::from_secs(2 * 3600);

/// Runs the stage; returns the exit code (1 when a command failed).
pub fn run(settings: &Settings, opts: &Options) -> Result<Ended> {
    let tree = Tree::open(&opts.root)?;
    let live = opts.root == Path::new("/");
    let mut rec = Recorder::start(&tree, settings, "postboot");
    if live && let Some(why) = crate::base::settings::disabled(settings) {
        rec.skip("disabled", &format!("gandi-vm is turned off: {why}"));
        return rec.finish(&tree, settings, "postboot");
    }
    let gandi = settings.paths.gandi_dir.as_path();
    let config_path = gandi.join("config");
    let limit = Duration::from_secs(settings.postboot_timeout_s);

    match tree.read_owned(&config_path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            rec.skip("commands", &format!("no {}", config_path.display()))
        }
        Err(e) => rec.note(
            "commands",
            Done::failed(format!("{}: {e}", tree.shown(&config_path).display())),
        ),
        Ok((text, _)) => {
            let value: Option<serde_json::Value> = serde_json::from_slice(&text).ok();
            let cleaned = value.as_ref().is_some_and(|v| v.get(CLEANED).is_some());
            let mut commands: Vec<(String, Command)> = Vec::new();
            let config = config::read(&text);
            match &config {
                Ok(c) => {
                    // The customer's script first, through the shell as the
                    // original ran it, then the command.
                    let script = gandi.join("script");
                    if tree.lstat(&script).is_ok() {
                        let line = match &c.script_args {
                            Some(a) => format!("{} {a}", tree.shown(&script).display()),
                            None => tree.shown(&script).display().to_string(),
                        };
                        let shown = format!(
                            "script ({}, {} bytes of arguments)",
                            tree.shown(&script).display(),
                            c.script_args.as_deref().map_or(0, str::len)
                        );
                        commands.push(("script".into(), Command::Shell(line, shown)));
                    }
                    for (i, cmd) in c.run.iter().enumerate() {
                        let name = format!("run[{i}]");
                        let shown = format!("{name} {}", crate::base::runner::redacted(cmd));
                        commands.push((name, Command::Shell(cmd.clone(), shown)));
                    }
                    for p in c
                        .problems_at("vm_conf.run")
                        .into_iter()
                        .chain(c.problems_at("vm_conf.script_args"))
                    {
                        rec.note("commands", Done::failed(format!("left out: {p}")));
                    }
                }
                Err(p) => rec.note(
                    "commands",
                    Done::failed(format!("{}: {p}", config_path.display())),
                ),
            }
            let init = gandi.join("init");
            if tree.lstat(&init).is_ok() && !cleaned {
                if !settings.platform_script {
                    rec.skip(
                        "init",
                        "the platform's script is not run (CONFIG_PLATFORM_SCRIPT=0): \
                         its work is done natively",
                    );
                } else {
                    match bootstrap::interpreter(&tree, &init) {
                        Ok(how) => commands.push(("init".into(), Command::Init(how))),
                        Err(why) => rec.note("init", Done::skipped(why)),
                    }
                }
            }
            if cleaned {
                rec.skip("commands", "already run for this config (cleaned)");
            } else if commands.is_empty() {
                rec.skip("commands", "none given");
            } else if !live {
                for (name, _) in &commands {
                    rec.note(name, Done::deferred("--root: runs at the first boot"));
                }
            } else {
                // After the config stage, the admin's plugins included.
                let waited = crate::base::lock::FileLock::take_for(
                    &crate::boot::config::lock_path(settings),
                    CONFIG_WAIT,
                );
                if !matches!(waited, Ok(Some(_))) {
                    log::warn!(
                        "the config stage still runs after {} s: going on",
                        CONFIG_WAIT.as_secs()
                    );
                }
                drop(waited);
                run_once(settings, &tree, &text, &commands, limit, &mut rec)?;
            }
            if let Some(v) = value {
                rec.step("secrets", || clean(&tree, gandi, &config_path, v, live));
            }
        }
    }

    if live {
        let mut ledger = Ledger::load(&tree, &settings.paths.state_dir);
        if ledger.damaged.is_none() && ledger.recovered() {
            ledger.seen_by_postboot();
            let _ = ledger.save(&tree);
        }
    }
    if !settings.allow_mount {
        if live {
            rec.step("autofs", || {
                Run::new("systemctl")
                    .args(["stop", "autofs.service"])
                    .limit(Duration::from_secs(90))
                    .output()?;
                Ok(Done::changed("stopped (CONFIG_ALLOW_MOUNT=0)"))
            });
        } else {
            rec.note("autofs", Done::deferred("--root"));
        }
    }
    rec.finish(&tree, settings, "postboot")
}

/// Runs each command at most once for this config: its start is recorded
/// (and synced) before it runs, its end after.
fn run_once(
    settings: &Settings,
    tree: &Tree,
    config: &[u8],
    commands: &[(String, Command)],
    limit: Duration,
    rec: &mut Recorder,
) -> Result<()> {
    for (name, cmd) in commands {
        let started = format!("postboot:{name}:started");
        let ended = format!("postboot:{name}:ended");
        {
            // The ledger is held only while its marks change, not while a
            // command runs.
            let mut ledger = Ledger::load(tree, &settings.paths.state_dir);
            if let Some(why) = &ledger.damaged {
                // Which commands ran cannot be told: none runs again.
                rec.note(name, Done::failed(format!("{why}: not run")));
                continue;
            }
            if ledger.recovered() && ledger.is_new(&ended, config) {
                // Damaged earlier this boot (bootstrap wrote it again):
                // whether it ran cannot be told either.
                rec.note(
                    name,
                    Done::failed(
                        "the state file was damaged: whether it ran for this config cannot \
                         be told: not run",
                    ),
                );
                ledger.set(&ended, config);
                ledger.save(tree)?;
                continue;
            }
            if !ledger.is_new(&ended, config) {
                rec.note(name, Done::unchanged("already ran for this config"));
                continue;
            }
            if !ledger.is_new(&started, config) {
                // Reported once: later boots see it ended.
                rec.note(
                    name,
                    Done::failed(
                        "cut short at an earlier boot (power lost or killed): not run again",
                    ),
                );
                ledger.set(&ended, config);
                ledger.save(tree)?;
                continue;
            }
            ledger.set(&started, config);
            ledger.save(tree)?;
        }
        let native = matches!(cmd, Command::Init(_)).then(|| bootstrap::native_state(tree));
        // Killed or hung in the command, the status shows which.
        rec.flush();
        rec.step(name, || {
            let mut before = None;
            let out = match cmd {
                Command::Shell(c, shown) => {
                    // The command's text may carry a secret: through a
                    // root-only file, never in its arguments (anyone may
                    // read those in /proc while it runs).
                    let file = command_file(settings, name, c)?;
                    let out = Run::new("sh")
                        .arg(&file)
                        .shown_as(shown.clone())
                        .current_dir("/")
                        .limit(limit)
                        .log_as(name.clone())
                        .outcome();
                    let _ = std::fs::remove_file(&file);
                    out?
                }
                Command::Init(how) => {
                    before = Some(bootstrap::snapshot(tree));
                    bootstrap::run_platform_script(
                        tree,
                        &settings.paths.gandi_dir.join("init"),
                        how,
                        limit,
                    )?
                }
            };
            let mut detail = out.ended();
            if let Some(before) = before {
                let changed = bootstrap::changed(&before, &bootstrap::snapshot(tree));
                let shown: Vec<String> = changed
                    .iter()
                    .take(20)
                    .map(|p| p.display().to_string())
                    .collect();
                detail.push_str(&match changed.len() {
                    0 => "; changed no file of /etc or .ssh".to_string(),
                    n if n > 20 => format!("; changed {n} files: {} ...", shown.join(", ")),
                    _ => format!("; changed {}", shown.join(", ")),
                });
            }
            if out.success() {
                Ok(Done::changed(detail))
            } else {
                Ok(Done::failed(detail))
            }
        });
        let mut ledger = Ledger::load(tree, &settings.paths.state_dir);
        ledger.set(&ended, config);
        ledger.save(tree)?;
        // What the platform's own script rewrote of the native apply's
        // (and the admin's) files is put back.
        if let Some(before) = native {
            rec.step("restore", || bootstrap::restore_native(tree, &before));
        }
    }
    Ok(())
}

/// Writes a command's text to a file of its own in a root-only folder of
/// the run dir (a tmpfs: nothing of it outlives the boot).
fn command_file(settings: &Settings, name: &str, text: &str) -> Result<PathBuf> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let dir = settings.paths.run_dir.join("commands");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
    let file_name: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let file = dir.join(file_name);
    crate::base::tree::write_atomic(&file, format!("{text}\n").as_bytes(), 0o600)?;
    Ok(file)
}

/// Removes the command material (`/gandi/init`, `/gandi/script`, the
/// config's `vm_conf.run` and `vm_conf.script_args`) and the secrets (the
/// password hash) from disk, keeping the rest of the
/// config (the network setup still reads it). With `--root`, only the hash
/// goes: the commands are the first boot's.
fn clean(
    tree: &Tree,
    gandi: &Path,
    config_path: &Path,
    mut v: serde_json::Value,
    live: bool,
) -> Result<Done> {
    let mut removed = Vec::new();
    for (file, name) in [("init", "init"), ("script", "script")] {
        if live && tree.remove_file(gandi.join(file))? {
            removed.push(name);
        }
    }
    if let Some(obj) = v.as_object_mut() {
        if let Some(conf) = obj.get_mut("vm_conf").and_then(|c| c.as_object_mut()) {
            if live && conf.remove("run").is_some() {
                removed.push("vm_conf.run");
            }
            if live && conf.remove("script_args").is_some() {
                removed.push("vm_conf.script_args");
            }
            if conf.remove("password").is_some() {
                removed.push("vm_conf.password");
            }
        }
        if live && obj.get(CLEANED).is_none() {
            obj.insert(CLEANED.into(), serde_json::Value::Bool(true));
        }
    }
    if removed.is_empty() {
        return Ok(Done::unchanged(""));
    }
    let mut text = serde_json::to_vec_pretty(&v)?;
    text.push(b'\n');
    tree.write_atomic(config_path, &text, WriteOpts::mode(0o600))
        .context("rewriting the config without its secrets")?;
    Ok(Done::changed(format!("removed {}", removed.join(", "))))
}
