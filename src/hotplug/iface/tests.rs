use super::*;
use crate::hotplug::memory::memory_online;
use crate::hotplug::queues::Channels;

#[test]
fn channels_layout() {
    assert_eq!(size_of::<Channels>(), 36);
}

#[test]
fn memory_blocks_are_onlined_once() {
    let dir = tempfile::tempdir().unwrap();
    let block = dir.path().join("devices/system/memory/memory40");
    fs::create_dir_all(&block).unwrap();
    fs::write(block.join("state"), "offline\n").unwrap();
    let mut s = Settings::default().with_paths(|p| {
        p.sys_dir = dir.path().to_path_buf();
    });
    memory_online(&s, "memory40").unwrap();
    assert_eq!(fs::read_to_string(block.join("state")).unwrap(), "online");
    s.memory_online = "online_movable".into();
    fs::write(block.join("state"), "online\n").unwrap();
    memory_online(&s, "memory40").unwrap();
    assert_eq!(fs::read_to_string(block.join("state")).unwrap(), "online\n");
    assert!(memory_online(&s, "memory../x").is_err());
}
