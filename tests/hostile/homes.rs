//! Homes: what their users may put where root reads and writes the
//! platform's keys. Nothing there is followed, waited on or trusted; the
//! links root made to reach a home are.

use super::common::fixtures::*;
use super::common::*;
use super::*;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};

/// A tree with alice (UID 1000) already there, and a config giving her
/// and root the platform's key.
fn with_alice(home: &str) -> (Env, PathBuf, Canary, PathBuf) {
    let env = Env::new();
    root_settings(&env.config(), &[]);
    let root = root_tree(env.path(), false);
    let canary = Canary::beside(&root);
    let add = |file: &str, line: &str| {
        let p = root.join(file);
        let mut t = fs::read_to_string(&p).unwrap();
        t.push_str(line);
        fs::write(p, t).unwrap();
    };
    add(
        "etc/passwd",
        &format!("alice:x:1000:1000::{home}:/bin/bash\n"),
    );
    add("etc/shadow", "alice:!:19000:0:99999:7:::\n");
    add("etc/group", "alice:x:1000:\n");
    let config =
        format!(r#"{{"vm_conf": {{"user": "alice", "ssh_key": "{PLATFORM_KEY}\n{USER_KEY}"}}}}"#);
    let img = image(
        env.path(),
        "swap.img",
        &tar(&[("gandi/config", config.as_bytes(), 0o600)]),
        None,
    );
    (env, root, canary, img)
}

const LIMIT: Duration = Duration::from_secs(30);

#[test]
fn a_fifo_in_a_home_never_holds_the_boot() {
    if !system_test(&["mkswap", "blkid"]) {
        return;
    }
    for place in [
        "home/alice/.ssh/authorized_keys",
        "home/alice/.ssh",
        "root/.ssh/authorized_keys",
    ] {
        let (env, root, canary, img) = with_alice("/home/alice");
        fs::create_dir_all(root.join("home/alice")).unwrap();
        fifo(&root.join(place));
        let started = Instant::now();
        let out = bounded(
            Command::new(bin())
                .args(["bootstrap", "--kernel-release", RELEASE, "--root"])
                .arg(&root)
                .arg("--device")
                .arg(&img)
                .env("GANDI_CONFIG", env.config())
                .env_remove("JOURNAL_STREAM"),
            LIMIT,
        );
        assert!(started.elapsed() < LIMIT);
        let step = if place.starts_with("root") {
            "root-keys"
        } else {
            "keys alice"
        };
        let (result, detail) = step_of(&root, "bootstrap", step);
        assert_eq!(result, "failed", "{place}: {}", text(&out));
        assert!(
            detail.contains("not a regular file") || detail.contains("not a folder"),
            "{place}: {detail}"
        );
        // The FIFO is still a FIFO: nothing replaced it.
        assert!(
            fs::symlink_metadata(root.join(place))
                .unwrap()
                .file_type()
                .is_fifo()
        );
        canary.check();
    }
}

use std::os::unix::fs::FileTypeExt;

#[test]
fn links_a_user_made_are_never_followed_and_roots_are() {
    if !system_test(&["mkswap", "blkid"]) {
        return;
    }
    // alice's .ssh is a link to root's (or to a folder outside the tree):
    // refused, root's keys untouched.
    for target in ["/root/.ssh", "../../canary/etc/ssh"] {
        let (env, root, canary, img) = with_alice("/home/alice");
        fs::create_dir_all(root.join("home/alice")).unwrap();
        symlink(target, root.join("home/alice/.ssh")).unwrap();
        let _ = bootstrap(&env, &root, &img);
        let (result, detail) = step_of(&root, "bootstrap", "keys alice");
        assert_eq!(result, "failed", "{target}: {detail}");
        assert!(detail.contains("link"), "{detail}");
        // Nothing was written through the link: root's file and folder
        // are still root's.
        for p in ["root/.ssh", "root/.ssh/authorized_keys"] {
            assert_eq!(
                fs::metadata(root.join(p)).unwrap().uid(),
                0,
                "{p} given to alice"
            );
        }
        assert!(
            fs::symlink_metadata(root.join("home/alice/.ssh"))
                .unwrap()
                .file_type()
                .is_symlink()
        );
        canary.check();
    }
    // alice's authorized_keys is a hard link to /etc/shadow: not read.
    let (env, root, canary, img) = with_alice("/home/alice");
    fs::create_dir_all(root.join("home/alice/.ssh")).unwrap();
    fs::hard_link(
        root.join("etc/shadow"),
        root.join("home/alice/.ssh/authorized_keys"),
    )
    .unwrap();
    let _ = bootstrap(&env, &root, &img);
    let (result, detail) = step_of(&root, "bootstrap", "keys alice");
    assert_eq!(result, "failed", "{detail}");
    assert!(detail.contains("hard link"), "{detail}");
    assert!(
        !fs::read_to_string(root.join("etc/shadow"))
            .unwrap()
            .contains("ssh-")
    );
    canary.check();

    // /home a link root made (to data/home, as is common): followed.
    let (env, root, canary, img) = with_alice("/home/alice");
    fs::remove_dir(root.join("home")).unwrap();
    fs::create_dir_all(root.join("data/home/alice")).unwrap();
    fs::set_permissions(root.join("data/home"), fs::Permissions::from_mode(0o755)).unwrap();
    symlink("data/home", root.join("home")).unwrap();
    let out = bootstrap(&env, &root, &img);
    let (result, detail) = step_of(&root, "bootstrap", "keys alice");
    assert_eq!(result, "changed", "{detail} {}", text(&out));
    let keys = root.join("data/home/alice/.ssh/authorized_keys");
    assert!(fs::read_to_string(&keys).unwrap().contains(USER_KEY));
    let meta = fs::metadata(&keys).unwrap();
    assert_eq!((meta.uid(), meta.mode() & 0o777), (1000, 0o600));
    canary.check();

    // A link to a home that leaves the tree: refused.
    let (env, root, canary, img) = with_alice("/home/alice");
    symlink("../../canary", root.join("home/alice")).unwrap();
    let _ = bootstrap(&env, &root, &img);
    assert_eq!(step_of(&root, "bootstrap", "keys alice").0, "failed");
    canary.check();
}

#[test]
fn system_accounts_get_no_keys() {
    if !system_test(&["mkswap", "blkid"]) {
        return;
    }
    for (name, uid) in [
        ("nfsnobody", 65534),
        ("daemon2", 999),
        ("nobody2", 4294967294u32),
    ] {
        let env = Env::new();
        root_settings(&env.config(), &[]);
        let root = root_tree(env.path(), false);
        let canary = Canary::beside(&root);
        let p = root.join("etc/passwd");
        let mut t = fs::read_to_string(&p).unwrap();
        t.push_str(&format!("{name}:x:{uid}:{uid}::/home/{name}:/bin/false\n"));
        fs::write(p, t).unwrap();
        fs::create_dir_all(root.join(format!("home/{name}"))).unwrap();
        let config = format!(r#"{{"vm_conf": {{"user": "{name}", "ssh_key": "{USER_KEY}"}}}}"#);
        let img = image(
            env.path(),
            "swap.img",
            &tar(&[("gandi/config", config.as_bytes(), 0o600)]),
            None,
        );
        let _ = bootstrap(&env, &root, &img);
        let (result, detail) = step_of(&root, "bootstrap", "user");
        assert_eq!(result, "failed", "{name}: {detail}");
        assert!(detail.contains("system account"), "{detail}");
        assert!(!root.join(format!("home/{name}/.ssh")).exists());
        canary.check();
    }
}
