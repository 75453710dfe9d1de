//! The jail's end of the egress door, built while the jail is: its network
//! namespace has only a loopback interface, brought up here, and one
//! listening port on it, bound here (before Landlock and seccomp, which
//! then forbid every command to bind or to connect anywhere but this
//! port). Each connection accepted on it goes out through a socketpair to
//! toold's half outside the jail, which hands it to the egress daemon.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use super::{step, JailError};

/// The proxy's port on the jail's loopback (the usual HTTP proxy port;
/// the jail has its own network namespace, so nothing else can hold it).
pub const PROXY_PORT: u16 = 3128;

/// What the jail keeps of the door.
pub struct JailEnd {
    pub listener: TcpListener,
    /// To toold's half outside: one accepted connection per message.
    pub out: UnixStream,
    /// The kernel's socket table, asked which socket is the client's
    /// (None where sock_diag is not there: /proc/net/tcp is read instead).
    pub diag: Option<crate::sockdiag::SockDiag>,
}

/// What toold's half outside the jail keeps of it.
pub struct OutsideEnd {
    /// From the jail.
    pub from_jail: UnixStream,
    /// The directory of the egress daemon's socket, opened before the
    /// jail's root replaced the host's: the socket is reached relative to
    /// it for as long as toold runs, across restarts of the daemon.
    pub dir: OwnedFd,
    pub name: std::ffi::OsString,
}

/// Before the fork: the pair between the two halves, and the door's
/// directory (after `pivot_root` the host's paths are gone).
pub fn prepare(door: &Path) -> Result<(UnixStream, OutsideEnd), JailError> {
    let name = door
        .file_name()
        .ok_or_else(|| JailError {
            step: "open the egress door's directory",
            cause: format!("{} names no socket", door.display()),
        })?
        .to_os_string();
    let parent = door
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let dir = step(
        "open the egress door's directory",
        nix::fcntl::open(
            parent,
            nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        ),
    )?;
    // SAFETY: open returned a new descriptor that nothing else owns.
    let dir = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(dir) };
    let (jail, outside) = step("make the egress door's socketpair", UnixStream::pair())?;
    Ok((
        jail,
        OutsideEnd {
            from_jail: outside,
            dir,
            name,
        },
    ))
}

/// Inside the new network namespace, with the capability to configure it:
/// loopback up, the proxy port bound.
pub fn open(out: UnixStream) -> Result<JailEnd, JailError> {
    step("bring up the loopback interface", loopback_up())?;
    let listener = step(
        "bind the egress proxy port",
        TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, PROXY_PORT))),
    )?;
    let diag = crate::sockdiag::SockDiag::open()
        .map_err(|e| tracing::warn!("no sock_diag ({e}): the door reads /proc/net/tcp to attribute connections"))
        .ok();
    Ok(JailEnd { listener, out, diag })
}

/// `ip link set lo up`, as an ioctl on a datagram socket.
fn loopback_up() -> std::io::Result<()> {
    let socket = std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).map(OwnedFd::from);
    // A fresh namespace's loopback is down, so binding may still work (to
    // 0.0.0.0); if not, make a plain socket for the ioctl.
    let socket = match socket {
        Ok(s) => s,
        Err(_) => {
            // SAFETY: a plain syscall; the result is checked.
            let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // SAFETY: a new descriptor that nothing else owns.
            unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) }
        }
    };
    // SAFETY: ifreq is plain data; zeroed is a valid value.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (slot, byte) in request.ifr_name.iter_mut().zip(b"lo\0") {
        *slot = *byte as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS and SIOCSIFFLAGS read and write this ifreq, which
    // lives on the stack for the duration of both calls.
    unsafe {
        if libc::ioctl(socket.as_raw_fd(), libc::SIOCGIFFLAGS, &mut request) < 0 {
            return Err(std::io::Error::last_os_error());
        }
        request.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        if libc::ioctl(socket.as_raw_fd(), libc::SIOCSIFFLAGS, &request) < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}
