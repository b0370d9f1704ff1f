//! A child's output read while it runs: both pipes pumped without blocking,
//! logged line by line in pieces, the first MiB of each kept.

use super::*;

/// The longest piece of a program's output logged as one line: far below
/// journald's `LineMax` (48 KiB), so that every entry of the journal holds
/// its `NAME: ` prefix (the report leaves out what the customer's commands
/// printed by that prefix).
pub(super) const LOG_PIECE: usize = 4 << 10;

/// Logs `bytes` of a program's output as lines of at most [`LOG_PIECE`]
/// bytes, each with its `NAME: ` prefix.
pub(super) fn log_piece(name: &str, bytes: &[u8]) {
    for piece in bytes.chunks(LOG_PIECE) {
        log::info!("{name}: {}", String::from_utf8_lossy(piece).trim_end());
    }
}

/// One output stream: kept (up to [`KEEP`]) and logged by line.
pub(super) struct Capture<'a> {
    kept: Vec<u8>,
    partial: Vec<u8>,
    log_as: Option<&'a str>,
}

impl<'a> Capture<'a> {
    pub(super) fn new(log_as: Option<&'a str>) -> Capture<'a> {
        Capture {
            kept: Vec::new(),
            partial: Vec::new(),
            log_as,
        }
    }

    pub(super) fn push(&mut self, data: &[u8]) {
        if self.kept.len() < KEEP {
            let room = KEEP - self.kept.len();
            self.kept.extend_from_slice(&data[..data.len().min(room)]);
        }
        let Some(name) = self.log_as else {
            return;
        };
        self.partial.extend_from_slice(data);
        while let Some(nl) = self.partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=nl).collect();
            log_piece(name, &line[..line.len() - 1]);
        }
        if self.partial.len() > LOG_PIECE {
            let piece: Vec<u8> = self.partial.drain(..LOG_PIECE).collect();
            log_piece(name, &piece);
        }
    }

    pub(super) fn finish(mut self) -> Vec<u8> {
        if let Some(name) = self.log_as
            && !self.partial.is_empty()
        {
            let rest = std::mem::take(&mut self.partial);
            log_piece(name, &rest);
        }
        std::mem::take(&mut self.kept)
    }
}

/// Reads both outputs until the child has exited and its outputs are
/// closed (or, when something it left in the background keeps them open,
/// shortly after it exited), or until the deadline. `None` at the deadline.
pub(super) fn pump(
    child: &mut Child,
    deadline: Instant,
    out: &mut Capture,
    err: &mut Capture,
) -> Option<ExitStatus> {
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let mut exited: Option<(ExitStatus, Instant)> = None;
    let mut buf = [0u8; 8192];
    loop {
        if exited.is_none()
            && let Ok(Some(s)) = child.try_wait()
        {
            exited = Some((s, Instant::now()));
        }
        let now = Instant::now();
        match exited {
            Some((s, _)) if stdout.is_none() && stderr.is_none() => return Some(s),
            // Its background children still hold the outputs: not ours to
            // wait for once it has ended.
            Some((s, at)) if now.duration_since(at) > Duration::from_millis(200) => return Some(s),
            _ => {}
        }
        if now >= deadline {
            return None;
        }
        let wait = (deadline - now).min(Duration::from_millis(50));
        let timeout = PollTimeout::try_from(wait).unwrap_or(PollTimeout::MAX);
        let (out_ready, err_ready) = {
            let mut fds = Vec::with_capacity(2);
            if let Some(p) = &stdout {
                fds.push(PollFd::new(p.as_fd(), PollFlags::POLLIN));
            }
            if let Some(p) = &stderr {
                fds.push(PollFd::new(p.as_fd(), PollFlags::POLLIN));
            }
            if fds.is_empty() {
                std::thread::sleep(wait);
                (false, false)
            } else {
                match poll(&mut fds, timeout) {
                    Ok(_) => {
                        let ready = |f: &PollFd| f.revents().is_some_and(|r| !r.is_empty());
                        let mut it = fds.iter();
                        let o = stdout.is_some() && it.next().is_some_and(ready);
                        let e = stderr.is_some() && it.next().is_some_and(ready);
                        (o, e)
                    }
                    Err(_) => (false, false),
                }
            }
        };
        if out_ready {
            read_some(&mut stdout, &mut buf, out);
        }
        if err_ready {
            read_some(&mut stderr, &mut buf, err);
        }
    }
}

pub(super) fn read_some<R: Read>(pipe: &mut Option<R>, buf: &mut [u8], sink: &mut Capture) {
    let Some(p) = pipe else {
        return;
    };
    match p.read(buf) {
        Ok(0) | Err(_) => *pipe = None,
        Ok(n) => sink.push(&buf[..n]),
    }
}
