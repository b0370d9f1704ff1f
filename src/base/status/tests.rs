use super::*;

#[test]
fn utc_dates() {
    assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
    assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
    assert_eq!(utc(1_796_187_025), "2026-12-02 04:50:25 UTC");
}

#[test]
fn one_step_is_one_step() {
    let mut s = Stage::default();
    s.steps.push(Step {
        step: "x".into(),
        result: Outcome::Changed,
        detail: String::new(),
        us: 1,
    });
    assert_eq!(s.summary(), "ok (1 step)");
}

/// The stage's state on disk beneath `root`.
fn on_disk(root: &std::path::Path) -> Stage {
    let all: BTreeMap<String, Stage> =
        serde_json::from_slice(&std::fs::read(root.join("run/gandi/status.json")).unwrap())
            .unwrap();
    all["config"].clone()
}

#[test]
fn quick_steps_are_written_at_the_end_failed_and_slow_ones_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let tree = Tree::open(dir.path()).unwrap();
    let settings = Settings::default();
    let mut rec = Recorder::start(&tree, &settings, "config");
    // As it starts: running, no step.
    let s = on_disk(dir.path());
    assert!(s.running && s.steps.is_empty(), "{s:?}");
    rec.step("quick", || Ok(Done::changed("")));
    rec.skip("off", "CONFIG_X=0");
    assert!(on_disk(dir.path()).steps.is_empty());
    // A failure is written at once, with the steps before it.
    rec.step("bad", || Ok(Done::failed("no")));
    let names = |s: Stage| s.steps.into_iter().map(|s| s.step).collect::<Vec<_>>();
    assert_eq!(names(on_disk(dir.path())), ["quick", "off", "bad"]);
    // A step that ends long enough after the last write is written.
    rec.step("slow", || {
        std::thread::sleep(SAVE_EVERY);
        Ok(Done::unchanged(""))
    });
    assert_eq!(names(on_disk(dir.path())).len(), 4);
    rec.step("last", || Ok(Done::changed("")));
    assert_eq!(names(on_disk(dir.path())).len(), 4);
    // As it ends: every step, no longer running.
    let ended = rec.finish(&tree, &settings, "config").unwrap();
    assert_eq!(ended, Ended::Failed);
    let s = on_disk(dir.path());
    assert!(!s.running && s.finished > 0, "{s:?}");
    assert_eq!(names(s), ["quick", "off", "bad", "slow", "last"]);
}

#[test]
fn a_flush_and_an_early_return_write_the_steps() {
    let dir = tempfile::tempdir().unwrap();
    let tree = Tree::open(dir.path()).unwrap();
    let settings = Settings::default();
    let names = |s: Stage| s.steps.into_iter().map(|s| s.step).collect::<Vec<_>>();
    {
        let mut rec = Recorder::start(&tree, &settings, "config");
        rec.step("quick", || Ok(Done::changed("")));
        assert!(on_disk(dir.path()).steps.is_empty());
        // Before a plugin runs.
        rec.flush();
        assert_eq!(names(on_disk(dir.path())), ["quick"]);
        rec.step("after", || Ok(Done::unchanged("")));
        // Returned early (`?`): dropped without `finish`.
    }
    let s = on_disk(dir.path());
    assert!(s.running, "shown cut short once its process is gone: {s:?}");
    assert_eq!(names(s), ["quick", "after"]);
}
