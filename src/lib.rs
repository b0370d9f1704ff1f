//! gandi-vm: the guest agent of Gandi cloud VMs, as a library with a thin
//! multicall binary.

pub mod admin;
pub mod apply;
pub mod archive;
pub mod bootstrap;
pub mod cli;
pub mod commands;
pub mod diskevent;
pub mod disks;
pub mod docs;
pub mod grow;
pub mod hooks;
pub mod iface;
pub mod logging;
pub mod map;
pub mod perboot;
pub mod platform;
pub mod postboot;
pub mod records;
pub mod release;
pub mod rootgrow;
pub mod settings;
pub mod status;
pub mod util;
