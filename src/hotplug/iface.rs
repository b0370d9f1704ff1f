//! Hot-plugged network interfaces: `gandi-vm iface IFACE` (what
//! `gandi-iface@IFACE.service` runs) and the DHCP client's script.
//!
//! A NIC gets its link up; unless it is in `CONFIG_NODHCP` (the admin's,
//! e.g. a private VLAN), it gets its addresses through the system's own
//! network stack: a systemd-networkd file and a reload, or an ifupdown
//! stanza and `ifup`, or, as last resort, `udhcpc` (DHCP) or `ip` (static).
//! Secondary interfaces get the ARP and `rp_filter` settings; virtio NICs
//! get min(CPUs, 8) queues; every interface's IPv4 default route gets its
//! own metric (eth0 first), so several coexist and the first one wins.

use crate::base::hooks;
use crate::base::runner::Run;
use crate::base::settings::Settings;
use crate::base::status::Ended;
use crate::base::tree::Change;
use crate::base::tree::Tree;
use crate::hotplug::queues::multiqueue;
use crate::platform::config::{self, Config};
use crate::platform::ledger::Ledger;
use crate::platform::network::{self, Applied, Iface, Stack, names, routes, valid_iface};
use anyhow::{Context, Result, bail};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The platform config of the tree, if readable.
fn platform_config(settings: &Settings, tree: &Tree) -> Option<Config> {
    let (text, _) = tree
        .read_owned(settings.paths.gandi_dir.join("config"))
        .ok()?;
    match config::read(&text) {
        Ok(c) => Some(c),
        Err(e) => {
            log::warn!(
                "{}/config: {e}; using DHCP",
                settings.paths.gandi_dir.display()
            );
            None
        }
    }
}

fn run_dir_file(settings: &Settings, name: &str) -> PathBuf {
    settings.paths.run_dir.join(name)
}

/// Which stack configures the interface: networkd when it runs, ifupdown
/// when installed and configured, else our own last resort.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Way {
    /// netplan's files, rendered by `netplan generate` for networkd or
    /// NetworkManager.
    Netplan,
    Networkd,
    NetworkManager,
    Ifupdown,
    Direct,
}

fn way(tree: &Tree) -> Way {
    if network::detect_stack(tree) == Stack::Netplan {
        Way::Netplan
    } else if tree.exists("/run/systemd/netif/state") {
        Way::Networkd
    } else if tree.is_dir("/run/NetworkManager") {
        Way::NetworkManager
    } else if network::detect_stack(tree) == Stack::Ifupdown {
        Way::Ifupdown
    } else {
        Way::Direct
    }
}

/// `gandi-vm iface IFACE`: brings a hot-plugged interface up and configures
/// it. `root` is the tree whose config and network files are used (the
/// interface is the live one). Returns the exit code.
pub fn attach(settings: &Settings, root: &Path, name: &str) -> Result<Ended> {
    if !valid_iface(name) {
        bail!("{name:?} is not an interface name");
    }
    let tree = Tree::open(root)?;
    // Run by its unit, not by hand: the NIC's mark and record are the
    // units' to keep.
    if boot::run_by_its_unit(settings) {
        boot::unit_started(settings, name);
    }
    // Its place among the NICs (vif N is the Nth in bus order).
    let order = names::bus_order(&settings.paths.sys_dir);
    let index = names::index_of(name, &order);
    // The system's stack brings up the links it manages; a link we set up
    // before it looks at it would be taken as configured by someone else
    // (NetworkManager then leaves it as it is). We set it up ourselves
    // only where we configure it ourselves.
    if way(&tree) == Way::Direct {
        link_up(name)?;
    }
    if index != Some(0) {
        secondary_sysctls(settings, name)?;
    }
    if settings.multiqueue {
        multiqueue(settings, name);
    }
    // As the original: CONFIG_NODHCP gates the addressing only (its default,
    // eth0, is bootstrap's: vif 0's interface, whatever its name); the
    // queues, sysctls and the hook are for all.
    if settings
        .nodhcp
        .iter()
        .any(|w| names::nodhcp_means(w, name, index))
    {
        log::info!("{name}: in CONFIG_NODHCP: its addresses are left to bootstrap or the admin");
    } else {
        configure(settings, &tree, name, index)?;
    }
    // As the original's udev hook ran it: the interface as its argument,
    // and udev's INTERFACE and ACTION.
    hooks::run_with(
        settings,
        "post-iface-attach",
        &[name],
        &[("INTERFACE", name), ("ACTION", "add")],
        hooks::HOOK_LIMIT,
    );
    Ok(Ended::Ok)
}

/// Writes and applies the interface's addresses (from the platform's
/// config, else DHCP) through the system's stack.
fn configure(settings: &Settings, tree: &Tree, name: &str, index: Option<u32>) -> Result<()> {
    let config = platform_config(settings, tree);
    let mac = crate::base::read::read_small(
        &settings
            .paths
            .sys_dir
            .join("class/net")
            .join(name)
            .join("address"),
    );
    // A NIC of no known place gets DHCP, past every vif.
    let iface = network::hotplug(
        name,
        index.unwrap_or(100),
        mac.as_deref().map(str::trim),
        config.as_ref(),
        settings.source_routing,
    );
    let stack = match way(tree) {
        Way::Direct => return direct(settings, &iface),
        Way::Netplan => Stack::Netplan,
        Way::Networkd => Stack::Networkd,
        Way::NetworkManager => Stack::NetworkManager,
        Way::Ifupdown => Stack::Ifupdown,
    };
    let applied = {
        let mut ledger = Ledger::load(tree, &settings.paths.state_dir);
        let a = network::apply_one(tree, &mut ledger, stack, &iface)?;
        ledger.save(tree)?;
        a
    };
    let changed = applied == Applied::Written(Change::Changed);
    // systemd-networkd applies the files it has loaded to a new link by
    // itself: a reload is only needed when the file changed. (At boot the
    // file is bootstrap's, already loaded: a reload there would restart
    // the interface's configuration mid-boot.)
    match stack {
        _ if !changed => log::info!("{name}: its file is unchanged or the admin's: already loaded"),
        Stack::Netplan => {
            netplan_generate()?;
            if tree.exists("/run/systemd/netif/state") {
                networkd_reload(Some(name))?;
            } else if tree.is_dir("/run/NetworkManager") {
                nm_reload(None)?;
            }
        }
        Stack::Networkd => networkd_reload(Some(name))?,
        Stack::NetworkManager => nm_reload(Some(name))?,
        Stack::Ifupdown => {}
    }
    if stack == Stack::Ifupdown {
        Run::new("ifup")
            .arg(name)
            .limit(Duration::from_secs(120))
            .output()?;
    }
    Ok(())
}

/// `netplan generate`: netplan's files rendered for their stack again.
fn netplan_generate() -> Result<()> {
    Run::new("netplan")
        .arg("generate")
        .limit(Duration::from_secs(60))
        .output()
        .map(drop)
}

/// NetworkManager reads its keyfiles again (and brings our connection of
/// `name` up).
fn nm_reload(name: Option<&str>) -> Result<()> {
    let limit = Duration::from_secs(60);
    Run::new("nmcli")
        .args(["connection", "reload"])
        .limit(limit)
        .output()?;
    if let Some(n) = name {
        Run::new("nmcli")
            .args(["connection", "up", "id", &format!("gandi-{n}")])
            .limit(limit)
            .output()?;
    }
    Ok(())
}

/// Makes systemd-networkd read its files again: `networkctl reload` (and
/// `reconfigure IFACE`), which needs D-Bus; without it, a restart of
/// systemd-networkd (systemctl talks to systemd directly).
fn networkd_reload(name: Option<&str>) -> Result<()> {
    let limit = Duration::from_secs(60);
    let reloaded = Run::new("networkctl")
        .arg("reload")
        .limit(limit)
        .output()
        .and_then(|_| match name {
            Some(n) => Run::new("networkctl")
                .args(["reconfigure", n])
                .limit(limit)
                .output()
                .map(drop),
            None => Ok(()),
        });
    if let Err(e) = reloaded {
        log::info!("{e:#}; restarting systemd-networkd instead");
        Run::new("systemctl")
            .args(["restart", "systemd-networkd.service"])
            .limit(Duration::from_secs(90))
            .output()?;
    }
    Ok(())
}

/// `ip link set IFACE up`, once more after 2 s if it fails.
fn link_up(name: &str) -> Result<()> {
    let up = || {
        Run::new("ip")
            .args(["link", "set", name, "up"])
            .limit(Duration::from_secs(30))
            .output()
    };
    if up().is_ok() {
        return Ok(());
    }
    std::thread::sleep(Duration::from_secs(2));
    up().map(drop)
}

/// A secondary interface answers ARP only for its own addresses and
/// accepts replies on any path.
pub(crate) fn secondary_sysctls(settings: &Settings, name: &str) -> Result<()> {
    let dir = settings.paths.proc_dir.join("sys/net/ipv4/conf").join(name);
    for (key, value) in [
        ("arp_announce", "2"),
        ("rp_filter", "0"),
        ("arp_filter", "0"),
    ] {
        let path = dir.join(key);
        fs::write(&path, value).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// `ip ARGS`, bounded.
fn ip(args: &[&str]) -> Result<String> {
    Run::new("ip")
        .args(args)
        .limit(Duration::from_secs(30))
        .output()
}

/// Configures the interface ourselves: static addresses with `ip`, DHCP with
/// `udhcpc` running with our script (`gandi-udhcpc`).
fn direct(settings: &Settings, iface: &Iface) -> Result<()> {
    let name = &iface.name;
    let metric = iface.metric();
    for (addr, gw) in iface.v4.iter().chain(&iface.v6) {
        let _ = ip(&["addr", "replace", addr, "dev", name]);
        if let Some(g) = gw {
            let family = if g.contains(':') { "-6" } else { "-4" };
            ip(&[
                family,
                "route",
                "replace",
                "default",
                "via",
                g,
                "dev",
                name,
                "metric",
                &metric.to_string(),
            ])?;
        }
    }
    for rule in routes::rules_of(iface) {
        for cmd in rule.ip_up(name) {
            let args: Vec<&str> = cmd.iter().map(String::as_str).collect();
            match ip(&args) {
                // The first delete of a rule not there yet.
                Err(_) if args.get(2) == Some(&"del") => {}
                other => {
                    other?;
                }
            }
        }
    }
    if iface.dhcp4 {
        fs::create_dir_all(&settings.paths.run_dir)?;
        let script = run_dir_file(settings, "gandi-udhcpc");
        let exe = std::env::current_exe().context("finding our own executable")?;
        if fs::read_link(&script).ok().as_deref() != Some(exe.as_path()) {
            let _ = fs::remove_file(&script);
            std::os::unix::fs::symlink(&exe, &script)?;
        }
        let pid = run_dir_file(settings, &format!("udhcpc-{name}.pid"));
        stop_udhcpc(&pid);
        // Backgrounds itself once a lease is bound (or, with -b, after five
        // tries) and renews the lease afterwards. Its output is not ours to
        // wait for: it keeps running.
        Run::new("udhcpc")
            .args(["-i", name, "-b", "-t", "5", "-T", "3", "-p"])
            .arg(&pid)
            .arg("-s")
            .arg(&script)
            .env("GANDI_METRIC", metric.to_string())
            .limit(Duration::from_secs(60))
            .output()?;
        log::info!("{name}: DHCP client started");
    }
    Ok(())
}

fn stop_udhcpc(pid_file: &Path) {
    if let Some(pid) = fs::read_to_string(pid_file)
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
        && pid > 1
        && fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "udhcpc")
    {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    let _ = fs::remove_file(pid_file);
}

/// The `udhcpc` script (our binary, through a link named `gandi-udhcpc`):
/// applies a lease with `ip`, the default route with the interface's
/// metric; resolvers are left to bootstrap.
pub fn udhcpc_event(event: &str) -> Result<Ended> {
    let env = |k: &str| std::env::var(k).unwrap_or_default();
    let name = env("interface");
    if !valid_iface(&name) {
        bail!("udhcpc gave no valid interface");
    }
    match event {
        "deconfig" => {
            ip(&["-4", "addr", "flush", "dev", &name])?;
        }
        "bound" | "renew" => {
            let lease = env("ip");
            let mask = env("mask");
            if lease.parse::<std::net::Ipv4Addr>().is_err()
                || mask.parse::<u8>().map_or(true, |m| m > 32)
            {
                bail!("udhcpc gave a bad lease: ip={lease:?} mask={mask:?}");
            }
            ip(&["addr", "replace", &format!("{lease}/{mask}"), "dev", &name])?;
            let metric = env("GANDI_METRIC");
            let metric = if metric.is_empty() {
                "1024".to_string()
            } else {
                metric
            };
            if let Some(router) = env("router").split_whitespace().next()
                && router.parse::<std::net::Ipv4Addr>().is_ok()
            {
                ip(&[
                    "-4", "route", "replace", "default", "via", router, "dev", &name, "metric",
                    &metric,
                ])?;
            }
            log::info!("{name}: DHCP lease {lease}/{mask}");
        }
        other => log::info!("{name}: DHCP {other}"),
    }
    Ok(Ended::Ok)
}

/// `gandi-vm iface --remove IFACE`: what `gandi-iface@IFACE` runs when it
/// stops. Stops the interface's DHCP client of our own; when the NIC is
/// gone (unplugged), also removes what was generated for it. A NIC still
/// present keeps its files: the unit also stops at every shutdown, and
/// removing them then would leave the next boot without the interface's
/// configuration (and drop the admin's edits of it) until bootstrap
/// writes it again, if it can.
pub fn detach(settings: &Settings, root: &Path, name: &str) -> Result<Ended> {
    if !valid_iface(name) {
        bail!("{name:?} is not an interface name");
    }
    stop_udhcpc(&run_dir_file(settings, &format!("udhcpc-{name}.pid")));
    // Asked of the kernel: /sys/class/net lists the interfaces of our
    // network namespace.
    let present = fs::symlink_metadata(settings.paths.sys_dir.join("class/net").join(name)).is_ok();
    if present {
        log::info!("{name}: still present (a shutdown or a stop): its network files kept");
        return Ok(Ended::Ok);
    }
    // Renamed (`ip link set NAME name OTHER`): the unit of its old name
    // stops, the NIC is there, and its file (matched by its MAC) still
    // configures it.
    if let Some(now) = boot::renamed(settings, name) {
        log::info!("{name}: renamed {now}: its network files kept");
        return Ok(Ended::Ok);
    }
    boot::forget(settings);
    let tree = Tree::open(root)?;
    let had = |stack| tree.lstat(network::file_of(stack, name)).is_ok();
    let (had_networkd, had_netplan) = (had(Stack::Networkd), had(Stack::Netplan));
    let removed = {
        let mut ledger = Ledger::load(&tree, &settings.paths.state_dir);
        let r = network::forget(&tree, &mut ledger, name)?;
        ledger.save(&tree)?;
        r
    };
    if removed {
        log::info!("{name}: its network files removed");
        if had_netplan && way(&tree) == Way::Netplan {
            let _ = netplan_generate();
        }
        if (had_networkd || had_netplan) && tree.exists("/run/systemd/netif/state") {
            let _ = networkd_reload(None);
        }
    }
    // Its source rules outlive it (a rule names no interface): ours whose
    // address no interface has any more go.
    drop_stale_rules();
    Ok(Ended::Ok)
}

/// Removes our source rules (priorities 30002 to 30199, our shape) whose address no
/// interface has (`ip -j rule` and `ip -j addr`; nothing when `ip` cannot
/// say).
fn drop_stale_rules() {
    let json =
        |args: &[&str]| -> Option<serde_json::Value> { serde_json::from_str(&ip(args).ok()?).ok() };
    let Some(addrs) = json(&["-j", "addr", "show"]) else {
        return;
    };
    let have: Vec<&str> = addrs
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| l.get("addr_info")?.as_array())
        .flatten()
        .filter_map(|a| a.get("local")?.as_str())
        .collect();
    for family in ["-4", "-6"] {
        let Some(rules) = json(&[family, "-j", "rule", "show"]) else {
            continue;
        };
        for rule in rules.as_array().into_iter().flatten() {
            let prio = rule.get("priority").and_then(|p| p.as_u64());
            let src = rule.get("src").and_then(|s| s.as_str());
            // `srclen` is shown for a prefix, not for a full-length source.
            let full = rule
                .get("srclen")
                .and_then(|l| l.as_u64())
                .is_none_or(|l| l == 32 || l == 128);
            let table = rule.get("table").and_then(|t| t.as_str()).unwrap_or("");
            let suppress = rule.get("suppress_prefixlen").and_then(|v| v.as_u64());
            if let (Some(p), Some(src)) = (prio, src)
                && u32::try_from(p).is_ok_and(|p| routes::ours(p, full, table, suppress))
                && !have.contains(&src)
            {
                let p = p.to_string();
                match ip(&[family, "rule", "del", "from", src, "priority", &p]) {
                    Ok(_) => log::info!("source rule from {src} (priority {p}) removed"),
                    Err(e) => log::warn!("{e:#}"),
                }
            }
        }
    }
}

// ---- multiqueue, through the ethtool ioctl

pub mod boot;
#[cfg(test)]
mod tests;
