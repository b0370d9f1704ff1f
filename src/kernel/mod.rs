//! What the kernel and udev say about block devices, read without waiting
//! on a disk: the device model (`device`), `/proc/partitions`, swaps and
//! sysfs (`views`), the mount table (`mounts`), udev's database (`udev`),
//! their escapes (`escape`), and the last-resort probe (`blkid`, a child
//! killed at its limit).
//!
//! May import: base.

pub mod blkid;
pub mod device;
pub mod escape;
pub mod mounts;
pub mod udev;
pub mod views;

#[cfg(test)]
mod tests;
