//! Small helpers shared by every command: running external programs with a
//! bound, atomic file writes.

use anyhow::{Context, Result, anyhow, bail};
use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The whole command line, for error messages.
pub fn describe(cmd: &Command) -> String {
    let mut parts = vec![cmd.get_program().to_string_lossy().into_owned()];
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

/// What a bounded command did.
#[derive(Debug)]
pub struct Outcome {
    /// `None` when the command was killed at its time limit.
    pub status: Option<ExitStatus>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Outcome {
    pub fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).trim().to_string()
    }
}

/// Runs `cmd` with no input, capturing its output, for at most `limit`. On
/// timeout the command's whole process group is killed and not waited for
/// (a process stuck on a dead disk cannot be reaped; its zombie goes to init
/// when we exit). Fails only when the command cannot be started.
pub fn run_bounded(cmd: &mut Command, limit: Duration) -> Result<Outcome> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting {}", describe(cmd)))?;
    let deadline = Instant::now() + limit;
    let (stdout, stderr, complete) = read_until(&mut child, deadline);
    if !complete {
        kill_group(&child);
        return Ok(Outcome {
            status: None,
            stdout,
            stderr,
        });
    }
    // Output closed: the command is finishing. A child that closed its
    // output and keeps running is still bounded by the deadline.
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                return Ok(Outcome {
                    status: Some(status),
                    stdout,
                    stderr,
                });
            }
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(2)),
            _ => {
                kill_group(&child);
                return Ok(Outcome {
                    status: None,
                    stdout,
                    stderr,
                });
            }
        }
    }
}

fn kill_group(child: &Child) {
    if let Ok(pid) = i32::try_from(child.id()) {
        // SAFETY: plain syscall; the group was created for this child.
        unsafe { libc::kill(-pid, libc::SIGKILL) };
    }
}

/// Reads stdout and stderr until both close or the deadline passes.
fn read_until(child: &mut Child, deadline: Instant) -> (Vec<u8>, Vec<u8>, bool) {
    let mut out = Vec::new();
    let mut err = Vec::new();
    let mut pipes: Vec<(Box<dyn Read>, i32, bool)> = Vec::new();
    if let Some(p) = child.stdout.take() {
        let fd = p.as_raw_fd();
        pipes.push((Box::new(p), fd, false));
    }
    if let Some(p) = child.stderr.take() {
        let fd = p.as_raw_fd();
        pipes.push((Box::new(p), fd, true));
    }
    let mut buf = [0u8; 8192];
    while !pipes.is_empty() {
        let now = Instant::now();
        if now >= deadline {
            return (out, err, false);
        }
        let wait_ms = (deadline - now).as_millis().clamp(1, i32::MAX as u128) as i32;
        let mut fds: Vec<libc::pollfd> = pipes
            .iter()
            .map(|(_, fd, _)| libc::pollfd {
                fd: *fd,
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        // SAFETY: `fds` is a valid array of pollfd for its length.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, wait_ms) };
        if n < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return (out, err, false);
        }
        let mut closed = Vec::new();
        for (i, pfd) in fds.iter().enumerate() {
            if pfd.revents == 0 {
                continue;
            }
            let (reader, _, is_err) = &mut pipes[i];
            match reader.read(&mut buf) {
                Ok(0) | Err(_) => closed.push(i),
                Ok(k) => {
                    let sink = if *is_err { &mut err } else { &mut out };
                    // Keep at most 1 MiB of a chatty command's output.
                    if sink.len() < 1 << 20 {
                        sink.extend_from_slice(&buf[..k]);
                    }
                }
            }
        }
        for i in closed.into_iter().rev() {
            pipes.remove(i);
        }
    }
    (out, err, true)
}

/// Runs `cmd` to completion and fails, naming the command and quoting its
/// error output, when it cannot start or exits non-zero.
pub fn run(cmd: &mut Command) -> Result<String> {
    let output = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("starting {}", describe(cmd)))?;
    if !output.status.success() {
        bail!(
            "{} failed ({}): {}",
            describe(cmd),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Writes `data` to `path` atomically: a temporary file in the same folder,
/// written, given `mode`, synced, renamed over `path`, then the folder synced.
/// A reader sees the old content or the new one, never a mix.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| anyhow!("{} has no file name", path.display()))?;
    let mut attempt = 0u32;
    let (tmp, mut file) = loop {
        let tmp = dir.join(format!(
            ".{}.tmp{}.{}",
            name.to_string_lossy(),
            std::process::id(),
            attempt
        ));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
            .open(&tmp)
        {
            Ok(f) => break (tmp, f),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempt < 100 => {
                attempt += 1;
            }
            Err(e) => return Err(e).with_context(|| format!("creating {}", tmp.display())),
        }
    };
    let result = (|| -> Result<()> {
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        file.write_all(data)?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()?;
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn bounded_run_captures_output_and_status() {
        let out = run_bounded(
            Command::new("sh").args(["-c", "echo out; echo err >&2; exit 3"]),
            Duration::from_secs(10),
        )
        .unwrap();
        assert_eq!(out.stdout, b"out\n");
        assert_eq!(out.stderr_text(), "err");
        assert_eq!(out.status.and_then(|s| s.code()), Some(3));
    }

    #[test]
    fn bounded_run_kills_a_hanging_command_and_its_children() {
        let start = Instant::now();
        let out = run_bounded(
            Command::new("sh").args(["-c", "sleep 60 & echo started; sleep 60"]),
            Duration::from_millis(300),
        )
        .unwrap();
        assert!(out.status.is_none());
        assert_eq!(out.stdout, b"started\n");
        assert!(start.elapsed() < Duration::from_secs(30));
    }

    #[test]
    fn run_names_the_command_when_it_fails() {
        let err = run(Command::new("sh").args(["-c", "echo boom >&2; exit 1"])).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("sh -c 'echo boom >&2; exit 1'"), "{msg}");
        assert!(msg.contains("boom"), "{msg}");
        let err = run(&mut Command::new("/nonexistent/tool")).unwrap_err();
        assert!(format!("{err:#}").contains("/nonexistent/tool"));
    }

    #[test]
    fn atomic_write_replaces_and_sets_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("file");
        fs::write(&path, "old").unwrap();
        write_atomic(&path, b"new", 0o600).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "new");
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let leftovers = fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(leftovers, 1);
    }
}

/// An exclusive `flock` on a file, released when dropped.
pub struct FileLock(#[allow(dead_code)] File);

impl FileLock {
    /// Locks `path` (created when missing, with its folder). Waits for the
    /// lock when `wait`; otherwise `None` when another process holds it.
    pub fn take(path: &Path, wait: bool) -> Result<Option<FileLock>> {
        use std::os::fd::AsRawFd;
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        let op = if wait {
            libc::LOCK_EX
        } else {
            libc::LOCK_EX | libc::LOCK_NB
        };
        // SAFETY: a valid descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), op) } != 0 {
            let err = std::io::Error::last_os_error();
            if err.kind() == std::io::ErrorKind::WouldBlock {
                return Ok(None);
            }
            return Err(err).with_context(|| format!("locking {}", path.display()));
        }
        Ok(Some(FileLock(file)))
    }
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// FNV-1a of `data`, continuing from `hash`.
fn fnv1a_from(hash: u64, data: &[u8]) -> u64 {
    data.iter().fold(hash, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// FNV-1a: a stable 64-bit fingerprint (not cryptographic).
pub fn fnv1a(data: &[u8]) -> u64 {
    fnv1a_from(FNV_OFFSET, data)
}

/// FNV-1a as a `Hasher`: fast for the short, trusted keys of per-lookup
/// maps (kernel device names), where SipHash's resistance to chosen keys
/// buys nothing and costs time on every lookup.
#[derive(Clone, Copy)]
pub struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Fnv {
        Fnv(FNV_OFFSET)
    }
}

impl std::hash::Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0 = fnv1a_from(self.0, bytes);
    }
}

/// A hash map keyed by short trusted strings (see [`Fnv`]).
pub type FastMap<K, V> = std::collections::HashMap<K, V, std::hash::BuildHasherDefault<Fnv>>;
