//! What support needs: the report (`report`).
//!
//! May import: base, kernel, disk.

pub mod report;
