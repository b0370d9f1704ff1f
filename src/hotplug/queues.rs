//! A NIC's queues: as many combined channels as the VM has CPUs (the
//! original's `ethtool -L`), through the ethtool ioctl.

use crate::base::settings::Settings;
use anyhow::{Context, Result};
use std::fs;
use std::os::fd::AsRawFd;

const SIOCETHTOOL: libc::c_ulong = 0x8946;
const ETHTOOL_GCHANNELS: u32 = 0x3c;
const ETHTOOL_SCHANNELS: u32 = 0x3d;

#[repr(C)]
#[derive(Default, Debug, Clone, Copy)]
pub struct Channels {
    cmd: u32,
    pub max_rx: u32,
    pub max_tx: u32,
    pub max_other: u32,
    pub max_combined: u32,
    pub rx_count: u32,
    pub tx_count: u32,
    pub other_count: u32,
    pub combined_count: u32,
}

#[repr(C)]
struct IfReq {
    name: [libc::c_char; libc::IFNAMSIZ],
    data: *mut libc::c_void,
    _pad: [u8; 16],
}

#[allow(unsafe_code)] // see the SAFETY comment
fn ethtool(name: &str, ch: &mut Channels) -> std::io::Result<()> {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, socket};
    let sock = socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        data: (ch as *mut Channels).cast(),
        _pad: [0; 16],
    };
    for (d, s) in req
        .name
        .iter_mut()
        .zip(name.bytes().take(libc::IFNAMSIZ - 1))
    {
        *d = s as libc::c_char;
    }
    // SAFETY: nix and std have no SIOCETHTOOL wrapper (nix's ioctl macros
    // would still need `unsafe` to call). The socket is ours; `req` is an
    // `ifreq` whose name is NUL-terminated within IFNAMSIZ and whose data
    // points at `ch`, an `ethtool_channels` that outlives the call.
    if unsafe { libc::ioctl(sock.as_raw_fd(), SIOCETHTOOL as _, &mut req) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Sets the interface's queues to `want` (combined when the driver has
/// them, else rx and tx), capped by the driver's maximum. Returns the
/// channels as set.
pub fn set_queues(name: &str, want: u32) -> Result<Channels> {
    let mut ch = Channels {
        cmd: ETHTOOL_GCHANNELS,
        ..Default::default()
    };
    ethtool(name, &mut ch).with_context(|| format!("{name}: reading its channels"))?;
    let mut set = ch;
    set.cmd = ETHTOOL_SCHANNELS;
    if ch.max_combined > 0 {
        set.combined_count = want.min(ch.max_combined);
    } else {
        set.rx_count = want.min(ch.max_rx).max(ch.rx_count.min(1));
        set.tx_count = want.min(ch.max_tx).max(ch.tx_count.min(1));
    }
    if (set.combined_count, set.rx_count, set.tx_count)
        != (ch.combined_count, ch.rx_count, ch.tx_count)
    {
        ethtool(name, &mut set).with_context(|| format!("{name}: setting its channels"))?;
    }
    let mut now = Channels {
        cmd: ETHTOOL_GCHANNELS,
        ..Default::default()
    };
    ethtool(name, &mut now).with_context(|| format!("{name}: reading its channels"))?;
    Ok(now)
}

/// Virtio NICs get min(CPUs, 8) queues.
pub fn multiqueue(settings: &Settings, name: &str) {
    let driver = fs::read_link(
        settings
            .paths
            .sys_dir
            .join(format!("class/net/{name}/device/driver")),
    )
    .ok()
    .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
    if driver.as_deref() != Some("virtio_net") {
        return;
    }
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .unwrap_or(1);
    match set_queues(name, cpus.min(8)) {
        Ok(ch) => log::info!("{name}: {} queues", ch.combined_count.max(ch.rx_count)),
        Err(e) => log::warn!("{e:#}"),
    }
}

// ---- memory
