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

use crate::apply;
use crate::archive::{self, Limits};
use crate::ledger::Ledger;
use crate::network::{self, Applied};
use crate::platform::{self, Config};
use crate::plugins;
use crate::rootgrow;
use crate::runner::Run;
use crate::settings::Settings;
use crate::status::{Done, Recorder};
use crate::tree::{Change, Tree, WriteOpts};
use anyhow::{Context, Result, bail};
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

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

/// The swap disk, in the original's order; `true` when it is the GPT
/// partition named `gandiswap` (always formatted).
pub fn find_swap_device(settings: &Settings) -> Option<(PathBuf, bool)> {
    let dev = &settings.dev_dir;
    let xen = settings.proc_dir.join("xen").exists();
    let mut candidates = vec![
        ("disk/by-partlabel/gandiswap", true),
        ("disk/by-label/swap", false),
        ("xvdz1", false),
        ("xvdz", false),
        ("da1", false),
    ];
    candidates.push(if xen {
        ("xvda2", false)
    } else {
        ("sdb", false)
    });
    candidates
        .iter()
        .map(|(p, named)| (dev.join(p), *named))
        .find(|(p, _)| p.exists())
        .map(|(p, named)| (fs::canonicalize(&p).unwrap_or(p), named))
}

/// Where the archive may be: when the swap is a partition, the whole disk
/// first (the platform writes at 512 KiB of the disk), then the partition.
pub fn archive_places(settings: &Settings, device: &Path) -> Vec<PathBuf> {
    let Some(name) = device.file_name().and_then(|n| n.to_str()) else {
        return vec![device.to_path_buf()];
    };
    let class = settings.sys_dir.join("class/block").join(name);
    if !class.join("partition").exists() {
        return vec![device.to_path_buf()];
    }
    let disk = fs::read_link(&class)
        .ok()
        .and_then(|l| l.parent()?.file_name().map(|n| n.to_os_string()));
    match disk {
        Some(d) => vec![settings.dev_dir.join(d), device.to_path_buf()],
        None => vec![device.to_path_buf()],
    }
}

/// Runs the bootstrap; returns the exit code (1 when a step failed or a
/// value of the config was refused).
pub fn run(settings: &Settings, opts: &Options) -> Result<i32> {
    let tree = Tree::open(&opts.root)?;
    let live = opts.live();
    let mut rec = Recorder::default();
    let found = match &opts.device {
        Some(d) => Some((d.clone(), false)),
        None if live => find_swap_device(settings),
        None => None,
    };
    let gandi = settings.gandi_dir.as_path();

    // The config archive.
    match &found {
        None if !live => rec.skip(
            "archive",
            "--root: the swap disk is read only from --device",
        ),
        None => rec.skip("archive", "no swap disk found"),
        Some((device, _)) => {
            let places = if live {
                archive_places(settings, device)
            } else {
                vec![device.clone()]
            };
            rec.step("archive", || extract_config(&tree, gandi, &places));
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
            match platform::read(&text) {
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
        Some((device, named)) => {
            rec.step("swap", || swap(settings, &tree, device, *named, live));
        }
    }

    rec.step("sysctl", || sysctl(settings, &tree, live));

    if live {
        rec.step("root-disk", || {
            let r = rootgrow::grow_root(settings)?;
            Ok(Done::of(Change::from_bool(r.changed), r.detail))
        });
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

    // The platform's own script, once per config.
    let init = gandi.join("init");
    if tree.lstat(&init).is_err() {
        rec.skip("init", "no /gandi/init");
    } else if !live {
        rec.note(
            "init",
            Done::deferred("--root: the platform's script runs at the first boot"),
        );
    } else {
        rec.step("init", || {
            run_init_once(settings, &tree, &mut ledger, &init)
        });
    }

    rec.step("state", || {
        ledger.save(&tree)?;
        Ok(Done::unchanged(
            tree.shown(settings.state_dir.join("applied.json"))
                .display()
                .to_string(),
        ))
    });
    rec.finish(&tree, settings, "bootstrap")
}

/// The first of `places` with an archive at 512 KiB, opened there.
pub fn find_archive(places: &[PathBuf]) -> Result<Option<(PathBuf, fs::File)>> {
    for place in places {
        if let Some(file) = archive::open_at_offset(place)? {
            return Ok(Some((place.clone(), file)));
        }
    }
    Ok(None)
}

/// Reads the archive from the first of `places` that holds one and puts its
/// `gandi/` tree in place of `gandi` (refused whole when hostile).
fn extract_config(tree: &Tree, gandi: &Path, places: &[PathBuf]) -> Result<Done> {
    let Some((place, file)) = find_archive(places)? else {
        let shown: Vec<String> = places.iter().map(|p| p.display().to_string()).collect();
        return Ok(Done::skipped(format!(
            "no archive at 512 KiB of {}",
            shown.join(" or ")
        )));
    };
    let (parent_rel, name) = match (gandi.parent(), gandi.file_name().and_then(|n| n.to_str())) {
        (Some(p), Some(n)) => (p, n),
        _ => bail!("GANDI_DIR {} cannot be replaced", gandi.display()),
    };
    tree.create_dirs(parent_rel, 0o755)?;
    let parent = tree.subtree(parent_rel)?;
    let limits = Limits::default();
    let n = archive::extract_to(
        file.take(limits.max_bytes * 2),
        Path::new("gandi"),
        &parent,
        name,
        limits,
    )
    .with_context(|| format!("refusing the archive on {}", place.display()))?;
    if n == 0 {
        return Ok(Done::skipped(format!(
            "the archive on {} has no gandi entry",
            place.display()
        )));
    }
    parent.set_mode(name, 0o700)?;
    Ok(Done::changed(format!(
        "{n} entries from {}",
        place.display()
    )))
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
    match &config.password {
        None => refused(rec, "password", "vm_conf.password"),
        Some(hash) => rec.step("password", || {
            when_new(ledger, "password", hash.as_bytes(), || {
                Ok(Done::of(
                    apply::set_root_password(tree, hash)?,
                    "the platform's hash set",
                ))
            })
        }),
    }
    match &config.login {
        None => refused(rec, "user", "login"),
        Some(login) => rec.step("user", || {
            let created = when_new(ledger, "login", login.as_bytes(), || {
                Ok(Done::of(
                    apply::create_user(tree, login, &settings.state_dir)?,
                    login.clone(),
                ))
            })?;
            if apply::account(tree, login).is_none() {
                return Ok(Done::kept(format!(
                    "{login} was removed since it was created: not made again"
                )));
            }
            let keys = apply::set_keys(tree, ledger, login, &config.keys)?;
            let mut done = created;
            if keys.change == Some(Change::Changed) {
                done.result = crate::status::Outcome::Changed;
            }
            done.detail = format!("{login}: {}", keys.detail(config.keys.len()));
            Ok(done)
        }),
    }
    if config.root_keys.is_empty() {
        refused(rec, "root-keys", "vm_conf.ssh_key");
    } else {
        rec.step("root-keys", || {
            let keys = apply::set_keys(tree, ledger, "root", &config.root_keys)?;
            let mut detail = keys.detail(config.root_keys.len());
            let mut bad: Vec<String> = Vec::new();
            bad.extend(problems_of(config, "vm_conf.ssh_key"));
            bad.extend(problems_of(config, "keys"));
            if !bad.is_empty() {
                detail.push_str(&format!("; left out: {}", bad.join("; ")));
                return Ok(Done::failed(detail));
            }
            Ok(Done::of(keys.change.unwrap_or(Change::Unchanged), detail))
        });
    }
    match &config.hostname {
        _ if !settings.hostname => rec.skip("hostname", "CONFIG_HOSTNAME=0"),
        None => refused(rec, "hostname", "vm_hostname"),
        Some(h) => rec.step("hostname", || {
            when_new(ledger, "hostname", h.as_bytes(), || {
                let c = apply::set_hostname(tree, h)?;
                if opts.live() {
                    apply::set_live_hostname(h)?;
                }
                Ok(Done::of(c, h.clone()))
            })
        }),
    }
    if !settings.nameserver {
        rec.skip("resolvers", "CONFIG_NAMESERVER=0");
    } else if config.nameservers.is_empty() {
        refused(rec, "resolvers", "nameservers");
    } else {
        rec.step("resolvers", || {
            let list: Vec<String> = config.nameservers.iter().map(ToString::to_string).collect();
            let value = list.join(" ");
            let mut done = when_new(ledger, "resolvers", value.as_bytes(), || {
                let (c, how) = apply::set_resolvers(tree, &config.nameservers)?;
                Ok(Done::of(c, format!("{value} ({how})")))
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

/// The modules folder of the tree: `/usr/lib/modules` when `/lib` is a link.
fn modules_base(tree: &Tree) -> PathBuf {
    if tree.is_link("/lib") {
        PathBuf::from("usr/lib/modules")
    } else {
        PathBuf::from("lib/modules")
    }
}

/// Installs `/gandi/RELEASE-modules.tar.*` additively: its
/// `lib/modules/RELEASE/` and `boot/` files are added or replaced, nothing
/// else is removed (modules of the admin or DKMS stay), then depmod. Done
/// once per kernel release and tarball (the ledger), since /gandi is
/// extracted again at every boot.
fn modules(
    tree: &Tree,
    ledger: &mut Ledger,
    gandi: &Path,
    release: &str,
    live: bool,
) -> Result<Done> {
    if release.is_empty() || release.contains('/') || release.starts_with('.') {
        bail!("{release:?} is not a kernel release");
    }
    let tools = [
        ("gz", "gzip"),
        ("bz2", "bzip2"),
        ("xz", "xz"),
        ("zst", "zstd"),
    ];
    let Some((tarball, tool)) = tools
        .iter()
        .map(|(ext, tool)| (gandi.join(format!("{release}-modules.tar.{ext}")), *tool))
        .find(|(p, _)| tree.lstat(p).is_ok())
    else {
        return Ok(Done::skipped(format!("no modules tarball for {release}")));
    };
    let (data, _) = tree
        .read_owned(&tarball)
        .with_context(|| format!("reading {}", tree.shown(&tarball).display()))?;
    let field = format!("modules:{release}");
    if !ledger.is_new(&field, &data) {
        return Ok(Done::kept(format!(
            "modules of {release} installed before from this tarball"
        )));
    }
    let base = modules_base(tree);
    tree.create_dirs(&base, 0o755)?;
    let parent = tree.subtree(&base)?;
    let staging = archive::Staging::new(&parent, &format!("{release}-modules"))?;
    let stage = staging.tree()?;
    // The tarball was read above as a regular file with no link on its path.
    let n = Run::new(tool)
        .arg("-dc")
        .arg(tree.shown(&tarball))
        .limit(Duration::from_secs(600))
        .stream(|r| archive::extract(r, Path::new(""), &stage, Limits::default()))
        .with_context(|| format!("refusing {}", tree.shown(&tarball).display()))?;
    let tree_rel = PathBuf::from(format!("lib/modules/{release}"));
    if stage.lstat(&tree_rel).is_err() {
        bail!("{} holds no lib/modules/{release}", tarball.display());
    }
    let staged = base.join(staging.name());
    let added = merge(tree, &staged.join(&tree_rel), &base.join(release))?;
    let boot = if stage.lstat("boot").is_ok() {
        merge(tree, &staged.join("boot"), Path::new("boot"))?
    } else {
        0
    };
    drop(staging);
    clear_depmod_leftovers(tree, &base.join(release));
    let mut depmod = Run::new("depmod").limit(Duration::from_secs(300));
    if !live {
        depmod = depmod.arg("-b").arg(tree.base());
    }
    depmod.arg(release).output()?;
    ledger.set(&field, &data);
    Ok(Done::changed(format!(
        "{n} entries: {added} files into {}, {boot} into /boot; depmod",
        tree.shown(base.join(release)).display()
    )))
}

/// depmod writes each index as `modules.X.PID.N.TIME` then renames it: a
/// depmod killed half-way leaves those. Removed when their process is gone.
fn clear_depmod_leftovers(tree: &Tree, dir: &Path) {
    for name in tree.list(dir).unwrap_or_default() {
        let Some(n) = name.to_str() else {
            continue;
        };
        let parts: Vec<&str> = n.rsplitn(4, '.').collect();
        let numeric = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
        if n.starts_with("modules.")
            && parts.len() == 4
            && parts[..3].iter().all(|p| numeric(p))
            && parts[2]
                .parse::<u32>()
                .is_ok_and(|pid| !crate::records::alive(pid))
        {
            let _ = tree.remove_file(dir.join(n));
        }
    }
}

/// Moves the files of `from` into `to` (both beneath `tree`), replacing
/// files of the same name and adding the others; nothing of `to` is
/// removed. Files become 0644 (0755 when executable), folders 0755. Returns
/// the number of files moved.
fn merge(tree: &Tree, from: &Path, to: &Path) -> Result<usize> {
    tree.create_dirs(to, 0o755)?;
    let mut n = 0;
    for name in tree.list(from)? {
        let (src, dst) = (from.join(&name), to.join(&name));
        let meta = tree.lstat(&src)?;
        if meta.is_dir() {
            if tree.lstat(&dst).is_ok_and(|m| !m.is_dir()) {
                tree.remove_file(&dst)?;
            }
            n += merge(tree, &src, &dst)?;
            continue;
        }
        if meta.is_file() {
            let exec = crate::tree::mode_of(&meta) & 0o100 != 0;
            tree.set_mode(&src, if exec { 0o755 } else { 0o644 })?;
        }
        if let Err(e) = tree.rename(&src, &dst) {
            // Another filesystem (/boot): copied.
            if meta.is_file() {
                let (data, m) = tree.read_owned(&src)?;
                tree.write_atomic(&dst, &data, WriteOpts::mode(crate::tree::mode_of(&m)))?;
            } else if meta.file_type().is_symlink() {
                tree.set_link(&dst, &tree.read_link(&src)?)?;
            } else {
                return Err(e);
            }
        }
        n += 1;
    }
    Ok(n)
}

/// The original's sysctl settings, shipped outside the folders
/// systemd-sysctl reads (a config file of ours, which the admin may edit);
/// `CONFIG_SYSCTL=1` links it into `/etc/sysctl.d`, where it is
/// loaded at every boot in order with the admin's files (a later file of
/// theirs wins). When the link is new, the settings are loaded at once.
pub const SYSCTL_FILE: &str = "/etc/gandi/sysctl.conf";
pub const SYSCTL_LINK: &str = "/etc/sysctl.d/60-gandi.conf";

fn sysctl(settings: &Settings, tree: &Tree, live: bool) -> Result<Done> {
    let linked = tree.read_link(SYSCTL_LINK).ok();
    let ours = linked.as_deref() == Some(Path::new(SYSCTL_FILE));
    if !settings.sysctl {
        if ours {
            tree.remove_file(SYSCTL_LINK)?;
            return Ok(Done::changed(format!(
                "CONFIG_SYSCTL=0: {SYSCTL_LINK} removed (its values stay until the next boot)"
            )));
        }
        return Ok(Done::skipped("CONFIG_SYSCTL=0"));
    }
    if !tree.exists(SYSCTL_FILE) {
        return Ok(Done::skipped(format!("{SYSCTL_FILE} is missing")));
    }
    if ours {
        return Ok(Done::unchanged(format!(
            "{SYSCTL_LINK} loaded by systemd-sysctl at boot"
        )));
    }
    if tree.lstat(SYSCTL_LINK).is_ok() {
        return Ok(Done::skipped(format!(
            "{SYSCTL_LINK} is the admin's: left as it is"
        )));
    }
    tree.set_link(SYSCTL_LINK, Path::new(SYSCTL_FILE))?;
    if !live {
        return Ok(Done::changed(format!(
            "{SYSCTL_LINK} linked (loaded at boot)"
        )));
    }
    // Loaded now with every file in order, so the admin's later files win.
    let n = load_sysctl_files(settings)?;
    Ok(Done::changed(format!(
        "{SYSCTL_LINK} linked; {n} settings loaded"
    )))
}

/// Loads the sysctl files as systemd-sysctl orders them (by name across
/// its folders, /etc first for a name given twice), writing each value
/// under `/proc/sys`.
fn load_sysctl_files(settings: &Settings) -> Result<usize> {
    let dirs = [
        "/etc/sysctl.d",
        "/run/sysctl.d",
        "/usr/local/lib/sysctl.d",
        "/usr/lib/sysctl.d",
        "/lib/sysctl.d",
    ];
    let mut files: std::collections::BTreeMap<String, PathBuf> = Default::default();
    for d in dirs {
        for e in fs::read_dir(d).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.ends_with(".conf") {
                files.entry(name).or_insert(e.path());
            }
        }
    }
    let mut n = 0;
    for path in files.values() {
        let text = fs::read_to_string(path).unwrap_or_default();
        n += load_sysctl(&settings.proc_dir.join("sys"), &text);
    }
    if let Ok(text) = fs::read_to_string("/etc/sysctl.conf") {
        n += load_sysctl(&settings.proc_dir.join("sys"), &text);
    }
    Ok(n)
}

/// Writes the `key = value` lines of a sysctl file under `proc_sys`
/// (`/proc/sys`), as `sysctl -p -e` does: a key missing on this kernel, or
/// a line that cannot be read, is logged and passed over.
pub fn load_sysctl(proc_sys: &Path, text: &str) -> usize {
    let mut n = 0;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            log::warn!("sysctl: not a setting: {line:?}");
            continue;
        };
        // A comment after the value (the original's file has one).
        let value = value
            .find(" #")
            .or_else(|| value.find("\t#"))
            .map_or(value, |i| &value[..i]);
        let key = key.trim().trim_start_matches('-');
        if key.is_empty() || key.split(['.', '/']).any(|p| p.is_empty() || p == "..") {
            log::warn!("sysctl: not a key: {key:?}");
            continue;
        }
        if key.contains('*') {
            continue; // globs are systemd-sysctl's
        }
        let path = proc_sys.join(key.replace('.', "/"));
        match fs::write(&path, value.trim()) {
            Ok(()) => n += 1,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                log::debug!("sysctl {key}: not on this kernel")
            }
            Err(e) => log::warn!("sysctl {key}: {e}"),
        }
    }
    n
}

/// The label of a swap area: after the 1024 boot bytes, `version`,
/// `last_page`, `nr_badpages` (3 x 4 bytes) and the 16-byte UUID come 16
/// bytes of volume name.
fn swap_label(head: &[u8]) -> Option<String> {
    let raw = head.get(1052..1068)?;
    let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    std::str::from_utf8(&raw[..end]).ok().map(str::to_string)
}

/// Whether the first page carries a swap signature.
fn swap_signature(head: &[u8]) -> bool {
    head.len() >= 4096 && (&head[4086..4096] == b"SWAPSPACE2" || &head[4086..4096] == b"SWAP-SPACE")
}

/// (Re)creates the swap area with label `swap` and enables it, keeping the
/// original's safety rule: a device that is not swap already is formatted
/// only when its first 512 KiB are zero, or when it is the GPT partition
/// named `gandiswap`.
fn swap(settings: &Settings, tree: &Tree, device: &Path, named: bool, live: bool) -> Result<Done> {
    if live {
        let active = fs::read_to_string(settings.proc_dir.join("swaps"))
            .unwrap_or_default()
            .lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().next())
            .any(|p| fs::canonicalize(p).ok().as_deref() == Some(device));
        if active {
            return Ok(Done::unchanged(format!(
                "{} is in use as swap",
                device.display()
            )));
        }
    }
    let mut head = vec![0u8; archive::CONFIG_OFFSET as usize];
    let mut file =
        fs::File::open(device).with_context(|| format!("opening {}", device.display()))?;
    let mut read = 0;
    while read < head.len() {
        let n = file.read(&mut head[read..])?;
        if n == 0 {
            break;
        }
        read += n;
    }
    head.truncate(read);
    let is_swap = swap_signature(&head);
    let labelled = is_swap && swap_label(&head).as_deref() == Some("swap");
    // A format of ours cut short leaves a head that is neither zero nor
    // swap: the mark, written before mkswap, says it is ours to finish.
    let mark = settings.state_dir.join("mkswap-started");
    let ours = tree
        .read_string(&mark)
        .is_ok_and(|d| d.trim() == device.display().to_string());
    let mut change = Change::Unchanged;
    if labelled {
        // Already what we want: formatting again would only change its UUID.
        if ours {
            tree.remove_file(&mark)?;
        }
    } else if is_swap || named || ours || head.iter().all(|&b| b == 0) {
        tree.create_dirs(&settings.state_dir, 0o700)?;
        tree.write_atomic(
            &mark,
            format!("{}\n", device.display()).as_bytes(),
            WriteOpts::mode(0o600),
        )?;
        Run::new("mkswap")
            .args(["-L", "swap"])
            .arg(device)
            .limit(Duration::from_secs(120))
            .output()?;
        tree.remove_file(&mark)?;
        change = Change::Changed;
    } else {
        return Ok(Done::skipped(format!(
            "{} does not seem empty: left untouched",
            device.display()
        )));
    }
    if live {
        swapon(device)?;
        change = Change::Changed;
    }
    Ok(Done::of(change, device.display().to_string()))
}

fn swapon(device: &Path) -> Result<()> {
    let c = std::ffi::CString::new(device.as_os_str().as_encoded_bytes())
        .context("a device path with a NUL byte")?;
    // SAFETY: swapon(2) has no wrapper in nix or std; `c` is a valid
    // NUL-terminated path that outlives the call, and no flags are passed.
    if unsafe { libc::swapon(c.as_ptr(), 0) } != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("swapon {}", device.display()));
    }
    Ok(())
}

/// The interpreters the original tried for the platform's Python script.
const PYTHONS: &[&str] = &["python3", "python2", "python"];

/// Runs the platform's script as the original did (`python3 /gandi/init
/// [ARGS]`, else python2, else python; never through its shebang), bounded,
/// its output to the log. The script must be a regular file of /gandi (no
/// link anywhere on its path).
pub fn run_platform_script(
    tree: &Tree,
    init: &Path,
    args: &[&str],
    limit: Duration,
) -> Result<crate::runner::Outcome> {
    let (_, meta) = tree
        .read_owned(init)
        .with_context(|| format!("{} cannot be run", tree.shown(init).display()))?;
    if meta.len() == 0 {
        bail!("{} is empty", tree.shown(init).display());
    }
    let path = tree.shown(init);
    let python = PYTHONS
        .iter()
        .find(|p| which(p).is_some())
        .with_context(|| {
            format!(
                "no Python ({}) to run {}",
                PYTHONS.join(", "),
                path.display()
            )
        })?;
    Run::new(python)
        .arg(&path)
        .args(args)
        .current_dir(tree.base())
        .limit(limit)
        .log_as("init")
        .outcome()
}

/// The path of `program` in PATH.
pub fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .unwrap_or_default()
        .to_string_lossy()
        .split(':')
        .map(|d| Path::new(d).join(program))
        .find(|p| p.is_file())
}

/// Runs `/gandi/init` once per config: a mark of the config's fingerprint
/// is kept in the state folder.
fn run_init_once(
    settings: &Settings,
    tree: &Tree,
    ledger: &mut Ledger,
    init: &Path,
) -> Result<Done> {
    let config = tree
        .read(settings.gandi_dir.join("config"))
        .unwrap_or_default();
    if !ledger.is_new("init", &config) {
        return Ok(Done::unchanged("already ran for this config"));
    }
    // Marked first: a script cut short is reported, not run again.
    ledger.set("init", &config);
    ledger.save(tree)?;
    let out = run_platform_script(tree, init, &[], Duration::from_secs(600))?;
    if !out.success() {
        // Logged, not fatal, as the original.
        return Ok(Done::changed(format!(
            "the platform's script failed ({})",
            out.ended()
        )));
    }
    Ok(Done::changed(out.ended()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysctl_lines_go_to_proc_sys() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("vm")).unwrap();
        fs::create_dir_all(dir.path().join("net/ipv4/conf/all")).unwrap();
        fs::write(dir.path().join("vm/swappiness"), "60").unwrap();
        fs::write(dir.path().join("net/ipv4/conf/all/rp_filter"), "1").unwrap();
        let text = "# comment\nvm.swappiness = 10\nnet.ipv4.conf.all.rp_filter=2\nno.such.key = 1\ngarbage\nvm...x = 1\n";
        assert_eq!(load_sysctl(dir.path(), text), 2);
        assert_eq!(
            fs::read_to_string(dir.path().join("vm/swappiness")).unwrap(),
            "10"
        );
        assert_eq!(
            fs::read_to_string(dir.path().join("net/ipv4/conf/all/rp_filter")).unwrap(),
            "2"
        );
        // The shipped file parses: every line is a setting.
        let shipped = include_str!("../etc/gandi/sysctl.conf");
        let settings = shipped
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
            .count();
        assert!(settings >= 12, "{settings}");
        assert!(
            shipped
                .lines()
                .all(|l| l.trim().is_empty() || l.starts_with('#') || l.contains(" = "))
        );
    }

    #[test]
    fn swap_labels() {
        let mut head = vec![0u8; 4096];
        head[1052..1056].copy_from_slice(b"swap");
        assert_eq!(swap_label(&head).as_deref(), Some("swap"));
        assert_eq!(swap_label(&head[..100]), None);
    }
}
