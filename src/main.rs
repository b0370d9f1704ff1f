//! The `gandi-vm` binary. Run through a link named `auto.gandi` it is the
//! autofs program map.

use clap::Parser;
use gandi_vm::cli::{Cli, Cmd, DiskCmd};
use gandi_vm::settings::Settings;
use gandi_vm::{
    admin, bootstrap, check, commands, diskevent, docs, grow, iface, logging, map, migrate, mount,
    out, perboot, platform, postboot, release, rootgrow, status,
};
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

    // The map and the DHCP script are run by name, with no subcommand.
    let cli = if as_map || program == "gandi-udhcpc" {
        None
    } else {
        Some(Cli::parse_from(args.clone()))
    };
    // A system tree (`--root DIR`) has its own settings file; the host's is
    // not read.
    let root = match cli.as_ref().map(|c| &c.command) {
        Some(Cmd::Bootstrap { root, .. } | Cmd::Config { root, .. } | Cmd::Postboot { root }) => {
            Some(root.clone())
        }
        _ => None,
    };
    let loaded = match &root {
        Some(r) => Settings::load_for_root(r),
        None => Settings::load(),
    };
    let settings = match loaded {
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

    if program == "gandi-udhcpc" {
        // udhcpc runs its script as `SCRIPT EVENT`.
        let event = args
            .get(1)
            .map(|a| a.to_string_lossy().into_owned())
            .unwrap_or_default();
        return match iface::udhcpc_event(&event) {
            Ok(c) => exit(c),
            Err(e) => {
                log::error!("{e:#}");
                ExitCode::from(1)
            }
        };
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

    let Some(cli) = cli else {
        return ExitCode::from(2);
    };
    let result = match cli.command {
        Cmd::Map { key } => return exit(map::run(&settings, &key)),
        Cmd::Disks { json } => commands::disks(&settings, json),
        Cmd::Settings => commands::show_settings(&settings),
        Cmd::Disk {
            command: DiskCmd::Release { key, force },
        } => release::release(&settings, &key, force),
        Cmd::Disk {
            command: DiskCmd::Check { key },
        } => check::run(&settings, &key),
        Cmd::DiskEvent { action, device } => match (action, device) {
            (Some(action), Some(device)) => diskevent::Action::parse(&action)
                .and_then(|a| diskevent::by_hand(&settings, a, &device)),
            _ => {
                let env = std::env::vars_os()
                    .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                    .collect();
                diskevent::from_udev(&settings, &env)
            }
        },
        Cmd::DiskGrow { name } => diskevent::grow_disk(&settings, &name),
        Cmd::Bootstrap {
            root,
            device,
            kernel_release,
        } => bootstrap::run(
            &settings,
            &bootstrap::Options {
                root,
                device,
                kernel_release,
            },
        ),
        Cmd::Validate { file } => validate(&file),
        Cmd::MountRoot { path, force } => admin::mount_root(&settings, &path, force),
        Cmd::Automount { action } => match action.as_str() {
            "auto" => admin::automount_auto(&settings),
            a => admin::automount(&settings, a == "enable"),
        },
        Cmd::GenerateDocs { dir } => docs::generate(&dir).map(|()| 0),
        Cmd::Iface { name, remove, root } => {
            if remove {
                iface::detach(&settings, &root, &name)
            } else {
                iface::attach(&settings, &root, &name)
            }
        }
        Cmd::MigrateOriginal => migrate::run(&settings),
        Cmd::MemoryOnline { block } => iface::memory_online(&settings, &block),
        Cmd::Queues { name, count } => iface::set_queues(&name, count).map(|ch| {
            out::line(&format!(
                "combined {} rx {} tx {} (max combined {} rx {} tx {})",
                ch.combined_count, ch.rx_count, ch.tx_count, ch.max_combined, ch.max_rx, ch.max_tx
            ));
            0
        }),
        Cmd::Config { root, cmdline } => {
            perboot::run(&settings, &perboot::Options { root, cmdline })
        }
        Cmd::Mount { timeout, all } => {
            mount::run(&settings, std::time::Duration::from_secs(timeout), all)
        }
        Cmd::Postboot { root } => postboot::run(&settings, &postboot::Options { root }),
        Cmd::Status { json } => status::show(&settings, json),
        Cmd::RootDisk { device } => {
            let result = match device {
                Some(d) => {
                    rootgrow::grow_partition(&settings, d.strip_prefix("/dev/").unwrap_or(&d))
                }
                None => rootgrow::grow_root(&settings),
            };
            result.map(|g| {
                out::line(&format!(
                    "{}{}",
                    if g.changed { "grown: " } else { "unchanged: " },
                    g.detail
                ));
                0
            })
        }
        Cmd::GrowPrivate {
            device,
            fstype,
            mount_point,
        } => grow::grow_private(&device, &fstype, &mount_point).map(|()| 0),
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

/// `gandi-vm validate FILE`: every problem, each with its line and column;
/// exit 1 when there is one.
fn validate(file: &Path) -> anyhow::Result<i32> {
    use anyhow::Context;
    let text = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let problems = match platform::read(&text) {
        Ok(c) => c.problems,
        Err(p) => vec![p],
    };
    if problems.is_empty() {
        out::line(&format!("{}: valid", file.display()));
        return Ok(0);
    }
    for p in problems {
        out::line(&format!("{}:{p}", file.display()));
    }
    Ok(1)
}
