use super::*;

const DUMP: &str = "label: gpt
label-id: 00000000-0000-0000-0000-000000000000
device: /dev/vda
unit: sectors
first-lba: 2048
last-lba: 204766
sector-size: 512

/dev/vda1 : start=        2048, size=      100000, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, uuid=E3394D72-C9C0-5B43-BBA0-939E8CD0CCC3, name=\"gandiroot\"
";

#[test]
fn the_table_is_written_again_grown_with_fresh_guids() {
    let fresh = ["D1SK".to_string(), "PART".to_string()];
    let script = grown_table(DUMP, "/dev/vda1", &fresh).unwrap();
    assert!(script.contains("label-id: D1SK\n"), "{script}");
    assert!(!script.contains("last-lba") && !script.contains("device:"));
    assert!(script.contains(
        "/dev/vda1 : start=        2048, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, uuid=PART, name=\"gandiroot\"\n"
    ), "{script}");
    // Without fresh GUIDs the old ones stay.
    let script = grown_table(DUMP, "/dev/vda1", &[]).unwrap();
    assert!(script.contains("label-id: 00000000-0000-0000-0000-000000000000"));
    assert!(script.contains("uuid=E3394D72-C9C0-5B43-BBA0-939E8CD0CCC3"));
}

#[test]
fn a_dump_it_does_not_understand_changes_nothing() {
    assert!(grown_table(DUMP, "/dev/vda2", &[]).is_err());
    assert!(grown_table(&DUMP.replace("label: gpt", "label: dos"), "/dev/vda1", &[]).is_err());
    assert!(grown_table(&format!("{DUMP}grain: 1M\n"), "/dev/vda1", &[]).is_err());
    assert!(grown_table(&DUMP.replace("name=", "bootable, name="), "/dev/vda1", &[]).is_err());
    assert!(grown_table("", "/dev/vda1", &[]).is_err());
}

proptest::proptest! {
    #![proptest_config(crate::testing::proptest_config(256))]

    /// Names with commas, quotes and blanks, several partitions: every
    /// field but our partition's size is kept, in order.
    #[test]
    fn every_other_field_is_kept(
        names in proptest::collection::vec("[a-z ,]{0,10}", 1..5),
        ours in 0usize..5,
    ) {
        let mut dump = DUMP.lines().take(8).collect::<Vec<_>>().join("\n");
        dump.push('\n');
        for (i, name) in names.iter().enumerate() {
            dump.push_str(&format!(
                "/dev/vda{n} : start= {s}, size= 100, type=T, uuid=U{n}, name=\"{name}\"\n",
                n = i + 1,
                s = 2048 + i * 100
            ));
        }
        let ours = ours % names.len() + 1;
        let script = grown_table(&dump, &format!("/dev/vda{ours}"), &[]).unwrap();
        for (i, name) in names.iter().enumerate() {
            let n = i + 1;
            let line = script
                .lines()
                .find(|l| l.starts_with(&format!("/dev/vda{n} :")))
                .unwrap();
            let size = if n == ours { "" } else { ", size= 100" };
            proptest::prop_assert_eq!(
                line,
                format!(
                    "/dev/vda{n} : start= {}{size}, type=T, uuid=U{n}, name=\"{name}\"",
                    2048 + i * 100
                )
            );
        }
    }
}

/// The script through the real sfdisk on an image file: the partition
/// ends at the (aligned) end of the enlarged disk, the backup header at
/// the end, name, type and GUIDs as asked.
#[test]
fn sfdisk_writes_the_grown_table() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("disk.img");
    let file = fs::File::create(&img).unwrap();
    file.set_len(100 << 20).unwrap();
    let sh = |args: &[&str], input: &str| {
        Run::new("sfdisk")
            .args(args)
            .arg(&img)
            .input(input.as_bytes().to_vec())
            .output()
            .unwrap()
    };
    sh(
        &["--quiet"],
        "label: gpt\nstart=2048, size=100000, name=gandiroot\n",
    );
    file.set_len(200 << 20).unwrap();
    let dump = sh(&["--dump"], "");
    let node = format!("{}1", img.display());
    let fresh = [
        "11111111-2222-4333-8444-555555555555".to_string(),
        "AAAAAAAA-2222-4333-8444-555555555555".to_string(),
    ];
    let script = grown_table(&dump, &node, &fresh).unwrap();
    sh(&["--quiet", "--no-reread", "--no-tell-kernel"], &script);
    sh(&["--verify"], "");
    let table: serde_json::Value = serde_json::from_str(&sh(&["--json"], "")).unwrap();
    let t = &table["partitiontable"];
    assert_eq!(t["id"], "11111111-2222-4333-8444-555555555555");
    assert_eq!(t["lastlba"], 409566, "{t}");
    let p = &t["partitions"][0];
    assert_eq!(p["name"], "gandiroot");
    assert_eq!(p["uuid"], "AAAAAAAA-2222-4333-8444-555555555555");
    let end = p["start"].as_u64().unwrap() + p["size"].as_u64().unwrap();
    assert!(end > 409566 - 2048, "{p}");
}
