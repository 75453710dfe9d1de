//! The broker connection a supervised daemon inherits: in supervise mode
//! the broker starts each daemon with its end of a `socketpair` at a known
//! descriptor, so the daemon's identity is the descriptor it was handed —
//! no listening socket exists that another process could connect to.

use std::io;
use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use nix::sys::socket::{getsockname, getsockopt, sockopt, AddressFamily, SockType, SockaddrLike, SockaddrStorage};

/// Where the supervising broker puts the daemon's end of its socketpair.
pub const BROKER_FD: RawFd = 3;

/// Takes over descriptor `fd` as the broker connection, after checking that
/// it is an open Unix stream socket, and marks it close-on-exec.
pub fn take_broker_socket(fd: RawFd) -> io::Result<UnixStream> {
    nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFD)
        .map_err(|e| io::Error::new(io::ErrorKind::NotFound, format!("descriptor {fd} is not open ({e})")))?;
    // SAFETY: F_GETFD succeeded, so fd is open; the borrow ends in this function.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    let family = getsockname::<SockaddrStorage>(fd).ok().and_then(|a| a.family());
    let kind = getsockopt(&borrowed, sockopt::SockType);
    match (family, kind) {
        (Some(AddressFamily::Unix), Ok(SockType::Stream)) => {}
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("descriptor {fd} is not a Unix stream socket"),
            ))
        }
    }
    nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC))?;
    // SAFETY: the descriptor is open, is a socket, and this process hands
    // it to nobody else: we are its only owner from here on.
    Ok(UnixStream::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// What kind of listening socket a daemon was handed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listening {
    /// TCP, IPv4 or IPv6 (the health endpoint's port).
    Tcp,
    /// A Unix stream socket (the egress door).
    Unix,
}

/// Why an inherited descriptor is not the listening socket it should be.
#[derive(Debug, thiserror::Error)]
pub enum NotListening {
    #[error("not open ({0})")]
    NotOpen(nix::Error),
    #[error("not a listening {0:?} stream socket")]
    Kind(Listening),
    #[error("cannot mark it close-on-exec ({0})")]
    Cloexec(nix::Error),
}

/// Takes over descriptor `fd` as a listening socket of `kind`, after
/// checking that it is one, and marks it close-on-exec.
pub fn take_listener(fd: RawFd, kind: Listening) -> Result<OwnedFd, NotListening> {
    nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFD).map_err(NotListening::NotOpen)?;
    // SAFETY: F_GETFD succeeded, so fd is open; the borrow ends here.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    let family = getsockname::<SockaddrStorage>(fd).ok().and_then(|a| a.family());
    let stream = getsockopt(&borrowed, sockopt::SockType).is_ok_and(|t| t == SockType::Stream);
    let listening = getsockopt(&borrowed, sockopt::AcceptConn).unwrap_or(false);
    let family_ok = match kind {
        Listening::Tcp => matches!(family, Some(AddressFamily::Inet | AddressFamily::Inet6)),
        Listening::Unix => family == Some(AddressFamily::Unix),
    };
    if !(family_ok && stream && listening) {
        return Err(NotListening::Kind(kind));
    }
    nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC))
        .map_err(NotListening::Cloexec)?;
    // SAFETY: the descriptor is open and a listening socket, and this
    // process hands it to nobody else: we are its only owner from here on.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Marks every descriptor from `first` up close-on-exec, so that a child
/// inherits only what was placed below `first` on purpose, whatever its
/// parent was started with (a wrapper, a shell, a container runtime may
/// leave descriptors open). Async-signal-safe: one raw syscall, usable
/// between fork and exec. Kernels before 5.11 (no CLOSE_RANGE_CLOEXEC)
/// answer EINVAL or ENOSYS, returned as the error.
pub fn cloexec_from(first: RawFd) -> io::Result<()> {
    let first = libc_uint(first);
    // SAFETY: close_range takes two numbers and a flag, no pointers; with
    // CLOSE_RANGE_CLOEXEC it closes nothing, it only sets FD_CLOEXEC.
    let r = unsafe {
        nix::libc::syscall(
            nix::libc::SYS_close_range,
            first,
            u32::MAX,
            nix::libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn libc_uint(fd: RawFd) -> u32 {
    u32::try_from(fd).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_listening_socket_of_the_kind_is_taken() {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = tcp.local_addr().unwrap();
        let taken = std::net::TcpListener::from(take_listener(tcp.into_raw_fd(), Listening::Tcp).unwrap());
        assert_eq!(taken.local_addr().unwrap(), address);
        let connected = std::net::TcpStream::connect(address).unwrap().into_raw_fd();
        assert!(matches!(
            take_listener(connected, Listening::Tcp),
            Err(NotListening::Kind(_))
        ));
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap().into_raw_fd();
        assert!(take_listener(udp, Listening::Tcp).is_err());
        let tcp_again = std::net::TcpListener::bind("127.0.0.1:0").unwrap().into_raw_fd();
        assert!(take_listener(tcp_again, Listening::Unix).is_err());

        let dir = tempfile::tempdir().unwrap();
        let unix = std::os::unix::net::UnixListener::bind(dir.path().join("s"))
            .unwrap()
            .into_raw_fd();
        assert!(take_listener(unix, Listening::Unix).is_ok());
        let (pair, _) = UnixStream::pair().unwrap();
        assert!(take_listener(pair.into_raw_fd(), Listening::Unix).is_err());
        assert!(matches!(
            take_listener(987, Listening::Unix),
            Err(NotListening::NotOpen(_))
        ));
    }
    use std::io::{Read, Write};
    use std::os::fd::IntoRawFd;

    #[test]
    fn descriptors_from_a_number_up_are_marked_close_on_exec() {
        use nix::fcntl::{fcntl, FcntlArg, FdFlag};
        let file = std::fs::File::open("/dev/null").unwrap();
        let fd = file.into_raw_fd();
        fcntl(fd, FcntlArg::F_SETFD(FdFlag::empty())).unwrap();
        let flags = |fd| FdFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFD).unwrap());
        assert!(
            !flags(fd).contains(FdFlag::FD_CLOEXEC),
            "the attack's starting point: inheritable"
        );
        cloexec_from(fd + 1).unwrap();
        assert!(!flags(fd).contains(FdFlag::FD_CLOEXEC), "below the range: left alone");
        cloexec_from(fd).unwrap();
        assert!(flags(fd).contains(FdFlag::FD_CLOEXEC));
        assert!(fcntl(0, FcntlArg::F_GETFD).is_ok(), "nothing is closed");
    }

    #[test]
    fn takes_a_socket_and_refuses_anything_else() {
        let (a, b) = UnixStream::pair().unwrap();
        let raw = a.into_raw_fd();
        let mut taken = take_broker_socket(raw).unwrap();
        let mut b = b;
        taken.write_all(b"hi").unwrap();
        let mut buf = [0u8; 2];
        b.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"hi");

        let file = std::fs::File::open("/dev/null").unwrap().into_raw_fd();
        let err = take_broker_socket(file).unwrap_err();
        assert!(err.to_string().contains("not a Unix stream socket"), "{err}");
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap().into_raw_fd();
        assert!(take_broker_socket(udp).is_err());
        let closed = 987;
        assert!(take_broker_socket(closed).unwrap_err().to_string().contains("not open"));
    }
}
