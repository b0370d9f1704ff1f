//! gandi-vm: the guest agent of Gandi cloud VMs, as a library with thin
//! programs (`gandi-vm`, the program map `/etc/auto.gandi`).
//!
//! One folder per area, each allowed to import only the areas its own
//! documentation names (checked by `tests/structure.rs`), so every path
//! runs downwards: `cmd` → `support`, `boot` → `hotplug`, `automount`,
//! `disk` → `platform`, `kernel` → `base`.

pub mod automount;
pub mod base;
pub mod boot;
pub mod cmd;
pub mod disk;
pub mod hotplug;
pub mod kernel;
pub mod platform;
pub mod support;

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
