//! `gandi-vm bootstrap`: the platform's config from the swap disk, applied
//! natively, then modules, swap, sysctl, root disk growth, the admin's
//! early steps and the platform's own script. Every step is recorded in
//! `status.json`.
//!
//! Each platform value is applied when it is new (never applied before, or
//! changed since), and otherwise left as the admin has it (see `ledger`).
//! Each field and each element of a list is checked on its own: a bad one
//! is skipped and reported, everything else is applied.
//!
//! With `--root DIR` (the image builder's mode) it works offline: the swap
//! disk comes only from `--device`, the settings from the tree's own file,
//! status and state go under DIR, and nothing runs on, or is read from,
//! the host (no swapon, hostname, sysctl, partition change, plugin or
//! platform script: those are deferred to the image's first boot).

use crate::base::settings::Settings;
use crate::base::status::Ended;
use crate::base::status::{Done, Recorder};
use crate::base::tree::{Change, Tree};
use crate::boot::plugins;
use crate::disk::rootgrow;
use crate::platform::apply;
use crate::platform::archive::{self, Limits};
use crate::platform::config::{self, Config};
use crate::platform::ledger::Ledger;
use crate::platform::network::{self, Applied};
use anyhow::{Result, bail};
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

pub mod disk;
mod init;
mod modules;
mod swap;
mod sysctl;

pub use init::{Interpreter, changed, interpreter, run_platform_script, snapshot, which};
use modules::modules;
use swap::{SwapTarget, swap};
pub use swap::{archive_places, consume_archive, find_archive};
use sysctl::sysctl;
pub use sysctl::{SYSCTL_FILE, SYSCTL_LINK, load_sysctl};
mod native;
pub use native::{NativeState, native_state, restore_native};
mod steps;
use steps::apply_config;
mod extract;
use extract::extract_config;

pub struct Options {
    /// The root of the system to set up; `/` acts on the live system.
    pub root: PathBuf,
    pub device: Option<PathBuf>,
    pub kernel_release: Option<String>,
}

impl Options {
    pub fn live(&self) -> bool {
        self.root == Path::new("/")
    }
}

/// Runs the bootstrap; returns the exit code (1 when a step failed or a
/// value of the config was refused).
pub fn run(settings: &Settings, opts: &Options) -> Result<Ended> {
    let tree = Tree::open(&opts.root)?;
    let live = opts.live();
    let mut rec = Recorder::start(&tree, settings, "bootstrap");
    if live && let Some(why) = crate::base::settings::disabled(settings) {
        rec.skip("disabled", &format!("gandi-vm is turned off: {why}"));
        return rec.finish(&tree, settings, "bootstrap");
    }
    let instance = if live { disk::instance(settings) } else { None };
    // The platform's disk: the one given, else the one at the platform's
    // place (never found by its label or partition name: see `disk`).
    let mut chosen: Option<disk::PlatformDisk> = None;
    let found: Option<(PathBuf, bool)> = match &opts.device {
        Some(d) => {
            let partition = live
                && d.file_name().is_some_and(|n| {
                    settings
                        .paths
                        .sys_dir
                        .join("class/block")
                        .join(n)
                        .join("partition")
                        .exists()
                });
            Some((d.clone(), partition))
        }
        None if live => {
            let (record, damaged) = disk::load(&tree, settings);
            if let Some(why) = damaged {
                log::warn!("{why}");
            }
            match disk::choose(settings, record.as_ref(), instance.as_deref()) {
                disk::Choice::Found(pd) => {
                    rec.note(
                        "platform-disk",
                        Done::unchanged(format!("{}: {}", pd.disk.display(), pd.why)),
                    );
                    let found = (pd.swap.clone(), pd.swap != pd.disk);
                    chosen = Some(pd);
                    Some(found)
                }
                disk::Choice::None(why) => {
                    rec.skip("platform-disk", &why);
                    None
                }
                disk::Choice::Ambiguous(why) => {
                    rec.note("platform-disk", Done::failed(why));
                    None
                }
            }
        }
        None => None,
    };
    let gandi = settings.paths.gandi_dir.as_path();

    // The config archive.
    let mut archive_read: Option<PathBuf> = None;
    match &found {
        None if !live => rec.skip(
            "archive",
            "--root: the swap disk is read only from --device",
        ),
        None => rec.skip("archive", "no platform disk"),
        Some((device, _)) => {
            let places = if live {
                archive_places(settings, device)
            } else {
                vec![device.clone()]
            };
            rec.step("archive", || {
                let (done, read) = extract_config(&tree, gandi, &places)?;
                archive_read = read;
                Ok(done)
            });
        }
    }

    // The config itself.
    let config_path = gandi.join("config");
    let config: Option<Config> = match tree.read_owned(&config_path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            rec.skip("config", &format!("no {}", config_path.display()));
            None
        }
        Err(e) => {
            rec.note(
                "config",
                Done::failed(format!("{}: {e}", tree.shown(&config_path).display())),
            );
            None
        }
        Ok((text, _)) => {
            let _ = tree.set_mode(&config_path, 0o600);
            match config::read(&text) {
                Err(p) => {
                    rec.note(
                        "config",
                        Done::failed(format!("{}: {p}: nothing applied", config_path.display())),
                    );
                    None
                }
                Ok(c) => {
                    if c.problems.is_empty() {
                        rec.note("config", Done::unchanged("valid"));
                    } else {
                        let list: Vec<String> =
                            c.problems.iter().map(ToString::to_string).collect();
                        rec.note(
                            "config",
                            Done::failed(format!(
                                "{} values left out, the rest applied: {}",
                                list.len(),
                                list.join("; ")
                            )),
                        );
                    }
                    Some(c)
                }
            }
        }
    };

    let mut ledger = Ledger::load(&tree, &settings.paths.state_dir);
    if let Some(why) = &ledger.damaged {
        rec.note("state", Done::failed(why.clone()));
    }
    if ledger.adopt_instance(instance.as_deref()) {
        rec.note(
            "instance",
            Done::changed(
                "a new instance (another VM's disk): the platform's values are applied \
                 as at a first boot",
            ),
        );
    }
    if let Some(config) = &config {
        apply_config(settings, opts, &tree, &mut ledger, config, &mut rec);
    } else if live {
        // No step `nics` in this run: the marks of an earlier one in this
        // boot go (every NIC's next event gets the unit with a process).
        crate::hotplug::iface::boot::clear(settings);
    }

    // Kernel modules of the booted kernel.
    let release = opts.kernel_release.clone().or_else(|| {
        live.then(|| {
            fs::read_to_string(settings.paths.proc_dir.join("sys/kernel/osrelease"))
                .ok()
                .map(|s| s.trim().to_string())
        })
        .flatten()
    });
    match release {
        _ if !settings.modules => rec.skip("modules", "CONFIG_MODULES=0"),
        None => rec.skip(
            "modules",
            "no kernel release (use --kernel-release with --root)",
        ),
        Some(release) => {
            rec.step("modules", || {
                modules(&tree, &mut ledger, gandi, &release, live)
            });
        }
    }

    // Swap.
    match &found {
        None => rec.skip("swap", "no swap disk"),
        Some((device, partition)) => {
            let target = SwapTarget {
                device,
                partition: *partition,
                archive: archive_read.as_deref(),
            };
            if settings.swap {
                rec.step("swap", || swap(settings, &tree, &target, live));
            } else {
                // Not enabled by us: its pages are never the kernel's, and
                // the archive is left for the next boot.
                rec.skip("swap", "CONFIG_SWAP=0");
            }
            // The choice, for the next boot: this instance's disk, by the
            // UUID of its swap area.
            if let Some(pd) = &chosen {
                let record = disk::Record {
                    format: disk::FORMAT.to_string(),
                    instance: instance.clone(),
                    place: pd.place.clone(),
                    swap_uuid: disk::swap_uuid(&pd.swap),
                };
                if let Err(e) = disk::save(&tree, settings, &record) {
                    rec.note("platform-disk", Done::failed(format!("{e:#}")));
                }
            }
        }
    }

    rec.step("sysctl", || sysctl(settings, &tree, live));

    if live {
        if settings.root_grow {
            rec.step("root-disk", || {
                let r = rootgrow::grow_root(settings)?;
                Ok(Done::of(Change::from_bool(r.changed), r.detail))
            });
        } else {
            rec.skip("root-disk", "CONFIG_ROOT_GROW=0");
        }
        plugins::run_all(&settings.paths.bootstrap_dir, &mut rec);
    } else {
        rec.note(
            "root-disk",
            Done::deferred("--root: no partition is changed"),
        );
        rec.note(
            "plugins",
            Done::deferred(format!(
                "--root: {} runs at the first boot",
                settings.paths.bootstrap_dir.display()
            )),
        );
    }

    rec.step("state", || {
        let writes = ledger.is_changed();
        ledger.save(&tree)?;
        Ok(Done::of(
            Change::from_bool(writes),
            tree.shown(settings.paths.state_dir.join("applied.json"))
                .display()
                .to_string(),
        ))
    });
    if live {
        crate::boot::idle::plan(settings, &tree, ledger.recovered());
    }
    rec.finish(&tree, settings, "bootstrap")
}
