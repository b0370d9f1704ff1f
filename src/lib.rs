//! gandi-vm: the guest agent of Gandi cloud VMs, as a library with a thin
//! multicall binary.

pub mod cli;
pub mod commands;
pub mod diskevent;
pub mod disks;
pub mod grow;
pub mod hooks;
pub mod logging;
pub mod map;
pub mod records;
pub mod release;
pub mod settings;
pub mod util;
