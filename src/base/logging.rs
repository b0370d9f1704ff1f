//! Logging to stderr and to syslog with the tag `gandi`.
//!
//! Lines carry no timestamp (journald and syslog add theirs). When stderr is
//! already the journal (`JOURNAL_STREAM` names it, as systemd sets for units)
//! syslog is skipped so each line is stored once, and each line starts with
//! its priority as journald reads it (`<3>` error, `<4>` warning, `<6>`
//! info, `<7>` debug), so `journalctl -p err` finds our errors; the units
//! set `SyslogIdentifier=gandi`, the tag of every other line of ours.

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::sync::{Mutex, OnceLock};

type Syslog = syslog::Logger<syslog::LoggerBackend, syslog::Formatter3164>;

struct Logger {
    /// The syslog tag, when lines go to syslog as well.
    syslog_tag: Option<String>,
    /// stderr is the journal: lines carry their priority.
    journal: bool,
    /// Connected at the first line logged, not before: most runs of the
    /// map log one line, some none.
    syslog: OnceLock<Option<Mutex<Syslog>>>,
    level: log::LevelFilter,
}

/// Installs the logger. `tag` is the syslog identifier (`SYSLOG_TARGET`).
/// `GANDI_LOG=debug` shows debug lines.
pub fn init(tag: &str) {
    let level = match std::env::var("GANDI_LOG").as_deref() {
        Ok("debug") => log::LevelFilter::Debug,
        Ok("warn") => log::LevelFilter::Warn,
        _ => log::LevelFilter::Info,
    };
    let journal = stderr_is_journal();
    let logger = Box::new(Logger {
        syslog_tag: (!journal).then(|| tag.to_string()),
        journal,
        syslog: OnceLock::new(),
        level,
    });
    if log::set_boxed_logger(logger).is_ok() {
        log::set_max_level(level);
    }
}

fn stderr_is_journal() -> bool {
    let Some(value) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = value.to_str().and_then(|v| v.split_once(':')) else {
        return false;
    };
    let Ok(meta) = std::fs::metadata("/proc/self/fd/2") else {
        return false;
    };
    dev.parse() == Ok(meta.dev()) && ino.parse() == Ok(meta.ino())
}

impl Logger {
    fn syslog(&self) -> Option<&Mutex<Syslog>> {
        let tag = self.syslog_tag.as_ref()?;
        self.syslog
            .get_or_init(|| {
                syslog::unix(syslog::Formatter3164 {
                    facility: syslog::Facility::LOG_DAEMON,
                    hostname: None,
                    process: tag.clone(),
                    pid: std::process::id(),
                })
                .ok()
                .map(Mutex::new)
            })
            .as_ref()
    }
}

/// `text` as one line: a newline (or a carriage return) would start a new
/// entry in journald and syslog, and a NUL would end it there, each time
/// without its priority and prefix; other control characters are shown
/// as `\xNN`.
pub fn one_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' | '\r' => out.push(' '),
            '\t' => out.push(c),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// The syslog priority of a level, as journald reads it from a `<N>`
/// prefix.
pub fn priority(level: log::Level) -> u8 {
    match level {
        log::Level::Error => 3,
        log::Level::Warn => 4,
        log::Level::Info => 6,
        _ => 7,
    }
}

impl log::Log for Logger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= self.level
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let prefix = match record.level() {
            log::Level::Error => "error: ",
            log::Level::Warn => "warning: ",
            _ => "",
        };
        // One line each: journald and syslog take a newline as a new
        // entry, which would lose its priority.
        let line = one_line(&format!("{prefix}{}", record.args()));
        // One write (stderr is unbuffered): the line whole, never
        // interleaved with another process's, at one system call.
        let written = if self.journal {
            format!("<{}>{line}\n", priority(record.level()))
        } else {
            format!("{line}\n")
        };
        let _ = std::io::stderr().lock().write_all(written.as_bytes());
        if let Some(syslog) = self.syslog()
            && let Ok(mut syslog) = syslog.lock()
        {
            let _ = match record.level() {
                log::Level::Error => syslog.err(&line),
                log::Level::Warn => syslog.warning(&line),
                log::Level::Info => syslog.info(&line),
                _ => syslog.debug(&line),
            };
        }
    }

    fn flush(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_stay_one_entry() {
        assert_eq!(one_line("a\nb\r\nc"), "a b  c");
        assert_eq!(one_line("nul\0here\x1b[31m"), "nul\\x00here\\x1b[31m");
        assert_eq!(one_line("tab\tkept é"), "tab\tkept é");
        assert_eq!(priority(log::Level::Error), 3);
        assert_eq!(priority(log::Level::Warn), 4);
    }
}
