//! What the kernel and udev say about block devices, read without waiting
//! on a disk: the device model (`device`), `/proc/partitions`, the mount
//! table, swaps, sysfs and udev's database (`views`), and the last-resort
//! probe (`blkid`, a child killed at its limit).
//!
//! May import: base.

pub mod blkid;
pub mod device;
pub mod views;
