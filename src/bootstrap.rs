//! `gandi-vm bootstrap`: the platform's config from the swap disk, applied
//! natively, then modules, swap, sysctl, root disk growth and the
//! platform's own script. Every step is recorded in `status.json`.

use crate::apply::{self, Change};
use crate::archive::{self, Limits};
use crate::platform::{self, Config};
use crate::rootgrow;
use crate::settings::Settings;
use crate::status::{Outcome, Recorder};
use crate::util;
use anyhow::{Context, Result, bail};
use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

pub struct Options {
    /// The root of the system to set up; `/` acts on the live system.
    pub root: PathBuf,
    pub device: Option<PathBuf>,
    pub kernel_release: Option<String>,
}

impl Options {
    fn live(&self) -> bool {
        self.root == Path::new("/")
    }
}

/// The swap disk, in the original's order.
pub fn find_swap_device(settings: &Settings) -> Option<(PathBuf, bool)> {
    let dev = &settings.dev_dir;
    let candidates = [
        ("disk/by-partlabel/gandiswap", true),
        ("disk/by-label/swap", false),
        ("xvdz1", false),
        ("xvdz", false),
    ];
    candidates
        .iter()
        .map(|(p, named)| (dev.join(p), *named))
        .find(|(p, _)| p.exists())
        .map(|(p, named)| (fs::canonicalize(&p).unwrap_or(p), named))
}

fn changed(c: Change) -> Outcome {
    match c {
        Change::Changed => Outcome::Changed,
        Change::Unchanged => Outcome::Unchanged,
    }
}

/// Runs the bootstrap; returns the exit code (1 when a step failed).
pub fn run(settings: &Settings, opts: &Options) -> Result<i32> {
    let root = &opts.root;
    if !root.is_dir() {
        bail!("{} is not a folder", root.display());
    }
    let mut rec = Recorder::default();
    let found = match &opts.device {
        Some(d) => Some((d.clone(), false)),
        None => find_swap_device(settings),
    };
    let gandi_dir = apply::under(root, "/gandi");

    // The config archive.
    match &found {
        None => rec.skip("archive", "no swap disk found"),
        Some((device, _)) => {
            rec.step("archive", || {
                let Some(file) = archive::open_at_offset(device)? else {
                    return Ok((
                        Outcome::Skipped,
                        format!("no archive in {}", device.display()),
                        (),
                    ));
                };
                let limits = Limits::default();
                let staging = apply::under(root, &format!("/.gandi.new-{}", std::process::id()));
                let n = archive::extract_tree(
                    file.take(limits.max_bytes * 2),
                    Path::new("gandi"),
                    &staging,
                    limits,
                )
                .with_context(|| format!("refusing the archive on {}", device.display()))?;
                if n == 0 {
                    return Ok((
                        Outcome::Skipped,
                        "the archive has no gandi entry".into(),
                        (),
                    ));
                }
                archive::replace_dir(&staging, &gandi_dir)?;
                Ok((
                    Outcome::Changed,
                    format!("{n} entries from {}", device.display()),
                    (),
                ))
            });
        }
    }

    // The config itself.
    let config_path = gandi_dir.join("config");
    let config: Option<Config> = if config_path.exists() {
        rec.step("config", || {
            fs::set_permissions(&config_path, fs::Permissions::from_mode(0o600))?;
            let text = fs::read(&config_path)
                .with_context(|| format!("reading {}", config_path.display()))?;
            match platform::load(&text) {
                Ok(c) => Ok((Outcome::Unchanged, String::new(), c)),
                Err(problems) => {
                    let list: Vec<String> = problems.iter().map(ToString::to_string).collect();
                    bail!("{}: {}", config_path.display(), list.join("; "))
                }
            }
        })
    } else {
        rec.skip("config", "no /gandi/config");
        None
    };

    if let Some(config) = &config {
        apply_config(settings, opts, config, &mut rec);
    }

    // Kernel modules of the booted kernel.
    let release = opts.kernel_release.clone().or_else(|| {
        opts.live()
            .then(|| {
                fs::read_to_string("/proc/sys/kernel/osrelease")
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
            rec.step("modules", || modules(root, &gandi_dir, &release));
        }
    }

    // Swap.
    match &found {
        None => rec.skip("swap", "no swap disk found"),
        Some((device, named)) => {
            rec.step("swap", || swap(settings, device, *named, opts.live()));
        }
    }

    // Sysctl.
    if !settings.sysctl {
        rec.skip("sysctl", "CONFIG_SYSCTL=0");
    } else if !opts.live() {
        rec.skip(
            "sysctl",
            "--root: nothing is loaded into the running kernel",
        );
    } else {
        rec.step("sysctl", || {
            let file = Path::new("/etc/sysctl.d/60-gandi.conf");
            if !file.exists() {
                return Ok((
                    Outcome::Skipped,
                    format!("{} is missing", file.display()),
                    (),
                ));
            }
            let text = fs::read_to_string(file)?;
            let n = load_sysctl(&settings.proc_dir.join("sys"), &text)?;
            Ok((
                Outcome::Changed,
                format!("{n} settings from {}", file.display()),
                (),
            ))
        });
    }

    // Root disk growth.
    if opts.live() {
        rec.step("root-disk", || {
            let r = rootgrow::grow_root(settings)?;
            Ok((
                if r.changed {
                    Outcome::Changed
                } else {
                    Outcome::Unchanged
                },
                r.detail,
                (),
            ))
        });
    } else {
        rec.skip("root-disk", "--root: no partition is changed");
    }

    // The platform's own script, once per archive.
    let init = gandi_dir.join("init");
    if !init.exists() {
        rec.skip("init", "no /gandi/init");
    } else if !opts.live() {
        rec.skip(
            "init",
            "--root: the platform's script acts on the live system",
        );
    } else {
        rec.step("init", || run_init_once(root, &gandi_dir, &init));
    }

    let failed = rec.stage.failed();
    crate::status::save(settings, "bootstrap", rec.stage)?;
    Ok(if failed { 1 } else { 0 })
}

fn apply_config(settings: &Settings, opts: &Options, config: &Config, rec: &mut Recorder) {
    let root = &opts.root;
    match &config.vm_conf.password {
        None => rec.skip("password", "none given"),
        Some(hash) => {
            rec.step("password", || {
                Ok((
                    changed(apply::set_root_password(root, hash)?),
                    String::new(),
                    (),
                ))
            });
        }
    }
    match &config.login {
        None => rec.skip("user", "no login given"),
        Some(login) => {
            rec.step("user", || {
                let c = apply::create_user(root, login)?;
                let c = c.or(apply::set_keys(root, login, &config.keys)?);
                Ok((changed(c), login.clone(), ()))
            });
        }
    }
    let mut root_keys: Vec<String> = config.vm_conf.ssh_key.iter().cloned().collect();
    root_keys.extend(config.keys.iter().cloned());
    if root_keys.is_empty() {
        rec.skip("root-keys", "no key given");
    } else {
        rec.step("root-keys", || {
            let c = apply::set_keys(root, "root", &root_keys)?;
            Ok((changed(c), format!("{} keys", root_keys.len()), ()))
        });
    }
    match &config.vm_hostname {
        None => rec.skip("hostname", "none given"),
        Some(_) if !settings.hostname => rec.skip("hostname", "CONFIG_HOSTNAME=0"),
        Some(h) => {
            rec.step("hostname", || {
                let c = apply::set_hostname(root, h)?;
                if opts.live() {
                    apply::set_live_hostname(h)?;
                }
                Ok((changed(c), h.clone(), ()))
            });
        }
    }
    if config.nameservers.is_empty() {
        rec.skip("resolvers", "none given");
    } else if !settings.nameserver {
        rec.skip("resolvers", "CONFIG_NAMESERVER=0");
    } else {
        rec.step("resolvers", || {
            let c = apply::set_resolvers(root, &config.nameservers)?;
            Ok((changed(c), config.nameservers.join(" "), ()))
        });
    }
    if config.vif.is_empty() {
        rec.skip("network", "no vif given");
    } else if !settings.network {
        rec.skip("network", "CONFIG_NETWORK=0");
    } else {
        rec.step("network", || {
            let (stack, c) = apply::set_network(root, config, settings)?;
            Ok((changed(c), format!("{stack:?}"), ()))
        });
    }
}

/// Unpacks `/gandi/RELEASE-modules.tar.*` into the modules folder, then
/// runs depmod.
fn modules(root: &Path, gandi_dir: &Path, release: &str) -> Result<(Outcome, String, ())> {
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
        .map(|(ext, tool)| {
            (
                gandi_dir.join(format!("{release}-modules.tar.{ext}")),
                *tool,
            )
        })
        .find(|(p, _)| p.exists())
    else {
        return Ok((
            Outcome::Skipped,
            format!("no modules tarball for {release}"),
            (),
        ));
    };
    let lib = apply::under(root, "/lib");
    let base = if fs::symlink_metadata(&lib).is_ok_and(|m| m.file_type().is_symlink()) {
        apply::under(root, "/usr/lib/modules")
    } else {
        lib.join("modules")
    };
    fs::create_dir_all(&base).with_context(|| format!("creating {}", base.display()))?;
    let staging = base.join(format!(".{release}.new-{}", std::process::id()));
    let mut cmd = Command::new(tool);
    cmd.arg("-dc")
        .arg(&tarball)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting {}", util::describe(&cmd)))?;
    let stdout = child.stdout.take().context("no output pipe")?;
    let tree = PathBuf::from(format!("lib/modules/{release}"));
    let extracted = archive::extract_tree(stdout, &tree, &staging, Limits::default());
    let status = child.wait()?;
    let n = match extracted {
        Err(e) => return Err(e.context(format!("refusing {}", tarball.display()))),
        Ok(_) if !status.success() => {
            let _ = fs::remove_dir_all(&staging);
            bail!("{} failed ({status})", util::describe(&cmd));
        }
        Ok(0) => bail!("{} holds no lib/modules/{release}", tarball.display()),
        Ok(n) => n,
    };
    // Modules are world-readable, owned by root (we run as root).
    make_readable(&staging)?;
    let target = base.join(release);
    archive::replace_dir(&staging, &target)?;
    let mut depmod = Command::new("depmod");
    if root != Path::new("/") {
        depmod.arg("-b").arg(root);
    }
    depmod.arg(release);
    util::run(&mut depmod)?;
    Ok((
        Outcome::Changed,
        format!("{n} entries into {}", target.display()),
        (),
    ))
}

/// Files 0644 (0755 when executable), folders 0755.
fn make_readable(dir: &Path) -> Result<()> {
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755))?;
    for e in fs::read_dir(dir)? {
        let e = e?;
        let meta = fs::symlink_metadata(e.path())?;
        if meta.is_dir() {
            make_readable(&e.path())?;
        } else if meta.is_file() {
            let exec = meta.permissions().mode() & 0o100 != 0;
            fs::set_permissions(
                e.path(),
                fs::Permissions::from_mode(if exec { 0o755 } else { 0o644 }),
            )?;
        }
    }
    Ok(())
}

/// Writes the `key = value` lines of a sysctl file under `proc_sys`
/// (`/proc/sys`), as `sysctl -p` does, without starting it. A key that
/// does not exist on this kernel is skipped with a note, as `sysctl -e`.
pub fn load_sysctl(proc_sys: &Path, text: &str) -> Result<usize> {
    let mut n = 0;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            bail!("not a sysctl line: {line:?}");
        };
        let key = key.trim().trim_start_matches('-');
        if key.split(['.', '/']).any(|p| p.is_empty() || p == "..") {
            bail!("not a sysctl key: {key:?}");
        }
        let path = proc_sys.join(key.replace('.', "/"));
        if !path.exists() {
            log::info!("sysctl {key}: not on this kernel");
            continue;
        }
        fs::write(&path, value.trim()).with_context(|| format!("writing {}", path.display()))?;
        n += 1;
    }
    Ok(n)
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
fn swap(
    settings: &Settings,
    device: &Path,
    named: bool,
    live: bool,
) -> Result<(Outcome, String, ())> {
    let active = fs::read_to_string(settings.proc_dir.join("swaps"))
        .unwrap_or_default()
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .any(|p| fs::canonicalize(p).ok().as_deref() == Some(device));
    if active {
        return Ok((
            Outcome::Unchanged,
            format!("{} is in use as swap", device.display()),
            (),
        ));
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
    let mut outcome = Outcome::Unchanged;
    if labelled {
        // Already what we want: formatting again would only change its UUID.
    } else if is_swap || named || head.iter().all(|&b| b == 0) {
        util::run(Command::new("mkswap").args(["-L", "swap"]).arg(device))?;
        outcome = Outcome::Changed;
    } else {
        return Ok((
            Outcome::Skipped,
            format!("{} does not seem empty: left untouched", device.display()),
            (),
        ));
    }
    if live {
        let c = std::ffi::CString::new(device.as_os_str().as_encoded_bytes())
            .context("a device path with a NUL byte")?;
        // SAFETY: a valid NUL-terminated path; no flags.
        if unsafe { libc::swapon(c.as_ptr(), 0) } != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("swapon {}", device.display()));
        }
        outcome = Outcome::Changed;
    }
    Ok((outcome, device.display().to_string(), ()))
}

/// Runs `/gandi/init` once per config: a mark holding the config's bytes'
/// length and checksum is kept under `/var/lib/gandi`.
fn run_init_once(root: &Path, gandi_dir: &Path, init: &Path) -> Result<(Outcome, String, ())> {
    let config = fs::read(gandi_dir.join("config")).unwrap_or_default();
    let stamp = format!("{}:{:016x}\n", config.len(), util::fnv1a(&config));
    let mark = apply::under(root, "/var/lib/gandi/init.done");
    if fs::read_to_string(&mark).is_ok_and(|s| s == stamp) {
        return Ok((Outcome::Unchanged, "already ran for this config".into(), ()));
    }
    let out = util::run_bounded(&mut Command::new(init), Duration::from_secs(600))?;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        log::info!("init: {line}");
    }
    for line in String::from_utf8_lossy(&out.stderr).lines() {
        log::info!("init: {line}");
    }
    if let Some(parent) = mark.parent() {
        fs::create_dir_all(parent)?;
    }
    util::write_atomic(&mark, stamp.as_bytes(), 0o600)?;
    if !out.success() {
        // Logged, not fatal, as the original.
        log::warn!("/gandi/init failed ({:?})", out.status);
        return Ok((
            Outcome::Changed,
            format!("the platform script failed ({:?})", out.status),
            (),
        ));
    }
    Ok((Outcome::Changed, String::new(), ()))
}

/// FNV-1a, 64 bits: a stable fingerprint (not a security measure).
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
        let text =
            "# comment\nvm.swappiness = 10\nnet.ipv4.conf.all.rp_filter=2\nno.such.key = 1\n";
        assert_eq!(load_sysctl(dir.path(), text).unwrap(), 2);
        assert_eq!(
            fs::read_to_string(dir.path().join("vm/swappiness")).unwrap(),
            "10"
        );
        assert_eq!(
            fs::read_to_string(dir.path().join("net/ipv4/conf/all/rp_filter")).unwrap(),
            "2"
        );
        assert!(load_sysctl(dir.path(), "vm...x = 1\n").is_err());
        assert!(load_sysctl(dir.path(), "garbage\n").is_err());
        // The shipped file parses.
        let shipped = include_str!("../etc/sysctl.d/60-gandi.conf");
        assert_eq!(load_sysctl(dir.path(), shipped).unwrap(), 2);
    }

    #[test]
    fn swap_labels() {
        let mut head = vec![0u8; 4096];
        head[1052..1056].copy_from_slice(b"swap");
        assert_eq!(swap_label(&head).as_deref(), Some("swap"));
        assert_eq!(swap_label(&head[..100]), None);
    }
}
