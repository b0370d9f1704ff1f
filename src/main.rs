//! The `gandi-vm` binary. Run through a link named `auto.gandi` it is the
//! autofs program map.

use clap::Parser;
use gandi_vm::cli::{Cli, Cmd};
use gandi_vm::settings::Settings;
use gandi_vm::{commands, logging, map};
use std::ffi::OsString;
use std::path::Path;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args: Vec<OsString> = std::env::args_os().collect();
    let argv0 = args.first().cloned().unwrap_or_default();
    let program = Path::new(&argv0)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let as_map = program.starts_with("auto.");

    let settings = match Settings::load() {
        Ok(s) => s,
        Err(e) => {
            logging::init("gandi");
            log::error!("{e:#}");
            return ExitCode::from(1);
        }
    };
    logging::init(&settings.syslog_target);
    for problem in &settings.problems {
        let file = settings
            .source
            .as_deref()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        log::warn!("{file}: {problem}");
    }

    if as_map {
        // autofs calls `auto.gandi KEY`.
        if args.len() != 2 {
            log::error!("usage: {program} KEY");
            return ExitCode::from(2);
        }
        let key = args.swap_remove(1);
        return exit(map::run(&settings, &key));
    }

    let cli = Cli::parse_from(args);
    let result = match cli.command {
        Cmd::Map { key } => return exit(map::run(&settings, &key)),
        Cmd::Disks { json } => commands::disks(&settings, json),
        Cmd::Settings => commands::show_settings(&settings),
    };
    match result {
        Ok(code) => exit(code),
        Err(e) => {
            log::error!("{e:#}");
            ExitCode::from(1)
        }
    }
}

fn exit(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
