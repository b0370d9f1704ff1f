//! The boot oneshots: `bootstrap` (the platform's config from its disk),
//! `config` (per-boot housekeeping), `replay` (block events replayed),
//! `postboot` (the customer's commands) and `idle` (whether it has work in
//! this boot), the admin's plugins and our sshd drop-in.
//!
//! May import: base, kernel, platform, disk, automount, hotplug.

pub mod bootstrap;
pub mod config;
pub mod idle;
pub mod plugins;
pub mod postboot;
pub mod replay;
pub mod sshd;
