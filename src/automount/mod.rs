//! The automount side: our entry in autofs's master map (`master`) and the
//! move from the original suite (`migrate`).
//!
//! May import: base, kernel.

pub mod master;
pub mod migrate;
pub mod reload;
pub mod setting;
