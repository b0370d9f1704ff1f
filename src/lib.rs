//! gandi-vm: the guest agent of Gandi cloud VMs, as a library with a thin
//! multicall binary.

pub mod admin;
pub mod adopt;
pub mod apply;
pub mod archive;
pub mod blkid;
pub mod bootstrap;
pub mod check;
pub mod cli;
pub mod cmd;
pub mod device;
pub mod diskevent;
pub mod fsstate;
pub mod glob;
pub mod grow;
pub mod hooks;
pub mod iface;
pub mod json;
pub mod kernel;
pub mod ledger;
pub mod logging;
pub mod map;
pub mod marked;
pub mod migrate;
pub mod mount;
pub mod network;
pub mod notify;
pub mod out;
pub mod perboot;
pub mod platform;
pub mod plugins;
pub mod postboot;
pub mod process;
pub mod records;
pub mod release;
pub mod report;
pub mod rootgrow;
pub mod runner;
pub mod scan;
pub mod settings;
pub mod sshd;
pub mod status;
pub mod tree;
pub mod util;

/// What the unit tests share.
#[cfg(test)]
pub(crate) mod testing {
    /// Property tests: `cases` cases from a fixed seed, so a run is
    /// repeatable, and no regression files written into the tree.
    pub fn proptest_config(cases: u32) -> proptest::test_runner::Config {
        proptest::test_runner::Config {
            cases,
            rng_seed: proptest::test_runner::RngSeed::Fixed(11),
            failure_persistence: None,
            ..proptest::test_runner::Config::default()
        }
    }
}
