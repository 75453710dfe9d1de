//! Which socket is on the other end of a connection to the door: one
//! exact question to the kernel (`NETLINK_SOCK_DIAG`, `SOCK_DIAG_BY_FAMILY`
//! without a dump: the socket with these four addresses), answered with
//! its inode. Reading `/proc/net/tcp` instead costs a line per socket the
//! jail ever closed (thousands in `TIME_WAIT` after a busy build), for
//! every connection.
//!
//! The netlink socket is opened while the jail is built, before seccomp
//! (which allows commands no netlink socket), and kept by toold alone
//! (close-on-exec, and toold is not dumpable).

use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsRawFd, OwnedFd};

use nix::sys::socket::{
    recv, sendto, setsockopt, socket, sockopt, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType,
};
use nix::sys::time::TimeVal;

const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLM_F_REQUEST: u16 = 1;
const NLMSG_HDR: usize = 16;
/// `inet_diag_req_v2`: family, protocol, ext, pad, states, then the
/// 48-byte `inet_diag_sockid`.
const REQUEST: usize = 8 + SOCKID;
const SOCKID: usize = 48;
/// `inet_diag_msg`: family, state, timer, retrans, the sockid, then
/// expires, rqueue, wqueue, uid, inode.
const INODE_AT: usize = NLMSG_HDR + 4 + SOCKID + 16;

/// The kernel's socket table, asked one socket at a time.
pub struct SockDiag(OwnedFd);

impl SockDiag {
    pub fn open() -> std::io::Result<SockDiag> {
        let fd = socket(
            AddressFamily::Netlink,
            SockType::Datagram,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkSockDiag,
        )?;
        // Never wait on the kernel for long.
        setsockopt(&fd, sockopt::ReceiveTimeout, &TimeVal::new(1, 0))?;
        Ok(SockDiag(fd))
    }

    /// The inode of the TCP socket bound to `local` and connected to
    /// `remote`, as an IPv4 socket or an IPv6 one speaking IPv4 (mapped).
    pub fn inode(&self, local: SocketAddrV4, remote: SocketAddrV4) -> Option<u64> {
        [libc::AF_INET, libc::AF_INET6]
            .into_iter()
            .find_map(|family| self.ask(family as u8, local, remote))
    }

    fn ask(&self, family: u8, local: SocketAddrV4, remote: SocketAddrV4) -> Option<u64> {
        let request = request(family, local, remote);
        sendto(self.0.as_raw_fd(), &request, &NetlinkAddr::new(0, 0), MsgFlags::empty()).ok()?;
        let mut answer = [0u8; 512];
        let n = recv(self.0.as_raw_fd(), &mut answer, MsgFlags::empty()).ok()?;
        inode_in(&answer[..n])
    }
}

/// The request for the one socket with these addresses.
fn request(family: u8, local: SocketAddrV4, remote: SocketAddrV4) -> Vec<u8> {
    let len = NLMSG_HDR + REQUEST;
    let mut m = Vec::with_capacity(len);
    m.extend_from_slice(&(len as u32).to_ne_bytes());
    m.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    m.extend_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    m.extend_from_slice(&1u32.to_ne_bytes()); // sequence
    m.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel
    m.push(family);
    m.push(libc::IPPROTO_TCP as u8);
    m.push(0); // no extensions
    m.push(0);
    m.extend_from_slice(&u32::MAX.to_ne_bytes()); // any state
                                                  // inet_diag_sockid: ports in network order, then the addresses.
    m.extend_from_slice(&local.port().to_be_bytes());
    m.extend_from_slice(&remote.port().to_be_bytes());
    m.extend_from_slice(&address(family, *local.ip()));
    m.extend_from_slice(&address(family, *remote.ip()));
    m.extend_from_slice(&0u32.to_ne_bytes()); // any interface
    m.extend_from_slice(&u32::MAX.to_ne_bytes()); // no cookie
    m.extend_from_slice(&u32::MAX.to_ne_bytes());
    m
}

/// 16 bytes: an IPv4 address first (AF_INET), or as `::ffff:a.b.c.d`.
fn address(family: u8, ip: Ipv4Addr) -> [u8; 16] {
    let mut out = [0u8; 16];
    if family == libc::AF_INET as u8 {
        out[..4].copy_from_slice(&ip.octets());
    } else {
        out.copy_from_slice(&ip.to_ipv6_mapped().octets());
    }
    out
}

/// The inode in an answer, if it is one (an error answer, ENOENT when no
/// such socket exists, gives None).
fn inode_in(answer: &[u8]) -> Option<u64> {
    let kind = u16::from_ne_bytes(answer.get(4..6)?.try_into().ok()?);
    if kind != SOCK_DIAG_BY_FAMILY {
        return None;
    }
    let inode = u32::from_ne_bytes(answer.get(INODE_AT..INODE_AT + 4)?.try_into().ok()?);
    (inode != 0).then_some(u64::from(inode))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    const NLMSG_ERROR: u16 = 2;

    /// The inode the kernel shows for a socket descriptor of ours.
    fn inode_of(stream: &std::net::TcpStream) -> u64 {
        std::fs::metadata(format!("/proc/self/fd/{}", stream.as_raw_fd()))
            .unwrap()
            .ino()
    }

    #[test]
    fn the_kernel_names_the_client_socket_of_a_connection() {
        let diag = match SockDiag::open() {
            Ok(diag) => diag,
            // A host without sock_diag: toold reads /proc/net/tcp instead.
            // CI's machine has it: there, this must run.
            Err(e) if std::env::var_os("CI").is_none() => return eprintln!("SKIPPED: no sock_diag: {e}"),
            Err(e) => panic!("no sock_diag on a CI machine: {e}"),
        };
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let server = match listener.local_addr().unwrap() {
            std::net::SocketAddr::V4(a) => a,
            _ => unreachable!(),
        };
        let client = std::net::TcpStream::connect(server).unwrap();
        let (_accepted, peer) = listener.accept().unwrap();
        let std::net::SocketAddr::V4(peer) = peer else {
            unreachable!()
        };
        assert_eq!(diag.inode(peer, server), Some(inode_of(&client)));
        // A port nobody uses: nothing, not an error.
        let nobody = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 1);
        assert_eq!(diag.inode(nobody, server), None);
        assert!(inode_in(&[0u8; 8]).is_none());
        let mut error = vec![0u8; 40];
        error[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
        assert!(inode_in(&error).is_none());
    }
}
