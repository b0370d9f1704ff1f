use super::cron::{cron_fields, cron_line};
use super::timezone::valid_zone;
use super::*;

/// The original's answers and ours, for the kernel command lines the
/// platform sends (docs/boot.md holds the same table).
#[test]
fn zones_as_the_original_with_our_extension() {
    let have = |z: &str| ["America/New_York", "Europe/Paris", "Etc/UTC"].contains(&z);
    let none = |_: &str| false;
    let cases: &[(&str, Zone, Zone)] = &[
        // cmdline, ours with zoneinfo, ours without
        (
            "gandi=cet",
            Zone::Set("Europe/Paris".into()),
            Zone::Set("Europe/Paris".into()),
        ),
        (
            "gandi=utc",
            Zone::Set("Etc/UTC".into()),
            Zone::Set("Etc/UTC".into()),
        ),
        (
            "gandi=CET",
            Zone::Set("Etc/UTC".into()),
            Zone::Set("Etc/UTC".into()),
        ),
        (
            "gandi=gmt",
            Zone::Set("Etc/UTC".into()),
            Zone::Set("Etc/UTC".into()),
        ),
        ("gandi=ab", Zone::Default, Zone::Default),
        ("gandi=", Zone::Default, Zone::Default),
        ("root=/dev/vda1", Zone::Default, Zone::Default),
        (
            "gandi=America/New_York",
            Zone::Set("America/New_York".into()),
            Zone::Set("Etc/UTC".into()),
        ),
        (
            "gandi=cet-x",
            Zone::Set("Etc/UTC".into()),
            Zone::Set("Etc/UTC".into()),
        ),
        ("gandi=../../etc/shadow", Zone::Default, Zone::Default),
    ];
    for (line, with, without) in cases {
        let v = cmdline_value(line);
        assert_eq!(&zone_for(v.as_deref(), have), with, "{line} with zoneinfo");
        assert_eq!(
            &zone_for(v.as_deref(), none),
            without,
            "{line} without zoneinfo"
        );
    }
    assert!(!valid_zone("../../etc/shadow"));
    assert!(!valid_zone("/etc/x"));
}

const DEBIAN_CRONTAB: &str = "SHELL=/bin/sh\n\
    # Example of job definition:\n\
    # m h dom mon dow user\tcommand\n\
    17 *\t* * *\troot\tcd / && run-parts --report /etc/cron.hourly\n\
    25 6\t* * *\troot\ttest -x /usr/sbin/anacron || { cd / && run-parts --report /etc/cron.daily; }\n\
    47 6\t* * 7\troot\ttest -x /usr/sbin/anacron || { cd / && run-parts --report /etc/cron.weekly; }\n\
    52 6\t1 * *\troot\ttest -x /usr/sbin/anacron || { cd / && run-parts --report /etc/cron.monthly; }\n\
    #\n";

#[test]
fn stock_cron_lines_are_spread_and_nothing_else_moves() {
    let n = 12345;
    let out: Vec<Option<String>> = DEBIAN_CRONTAB.lines().map(|l| cron_line(l, n)).collect();
    assert_eq!(out.iter().filter(|l| l.is_some()).count(), 4);
    let (m, h) = (n % 60, 1 + (n / 60) % 6);
    assert_eq!(
        out[3].as_deref(),
        Some(format!("{m} *\t* * *\troot\tcd / && run-parts --report /etc/cron.hourly").as_str())
    );
    assert!(
        out[4]
            .as_deref()
            .unwrap()
            .starts_with(&format!("{} {h}\t* * *\troot\t", (m + 8) % 60))
    );
    // Ours again: the same; the admin's own time: left.
    for l in out.iter().flatten() {
        assert_eq!(cron_line(l, n).as_deref(), Some(l.as_str()));
    }
    let admin_time = "30 2\t* * *\troot\ttest -x /usr/sbin/anacron || { cd / && run-parts --report /etc/cron.daily; }";
    assert_eq!(cron_line(admin_time, n), None);
    // CRLF kept.
    let crlf = "17 *\t* * *\troot\tcd / && run-parts --report /etc/cron.hourly\r";
    assert!(cron_line(crlf, n).unwrap().ends_with("hourly\r"));
    for other in [
        "MAILTO=root # runs run-parts for /etc/cron.monthly",
        "0 3 * * * root /usr/local/bin/backup /etc/cron.daily",
        "17 * * * * cd / && run-parts --report /etc/cron.hourly",
        "17 * * * * www-data cd / && run-parts --report /etc/cron.hourly",
        "#17 * * * * root cd / && run-parts --report /etc/cron.hourly",
        "25 6 * * 1 root test -x /usr/sbin/anacron || { cd / && run-parts --report /etc/cron.daily; }",
        "25 6 * * * root test -x /usr/sbin/anacron || { cd / && run-parts --report /etc/cron.daily; } >/dev/null",
        "",
        "   ",
    ] {
        assert_eq!(cron_line(other, n), None, "{other:?}");
    }
}

proptest::proptest! {
    #![proptest_config(crate::testing::proptest_config(512))]

    /// Any line: left alone, or only its first two fields changed, and
    /// a second pass changes nothing more.
    #[test]
    fn cron_lines_change_only_their_time(
        pick in 0usize..7,
        junk in "[ -~\t\r]{0,60}",
        n in proptest::prelude::any::<u64>(),
    ) {
        let stock: Vec<&str> = DEBIAN_CRONTAB.lines().collect();
        let line = match pick {
            0..=3 => stock[pick + 3].to_string(),
            4 => junk.clone(),
            5 => format!("{} {junk}", stock[3]),
            _ => format!("{junk}{}", stock[4]),
        };
        if let Some(new) = cron_line(&line, n) {
            let (old_f, old_cmd) = cron_fields(&line).unwrap();
            let (new_f, new_cmd) = cron_fields(&new).unwrap();
            proptest::prop_assert_eq!(old_cmd, new_cmd);
            proptest::prop_assert_eq!(&line[old_f[1].end..], &new[new_f[1].end..]);
            proptest::prop_assert_eq!(&line[..old_f[0].start], &new[..new_f[0].start]);
            proptest::prop_assert_eq!(cron_line(&new, n), Some(new.clone()));
        }
    }
}

#[test]
fn fstab_root_line() {
    let t = "# comment / x\nproc /proc proc defaults 0 0\n/dev/vda1 / ext4 errors=remount-ro 0 1\n";
    let (i, f) = root_line(t).unwrap();
    assert_eq!(i, 2);
    assert_eq!(f[0], "/dev/vda1");
}
