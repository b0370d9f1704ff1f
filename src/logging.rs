//! Logging to stderr and to syslog with the tag `gandi`.
//!
//! Lines carry no timestamp (journald and syslog add theirs). When stderr is
//! already the journal (`JOURNAL_STREAM` names it, as systemd sets for units)
//! syslog is skipped so each line is stored once.

use std::ffi::CString;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::sync::OnceLock;

struct Logger {
    syslog: bool,
    level: log::LevelFilter,
}

static IDENT: OnceLock<CString> = OnceLock::new();

/// Installs the logger. `tag` is the syslog identifier (`SYSLOG_TARGET`).
/// `GANDI_LOG=debug` shows debug lines.
pub fn init(tag: &str) {
    let level = match std::env::var("GANDI_LOG").as_deref() {
        Ok("debug") => log::LevelFilter::Debug,
        Ok("warn") => log::LevelFilter::Warn,
        _ => log::LevelFilter::Info,
    };
    let syslog = !stderr_is_journal();
    if syslog {
        let ident = IDENT.get_or_init(|| {
            CString::new(tag.replace('\0', "")).unwrap_or_else(|_| c"gandi".to_owned())
        });
        // SAFETY: `ident` lives in a static for the rest of the program, as
        // openlog requires.
        unsafe { libc::openlog(ident.as_ptr(), libc::LOG_PID, libc::LOG_DAEMON) };
    }
    let logger = Box::new(Logger { syslog, level });
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
        let line = format!("{prefix}{}", record.args());
        let _ = writeln!(std::io::stderr().lock(), "{line}");
        if self.syslog {
            let priority = match record.level() {
                log::Level::Error => libc::LOG_ERR,
                log::Level::Warn => libc::LOG_WARNING,
                log::Level::Info => libc::LOG_INFO,
                _ => libc::LOG_DEBUG,
            };
            if let Ok(msg) = CString::new(line.replace('\0', " ")) {
                // SAFETY: both pointers are valid NUL-terminated strings; the
                // format string takes exactly one %s argument.
                unsafe { libc::syslog(priority, c"%s".as_ptr(), msg.as_ptr()) };
            }
        }
    }

    fn flush(&self) {}
}
