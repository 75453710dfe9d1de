//! Handing an accepted connection from one process to another over a Unix
//! socket (`SCM_RIGHTS`), so that the jail's end of the door only accepts
//! and the daemon outside does all the rest, with no bytes copied on the
//! way. Each message carries exactly one descriptor and a short tag (the
//! sender's own words about it, e.g. which jail it came from — never
//! believed for anything that matters: the token in the request decides).
//!
//! The receiver takes descriptors with `MSG_CMSG_CLOEXEC` (none leaks into
//! a child), refuses a message with more or fewer than one, and closes any
//! it did not keep.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};

/// The longest tag a message may carry.
pub const MAX_TAG: usize = 256;

/// Why a passed connection was not received.
#[derive(Debug, thiserror::Error)]
pub enum PassError {
    #[error("the link is closed")]
    Closed,
    #[error("a message with {0} descriptors (one is passed at a time)")]
    Descriptors(usize),
    #[error("the message's descriptors were cut off (control data truncated)")]
    Truncated,
    #[error("the tag is {0} bytes, over {MAX_TAG}")]
    TagTooLong(usize),
    #[error("the link failed: {0}")]
    Io(#[from] nix::Error),
}

/// Sends `connection` with `tag` over `link` (a connected Unix stream).
pub fn send(link: RawFd, connection: &OwnedFd, tag: &[u8]) -> Result<(), PassError> {
    if tag.len() > MAX_TAG {
        return Err(PassError::TagTooLong(tag.len()));
    }
    // At least one byte of data: a message of control data alone may not
    // wake the receiver's read.
    let mut data = Vec::with_capacity(tag.len() + 1);
    data.push(tag.len() as u8);
    data.extend_from_slice(tag);
    let fds = [connection.as_raw_fd()];
    let control = [ControlMessage::ScmRights(&fds)];
    sendmsg::<()>(link, &[IoSlice::new(&data)], &control, MsgFlags::MSG_NOSIGNAL, None)?;
    Ok(())
}

/// Receives one connection and its tag from `link`.
pub fn receive(link: RawFd) -> Result<(OwnedFd, Vec<u8>), PassError> {
    let mut data = [0u8; MAX_TAG + 1];
    let mut space = nix::cmsg_space!([RawFd; 4]);
    let mut iov = [IoSliceMut::new(&mut data)];
    let msg = recvmsg::<()>(link, &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC)?;
    let mut fds: Vec<OwnedFd> = Vec::new();
    for cmsg in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(received) = cmsg {
            // SAFETY: the kernel just installed each of these descriptors
            // in this process for this message; nothing else owns them.
            fds.extend(received.into_iter().map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }));
        }
    }
    let truncated = msg.flags.contains(MsgFlags::MSG_CTRUNC);
    let n = msg.bytes;
    // `fds` closes every descriptor it holds when it goes out of scope.
    if n == 0 && fds.is_empty() {
        return Err(PassError::Closed);
    }
    if truncated {
        return Err(PassError::Truncated);
    }
    if fds.len() != 1 {
        return Err(PassError::Descriptors(fds.len()));
    }
    let tag_len = usize::from(data[0]).min(n.saturating_sub(1));
    let tag = data[1..1 + tag_len].to_vec();
    let fd = fds.pop().ok_or(PassError::Descriptors(0))?;
    Ok((fd, tag))
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::os::unix::net::UnixStream;

    use super::*;

    #[test]
    fn an_accepted_connection_crosses_and_keeps_working() {
        let (jail_end, daemon_end) = UnixStream::pair().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        send(jail_end.as_raw_fd(), &OwnedFd::from(accepted), b"jail 1").unwrap();
        let (fd, tag) = receive(daemon_end.as_raw_fd()).unwrap();
        assert_eq!(tag, b"jail 1");
        let mut served = TcpStream::from(fd);
        client.write_all(b"ping").unwrap();
        let mut got = [0u8; 4];
        served.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"ping");
        // Close-on-exec: it leaks into no child of the daemon.
        let flags = nix::fcntl::fcntl(served.as_raw_fd(), nix::fcntl::FcntlArg::F_GETFD).unwrap();
        assert_ne!(flags & libc::FD_CLOEXEC, 0);
    }

    #[test]
    fn a_message_without_exactly_one_descriptor_is_refused() {
        let (a, b) = UnixStream::pair().unwrap();
        // Data alone, as a confused or hostile sender would write it.
        (&a).write_all(b"\x00").unwrap();
        assert!(matches!(receive(b.as_raw_fd()), Err(PassError::Descriptors(0))));
        // Two descriptors at once.
        let (x, y) = UnixStream::pair().unwrap();
        let fds = [x.as_raw_fd(), y.as_raw_fd()];
        sendmsg::<()>(
            a.as_raw_fd(),
            &[IoSlice::new(b"\x00")],
            &[ControlMessage::ScmRights(&fds)],
            MsgFlags::empty(),
            None,
        )
        .unwrap();
        assert!(matches!(receive(b.as_raw_fd()), Err(PassError::Descriptors(2))));
        drop(a);
        assert!(matches!(receive(b.as_raw_fd()), Err(PassError::Closed)));
        assert!(matches!(
            send(x.as_raw_fd(), &OwnedFd::from(y), &[0u8; MAX_TAG + 1]),
            Err(PassError::TagTooLong(_))
        ));
    }
}
