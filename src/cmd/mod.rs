//! The commands: one module per verb, each reading its arguments and
//! calling the library; `main` finds the verb (or the name the program was
//! run under: `gandi-udhcpc`), loads the settings, starts
//! logging and maps the outcome to an exit code.
//!
//! May import: base, kernel, platform, disk, automount, hotplug, boot, support.

mod automount;
mod bootstrap;
pub mod cli;
mod config;
mod disk;
mod disk_event;
mod disk_grow;
mod disks;
mod grow_private;
mod iface;
pub mod map;
mod memory_online;
mod migrate_original;
mod mount;
mod mount_root;
mod postboot;
mod queues;
mod report;
mod root_disk;
mod settings;
mod status;
mod udhcpc;
mod validate;

use crate::base::logging;
use crate::base::settings::Settings;
use crate::base::status::Ended;
use crate::cmd::cli::{Cli, Cmd};
use anyhow::Result;
use clap::Parser;
use std::ffi::OsString;
use std::path::Path;

/// The program: `args` as given (`argv[0]` first). Returns the exit code.
pub fn main(args: Vec<OsString>) -> u8 {
    let argv0 = args.first().cloned().unwrap_or_default();
    let program = Path::new(&argv0)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // The DHCP client runs its script by name, with no subcommand (the
    // map is a program of its own: `maps/main.rs`).
    if program == "gandi-udhcpc" {
        let Some(settings) = load(None, true) else {
            return 1;
        };
        return exit(udhcpc::run(&settings, &args).map(Ended::code));
    }
    let command = parse(args);
    // A system tree (`--root DIR`) has its own settings file; the host's is
    // not read.
    let root = match &command {
        Cmd::Bootstrap(a) => Some(a.root.as_path()),
        Cmd::Config(a) => Some(a.root.as_path()),
        Cmd::Postboot(a) => Some(a.root.as_path()),
        _ => None,
    };
    // The watched grower is a child of the one that said them already.
    let report = !matches!(&command, Cmd::DiskGrow(a) if a.worker);
    let Some(settings) = load(root, report) else {
        return 1;
    };
    exit(run(&settings, command))
}

/// The verb and its arguments. The verbs the boot and udev's rules run
/// are parsed with their own arguments only: building the whole command
/// line (every verb's arguments and help) is most of a start's work for
/// a stage under emulation (QEMU translates every instruction the first
/// time it runs). Whatever that parse does not take as it is (help,
/// `--version`, an error) goes through the whole command line, which
/// prints it as always.
pub fn parse(args: Vec<OsString>) -> Cmd {
    quick(&args).unwrap_or_else(|| Cli::parse_from(args).command)
}

/// One verb's arguments parsed on their own; `None` for another verb or
/// anything that parse does not accept.
pub fn quick(args: &[OsString]) -> Option<Cmd> {
    fn one<A: clap::Args + clap::FromArgMatches>(
        verb: &'static str,
        rest: &[OsString],
    ) -> Option<A> {
        let matches = A::augment_args(clap::Command::new(verb))
            .try_get_matches_from(rest)
            .ok()?;
        A::from_arg_matches(&matches).ok()
    }
    let rest = args.get(1..)?;
    Some(match rest.first()?.to_str()? {
        "bootstrap" => Cmd::Bootstrap(one("bootstrap", rest)?),
        "config" => Cmd::Config(one("config", rest)?),
        "mount" => Cmd::Mount(one("mount", rest)?),
        "postboot" => Cmd::Postboot(one("postboot", rest)?),
        "iface" => Cmd::Iface(one("iface", rest)?),
        "disk-event" => Cmd::DiskEvent(one("disk-event", rest)?),
        "disk-grow" => Cmd::DiskGrow(one("disk-grow", rest)?),
        "memory-online" => Cmd::MemoryOnline(one("memory-online", rest)?),
        "queues" => Cmd::Queues(one("queues", rest)?),
        _ => return None,
    })
}

/// Loads the settings (of the tree at `root`, else the system's) and
/// starts logging; logs the settings file's problems when `report`. `None`
/// when the settings cannot be read at all.
pub fn load(root: Option<&Path>, report: bool) -> Option<Settings> {
    let loaded = match root {
        Some(r) => Settings::load_for_root(r),
        None => Settings::load(),
    };
    let settings = match loaded {
        Ok(s) => s,
        Err(e) => {
            logging::init("gandi");
            log::error!("{e:#}");
            return None;
        }
    };
    logging::init(&settings.syslog_target);
    for problem in settings.problems.iter().filter(|_| report) {
        let file = settings
            .source
            .as_deref()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        log::warn!("{file}: {problem}");
    }
    Some(settings)
}

/// One verb.
fn run(settings: &Settings, cmd: Cmd) -> Result<i32> {
    match cmd {
        Cmd::Map(a) => Ok(map::run(settings, &a.key)),
        Cmd::Disks(a) => disks::run(settings, a),
        Cmd::Settings => settings::run(settings),
        Cmd::Disk(a) => disk::run(settings, a).map(Ended::code),
        Cmd::DiskEvent(a) => disk_event::run(settings, a).map(Ended::code),
        Cmd::DiskGrow(a) => disk_grow::run(settings, a).map(Ended::code),
        Cmd::Bootstrap(a) => bootstrap::run(settings, a).map(Ended::code),
        Cmd::Validate(a) => validate::run(a),
        Cmd::MountRoot(a) => mount_root::run(settings, a),
        Cmd::Automount(a) => automount::run(settings, a),
        Cmd::Iface(a) => iface::run(settings, a).map(Ended::code),
        Cmd::MigrateOriginal => migrate_original::run(settings),
        Cmd::MemoryOnline(a) => memory_online::run(settings, a).map(Ended::code),
        Cmd::Queues(a) => queues::run(a),
        Cmd::Config(a) => config::run(settings, a).map(Ended::code),
        Cmd::Mount(a) => mount::run(settings, a).map(Ended::code),
        Cmd::Postboot(a) => postboot::run(settings, a).map(Ended::code),
        Cmd::Status(a) => status::run(settings, a),
        Cmd::RootDisk(a) => root_disk::run(settings, a),
        Cmd::Report(a) => report::run(settings, a),
        Cmd::GrowPrivate(a) => grow_private::run(a),
    }
}

/// The exit code of an outcome; an error is logged with its chain.
fn exit(result: Result<i32>) -> u8 {
    match result {
        Ok(code) => u8::try_from(code).unwrap_or(1),
        Err(e) => {
            log::error!("{e:#}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn argv(words: &[&str]) -> Vec<OsString> {
        std::iter::once("gandi-vm")
            .chain(words.iter().copied())
            .map(OsString::from)
            .collect()
    }

    /// What the whole command line makes of `args`, shown.
    fn full(args: &[OsString]) -> Option<String> {
        Cli::try_parse_from(args)
            .ok()
            .map(|c| format!("{:?}", c.command))
    }

    #[test]
    fn what_the_units_and_rules_run_is_parsed_on_its_own_as_the_whole_would() {
        for words in [
            &["bootstrap"][..],
            &["config"],
            &["mount"],
            &["postboot"],
            &["iface", "eth0"],
            &["iface", "--remove", "eth0"],
            &["disk-event"],
            &["disk-grow", "vdb"],
            &["disk-grow", "--resume", "vdb"],
            &["memory-online", "memory32"],
            &["config", "--root", "/mnt", "--cmdline", "/tmp/c"],
            &["queues", "eth0", "2"],
            &["mount", "--timeout", "5", "--all"],
            &["disk-event", "add", "vdb"],
        ] {
            let args = argv(words);
            let quick = quick(&args).map(|c| format!("{c:?}"));
            assert!(quick.is_some(), "{words:?} not parsed on its own");
            assert_eq!(quick, full(&args), "{words:?}");
        }
        // Help, version, errors and other verbs go to the whole.
        for words in [
            &["config", "--help"][..],
            &["config", "-h"],
            &["config", "--version"],
            &["config", "--no-such"],
            &["iface"],
            &["status"],
            &["help", "config"],
            &[],
        ] {
            assert!(quick(&argv(words)).is_none(), "{words:?}");
        }
    }

    proptest! {
        #![proptest_config(crate::testing::proptest_config(512))]
        /// Whatever the quick parse takes, the whole command line takes
        /// the same way.
        #[test]
        fn the_quick_parse_agrees_with_the_whole(
            words in prop::collection::vec(
                prop::sample::select(vec![
                    "bootstrap", "config", "mount", "postboot", "iface", "disk-event",
                    "disk-grow", "memory-online", "queues", "status", "--root", "/",
                    "/mnt", "--remove", "--resume", "--worker", "--device", "--cmdline",
                    "--kernel-release", "eth0", "vdb", "--", "-h", "--help", "-V",
                    "--version", "--json", "x=y", "-", "--root=/srv", "--timeout", "5",
                    "2", "add", "change", "help", "--all", "--adopt",
                ]),
                0..6,
            )
        ) {
            let args = argv(&words);
            if let Some(c) = quick(&args) {
                prop_assert_eq!(Some(format!("{c:?}")), full(&args));
            }
        }
    }
}
