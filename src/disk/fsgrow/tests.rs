use super::*;

#[test]
fn ext_superblock() {
    let mut sb = [0u8; 1024];
    sb[0x38..0x3a].copy_from_slice(&0xEF53u16.to_le_bytes());
    sb[0x04..0x08].copy_from_slice(&16384u32.to_le_bytes());
    sb[0x18..0x1c].copy_from_slice(&2u32.to_le_bytes());
    sb[0x36..0x38].copy_from_slice(&(-1i16).to_le_bytes());
    let s = ExtSuper::parse(&sb).unwrap();
    assert_eq!(s.size, 16384 * 4096);
    assert_eq!(s.max_mount_count, -1);
    sb[0x60..0x64].copy_from_slice(&0x80u32.to_le_bytes());
    sb[0x150..0x154].copy_from_slice(&1u32.to_le_bytes());
    assert_eq!(
        ExtSuper::parse(&sb).unwrap().size,
        ((1u64 << 32) + 16384) * 4096
    );
    for (i, b) in sb[0x68..0x78].iter_mut().enumerate() {
        *b = 0xa0 + i as u8;
    }
    assert_eq!(
        ExtSuper::parse(&sb).unwrap().uuid,
        "a0a1a2a3-a4a5-a6a7-a8a9-aaabacadaeaf"
    );
    sb[0x38] = 0;
    assert!(ExtSuper::parse(&sb).is_none());
}

#[test]
fn superblock_sizes() {
    let xfs = "dblocks = 81920\nblocksize = 4096\n";
    assert_eq!(parse_xfs_db(xfs), Some(81920 * 4096));
    let btrfs = "total_bytes\t\t\t134217728\ndev_item.total_bytes\t67108864\n";
    assert_eq!(parse_btrfs_super(btrfs), Some(67108864));
    let info = "meta-data=/dev/loop0p1 isize=512 agcount=4, agsize=20480 blks\n\
                data     =                       bsize=4096   blocks=262144, imaxpct=25\n";
    assert_eq!(parse_xfs_info(info), Some(262144 * 4096));
}
