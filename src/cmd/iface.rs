//! `gandi-vm iface NAME [--remove]`: what `gandi-iface@NAME.service` runs.

use crate::base::settings::Settings;
use crate::base::status::Ended;
use crate::hotplug::iface;
use anyhow::Result;

/// Configure a hot-plugged network interface (what
/// gandi-iface@IFACE.service runs): link up; unless in CONFIG_NODHCP,
/// addresses from the platform config (or DHCP) through networkd,
/// ifupdown or udhcpc, ARP and rp_filter settings for secondary
/// interfaces, virtio queues, a route metric per interface, then the
/// post-iface-attach hook. With --remove (when the unit stops), stop
/// its DHCP client and, if the NIC is gone, remove what was generated
/// for it; a NIC still present (a shutdown) keeps its files.
#[derive(Debug, clap::Args)]
pub struct Args {
    pub name: String,
    #[arg(long)]
    pub remove: bool,
    /// Read the config and write files under DIR.
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: std::path::PathBuf,
}

pub fn run(settings: &Settings, args: Args) -> Result<Ended> {
    let (name, remove, root) = (args.name.as_str(), args.remove, args.root.as_path());
    if remove {
        iface::detach(settings, root, name)
    } else {
        iface::attach(settings, root, name)
    }
}
