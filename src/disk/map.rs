//! The map's lookup: the checks of a key, the choice among candidates and
//! the entry (printed by `cmd::map`).
//!
//! autofs runs it on every lookup of `ROOT/KEY` and waits for it with no
//! time limit, so it reads only files that never wait on a disk (sysfs, the
//! mount table, udev's database, our records); a direct probe is bounded.
//!
//! KEY is matched against filesystem labels, then kernel names, then
//! filesystem UUIDs, and a disk is served under one key only: its label
//! when the label leads to it, else its kernel name (another of its names
//! is refused, naming that path). On a match one line
//! `-fstype=TYPE,OPTIONS :DEVICE` goes to stdout and the exit status is 0;
//! otherwise stdout stays empty, the reason goes to stderr (autofs logs it)
//! and the status is non-zero.

use crate::base::settings::Settings;
use crate::disk::keylinks;
use crate::disk::scan::Scan;
use crate::kernel::device::Device;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use thiserror::Error;

/// Why a lookup serves nothing.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum MapError {
    #[error("refusing key {0}")]
    BadKey(String),
    #[error("automatic mounting is disabled (CONFIG_ALLOW_MOUNT=0)")]
    Disabled,
    #[error("no data disk has the label, name or UUID {0:?}")]
    NoMatch(String),
    #[error("{name} is not served: {reason}")]
    Excluded { name: String, reason: String },
    #[error("{name} is already mounted at {at}")]
    Mounted { name: String, at: String },
    #[error("{name} is served at {at} only (one path per disk)")]
    Elsewhere { name: String, at: String },
    #[error("{0} cannot be written in an autofs map entry")]
    UnsafeEntry(String),
    #[error("{0}")]
    System(String),
}

/// A served lookup.
#[derive(Debug)]
pub struct Answer {
    pub device: Device,
    /// The map entry, without the newline.
    pub entry: String,
    /// Set when the key was ambiguous.
    pub warning: Option<String>,
}

/// Checks that `key` is a name a user could mean for a disk. Returns the
/// key as text.
pub fn check_key(key: &OsStr) -> Result<&str, MapError> {
    let bytes = key.as_bytes();
    let shown = format!(
        "{:?}",
        String::from_utf8_lossy(&bytes[..bytes.len().min(64)])
    );
    let bad = |why: &str| Err(MapError::BadKey(format!("{shown}: {why}")));
    if bytes.is_empty() {
        return bad("empty");
    }
    if bytes.len() > 255 {
        return bad("longer than 255 bytes");
    }
    let Ok(text) = std::str::from_utf8(bytes) else {
        return bad("not UTF-8");
    };
    if text.starts_with('.') {
        return bad("starts with a dot");
    }
    if text.starts_with('-') {
        return bad("starts with a dash");
    }
    if text.chars().any(|c| c.is_control()) {
        return bad("holds control characters");
    }
    if let Some(c) = text
        .chars()
        .find(|c| matches!(c, '/' | '*' | '$' | '&' | '\\'))
    {
        return bad(&format!("holds {c:?}"));
    }
    Ok(text)
}

/// Characters allowed in the device path of a map entry: autofs expands `$`
/// and `&`, and `\` quotes; blanks split the entry.
fn safe_location(path: &str) -> bool {
    path.starts_with('/')
        && path
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._+-@".contains(c))
}

/// Resolves `key` to the map entry of one device.
///
/// First from the index by key ([`Scan::for_key`]): when it names the
/// key's disks and the kernel confirms them, the lookup reads what concerns
/// them and not every block device of the machine. Whatever that scan does
/// not serve (a refusal, a key it does not know, an index it cannot trust)
/// is decided again by a scan of every device, which also sees the devices
/// not recorded yet; so a refusal, and a disk the index does not know,
/// are answered as before. While udev has events queued, the lookup scans
/// every device at once.
pub fn lookup(settings: &Settings, key: &OsStr) -> Result<Answer, MapError> {
    let key = check_key(key)?;
    if !settings.allow_mount {
        return Err(MapError::Disabled);
    }
    // While udev handles events, a disk may be attached and not recorded
    // yet: one that answers to the key before a recorded one (by label,
    // or first in the kernel's order) is seen only by the full scan.
    if !udev_busy(settings)
        && let Some(scan) = Scan::for_key(settings, key, |n, l, u| answers_to(key, n, l, u))
        && let Ok(decided) = serve(settings, &scan, key)
    {
        return decided;
    }
    let scan = Scan::new(settings).map_err(|e| MapError::System(format!("{e:#}")))?;
    serve(settings, &scan, key)?
}

/// Whether udev has events queued (`/run/udev/queue`, beside its
/// database, exists while it has): one `stat`, which never waits.
fn udev_busy(settings: &Settings) -> bool {
    settings
        .paths
        .udev_data_dir
        .parent()
        .is_some_and(|run| std::fs::symlink_metadata(run.join("queue")).is_ok())
}

/// What [`serve`] decided once it had chosen a disk and made its key link
/// (`Ok`): final, whatever the scan.
type Served = Result<Answer, MapError>;

/// The lookup of `key` on `scan`. An `Err` is a refusal before anything
/// was done (no key link made, no growth started): from a scan of one
/// key's devices, the caller asks a scan of every device.
fn serve(settings: &Settings, scan: &Scan, key: &str) -> Result<Served, MapError> {
    // Match on the records' index (one file for all devices) and, for the
    // devices it does not know, udev's entries; then read in full, and
    // check, only the devices that matched and those nothing knows yet
    // (probed, bounded).
    let wanted = scan.quick_match(|name, label, uuid| answers_to(key, name, label, uuid));
    let devices = scan.describe(&wanted);
    // A growth its grower left undone (killed, without systemd to start it
    // again): started again, without waiting (by a scan of one key's
    // devices only once it serves, so that no growth starts twice).
    if scan.is_complete() {
        crate::disk::adopt::adopt_left(settings, &devices);
    }
    let root = settings.disk_root.display().to_string();
    let (device, warning) = match choose(&devices, key, &root) {
        Ok(found) => found,
        Err(MapError::NoMatch(_))
            if scan.is_complete()
                && let Some(gone) = gone_at(scan, settings, key) =>
        {
            return Err(gone);
        }
        Err(e) => return Err(e),
    };
    // One key per disk: its label when the label leads to it, else its
    // kernel name. Another spelling (its UUID in any case, the kernel name
    // of a labelled disk) is refused and names the path to use, so no one
    // can mount a disk first under another key and keep the admin's path
    // from it for the mount's life.
    let by_label = device.fs.label.as_deref() == Some(key);
    let canonical = if by_label {
        key.to_string()
    } else {
        match device.fs.label.as_deref() {
            Some(label) if check_key(OsStr::new(label)).is_ok() => {
                if label_leads_to(settings, scan, label, &device.name) {
                    label.to_string()
                } else {
                    device.name.clone()
                }
            }
            _ => device.name.clone(),
        }
    };
    if key != canonical {
        return Err(MapError::Elsewhere {
            name: device.name.clone(),
            at: settings.disk_root.join(&canonical).display().to_string(),
        });
    }
    // Mounted already: under another key of ours (`ROOT/NAME` while its
    // label was another disk's), the label is served all the same (a
    // second mount of one filesystem); anywhere else, it is not ours.
    let ours = |m: &std::path::PathBuf| {
        m.parent() == Some(settings.disk_root.as_path()) && m != &settings.disk_root.join(key)
    };
    if let Some(at) = device.mounts.iter().find(|m| !(by_label && ours(m))) {
        return Err(MapError::Mounted {
            name: device.name.clone(),
            at: at.display().to_string(),
        });
    }
    let dev_path = scan.dev_path(&device.name);
    if !safe_location(&dev_path.display().to_string()) {
        return Err(MapError::UnsafeEntry(dev_path.display().to_string()));
    }
    if !scan.is_complete() {
        crate::disk::adopt::adopt_left(settings, &devices);
    }
    // The entry names a link of ours for this key, not the device itself:
    // autofs keeps the answer for the key, and a release or a detach
    // removes the link, so a kept answer can never mount the disk again
    // (nor another disk that takes the same name later).
    let link = keylinks::set_key_link(settings, key, &dev_path);
    // Released, or detached and another disk attached under its name,
    // since it was described? A release writes its mark and then drops the
    // key links: with the link made, one more look closes the window (an
    // earlier release shows here, a later one drops this link).
    if !scan.still_current(device) {
        if let Ok(link) = &link {
            let _ = std::fs::remove_file(link);
        }
        return Ok(Err(MapError::Excluded {
            name: device.name.clone(),
            reason: "released or attached again while it was looked up".into(),
        }));
    }
    let location = match link {
        Ok(link) if safe_location(&link.display().to_string()) => link.display().to_string(),
        Ok(_) | Err(_) => dev_path.display().to_string(),
    };
    let fstype = device.fs.fstype.clone().unwrap_or_default();
    let entry = format!("-fstype={fstype},{} :{location}", settings.mount_params);
    Ok(Ok(Answer {
        device: device.clone(),
        entry,
        warning,
    }))
}

/// Whether the map would serve the disk `name` under its label: the label
/// leads to it among the devices that have it (from the index by key when
/// it can say, else from every device).
fn label_leads_to(settings: &Settings, scan: &Scan, label: &str, name: &str) -> bool {
    let root = settings.disk_root.display().to_string();
    let leads = |s: &Scan| {
        let same = s.quick_match(|_, l, _| l == Some(label));
        let described = s.describe(&same);
        choose(&described, label, &root).is_ok_and(|(d, _)| d.name == name)
    };
    if scan.is_complete() {
        return leads(scan);
    }
    if let Some(s) = Scan::for_key(settings, label, |n, l, u| answers_to(label, n, l, u))
        && leads(&s)
    {
        return true;
    }
    Scan::new(settings).is_ok_and(|s| leads(&s))
}

/// The refusal for a key whose disk was detached while mounted at
/// `ROOT/KEY` (only looked for when nothing matched).
fn gone_at(scan: &Scan, settings: &Settings, key: &str) -> Option<MapError> {
    let at = settings.disk_root.join(key);
    scan.gone()
        .into_iter()
        .find(|d| d.mounts.contains(&at))
        .map(|d| MapError::Excluded {
            name: d.name,
            reason: crate::kernel::device::Exclusion::Gone.to_string(),
        })
}

/// The ways a key names a disk, in the order a lookup tries them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spelling {
    Label,
    Name,
    Uuid,
}

impl Spelling {
    pub const TIERS: [Spelling; 3] = [Spelling::Label, Spelling::Name, Spelling::Uuid];

    /// Whether `key` names, this way, the disk of this kernel name, label
    /// and UUID (a UUID in any case).
    pub fn names(self, key: &str, name: &str, label: Option<&str>, uuid: Option<&str>) -> bool {
        match self {
            Spelling::Label => label == Some(key),
            Spelling::Name => name == key,
            Spelling::Uuid => uuid.is_some_and(|u| u.eq_ignore_ascii_case(key)),
        }
    }

    fn what(self) -> &'static str {
        match self {
            Spelling::Label => "label",
            Spelling::Name => "name",
            Spelling::Uuid => "UUID",
        }
    }
}

/// Whether `key` names the disk in any way (the one test of a key against
/// a disk: the index, the map's choice, `disk check` and `disk release`).
pub fn answers_to(key: &str, name: &str, label: Option<&str>, uuid: Option<&str>) -> bool {
    Spelling::TIERS
        .iter()
        .any(|s| s.names(key, name, label, uuid))
}

/// The device for `key` as the map would serve it or, failing that, the
/// first that answers to `key` and that `also` accepts (a damaged disk for
/// `disk check`, a released one for `disk release`).
pub fn find_for_admin<'d>(
    devices: &'d [Device],
    key: &str,
    root: &str,
    also: impl Fn(&Device) -> bool,
) -> Result<&'d Device, MapError> {
    match choose(devices, key, root) {
        Ok((dev, _)) => Ok(dev),
        Err(err) => devices
            .iter()
            .find(|d| {
                answers_to(key, &d.name, d.fs.label.as_deref(), d.fs.uuid.as_deref()) && also(d)
            })
            .ok_or(err),
    }
}

/// Picks the device for `key`: labels, then kernel names, then UUIDs. Within
/// a tier only served devices count; among several, the first in kernel
/// order wins and a warning names the others.
pub fn choose<'d>(
    devices: &'d [Device],
    key: &str,
    root: &str,
) -> Result<(&'d Device, Option<String>), MapError> {
    let mut first_excluded: Option<&Device> = None;
    for spelling in Spelling::TIERS {
        let what = spelling.what();
        let matches: Vec<&Device> = devices
            .iter()
            .filter(|d| spelling.names(key, &d.name, d.fs.label.as_deref(), d.fs.uuid.as_deref()))
            .collect();
        let served: Vec<&Device> = matches
            .iter()
            .copied()
            .filter(|d| d.excluded.is_none())
            .collect();
        if first_excluded.is_none() {
            first_excluded = matches.iter().copied().find(|d| d.excluded.is_some());
        }
        if let Some(&pick) = served.first() {
            let warning = (served.len() > 1).then(|| {
                let others: Vec<String> = served[1..]
                    .iter()
                    .map(|d| format!("{root}/{}", d.name))
                    .collect();
                format!(
                    "{} devices have the {what} {key:?}: serving {}; the others are at {}",
                    served.len(),
                    pick.name,
                    others.join(", ")
                )
            });
            return Ok((pick, warning));
        }
    }
    match first_excluded {
        Some(d) => Err(MapError::Excluded {
            name: d.name.clone(),
            reason: d
                .excluded
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
        }),
        None => Err(MapError::NoMatch(key.to_string())),
    }
}

/// The key under which `dev` is reached (its only one): its label when
/// the label leads to it, else its kernel name.
pub fn served_key(devices: &[Device], dev: &Device, root: &Path) -> Option<String> {
    if dev.excluded.is_some() {
        return None;
    }
    let root = root.display().to_string();
    [dev.fs.label.as_deref(), Some(dev.name.as_str())]
        .into_iter()
        .flatten()
        .find(|key| {
            check_key(OsStr::new(key)).is_ok()
                && choose(devices, key, &root).is_ok_and(|(d, _)| d.name == dev.name)
        })
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;
    use std::os::unix::ffi::OsStringExt;

    #[test]
    fn plausible_keys() {
        for good in [
            "backups",
            "vdb1",
            "my disk",
            "data-2024",
            "0123-ABCD",
            "été",
        ] {
            assert!(check_key(OsStr::new(good)).is_ok(), "{good}");
        }
        let long = "a".repeat(256);
        for bad in [
            "", ".", "..", ".hidden", "-o", "a/b", "*", "a\nb", "x\u{7f}", "$HOME", "a&b", "a\\b",
            &long,
        ] {
            assert!(
                matches!(check_key(OsStr::new(bad)), Err(MapError::BadKey(_))),
                "{bad:?}"
            );
        }
        let not_utf8 = OsString::from_vec(vec![0x66, 0xff]);
        assert!(check_key(&not_utf8).is_err());
        assert!(check_key(OsStr::new(&"a".repeat(255))).is_ok());
    }

    #[test]
    fn locations() {
        assert!(safe_location("/dev/vdb1"));
        assert!(safe_location("/dev/cciss/c0d0p1"));
        assert!(!safe_location("/dev/a$b"));
        assert!(!safe_location("/dev/a&b"));
        assert!(!safe_location("/dev/a\\b"));
        assert!(!safe_location("/dev/a b"));
        assert!(!safe_location("dev/vdb"));
    }
}
