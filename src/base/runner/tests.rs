use super::*;

#[test]
fn captures_output_and_status() {
    let out = Run::new("sh")
        .args(["-c", "echo out; echo err >&2; exit 3"])
        .outcome()
        .unwrap();
    assert_eq!(out.stdout, b"out\n");
    assert_eq!(out.stderr_text(), "err");
    assert_eq!(out.code(), Some(3));
    assert_eq!(out.ended(), "exit 3");
    let msg = format!("{:#}", out.check().unwrap_err());
    assert!(msg.contains("sh -c 'echo out; echo err >&2; exit 3' failed (exit 3): err"));
}

#[test]
fn a_command_shown_redacted_never_shows_its_secret() {
    let cmd = "DB_PASSWORD=hunter2 /opt/setup.sh --token=s3cr3t";
    let shown = redacted(cmd);
    assert!(
        !shown.contains("hunter2") && !shown.contains("s3cr3t"),
        "{shown}"
    );
    assert!(shown.contains("/opt/setup.sh"), "{shown}");
    let out = Run::new("/nonexistent/sh")
        .arg("-c")
        .arg(cmd)
        .shown_as(format!("run[0] {shown}"))
        .outcome()
        .unwrap_err();
    assert!(!format!("{out:#}").contains("hunter2"), "{out:#}");
    let failed = Run::new("sh")
        .args(["-c", "exit 3", "hunter2"])
        .shown_as("run[1]")
        .outcome()
        .unwrap();
    assert!(!format!("{:#}", failed.check().unwrap_err()).contains("hunter2"));
}

#[test]
fn input_reaches_the_program() {
    let out = Run::new("cat").input(&b"hello\n"[..]).output().unwrap();
    assert_eq!(out, "hello\n");
}

#[test]
fn a_missing_program_is_named() {
    let err = Run::new("/nonexistent/tool").outcome().unwrap_err();
    assert!(format!("{err:#}").contains("/nonexistent/tool"));
}

/// `sh -c SCRIPT` within `limit`.
fn sh(script: &str, limit: Duration) -> Outcome {
    Run::new("sh")
        .args(["-c", script])
        .limit(limit)
        .outcome()
        .unwrap()
}

fn gone(pid: i32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.is_empty()
        || stat
            .rsplit_once(") ")
            .is_some_and(|(_, r)| r.starts_with('Z'))
}

#[test]
fn the_limit_kills_the_whole_group_grandchildren_included() {
    let start = Instant::now();
    let out = sh("sleep 600 & echo $!; wait", Duration::from_millis(500));
    assert!(out.status.is_none(), "{:?}", out.status);
    assert!(out.ended().contains("killed after"));
    assert!(start.elapsed() < Duration::from_secs(30));
    let pid: i32 = out.stdout_text().trim().parse().unwrap();
    let until = Instant::now() + Duration::from_secs(10);
    while !gone(pid) && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(gone(pid), "the grandchild {pid} is still alive");
}

#[test]
fn streamed_output_and_its_limit() {
    let n = Run::new("sh")
        .args(["-c", "printf 'a\\nb\\n'"])
        .stream(|r| {
            let mut s = String::new();
            r.read_to_string(&mut s)?;
            Ok(s.lines().count())
        })
        .unwrap();
    assert_eq!(n, 2);
    let err = Run::new("sh")
        .args(["-c", "echo x; sleep 600"])
        .limit(Duration::from_millis(300))
        .stream(|r| {
            let mut s = String::new();
            r.read_to_string(&mut s)?;
            Ok(s)
        })
        .unwrap_err();
    assert!(format!("{err:#}").contains("killed after"), "{err:#}");
    let err = Run::new("sh")
        .args(["-c", "echo bad >&2; exit 2"])
        .stream(|_| Ok(()))
        .unwrap_err();
    assert!(format!("{err:#}").contains("bad"), "{err:#}");
}

#[test]
fn a_background_child_holding_the_output_does_not_hold_us() {
    let start = Instant::now();
    let out = sh("sleep 3 & echo done", Duration::from_secs(60));
    assert!(out.success());
    assert_eq!(out.stdout_text(), "done\n");
    assert!(start.elapsed() < Duration::from_secs(2));
}
