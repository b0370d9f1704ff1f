//! Readiness of a `Type=notify` unit: `READY=1` sent to systemd on
//! `$NOTIFY_SOCKET`, as `sd_notify(3)` does, so that the units ordered
//! after ours start while we finish work nothing waits for.
//!
//! Without systemd (or run by hand) the variable is unset and nothing is
//! sent. A failure to send is logged and the run goes on (its steps are
//! done all the same), but systemd then marks the unit failed when the
//! process ends, with the result `protocol` (seen with systemd 252): a
//! `Type=notify` unit whose process exits without `READY=1` never became
//! active. The units ordered after it still start (they are ordered after
//! it, not bound to it).

use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixDatagram;

/// Says "ready" to systemd, with a line for `systemctl status`. Returns
/// whether a message was sent.
pub fn ready(status: &str) -> bool {
    let Some(socket) = std::env::var_os("NOTIFY_SOCKET") else {
        return false;
    };
    let status = status.replace('\n', " ");
    match send(&socket, &format!("READY=1\nSTATUS={status}\n")) {
        Ok(()) => true,
        Err(e) => {
            log::error!(
                "telling systemd we are ready ({}): {e}; the unit will end as failed",
                socket.to_string_lossy()
            );
            false
        }
    }
}

/// Sends one datagram to a notification socket: a path, or `@NAME` for a
/// name in the abstract namespace.
pub fn send(socket: &OsStr, message: &str) -> io::Result<()> {
    let sock = UnixDatagram::unbound()?;
    let bytes = socket.as_bytes();
    match bytes.first() {
        Some(b'/') => {
            sock.send_to(message.as_bytes(), socket)?;
        }
        Some(b'@') => {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(&bytes[1..])?;
            sock.send_to_addr(message.as_bytes(), &addr)?;
        }
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "not a path nor an abstract socket name",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_to_a_path_and_to_an_abstract_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let rx = UnixDatagram::bind(&path).unwrap();
        send(path.as_os_str(), "READY=1\nSTATUS=x\n").unwrap();
        let mut buf = [0u8; 64];
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\nSTATUS=x\n");

        use std::os::linux::net::SocketAddrExt;
        let name = format!("gandi-vm-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let rx = UnixDatagram::bind_addr(&addr).unwrap();
        send(OsStr::new(&format!("@{name}")), "READY=1\n").unwrap();
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\n");
    }

    #[test]
    fn refuses_other_addresses_and_missing_sockets() {
        assert!(send(OsStr::new("vsock:2:1234"), "READY=1\n").is_err());
        assert!(send(OsStr::new(""), "READY=1\n").is_err());
        let dir = tempfile::tempdir().unwrap();
        assert!(send(dir.path().join("none").as_os_str(), "READY=1\n").is_err());
    }
}
