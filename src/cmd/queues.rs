//! `gandi-vm queues NAME COUNT`: an interface's queues set.

use anyhow::Result;

pub fn run(name: &str, count: u32) -> Result<i32> {
    let ch = crate::hotplug::queues::set_queues(name, count)?;
    crate::base::out::line(&format!(
        "combined {} rx {} tx {} (max combined {} rx {} tx {})",
        ch.combined_count, ch.rx_count, ch.tx_count, ch.max_combined, ch.max_rx, ch.max_tx
    ));
    Ok(0)
}
