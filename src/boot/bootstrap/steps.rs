//! The platform's values applied, one step per element: each value checked
//! against the ledger (applied when new), then the network, the user, the
//! password, the keys, the hostname and the resolvers.

use super::*;

/// The problems of one field, for its step's detail.
pub(super) fn problems_of(config: &Config, prefix: &str) -> Option<String> {
    let list: Vec<String> = config
        .problems_at(prefix)
        .iter()
        .map(ToString::to_string)
        .collect();
    (!list.is_empty()).then(|| list.join("; "))
}

/// Applies one value with the ledger: when it is new (or was never
/// applied), `apply` runs and the value is recorded; otherwise it is kept.
pub(super) fn when_new(
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

pub(super) fn apply_config(
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
                let (c, group) = apply::create_user(tree, login, &settings.paths.state_dir)?;
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
    // What each NIC's unit would do at the coldplug, done here where it is
    // all there is (one process less a boot).
    if opts.live() && plugins::any(&settings.paths.bootstrap_dir) {
        // They run after this step and may change what the units do (a
        // post-iface-attach hook installed, the network stack changed).
        crate::hotplug::iface::boot::clear(settings);
        rec.skip(
            "nics",
            &format!(
                "{} holds plugins, which may change the network: each NIC's unit runs",
                settings.paths.bootstrap_dir.display()
            ),
        );
    } else if opts.live() {
        rec.step("nics", || {
            crate::hotplug::iface::boot::prepare(settings, tree)
        });
    } else {
        rec.skip("nics", "offline");
    }
}

/// eth0's static public IPv4 address, named with the hostname in
/// `/etc/hosts` (as the platform's script writes it).
pub(super) fn eth0_address(config: &Config) -> Option<std::net::IpAddr> {
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
pub(super) fn resolvers_of(tree: &Tree, config: &Config) -> Vec<std::net::IpAddr> {
    let id = tree.read_string("/etc/machine-id").unwrap_or_default();
    let seed = match id.trim() {
        "" | "uninitialized" => config.hostname.clone().unwrap_or_default(),
        id => id.to_string(),
    };
    apply::choose_resolvers(&config.nameservers, config.ipv6_only(), &seed)
}

/// Writes the network file of each interface whose platform value is new,
/// removes ours of interfaces no longer given, and says what it did for each.
pub(super) fn network_step(
    settings: &Settings,
    tree: &Tree,
    ledger: &mut Ledger,
    config: &Config,
    live: bool,
) -> Result<Done> {
    let stack = network::detect_stack(tree);
    let mut ifaces = network::interfaces(config, settings.source_routing);
    // The names the NICs have (vif N is the Nth NIC in bus order, or the
    // one with its MAC): ifupdown's stanzas and our files name them.
    // Offline, `ethN`.
    if live {
        let order = network::names::bus_order(&settings.paths.sys_dir);
        network::name_live(&mut ifaces, &order, &settings.paths.sys_dir);
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
    // netplan's generator ran before us, on the files as they were: the
    // network files it renders are made again before the network starts.
    let mut bad = Vec::new();
    if stack == network::Stack::Netplan
        && live
        && change == Change::Changed
        && let Err(e) = crate::base::runner::Run::new("netplan")
            .arg("generate")
            .limit(std::time::Duration::from_secs(60))
            .output()
    {
        bad.push(format!("{e:#}"));
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
