//! Hot-plugged NICs, memory and queues (`iface`).
//!
//! May import: base, kernel, platform.

pub mod iface;
