//! Hostile archives generated from a model of nasty shapes (link chains of
//! any depth, links to links, links where folders were made, hard links to
//! links and to outside names, names given twice, `..` inside link targets,
//! absolute targets), run through the real `bootstrap --root` and
//! `postboot`. A canary tree beside the root holds a config of its own: it
//! is compared before and after, and watched with inotify, so that nothing
//! outside the tree is created, changed, chmodded, linked or even opened;
//! and its config is never read (its hostname never applied) nor its
//! command run.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)] // tests and benches: a failure is a panic, output is the report

mod common;

use common::fixtures::*;
use common::*;
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use proptest::prelude::*;
use std::fs;
use std::path::Path;
use std::process::Command;

#[derive(Debug, Clone)]
enum Entry {
    Dir(String),
    File(String),
    Link(String, String),
    Hard(String, String),
}

fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => Just("gandi/config".to_string()),
        1 => Just("gandi/init".to_string()),
        6 => proptest::collection::vec(prop::sample::select(vec!["a", "b", "c", "d", "config", "x"]), 1..5)
            .prop_map(|parts| format!("gandi/{}", parts.join("/"))),
    ]
}

/// Link targets that climb, chain through other links, or point at the
/// canary by an absolute name.
fn target(canary: String) -> impl Strategy<Value = String> {
    let tail = prop::sample::select(vec![
        "",
        "canary",
        "canary/config",
        "canary/secret",
        "config",
        "a/b",
        "x",
        ".",
    ]);
    prop_oneof![
        (0..9usize, tail.clone()).prop_map(|(k, t)| format!("{}{t}", "../".repeat(k))),
        (0..9usize, tail.clone()).prop_map(|(k, t)| format!("a/b/c/d/{}{t}", "../".repeat(k))),
        tail.prop_map(move |t| format!("{canary}/{}", t.trim_start_matches("canary/"))),
        prop::sample::select(vec![".", "config", "a", "a/b/c", "init"]).prop_map(str::to_string),
    ]
}

fn hard_target(canary: String) -> impl Strategy<Value = String> {
    prop_oneof![
        name(),
        Just("gandi/../canary/secret".to_string()),
        Just(format!("{canary}/secret")),
        Just("etc/shadow".to_string()),
    ]
}

/// A chain that climbs out through links that each look harmless: a link
/// deep in the tree that climbs back up, then links and hard links whose
/// names go through it (the attack of the issue, and its variants).
fn gadget() -> impl Strategy<Value = Vec<Entry>> {
    // `gandi/a/b/c/d` climbing 3 levels lands on the tree's top: most
    // chains are built on that, some on other depths.
    let climb = prop_oneof![3 => Just(3usize), 1 => 0..6usize];
    let tail = prop::sample::select(vec![
        "canary/config",
        "canary",
        "canary/secret",
        "config",
        "",
    ]);
    (
        climb,
        prop::sample::select(vec![
            "gandi/config",
            "gandi/config",
            "gandi/e",
            "gandi/init",
        ]),
        1..5usize,
        tail,
        prop::sample::select(vec!["canary/secret", "canary/config", "config"]),
        any::<bool>(),
    )
        .prop_map(|(m, via, k, tail, hard_tail, hard)| {
            chain(m, via, k, tail, hard.then_some(hard_tail))
        })
}

/// The chain: `gandi/a/b/c/d` climbing `m` levels, `via` through it
/// climbing `k` more to `tail`, and maybe hard links through `via`.
fn chain(m: usize, via: &str, k: usize, tail: &str, hard: Option<&str>) -> Vec<Entry> {
    let mut v = vec![
        Entry::Link(
            "gandi/a/b/c/d".into(),
            "../".repeat(m).trim_end_matches('/').to_string(),
        ),
        Entry::Link(
            via.to_string(),
            format!("a/b/c/d/{}{tail}", "../".repeat(k)),
        ),
    ];
    if let Some(h) = hard {
        v.push(Entry::Hard("gandi/h".into(), format!("{via}/{h}")));
        v.push(Entry::Hard("gandi/config".into(), format!("{via}/{h}")));
    }
    v
}

fn entries(canary: String) -> impl Strategy<Value = Vec<Entry>> {
    let entry = prop_oneof![
        1 => name().prop_map(Entry::Dir),
        3 => name().prop_map(Entry::File),
        4 => (name(), target(canary.clone())).prop_map(|(n, t)| Entry::Link(n, t)),
        2 => (name(), hard_target(canary)).prop_map(|(n, t)| Entry::Hard(n, t)),
    ];
    let random = proptest::collection::vec(entry, 0..8);
    (proptest::option::of(gadget()), random, any::<bool>()).prop_map(|(g, mut r, first)| {
        let g = g.unwrap_or_default();
        if first {
            [g, r].concat()
        } else {
            r.extend(g);
            r
        }
    })
}

fn archive(entries: &[Entry]) -> Vec<u8> {
    let inner = br#"{"vm_hostname": "inside"}"#;
    let mut blocks = Vec::new();
    for e in entries {
        blocks.extend(match e {
            Entry::Dir(n) => raw_entry(&format!("{n}/"), b'5', "", b""),
            Entry::File(n) => raw_entry(n, b'0', "", inner),
            Entry::Link(n, t) => raw_entry(n, b'2', t, b""),
            Entry::Hard(n, t) => raw_entry(n, b'1', t, b""),
        });
    }
    with_end(blocks)
}

/// Watches every folder of `dir` for any access, open or change (the
/// folders are listed first: listing one that is watched is an event).
fn watch(dir: &Path) -> Inotify {
    fn dirs(d: &Path, out: &mut Vec<std::path::PathBuf>) {
        out.push(d.to_path_buf());
        for e in fs::read_dir(d).unwrap().flatten() {
            if e.file_type().unwrap().is_dir() {
                dirs(&e.path(), out);
            }
        }
    }
    let mut all = Vec::new();
    dirs(dir, &mut all);
    let ino = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC).unwrap();
    for d in all {
        ino.add_watch(&d, AddWatchFlags::IN_ALL_EVENTS).unwrap();
    }
    ino
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 192,
        rng_seed: proptest::test_runner::RngSeed::Fixed(11),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

#[test]
fn nothing_outside_the_tree_is_touched_whatever_the_archive() {
    if !system_test(&["mkswap"]) {
        return;
    }
    // The canary's absolute path differs per case; the strategy needs one
    // known in advance: a fixed place per test run, made fresh per case.
    let base = tempdir();
    let canary_path = base.path().join("canary");
    let mut runner = proptest::test_runner::TestRunner::new(config());
    // The issue's own archives, then the generated ones.
    let fixed = [
        chain(3, "gandi/config", 3, "canary/config", None),
        chain(3, "gandi/e", 3, "", Some("canary/config")),
        chain(3, "gandi/e", 3, "canary", Some("secret")),
    ];
    let strategy = prop_oneof![
        1 => prop::sample::select(fixed.to_vec()),
        6 => entries(canary_path.display().to_string()),
    ];
    let result = runner.run(&strategy, |entries| {
        let _ = fs::remove_dir_all(base.path().join("case"));
        let _ = fs::remove_dir_all(&canary_path);
        let case = base.path().join("case");
        fs::create_dir_all(&case).unwrap();
        let root = root_tree(&case, false);
        // The root is case/root; the canary sits two levels up from
        // root/gandi, where climbing links lead.
        fs::create_dir_all(canary_path.join("sub")).unwrap();
        let marks = base.path().join("marks");
        fs::create_dir_all(&marks).unwrap();
        let mark = marks.join("outer");
        fs::write(
            canary_path.join("config"),
            format!(
                r#"{{"vm_hostname": "hijacked", "vm_conf": {{"run": "touch {}"}}}}"#,
                mark.display()
            ),
        )
        .unwrap();
        fs::write(canary_path.join("secret"), "secret").unwrap();
        fs::write(canary_path.join("sub/file"), "f").unwrap();
        // Where the relative climbs of the model end up.
        let _ = std::os::unix::fs::symlink(&canary_path, case.join("canary"));
        let settings = case.join("gandi.conf");
        root_settings(&settings, &[]);
        let img = image(&case, "swap.img", &archive(&entries), None);
        let before = full_snapshot(&canary_path);
        let ino = watch(&canary_path);

        let boot = Command::new(BIN)
            .args(["bootstrap", "--kernel-release", RELEASE, "--root"])
            .arg(&root)
            .arg("--device")
            .arg(&img)
            .env("GANDI_CONFIG", &settings)
            .output()
            .unwrap();
        let live = case.join("live.conf");
        fs::write(
            &live,
            format!(
                "GANDI_DIR={}\nGANDI_STATE_DIR={}\nGANDI_RUN_DIR={}\n",
                root.join("gandi").display(),
                case.join("state").display(),
                case.join("run").display()
            ),
        )
        .unwrap();
        let post = Command::new(BIN)
            .arg("postboot")
            .env("GANDI_CONFIG", &live)
            .env_remove("JOURNAL_STREAM")
            .output()
            .unwrap();

        let events = ino.read_events().unwrap_or_default();
        prop_assert!(
            events.is_empty(),
            "the canary was touched: {:?}\n{}\n{}",
            events
                .iter()
                .map(|e| (e.mask, e.name.clone()))
                .collect::<Vec<_>>(),
            stderr(&boot),
            stderr(&post)
        );
        prop_assert_eq!(full_snapshot(&canary_path), before);
        prop_assert!(!mark.exists(), "the canary's command ran");
        let hostname = fs::read_to_string(root.join("etc/hostname")).unwrap_or_default();
        prop_assert!(
            !hostname.contains("hijacked"),
            "the canary's config was read"
        );
        // No staging folder is left behind.
        let left: Vec<_> = fs::read_dir(&root)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(".gandi"))
            .collect();
        prop_assert!(left.is_empty(), "staging left: {:?}", left);
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}
