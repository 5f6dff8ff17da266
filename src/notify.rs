//! systemd readiness notifications (`sd_notify`), so the unit can be `Type=notify`.
//!
//! When systemd starts vecsync with `Type=notify` it sets `NOTIFY_SOCKET`; vecsync sends
//! `READY=1` once the pipeline first streams (so `systemctl start` returns when vecsync really
//! works, and units ordered after it start then) and `STOPPING=1` when a signal starts the drain.
//! Without `NOTIFY_SOCKET` (Docker, Kubernetes, a shell) both calls do nothing.
//!
//! The protocol is one datagram per state on a Unix socket: a path, or a name in the abstract
//! namespace written `@name`. It is a few lines, so no crate is needed for it.
//!
//! # Error handling
//! A notification that cannot be sent never stops vecsync: it is logged as a warning, because
//! under `Type=notify` a lost `READY=1` makes systemd time the start out, and the log line says
//! why.

use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixDatagram;
use std::path::Path;

/// Tell systemd the service is up (`READY=1`).
pub fn ready() {
    send("READY=1");
}

/// Tell systemd the service is shutting down (`STOPPING=1`).
pub fn stopping() {
    send("STOPPING=1");
}

fn send(state: &str) {
    let Some(socket) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    match notify(&socket, state) {
        Ok(()) => tracing::debug!(state, "notified systemd"),
        Err(error) => tracing::warn!(
            %error,
            socket = %socket.to_string_lossy(),
            state,
            "cannot notify systemd (NOTIFY_SOCKET); with Type=notify the unit may time out"
        ),
    }
}

/// Send `state` as one datagram to `socket` (`NOTIFY_SOCKET`'s value).
pub fn notify(socket: &OsStr, state: &str) -> io::Result<()> {
    let sock = UnixDatagram::unbound()?;
    // The async threads call this: never wait on a full socket buffer.
    sock.set_nonblocking(true)?;
    let bytes = socket.as_bytes();
    if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
        sock.send_to_addr(state.as_bytes(), &addr)?;
    } else if bytes.starts_with(b"/") {
        sock.send_to(state.as_bytes(), Path::new(socket))?;
    } else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "NOTIFY_SOCKET is neither an absolute path nor an @abstract name",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receive(listener: &UnixDatagram) -> String {
        let mut buf = [0u8; 64];
        let n = listener.recv(&mut buf).expect("receive the notification");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn sends_to_a_socket_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notify");
        let listener = UnixDatagram::bind(&path).expect("bind");
        notify(path.as_os_str(), "READY=1").expect("notify");
        assert_eq!(receive(&listener), "READY=1");
    }

    #[test]
    fn sends_to_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("vecsync-notify-test-{}", uuid::Uuid::new_v4().simple());
        let addr =
            std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).expect("address");
        let listener = UnixDatagram::bind_addr(&addr).expect("bind");
        notify(OsStr::new(&format!("@{name}")), "STOPPING=1").expect("notify");
        assert_eq!(receive(&listener), "STOPPING=1");
    }

    #[test]
    fn refuses_a_relative_socket() {
        let err = notify(OsStr::new("notify.sock"), "READY=1").expect_err("relative");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }
}
