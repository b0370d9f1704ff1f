//! The one way we start a program: tools (`resize2fs`, `sfdisk`, ...), the
//! admin's hooks and plugins, the platform's commands and script.
//!
//! Every run is bounded: the program starts in a process group of its own,
//! and at its time limit the whole group is killed (a command's children
//! and grandchildren with it). Its output is captured (at most 1 MiB of
//! each stream) and, when asked, logged line by line as it comes. Errors
//! name the command line.

use anyhow::{Context, Result, bail};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use std::ffi::OsStr;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

mod capture;
use capture::{Capture, pump};

/// The time limit of a tool when the caller gives none.
pub const TOOL_LIMIT: Duration = Duration::from_secs(300);

/// How much of each output stream is kept.
const KEEP: usize = 1 << 20;

/// The whole command line, quoted as a shell would need it, for messages.
pub fn describe(cmd: &Command) -> String {
    let mut parts = vec![quote(cmd.get_program())];
    parts.extend(cmd.get_args().map(quote));
    parts.join(" ")
}

fn quote(arg: &OsStr) -> String {
    let s = arg.to_string_lossy();
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c))
    {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// A short form of a shell command that may carry secrets (`run` of the
/// platform's config: `DB_PASSWORD=... ./setup`), for messages and the
/// status: its first word that is not an assignment, cut at 24
/// characters, and its length. Nothing after it is shown.
pub fn redacted(command: &str) -> String {
    let first = command
        .split_whitespace()
        .find(|w| !w.contains('='))
        .unwrap_or("");
    let mut shown: String = first.chars().filter(|c| !c.is_control()).take(24).collect();
    if shown.len() < first.len() || command.split_whitespace().count() > 1 {
        shown.push_str(" ...");
    }
    format!("sh -c '{shown}' ({} bytes)", command.len())
}

/// A program ended by a signal (killed), not by failing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KilledBySignal(pub i32);

impl std::fmt::Display for KilledBySignal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "killed by signal {}", self.0)
    }
}

impl std::error::Error for KilledBySignal {}

/// Whether `e` says a program was killed by a signal.
pub fn killed(e: &anyhow::Error) -> bool {
    e.chain()
        .any(|c| c.downcast_ref::<KilledBySignal>().is_some())
}

/// What a run did.
#[derive(Debug)]
pub struct Outcome {
    /// The command line, for messages.
    pub command: String,
    /// `None` when it was killed at its time limit.
    pub status: Option<ExitStatus>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub limit: Duration,
}

impl Outcome {
    pub fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    /// The exit code, when it exited (not killed by a signal or the limit).
    pub fn code(&self) -> Option<i32> {
        self.status.and_then(|s| s.code())
    }

    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).trim().to_string()
    }

    /// One line saying how it ended: `exit 0`, `exit 3`, `killed by signal
    /// 9`, `killed after 60 s (its time limit)`.
    pub fn ended(&self) -> String {
        use std::os::unix::process::ExitStatusExt;
        match self.status {
            None => format!("killed after {} s (its time limit)", self.limit.as_secs()),
            Some(s) => match (s.code(), s.signal()) {
                (Some(c), _) => format!("exit {c}"),
                (None, Some(sig)) => format!("killed by signal {sig}"),
                _ => s.to_string(),
            },
        }
    }

    /// Ok when it succeeded; else an error naming the command, how it
    /// ended and what it said on stderr (holding [`KilledBySignal`] when a
    /// signal ended it: it did not fail, it was stopped).
    pub fn check(self) -> Result<Outcome> {
        if self.success() {
            return Ok(self);
        }
        let said = self.stderr_text();
        let said = if said.is_empty() {
            String::from_utf8_lossy(&self.stdout).trim().to_string()
        } else {
            said
        };
        let summary = self.summary("failed", &said);
        use std::os::unix::process::ExitStatusExt;
        // Stopped from outside (the OOM killer, a kill, a stop), not a
        // crash of its own (SIGSEGV, SIGABRT: it failed).
        if let Some(sig) = self.status.and_then(|s| s.signal())
            && [libc::SIGKILL, libc::SIGTERM, libc::SIGINT, libc::SIGHUP].contains(&sig)
        {
            return Err(anyhow::Error::new(KilledBySignal(sig)).context(summary));
        }
        bail!("{summary}")
    }

    /// "COMMAND VERB (how it ended): SAID", without the colon part when
    /// `said` is empty.
    pub fn summary(&self, verb: &str, said: &str) -> String {
        let mut text = format!("{} {verb} ({})", self.command, self.ended());
        if !said.is_empty() {
            text.push_str(": ");
            text.push_str(said);
        }
        text
    }
}

/// A program to run, bounded.
pub struct Run {
    cmd: Command,
    limit: Duration,
    log_as: Option<String>,
    input: Option<Vec<u8>>,
    /// How the command is named in messages instead of its whole line.
    shown: Option<String>,
}

/// udev runs programs with the device's properties as their whole
/// environment: no PATH. The tools we call live in the sbin folders.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

impl Run {
    /// `program` with the default limit ([`TOOL_LIMIT`]); found in
    /// [`DEFAULT_PATH`] when we were given no `PATH`.
    pub fn new(program: impl AsRef<OsStr>) -> Run {
        let mut cmd = Command::new(program);
        if std::env::var_os("PATH").is_none_or(|p| p.is_empty()) {
            // Set on the command, the child's PATH is also where the
            // program is looked up.
            cmd.env("PATH", DEFAULT_PATH);
        }
        Run {
            cmd,
            limit: TOOL_LIMIT,
            log_as: None,
            input: None,
            shown: None,
        }
    }

    /// Names the command `shown` in every message and outcome, instead of
    /// its whole command line (which may carry a secret).
    pub fn shown_as(mut self, shown: impl Into<String>) -> Run {
        self.shown = Some(shown.into());
        self
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Run {
        self.cmd.arg(arg);
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.cmd.args(args);
        self
    }

    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Run {
        self.cmd.env(key, value);
        self
    }

    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> Run {
        self.cmd.current_dir(dir);
        self
    }

    /// Its time limit.
    pub fn limit(mut self, limit: Duration) -> Run {
        self.limit = limit;
        self
    }

    /// Logs each line of its output, as it comes, as `NAME: LINE`.
    pub fn log_as(mut self, name: impl Into<String>) -> Run {
        self.log_as = Some(name.into());
        self
    }

    /// Writes `data` to its standard input (otherwise it reads nothing).
    pub fn input(mut self, data: impl Into<Vec<u8>>) -> Run {
        self.input = Some(data.into());
        self
    }

    /// The command line, for messages (or how it is shown, when given).
    pub fn describe(&self) -> String {
        self.shown.clone().unwrap_or_else(|| describe(&self.cmd))
    }

    /// Starts it in a process group of its own, its output piped (its input
    /// too when it has one); returns its command line and the child.
    fn spawn(&mut self) -> Result<(String, Child)> {
        let command = self.describe();
        self.cmd
            .stdin(if self.input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let child = self
            .cmd
            .spawn()
            .with_context(|| format!("starting {command}"))?;
        Ok((command, child))
    }

    /// Runs it to its end or its limit. Fails only when it cannot start.
    pub fn outcome(mut self) -> Result<Outcome> {
        let (command, mut child) = self.spawn()?;
        if let (Some(data), Some(mut stdin)) = (self.input.take(), child.stdin.take()) {
            // Small inputs (a partition script): the pipe holds them.
            let _ = stdin.write_all(&data);
        }
        let deadline = Instant::now() + self.limit;
        let mut out = Capture::new(self.log_as.as_deref());
        let mut err = Capture::new(self.log_as.as_deref());
        let status = pump(&mut child, deadline, &mut out, &mut err);
        if status.is_none() {
            kill_group(&child);
            // Reaped when it goes at once; a process stuck in the kernel
            // (a dead disk) is left to init rather than waited for.
            let until = Instant::now() + Duration::from_secs(1);
            while Instant::now() < until && !matches!(child.try_wait(), Ok(Some(_))) {
                std::thread::sleep(Duration::from_millis(5));
            }
            if let Some(name) = &self.log_as {
                log::warn!("{name}: killed after {} s", self.limit.as_secs());
            }
        }
        Ok(Outcome {
            command,
            status,
            stdout: out.finish(),
            stderr: err.finish(),
            limit: self.limit,
        })
    }

    /// Runs it and returns its standard output; an error naming the command
    /// when it cannot start, fails or passes its limit.
    pub fn output(self) -> Result<String> {
        Ok(self.outcome()?.check()?.stdout_text())
    }

    /// Runs it with `consume` reading its standard output as it comes (a
    /// decompressor feeding the archive reader). At the limit the group is
    /// killed, which ends the output and so `consume`. Fails when it cannot
    /// start, when `consume` fails, or when the program fails or passes its
    /// limit.
    pub fn stream<T>(mut self, consume: impl FnOnce(&mut dyn Read) -> Result<T>) -> Result<T> {
        let (command, mut child) = self.spawn()?;
        let pgid = i32::try_from(child.id()).unwrap_or(0);
        let mut stdout = child.stdout.take().context("no output pipe")?;
        let mut stderr = child.stderr.take().context("no error pipe")?;
        let errors = std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = (&mut stderr).take(KEEP as u64).read_to_end(&mut buf);
            buf
        });
        let (done, wait) = std::sync::mpsc::channel::<()>();
        let limit = self.limit;
        let watchdog = std::thread::spawn(move || {
            let timed_out = matches!(
                wait.recv_timeout(limit),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout)
            );
            if timed_out && pgid > 0 {
                let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
            }
            timed_out
        });
        let consumed = consume(&mut stdout);
        // What it did not read is not waited for.
        drop(stdout);
        let status = child.wait();
        let _ = done.send(());
        let timed_out = watchdog.join().unwrap_or(false);
        let said = String::from_utf8_lossy(&errors.join().unwrap_or_default())
            .trim()
            .to_string();
        if timed_out {
            bail!(
                "{command} killed after {} s (its time limit)",
                limit.as_secs()
            );
        }
        let value = consumed?;
        let status = status.with_context(|| format!("waiting for {command}"))?;
        if !status.success() {
            bail!("{command} failed ({status}): {said}");
        }
        Ok(value)
    }
}

fn kill_group(child: &Child) {
    if let Ok(pid) = i32::try_from(child.id()) {
        // The group was made for this child (`process_group(0)`).
        let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
    }
}

/// Makes `cmd` start a process that outlives us and keeps nothing of
/// ours: a process group of its own (a signal to ours never reaches it),
/// and every descriptor but its standard three closed at its `exec`, also
/// those we inherited without close-on-exec (from autofs, from udev's
/// worker), so a reader of our output sees its end when we end.
#[allow(unsafe_code)] // see the SAFETY comment
pub fn detach(cmd: &mut Command) {
    cmd.process_group(0);
    // The most descriptors we may hold (autofs raises it), for kernels
    // without CLOSE_RANGE_CLOEXEC; read here, not in the child.
    let most: i32 = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(4096)
        .clamp(64, 1 << 16);
    // SAFETY: the closure runs between fork and exec, where only
    // async-signal-safe calls may be made: close_range(2) and fcntl(2) are
    // plain system calls that touch no memory of ours. CLOSE_RANGE_CLOEXEC
    // marks the descriptors instead of closing them, so the pipe through
    // which std reports a failed exec still works; kernels before 5.11
    // lack it, and each descriptor is marked by fcntl instead.
    unsafe {
        cmd.pre_exec(move || {
            if libc::close_range(
                3,
                libc::c_uint::MAX,
                libc::CLOSE_RANGE_CLOEXEC as libc::c_int,
            ) != 0
            {
                for fd in 3..most {
                    let flags = libc::fcntl(fd, libc::F_GETFD);
                    if flags >= 0 {
                        libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
                    }
                }
            }
            Ok(())
        });
    }
}

/// Where `program` is in `PATH` (else in the default one): an executable
/// regular file.
pub fn find_program(program: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| DEFAULT_PATH.into());
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| {
                use std::os::unix::fs::PermissionsExt;
                m.is_file() && m.permissions().mode() & 0o111 != 0
            })
        })
}

#[cfg(test)]
mod tests;
