//! The shared pieces every area stands on: system files opened beneath a
//! root (`tree`), the one way to run a program (`runner`), the editor of
//! our block in an admin's file (`block`), the settings, step outcomes and
//! the status file, logging, standard output, readiness notification,
//! process liveness, glob patterns, admin hooks, reads that never wait,
//! the file lock and a stable fingerprint.
//!
//! May import: nothing of ours.

pub mod block;
pub mod fingerprint;
pub mod glob;
pub mod hooks;
pub mod lock;
pub mod logging;
pub mod notify;
pub mod out;
pub mod process;
pub mod read;
pub mod runner;
pub mod settings;
pub mod status;
pub mod tree;
