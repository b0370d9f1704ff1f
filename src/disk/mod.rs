//! Data disks: discovery (`scan`), the attach helper's records, the map's
//! choice, the udev event's intake and the grow job (`event`), filesystem
//! growth and its marks, a killed grower adopted, the root's growth, the
//! admin's check and release.
//!
//! May import: base, kernel.

pub mod adopt;
pub mod check;
pub mod disklock;
pub mod event;
pub mod fsgrow;
pub mod fsstate;
pub mod growjob;
pub mod handoff;
pub mod index;
pub mod keylinks;
pub mod map;
pub mod records;
pub mod release;
pub mod rootgrow;
pub mod scan;
pub mod store;
pub mod supervise;
