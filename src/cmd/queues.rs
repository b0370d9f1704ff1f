//! `gandi-vm queues NAME COUNT`: an interface's queues set.

use anyhow::Result;

/// Internal: set an interface's queues through the ethtool ioctl.
#[derive(Debug, clap::Args)]
pub struct Args {
    pub name: String,
    pub count: u32,
}

pub fn run(args: Args) -> Result<i32> {
    let (name, count) = (args.name.as_str(), args.count);
    let ch = crate::hotplug::queues::set_queues(name, count)?;
    crate::base::out::line(&format!(
        "combined {} rx {} tx {} (max combined {} rx {} tx {})",
        ch.combined_count, ch.rx_count, ch.tx_count, ch.max_combined, ch.max_rx, ch.max_tx
    ));
    Ok(0)
}
