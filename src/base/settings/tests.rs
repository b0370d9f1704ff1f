use super::*;

#[test]
fn parses_shell_style_values() {
    let raw = RawConfig::parse(
        "# comment\n\
         \n\
         CONFIG_MOTD=0\n\
         export CONFIG_CRON=1 # trailing comment\n\
         CONFIG_MOUNT_PARAMS=\"rw,nosuid\"\n\
         CONFIG_NODHCP='eth0 eth1'\n\
         GLUED=a\"b c\"'d'\n\
         ESCAPED=\"say \\\"hi\\\" \\$HOME\"\n\
         SPACE=a\\ b\n\
         EMPTY=\n\
         \x20 INDENTED=yes\n",
    );
    assert!(raw.errors.is_empty(), "{:?}", raw.errors);
    assert_eq!(raw.get("CONFIG_MOTD"), Some("0"));
    assert_eq!(raw.get("CONFIG_CRON"), Some("1"));
    assert_eq!(raw.get("CONFIG_MOUNT_PARAMS"), Some("rw,nosuid"));
    assert_eq!(raw.get("CONFIG_NODHCP"), Some("eth0 eth1"));
    assert_eq!(raw.get("GLUED"), Some("ab cd"));
    assert_eq!(raw.get("ESCAPED"), Some("say \"hi\" $HOME"));
    assert_eq!(raw.get("SPACE"), Some("a b"));
    assert_eq!(raw.get("EMPTY"), None);
    assert_eq!(raw.get("INDENTED"), Some("yes"));
}

#[test]
fn reports_malformed_lines_with_their_number_and_keeps_the_rest() {
    let raw = RawConfig::parse(
        "CONFIG_MOTD=0\n\
         this is not an assignment\n\
         1BAD=1\n\
         OPEN=\"unterminated\n\
         CMD=a b\n\
         SUB=$(reboot)\n\
         CONFIG_CRON=0\n",
    );
    let lines: Vec<usize> = raw.errors.iter().map(|e| e.line).collect();
    assert_eq!(lines, vec![2, 3, 4, 5, 6]);
    assert_eq!(raw.get("CONFIG_MOTD"), Some("0"));
    assert_eq!(raw.get("CONFIG_CRON"), Some("0"));
    assert_eq!(raw.values.len(), 2);
}

#[test]
fn last_assignment_wins() {
    let raw = RawConfig::parse("A=1\nA=2\n");
    assert_eq!(raw.get("A"), Some("2"));
}

#[test]
fn defaults_when_missing_empty_or_invalid() {
    let raw = RawConfig::parse(
        "CONFIG_ALLOW_MOUNT=\n\
         CONFIG_MOTD=maybe\n\
         CONFIG_DISK_ROOT=relative/path\n\
         CONFIG_MOUNT_PARAMS=\"rw, suid\"\n\
         UNKNOWN_KEY=whatever\n",
    );
    let s = Settings::from_raw(&raw, None);
    assert!(s.allow_mount);
    assert!(s.motd);
    assert_eq!(s.disk_root, PathBuf::from("/srv"));
    assert_eq!(s.mount_params, "rw,nosuid,nodev,noatime");
    assert_eq!(s.problems.len(), 4, "{:?}", s.problems);
    assert!(s.problems.iter().any(|p| p.starts_with("UNKNOWN_KEY:")));
    assert!(s.problems.iter().any(|p| p.starts_with("CONFIG_MOTD:")));
    assert_eq!(s.paths.run_dir, PathBuf::from("/run/gandi"));
    assert_eq!(s.nodhcp, vec!["eth0".to_string()]);
    assert_eq!(s.disk_devices.len(), 4);
    // An empty CONFIG_NODHCP excludes no interface, as in the original.
    let s = Settings::from_raw(&RawConfig::parse("CONFIG_NODHCP=\"\"\n"), None);
    assert!(s.nodhcp.is_empty());
}

#[test]
fn typed_values() {
    let raw = RawConfig::parse(
        "CONFIG_ALLOW_MOUNT=0\n\
         CONFIG_CRON=no\n\
         CONFIG_DISK_ROOT=/data/\n\
         CONFIG_DISK_DEVICES=\"loop* vd?\"\n\
         GANDI_RUN_DIR=/tmp/run\n",
    );
    let s = Settings::from_raw(&raw, None);
    assert!(!s.allow_mount);
    assert!(!s.cron);
    assert_eq!(s.disk_root, PathBuf::from("/data"));
    assert_eq!(s.disk_devices, vec!["loop*", "vd?"]);
    assert_eq!(s.paths.run_dir, PathBuf::from("/tmp/run"));
    assert!(s.problems.is_empty());
}

#[test]
fn shipped_file_parses_cleanly_and_sets_the_defaults() {
    let text = include_str!("../../../etc/default/gandi");
    let raw = RawConfig::parse(text);
    assert!(raw.errors.is_empty(), "{:?}", raw.errors);
    let shipped = Settings::from_raw(&raw, None);
    assert!(shipped.problems.is_empty(), "{:?}", shipped.problems);
    let defaults = Settings::default();
    assert_eq!(format!("{shipped:?}"), format!("{defaults:?}"));
    for key in [
        "CONFIG_MOTD",
        "CONFIG_TIMEZONE",
        "CONFIG_SYSCTL",
        "CONFIG_SSHD",
        "CONFIG_CONSOLE",
        "CONFIG_HOSTNAME",
        "CONFIG_NAMESERVER",
        "CONFIG_ALLOW_MOUNT",
        "CONFIG_CRON",
        "CONFIG_MOUNT_PARAMS",
        "CONFIG_DISK_ROOT",
        "CONFIG_NODHCP",
        "CONFIG_MULTIQUEUE",
        "CONFIG_SOURCE_ROUTING",
        "CONFIG_NETWORK",
        "GANDI_PLUGIN_DIR",
        "TEMP_DIR_CONF",
        "SYSLOG_TARGET",
        "GANDI_HOOK_DIR",
        "CONFIG_DISK_DEVICES",
        "GANDI_RUN_DIR",
        "GANDI_DIR",
        "GANDI_STATE_DIR",
        "GANDI_BOOTSTRAP_DIR",
    ] {
        assert!(
            raw.values.contains_key(key),
            "{key} missing from etc/default/gandi"
        );
    }
}

/// Every key the reader knows (each is a string literal in settings.rs) is
/// in the table of keys, in the shipped file (set, or commented with its
/// default) and in the README, whose table is the table of keys as it is.
#[test]
fn every_key_is_shipped_and_documented() {
    let source = include_str!("../settings.rs");
    let shipped = include_str!("../../../etc/default/gandi");
    let readme = include_str!("../../../README.md");
    let mut keys: Vec<&str> = source
        .split('"')
        .skip(1)
        .step_by(2)
        .filter(|s| {
            (s.starts_with("CONFIG_") || s.starts_with("GANDI_"))
                && s.bytes().all(|b| b.is_ascii_uppercase() || b == b'_')
        })
        .collect();
    keys.sort_unstable();
    keys.dedup();
    assert!(keys.len() > 20, "{keys:?}");
    for key in keys {
        if key == "GANDI_CONFIG" {
            // The environment variable naming the file itself.
            assert!(readme.contains(key));
            continue;
        }
        assert!(known_key(key), "{key} missing from the table of keys");
        assert!(
            shipped.contains(&format!("{key}=")),
            "{key} missing from etc/default/gandi"
        );
    }
    assert!(
        readme.contains(&keys_table()),
        "the README's settings table is not the table of keys:\n{}",
        keys_table()
    );
}

#[test]
fn unknown_keys_are_reported() {
    let s = Settings::from_raw(&RawConfig::parse("CONFIG_MOTD=1\nCONFIG_MOTDD=0\n"), None);
    assert_eq!(s.problems.len(), 1, "{:?}", s.problems);
    assert!(s.problems[0].starts_with("CONFIG_MOTDD: not a setting"));
}
