//! systemd service notifications (`Type=notify`): READY, STOPPING, STATUS and the watchdog,
//! sent as datagrams on `$NOTIFY_SOCKET` — the protocol is a line of text, so std's Unix
//! datagram socket is all it takes (no libsystemd).

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// The notify socket systemd gave this process, if any.
pub struct Notifier {
    socket: UnixDatagram,
    addr: SocketAddr,
    /// Half the watchdog period: how often `WATCHDOG=1` must be sent.
    pub watchdog_interval: Option<Duration>,
}

impl Notifier {
    /// From the environment systemd sets; `None` when not run by systemd with `Type=notify`.
    pub fn from_env() -> Option<Self> {
        let path = std::env::var_os("NOTIFY_SOCKET")?;
        let path = path.to_str()?;
        let addr = match path.strip_prefix('@') {
            Some(name) => SocketAddr::from_abstract_name(name.as_bytes()).ok()?,
            None => SocketAddr::from_pathname(path).ok()?,
        };
        let socket = UnixDatagram::unbound().ok()?;
        Some(Self {
            socket,
            addr,
            watchdog_interval: watchdog_interval(),
        })
    }

    /// Sends one notification, e.g. `READY=1`. Failures are ignored: systemd will act on the
    /// missing message itself (a start timeout, a watchdog kill).
    pub fn notify(&self, state: &str) {
        let _ = self.socket.send_to_addr(state.as_bytes(), &self.addr);
    }
}

/// `WATCHDOG_USEC` halved, if the watchdog is on for this very process.
fn watchdog_interval() -> Option<Duration> {
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.parse::<u32>().ok()? != std::process::id() {
            return None;
        }
    }
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifications_reach_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let server = UnixDatagram::bind(&path).unwrap();
        let n = Notifier {
            socket: UnixDatagram::unbound().unwrap(),
            addr: SocketAddr::from_pathname(&path).unwrap(),
            watchdog_interval: None,
        };
        n.notify("READY=1");
        let mut buf = [0u8; 64];
        let len = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1");
    }
}
