//! Logging to stderr and to syslog with the tag `gandi`.
//!
//! Lines carry no timestamp (journald and syslog add theirs). When stderr is
//! already the journal (`JOURNAL_STREAM` names it, as systemd sets for units)
//! syslog is skipped so each line is stored once.

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::sync::{Mutex, OnceLock};

type Syslog = syslog::Logger<syslog::LoggerBackend, syslog::Formatter3164>;

struct Logger {
    /// The syslog tag, when lines go to syslog as well.
    syslog_tag: Option<String>,
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
    let logger = Box::new(Logger {
        syslog_tag: (!stderr_is_journal()).then(|| tag.to_string()),
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
