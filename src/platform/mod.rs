//! The platform's side: its config read field by field (`config`, with
//! `json` for places), the archive on its disk, the ledger of values last
//! applied, the network model and every stack's files, and the native
//! apply (password, users, keys, hostname, resolvers).
//!
//! May import: base.

pub mod apply;
pub mod archive;
pub mod config;
pub mod json;
pub mod ledger;
pub mod network;
