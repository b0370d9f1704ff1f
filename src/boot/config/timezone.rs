//! The timezone step: the zone from the kernel command line or the
//! platform's default, checked against the zone database.

use super::*;

/// The value of `gandi=` on the kernel command line (the first one), with
/// dashes read as blanks, as the original read it.
pub fn cmdline_value(cmdline: &str) -> Option<String> {
    cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix("gandi="))
        .map(|v| v.replace('-', " "))
}

/// A zone name under zoneinfo: `Area/City`, no `..`.
pub(super) fn valid_zone(z: &str) -> bool {
    !z.is_empty()
        && !z.starts_with('/')
        && z.split('/').all(|p| !p.is_empty() && p != "." && p != "..")
        && z.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/_+-".contains(c))
}

/// What the zone should be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Zone {
    /// This zone.
    Set(String),
    /// Europe/Paris, unless a zone is already set.
    Default,
}

/// The zone for the value of `gandi=` (`None`: absent), as the original
/// decides it, with one extension first: a value holding `/` that names a
/// zone file (`exists`) is used as given.
pub fn zone_for(value: Option<&str>, exists: impl Fn(&str) -> bool) -> Zone {
    let Some(v) = value.filter(|v| !v.is_empty()) else {
        return Zone::Default;
    };
    // The dashes were read as blanks: a zone name has them back.
    let as_zone = v.replace(' ', "-");
    if as_zone.contains('/') && valid_zone(&as_zone) && exists(&as_zone) {
        return Zone::Set(as_zone);
    }
    let leading = v
        .to_ascii_lowercase()
        .chars()
        .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        .count();
    if leading >= 3 {
        if v == "cet" {
            Zone::Set(DEFAULT_TIMEZONE.into())
        } else {
            Zone::Set("Etc/UTC".into())
        }
    } else {
        // The original left the zone empty here (a bug): read as absent.
        Zone::Default
    }
}

/// Timezone from `gandi=` on the kernel command line (see [`zone_for`]).
/// `/etc/timezone` is written even when the zone file is missing;
/// `/etc/localtime` only when it exists (a link, or a copy when the admin
/// keeps a copy). A zone is applied when it is new: an admin's change
/// stays until the platform gives another zone.
pub(super) fn timezone(settings: &Settings, t: &Tree, cmdline: Option<&str>) -> Result<Done> {
    let value = cmdline.and_then(cmdline_value);
    let zoneinfo = Path::new("/usr/share/zoneinfo");
    let exists = |z: &str| t.is_file(zoneinfo.join(z));
    let zone = match zone_for(value.as_deref(), exists) {
        Zone::Set(z) => z,
        Zone::Default if t.lstat("/etc/localtime").is_ok() || t.lstat("/etc/timezone").is_ok() => {
            return Ok(Done::unchanged("set already; no zone on the command line"));
        }
        Zone::Default => DEFAULT_TIMEZONE.to_string(),
    };
    let mut ledger = Ledger::load(t, &settings.paths.state_dir);
    if !ledger.is_new("timezone", zone.as_bytes()) {
        return Ok(Done::kept(format!(
            "{zone} was applied before; left as the admin has it"
        )));
    }
    let mut change = t.write_if_changed(
        "/etc/timezone",
        format!("{zone}\n").as_bytes(),
        WriteOpts::keep(0o644),
    )?;
    let file = zoneinfo.join(&zone);
    let mut detail = zone.clone();
    if t.is_file(&file) {
        let localtime = "/etc/localtime";
        let copy = t.lstat(localtime).is_ok_and(|m| m.is_file());
        change = change.or(if copy {
            let data = t.read(&file)?;
            t.write_if_changed(localtime, &data, WriteOpts::keep(0o644))?
        } else {
            t.set_link(localtime, &file)?
        });
    } else {
        detail.push_str(&format!(
            " ({} is missing: /etc/localtime left)",
            file.display()
        ));
    }
    ledger.set("timezone", zone.as_bytes());
    ledger.save(t)?;
    Ok(Done::of(change, detail))
}
