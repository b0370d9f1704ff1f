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
