//! Hot-plugged NICs (`iface`), their queues (`queues`) and memory blocks
//! (`memory`).
//!
//! May import: base, kernel, platform.

pub mod iface;
pub mod memory;
pub mod queues;
