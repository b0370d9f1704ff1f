//! What was last applied of each platform value, so that a value is applied
//! when it is new and not at every boot over what the admin changed since
//! (`GANDI_STATE_DIR/applied.json`, root-only).
//!
//! Only fingerprints are kept (SHA-256 of the field's name and value): the
//! file says whether a value changed, never what it was (the password hash
//! is a secret). A missing file means a first boot: everything is applied.
//! A damaged one cannot tell what was applied, nor what the admin changed
//! since: nothing is applied over what the system has, the damage is
//! reported, the damaged file is kept beside (`applied.json.damaged`), and
//! the values given now are recorded as applied, so that a later change is
//! applied again.
//!
//! The file also names the instance (the VM) it was written for: a VM made
//! from another's disk (a custom image) is a new instance, and gets the
//! platform's values as at a first boot.

use crate::base::tree::{Tree, WriteOpts};
use anyhow::Result;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const FORMAT: &str = "gandi-vm applied values 1";

/// How long a process waits for the ledger's lock.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(120);

pub struct Ledger {
    /// Held while the ledger is in use: stages and the hot-plug path read,
    /// change and write it one at a time.
    _lock: Option<std::fs::File>,
    /// Set when the lock could not be had: nothing is written.
    read_only: bool,
    path: PathBuf,
    values: BTreeMap<String, String>,
    /// Why the file could not be read, when it was damaged.
    pub damaged: Option<String>,
    /// The values the file holds (as read, or as last written).
    saved: BTreeMap<String, String>,
    /// The instance the file was written for.
    instance: Option<String>,
    saved_instance: Option<String>,
    /// Set when the file was damaged: every value is kept as the system
    /// has it, and recorded here as applied when it is asked about.
    kept: std::cell::RefCell<BTreeMap<String, String>>,
    /// Written again after a damage, and not yet seen by postboot: which
    /// of the customer's commands ran cannot be told, so none runs again
    /// until the config changes.
    recovered: bool,
    saved_recovered: bool,
}

/// The fingerprint of `value` for `field`.
pub fn fingerprint(field: &str, value: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(field.as_bytes());
    h.update([0u8]);
    h.update(value);
    crate::base::fingerprint::hex(&h.finalize()[..16])
}

impl Ledger {
    /// Reads the ledger at `state_dir/applied.json` beneath `tree`, taking
    /// its lock (released when the ledger is dropped).
    pub fn load(tree: &Tree, state_dir: &Path) -> Ledger {
        let path = state_dir.join("applied.json");
        let lock = tree
            .create_dirs(state_dir, 0o700)
            .and_then(|()| tree.lock_for(state_dir.join("applied.lock"), Some(LOCK_WAIT)));
        let mut ledger = Ledger {
            _lock: None,
            read_only: false,
            path,
            values: BTreeMap::new(),
            damaged: None,
            saved: BTreeMap::new(),
            instance: None,
            saved_instance: None,
            kept: Default::default(),
            recovered: false,
            saved_recovered: false,
        };
        match lock {
            Ok(Some(l)) => ledger._lock = Some(l),
            Ok(None) => {
                ledger.damaged = Some(format!(
                    "{} is held by another process for over {} s",
                    tree.shown(state_dir.join("applied.lock")).display(),
                    LOCK_WAIT.as_secs()
                ));
                ledger.read_only = true;
                return ledger;
            }
            Err(e) => {
                ledger.damaged = Some(format!("{e:#}"));
                ledger.read_only = true;
                return ledger;
            }
        }
        match tree.read_owned(&ledger.path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => ledger.damaged = Some(format!("{}: {e}", tree.shown(&ledger.path).display())),
            Ok((data, _)) => match parse(&data) {
                Some((values, instance, recovered)) => {
                    ledger.saved = values.clone();
                    ledger.values = values;
                    ledger.saved_instance = instance.clone();
                    ledger.instance = instance;
                    ledger.recovered = recovered;
                    ledger.saved_recovered = recovered;
                }
                None => {
                    ledger.damaged = Some(format!(
                        "{} is damaged: nothing is applied over what the system has \
                         (the file is kept as {}.damaged)",
                        tree.shown(&ledger.path).display(),
                        tree.shown(&ledger.path).display()
                    ))
                }
            },
        }
        ledger
    }

    /// Whether `value` differs from what was last applied to `field` (or
    /// nothing was). Never, while the file is damaged: the value is kept
    /// as the system has it, and recorded as applied.
    pub fn is_new(&self, field: &str, value: &[u8]) -> bool {
        let fp = fingerprint(field, value);
        if self.damaged.is_some() {
            self.kept.borrow_mut().insert(field.to_string(), fp);
            return false;
        }
        self.values.get(field) != Some(&fp)
    }

    /// Whether the file was damaged (or its lock could not be had): every
    /// value is kept as the system has it.
    pub fn keeps_all(&self) -> bool {
        self.damaged.is_some()
    }

    /// Whether the file was written again after a damage and postboot has
    /// not seen it since (see [`Ledger::seen_by_postboot`]).
    pub fn recovered(&self) -> bool {
        self.recovered || self.damaged.is_some()
    }

    /// Postboot has dealt with the damage.
    pub fn seen_by_postboot(&mut self) {
        self.recovered = false;
    }

    /// Takes the ledger for the instance `id`: when the file was written
    /// for another instance (a VM made from another's disk), what it
    /// records is not this VM's, and everything is applied as at a first
    /// boot. Returns whether it was another's.
    pub fn adopt_instance(&mut self, id: Option<&str>) -> bool {
        let Some(id) = id else {
            return false;
        };
        let other = self.instance.as_deref().is_some_and(|old| old != id);
        if other && self.damaged.is_none() {
            self.values.clear();
        }
        self.instance = Some(id.to_string());
        other
    }

    /// Whether anything was ever applied to `field`.
    pub fn has(&self, field: &str) -> bool {
        self.values.contains_key(field)
    }

    /// Records `value` as applied to `field`.
    pub fn set(&mut self, field: &str, value: &[u8]) {
        self.values
            .insert(field.to_string(), fingerprint(field, value));
    }

    pub fn remove(&mut self, field: &str) {
        self.values.remove(field);
    }

    /// The fields recorded under `prefix` (`iface:`), without the prefix.
    pub fn fields(&self, prefix: &str) -> Vec<String> {
        self.values
            .keys()
            .filter_map(|k| k.strip_prefix(prefix).map(str::to_string))
            .collect()
    }

    /// Whether `save` has something to write: values that differ from the
    /// file's (a field removed and set again to the same value does not
    /// count), or a damaged file to replace.
    pub fn is_changed(&self) -> bool {
        self.values != self.saved
            || self.instance != self.saved_instance
            || self.recovered != self.saved_recovered
            || self.damaged.is_some()
    }

    /// Writes the ledger when it changed (0600, in a 0700 folder).
    pub fn save(&mut self, tree: &Tree) -> Result<()> {
        if self.read_only {
            anyhow::bail!(
                "{} not written: {}",
                tree.shown(&self.path).display(),
                self.damaged.as_deref().unwrap_or("its lock is held")
            );
        }
        if !self.is_changed() {
            return Ok(());
        }
        if let Some(dir) = self.path.parent() {
            tree.create_dirs(dir, 0o700)?;
        }
        if self.damaged.is_some() {
            // What the damaged file held is kept for whoever looks into it.
            let mut aside = self.path.clone().into_os_string();
            aside.push(".damaged");
            if tree.lstat(&self.path).is_ok() {
                tree.rename(&self.path, PathBuf::from(aside))?;
            }
            let kept = std::mem::take(&mut *self.kept.borrow_mut());
            self.values.extend(kept);
            self.recovered = true;
        }
        let mut doc = serde_json::json!({
            "format": FORMAT,
            "instance": self.instance,
            "values": self.values,
        });
        if self.recovered {
            doc["recovered"] = serde_json::Value::Bool(true);
        }
        let mut text = serde_json::to_vec_pretty(&doc)?;
        text.push(b'\n');
        tree.write_atomic(
            &self.path,
            &text,
            WriteOpts {
                mode: 0o600,
                // root's on the system; the caller's when it is not root
                // (an image builder's `--root` run, the unit tests).
                owner: nix::unistd::geteuid().is_root().then_some((0, 0)),
                dir_mode: 0o700,
                keep_mode: false,
            },
        )?;
        self.saved = self.values.clone();
        self.saved_instance = self.instance.clone();
        self.saved_recovered = self.recovered;
        self.damaged = None;
        Ok(())
    }
}

/// The values, the instance and whether it was written again after a
/// damage, of a ledger's text; `None` when damaged.
fn parse(data: &[u8]) -> Option<(BTreeMap<String, String>, Option<String>, bool)> {
    let v: serde_json::Value = serde_json::from_slice(data).ok()?;
    if v.get("format")?.as_str()? != FORMAT {
        return None;
    }
    let instance = match v.get("instance") {
        None | Some(serde_json::Value::Null) => None,
        Some(i) => Some(i.as_str()?.to_string()),
    };
    let values = v
        .get("values")?
        .as_object()?
        .iter()
        .map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
        .collect::<Option<BTreeMap<_, _>>>()?;
    let recovered = v
        .get("recovered")
        .and_then(|r| r.as_bool())
        .unwrap_or(false);
    Some((values, instance, recovered))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_values_kept_values_and_damage() {
        let dir = tempfile::tempdir().unwrap();
        let t = Tree::open(dir.path()).unwrap();
        let state = Path::new("/var/lib/gandi");
        let mut l = Ledger::load(&t, state);
        assert!(l.damaged.is_none());
        assert!(l.is_new("hostname", b"a"));
        l.set("hostname", b"a");
        l.set("iface:eth0", b"x");
        l.save(&t).unwrap();
        drop(l);
        let l = Ledger::load(&t, state);
        assert!(!l.is_new("hostname", b"a"));
        assert!(l.is_new("hostname", b"b"));
        assert_eq!(l.fields("iface:"), vec!["eth0"]);
        let file = dir.path().join("var/lib/gandi/applied.json");
        let mode = std::fs::metadata(&file).unwrap();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
            0o600
        );
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(
            !text.contains("\"a\"") && text.contains("hostname"),
            "{text}"
        );
        std::fs::write(&file, "{\"format\": \"other\"}").unwrap();
        drop(l);
        let mut l = Ledger::load(&t, state);
        assert!(l.damaged.is_some());
        // Damaged: nothing is new (kept as the system has it), and what was
        // asked about is recorded as applied.
        assert!(!l.is_new("hostname", b"a"));
        assert!(l.is_changed());
        l.save(&t).unwrap();
        assert!(
            dir.path()
                .join("var/lib/gandi/applied.json.damaged")
                .exists()
        );
        drop(l);
        let l = Ledger::load(&t, state);
        assert!(l.damaged.is_none());
        assert!(!l.is_new("hostname", b"a"));
        assert!(l.is_new("hostname", b"b"));
    }

    #[test]
    fn another_instance_starts_afresh() {
        let dir = tempfile::tempdir().unwrap();
        let t = Tree::open(dir.path()).unwrap();
        let state = Path::new("/var/lib/gandi");
        let mut l = Ledger::load(&t, state);
        assert!(!l.adopt_instance(Some("a")));
        l.set("hostname", b"x");
        l.save(&t).unwrap();
        drop(l);
        let mut l = Ledger::load(&t, state);
        assert!(!l.adopt_instance(Some("a")));
        assert!(!l.is_new("hostname", b"x"));
        assert!(!l.adopt_instance(None), "unknown: the same");
        assert!(l.adopt_instance(Some("b")));
        assert!(l.is_new("hostname", b"x"));
        assert!(l.is_changed());
    }

    /// Written only when the values differ from the file's: a field removed
    /// and set again (the root keys' refresh) writes nothing.
    #[test]
    fn written_only_when_the_values_differ() {
        let dir = tempfile::tempdir().unwrap();
        let t = Tree::open(dir.path()).unwrap();
        let state = Path::new("/var/lib/gandi");
        let file = dir.path().join("var/lib/gandi/applied.json");
        let mut l = Ledger::load(&t, state);
        assert!(!l.is_changed());
        l.save(&t).unwrap();
        assert!(!file.exists(), "an empty ledger was written");
        l.set("key:root:1", b"1");
        assert!(l.is_changed());
        l.save(&t).unwrap();
        assert!(!l.is_changed());
        drop(l);
        let mut l = Ledger::load(&t, state);
        assert!(!l.is_changed());
        l.remove("key:root:1");
        assert!(l.is_changed());
        l.set("key:root:1", b"1");
        assert!(!l.is_changed());
        l.set("key:root:1", b"2");
        assert!(l.is_changed());
    }
}
