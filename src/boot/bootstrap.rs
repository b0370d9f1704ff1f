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
pub fn run(settings: &Settings, opts: &Options) -> Result<i32> {
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
    let gandi = settings.gandi_dir.as_path();

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

    let mut ledger = Ledger::load(&tree, &settings.state_dir);
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
    }

    // Kernel modules of the booted kernel.
    let release = opts.kernel_release.clone().or_else(|| {
        live.then(|| {
            fs::read_to_string(settings.proc_dir.join("sys/kernel/osrelease"))
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
        plugins::run_all(&settings.bootstrap_dir, &mut rec);
    } else {
        rec.note(
            "root-disk",
            Done::deferred("--root: no partition is changed"),
        );
        rec.note(
            "plugins",
            Done::deferred(format!(
                "--root: {} runs at the first boot",
                settings.bootstrap_dir.display()
            )),
        );
    }

    rec.step("state", || {
        let writes = ledger.is_changed();
        ledger.save(&tree)?;
        Ok(Done::of(
            Change::from_bool(writes),
            tree.shown(settings.state_dir.join("applied.json"))
                .display()
                .to_string(),
        ))
    });
    rec.finish(&tree, settings, "bootstrap")
}

/// Reads the archive from the first of `places` that holds one and puts its
/// `gandi/` tree in place of `gandi` (refused whole when hostile). Also
/// returns where an archive was read to its end (whole or refused), to be
/// cleared before the swap area is enabled.
fn extract_config(
    tree: &Tree,
    gandi: &Path,
    places: &[PathBuf],
) -> Result<(Done, Option<PathBuf>)> {
    let Some((place, file)) = find_archive(places)? else {
        let shown: Vec<String> = places.iter().map(|p| p.display().to_string()).collect();
        return Ok((
            Done::skipped(format!("no archive at 512 KiB of {}", shown.join(" or "))),
            None,
        ));
    };
    let (parent_rel, name) = match (gandi.parent(), gandi.file_name().and_then(|n| n.to_str())) {
        (Some(p), Some(n)) => (p, n),
        _ => bail!("GANDI_DIR {} cannot be replaced", gandi.display()),
    };
    tree.create_dirs(parent_rel, 0o755)?;
    let parent = tree.subtree(parent_rel)?;
    let limits = Limits::default();
    let n = match archive::extract_to(
        file.take(limits.max_bytes * 2),
        Path::new("gandi"),
        &parent,
        name,
        limits,
    ) {
        Ok(n) => n,
        // Refused whole: read to its end all the same (not to be read
        // again), unless the disk failed.
        Err(e)
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.raw_os_error().is_some())
            }) =>
        {
            return Err(e.context(format!("reading the archive on {}", place.display())));
        }
        Err(e) => {
            return Ok((
                Done::failed(format!(
                    "refusing the archive on {}: {e:#}",
                    place.display()
                )),
                Some(place),
            ));
        }
    };
    if n == 0 {
        return Ok((
            Done::skipped(format!(
                "the archive on {} has no gandi entry",
                place.display()
            )),
            Some(place),
        ));
    }
    parent.set_mode(name, 0o700)?;
    Ok((
        Done::changed(format!("{n} entries from {}", place.display())),
        Some(place),
    ))
}

/// The problems of one field, for its step's detail.
fn problems_of(config: &Config, prefix: &str) -> Option<String> {
    let list: Vec<String> = config
        .problems_at(prefix)
        .iter()
        .map(ToString::to_string)
        .collect();
    (!list.is_empty()).then(|| list.join("; "))
}

/// Applies one value with the ledger: when it is new (or was never
/// applied), `apply` runs and the value is recorded; otherwise it is kept.
fn when_new(
    ledger: &mut Ledger,
    field: &str,
    value: &[u8],
    apply: impl FnOnce() -> Result<Done>,
) -> Result<Done> {
    if !ledger.is_new(field, value) {
        return Ok(Done::kept(
            "the platform's value was applied before; left as the admin has it",
        ));
    }
    let done = apply()?;
    ledger.set(field, value);
    Ok(done)
}

fn apply_config(
    settings: &Settings,
    opts: &Options,
    tree: &Tree,
    ledger: &mut Ledger,
    config: &Config,
    rec: &mut Recorder,
) {
    // A field whose value was refused: its step says so (and fails).
    let refused = |rec: &mut Recorder, name: &str, path: &str| match problems_of(config, path) {
        Some(p) => rec.note(name, Done::failed(format!("left out: {p}"))),
        None => rec.skip(name, "none given"),
    };
    // The platform's user first: the password and the keys are its too.
    let mut user: Option<&str> = None;
    match &config.user {
        _ if !settings.user => rec.skip("user", "CONFIG_USER=0"),
        None => refused(rec, "user", "vm_conf.user"),
        Some(login) => rec.step("user", || {
            let created = when_new(ledger, "login", login.as_bytes(), || {
                let (c, group) = apply::create_user(tree, login, &settings.state_dir)?;
                Ok(Done::of(c, format!("{login} (group {group})")))
            })?;
            if apply::account(tree, login).is_none() {
                return Ok(Done::kept(format!(
                    "{login} was removed since it was created: not made again"
                )));
            }
            user = Some(login.as_str());
            Ok(created)
        }),
    }
    match &config.password {
        _ if !settings.password => rec.skip("password", "CONFIG_PASSWORD=0"),
        None => refused(rec, "password", "vm_conf.password"),
        Some(hash) => rec.step("password", || {
            let mut change = when_new(ledger, "password", hash.as_bytes(), || {
                Ok(Done::of(
                    apply::set_password(tree, "root", hash)?,
                    "the platform's hash set for root",
                ))
            })?;
            if let Some(login) = user {
                let field = format!("password:{login}");
                let theirs = when_new(ledger, &field, hash.as_bytes(), || {
                    Ok(Done::of(apply::set_password(tree, login, hash)?, ""))
                })?;
                change
                    .detail
                    .push_str(&format!("; {login}: {}", theirs.result.word()));
                if theirs.result == crate::base::status::Outcome::Changed {
                    change.result = crate::base::status::Outcome::Changed;
                }
            }
            Ok(change)
        }),
    }
    let key_problems = || problems_of(config, "vm_conf.ssh_key");
    if !settings.ssh_keys {
        rec.skip("root-keys", "CONFIG_SSH_KEYS=0");
    } else if config.keys.is_empty() {
        refused(rec, "root-keys", "vm_conf.ssh_key");
    } else {
        for who in std::iter::once("root").chain(user) {
            let step = if who == "root" {
                "root-keys".to_string()
            } else {
                format!("keys {who}")
            };
            rec.step(&step, || {
                let keys = apply::set_keys(tree, ledger, who, &config.keys)?;
                let mut detail = keys.detail(config.keys.len());
                if let Some(bad) = key_problems() {
                    detail.push_str(&format!("; left out: {bad}"));
                    return Ok(Done::failed(detail));
                }
                Ok(Done::of(keys.change.unwrap_or(Change::Unchanged), detail))
            });
        }
    }
    match &config.hostname {
        _ if !settings.hostname => rec.skip("hostname", "CONFIG_HOSTNAME=0"),
        None => refused(rec, "hostname", "vm_hostname"),
        Some(h) => rec.step("hostname", || {
            let at = eth0_address(config);
            let address = at.map(|a| a.to_string()).unwrap_or_default();
            // The address of our /etc/hosts line, tracked on its own: eth0's
            // address may change while the name does not. (A ledger from
            // before it records the address as it is, applying nothing.)
            let address_known = ledger.has("hosts-address");
            let address_new = ledger.is_new("hosts-address", address.as_bytes());
            let done = when_new(ledger, "hostname", h.as_bytes(), || {
                let c = apply::set_hostname(tree, h, at)?;
                if opts.live() {
                    apply::set_live_hostname(h)?;
                }
                Ok(Done::of(c, h.clone()))
            })?;
            let done = if done.result == crate::base::status::Outcome::Kept
                && address_known
                && address_new
            {
                let c = apply::set_hosts(tree, h, at)?;
                Done::of(
                    c,
                    format!(
                        "{h}: /etc/hosts at {}",
                        if address.is_empty() {
                            "127.0.1.1"
                        } else {
                            &address
                        }
                    ),
                )
            } else {
                done
            };
            ledger.set("hosts-address", address.as_bytes());
            Ok(done)
        }),
    }
    if !settings.nameserver {
        rec.skip("resolvers", "CONFIG_NAMESERVER=0");
    } else if config.nameservers.is_empty() {
        refused(rec, "resolvers", "nameservers");
    } else {
        rec.step("resolvers", || {
            let chosen = resolvers_of(tree, config);
            let list: Vec<String> = chosen.iter().map(ToString::to_string).collect();
            // The platform's value is what it gives (as recorded before).
            let given: Vec<String> = config.nameservers.iter().map(ToString::to_string).collect();
            let value = given.join(" ");
            let mut done = when_new(ledger, "resolvers", value.as_bytes(), || {
                if chosen.is_empty() {
                    bail!("none of the resolvers given is of a family this VM has");
                }
                let (c, how) = apply::set_resolvers(tree, &chosen)?;
                let of = if chosen.len() < config.nameservers.len() {
                    format!(
                        ", {} of the {} given",
                        chosen.len(),
                        config.nameservers.len()
                    )
                } else {
                    String::new()
                };
                Ok(Done::of(c, format!("{}{of} ({how})", list.join(" "))))
            })?;
            if let Some(p) = problems_of(config, "nameservers") {
                done = Done::failed(format!("{}; left out: {p}", done.detail));
            }
            Ok(done)
        });
    }
    if !settings.network {
        rec.skip("network", "CONFIG_NETWORK=0");
    } else if !config.has_vif && config.unusable.is_empty() {
        rec.skip("network", "no vif given");
    } else {
        rec.step("network", || {
            network_step(settings, tree, ledger, config, opts.live())
        });
    }
}

/// eth0's static public IPv4 address, named with the hostname in
/// `/etc/hosts` (as the platform's script writes it).
fn eth0_address(config: &Config) -> Option<std::net::IpAddr> {
    config
        .vifs
        .iter()
        .find(|v| v.number == 0)?
        .addrs
        .iter()
        .find(|a| a.addr.is_ipv4() && !a.private)
        .map(|a| a.addr)
}

/// The resolvers the platform means of those it gives (see
/// `apply::choose_resolvers`), picked per machine (its machine id, else the
/// hostname given).
fn resolvers_of(tree: &Tree, config: &Config) -> Vec<std::net::IpAddr> {
    let id = tree.read_string("/etc/machine-id").unwrap_or_default();
    let seed = match id.trim() {
        "" | "uninitialized" => config.hostname.clone().unwrap_or_default(),
        id => id.to_string(),
    };
    apply::choose_resolvers(&config.nameservers, config.ipv6_only(), &seed)
}

/// What the native apply (and the admin since) has in the files the
/// platform's own script rewrites whole: our files as they are, our blocks
/// of the admin's files. Taken before the script runs.
pub struct NativeState {
    files: Vec<(&'static str, Option<Vec<u8>>)>,
    blocks: Vec<(
        &'static str,
        &'static crate::base::block::Markers,
        Vec<String>,
    )>,
}

/// Our files that the script may rewrite.
const NATIVE_FILES: [&str; 4] = [
    "/etc/hostname",
    "/etc/mailname",
    "/etc/systemd/resolved.conf.d/gandi.conf",
    "/etc/NetworkManager/conf.d/50-gandi-dns.conf",
];

/// Our blocks in the admin's files that the script may rewrite.
const NATIVE_BLOCKS: [(&str, &crate::base::block::Markers); 3] = [
    ("/etc/hosts", &crate::base::block::HOSTS),
    ("/etc/resolv.conf", &crate::base::block::RESOLVERS),
    (
        "/etc/resolvconf/resolv.conf.d/head",
        &crate::base::block::RESOLVERS,
    ),
];

/// Takes the [`NativeState`] of `tree`.
pub fn native_state(tree: &Tree) -> NativeState {
    NativeState {
        files: NATIVE_FILES
            .iter()
            .map(|f| (*f, tree.read_owned_limited(f, 1 << 20).ok().map(|(d, _)| d)))
            .collect(),
        blocks: NATIVE_BLOCKS
            .iter()
            .filter_map(|(f, m)| {
                let text = tree.read_string(f).ok()?;
                let lines = crate::base::block::ours(&text, m).ok()?;
                (!lines.is_empty()).then_some((*f, *m, lines))
            })
            .collect(),
    }
}

/// After the platform's own script ran (`CONFIG_PLATFORM_SCRIPT=1`): our
/// files and blocks are put back as they were before it (what the native
/// apply set, and what the admin changed since), where it rewrote them;
/// the rest of its changes stay.
pub fn restore_native(tree: &Tree, before: &NativeState) -> Result<Done> {
    let mut restored = Vec::new();
    for (file, old) in &before.files {
        let Some(old) = old else {
            continue;
        };
        if tree
            .read_owned_limited(file, 1 << 20)
            .ok()
            .map(|(d, _)| d)
            .as_ref()
            != Some(old)
            && tree.write_if_changed(file, old, crate::base::tree::WriteOpts::keep(0o644))?
                == Change::Changed
        {
            restored.push(file.to_string());
        }
    }
    for (file, m, lines) in &before.blocks {
        let place = if *file == "/etc/hosts" {
            crate::base::block::Place::After(|l| l.starts_with("127.0.0.1"))
        } else {
            crate::base::block::Place::Top
        };
        if apply::edit_block(tree, file, m, lines, place)? == Change::Changed {
            restored.push(format!("our block of {file}"));
        }
    }
    Ok(if restored.is_empty() {
        Done::unchanged("the native apply stands")
    } else {
        Done::changed(format!(
            "put back after the script: {}",
            restored.join(", ")
        ))
    })
}

/// Writes the network file of each interface whose platform value is new,
/// removes ours of interfaces no longer given, and says what it did for each.
fn network_step(
    settings: &Settings,
    tree: &Tree,
    ledger: &mut Ledger,
    config: &Config,
    live: bool,
) -> Result<Done> {
    let stack = network::detect_stack(tree);
    let mut ifaces = network::interfaces(config);
    if stack == network::Stack::Ifupdown {
        // ifupdown cannot match by MAC: the stanza names the interface that
        // has the MAC now.
        for iface in &mut ifaces {
            let Some(mac) = iface.mac.clone() else {
                continue;
            };
            match live
                .then(|| network::interface_with_mac(&settings.sys_dir, &mac))
                .flatten()
            {
                Some(name) if name != iface.name => {
                    iface.note = Some(format!("{} has {mac}", name));
                    iface.name = name;
                }
                Some(_) => {}
                None => {
                    iface.note = Some(format!("no interface has {mac} now: named {}", iface.name))
                }
            }
        }
    }
    let mut change = Change::Unchanged;
    let mut notes = Vec::new();
    for iface in &ifaces {
        let what = match network::apply_one(tree, ledger, stack, iface)? {
            Applied::Kept => "kept",
            Applied::Written(c) => {
                change = change.or(c);
                if iface.dhcp4 { "DHCP" } else { "static" }
            }
        };
        let mut note = format!("{} {what}", iface.name);
        if let Some(n) = &iface.note {
            note.push_str(&format!(" ({n})"));
        }
        notes.push(note);
    }
    for old in ledger.fields("iface:") {
        if !ifaces.iter().any(|i| i.name == old) && network::forget(tree, ledger, &old)? {
            change = Change::Changed;
            notes.push(format!("{old} removed (no longer given)"));
        }
    }
    if stack == network::Stack::Ifupdown {
        let main = tree
            .read_string("/etc/network/interfaces")
            .unwrap_or_default();
        if !main
            .lines()
            .any(|l| l.trim_start().starts_with("source") && l.contains("interfaces.d"))
        {
            notes.push(
                "/etc/network/interfaces does not source interfaces.d: add \
                 `source /etc/network/interfaces.d/*`"
                    .into(),
            );
        }
    }
    let detail = format!("{stack:?}: {}", notes.join(", "));
    let mut bad = Vec::new();
    bad.extend(problems_of(config, "vif"));
    if bad.is_empty() {
        Ok(Done::of(change, detail))
    } else {
        Ok(Done::failed(format!(
            "{detail}; left out: {}",
            bad.join("; ")
        )))
    }
}
