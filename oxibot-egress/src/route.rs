//! What the routing table says about a destination, asked of the kernel
//! over netlink (`RTM_GETROUTE` with `RTM_F_FIB_MATCH`: the route entry that
//! would carry the packet, with its real prefix).
//!
//! Address ranges alone miss the host's own public addresses and the
//! global IPv6 addresses of the devices on its links (router, NAS,
//! printer): they look public, and a service bound to `0.0.0.0` or `[::]`
//! answers on them. The kernel knows better: an address assigned to this
//! host has a `local` route, and a device on an attached network is reached
//! by a route without a gateway. A default route without a gateway (a
//! WireGuard or PPP link carrying everything) is not "on-link": its prefix
//! is /0, and refusing it would refuse the whole internet.

use std::io;
use std::net::IpAddr;
use std::os::fd::AsRawFd;

use nix::sys::socket::{
    recv, sendto, setsockopt, socket, sockopt, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType,
};
use nix::sys::time::TimeVal;

/// Where the kernel would send a packet for an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// Assigned to this host (a `local` route).
    ThisHost,
    /// A broadcast or anycast address of an attached network.
    Broadcast,
    /// On a network this host is attached to: no gateway on the way.
    OnLink,
    /// Through a gateway, or no route at all (the connect then fails).
    Elsewhere,
}

const RTM_NEWROUTE: u16 = 24;
const RTM_GETROUTE: u16 = 26;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 1;
const RTM_F_FIB_MATCH: u32 = 0x2000;
const RTA_DST: u16 = 1;
const RTA_GATEWAY: u16 = 5;
const RTA_MULTIPATH: u16 = 9;
const RTA_VIA: u16 = 18;
const RTA_UID: u16 = 25;
const RTA_IP_PROTO: u16 = 27;
const RTA_DPORT: u16 = 29;
const RTN_UNICAST: u8 = 1;
const RTN_LOCAL: u8 = 2;
const RTN_BROADCAST: u8 = 3;
const RTN_ANYCAST: u8 = 4;
const NLMSG_HDR: usize = 16;
const RTMSG: usize = 12;

/// Asks the kernel about a TCP connection from this process to `ip` (and
/// `port`, when known): the protocol, port and uid go with the question,
/// so that policy routing (`ip rule … ipproto tcp dport …`, `uidrange`)
/// answers as it would for the real connection. An error (no netlink, a
/// kernel that does not answer) is the caller's to treat as a refusal.
pub fn reach(ip: IpAddr, port: Option<u16>) -> io::Result<Reach> {
    let fd = socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkRoute,
    )?;
    // Never wait on the kernel for long: a fetch would hang on it.
    setsockopt(&fd, sockopt::ReceiveTimeout, &TimeVal::new(1, 0))?;
    let uid = nix::unistd::geteuid().as_raw();
    sendto(
        fd.as_raw_fd(),
        &request(ip, port, uid),
        &NetlinkAddr::new(0, 0),
        MsgFlags::empty(),
    )?;
    let mut buf = vec![0u8; 8192];
    let n = recv(fd.as_raw_fd(), &mut buf, MsgFlags::empty())?;
    parse(&buf[..n])
}

/// One route attribute, padded to four bytes.
fn attr(m: &mut Vec<u8>, kind: u16, value: &[u8]) {
    m.extend_from_slice(&((4 + value.len()) as u16).to_ne_bytes());
    m.extend_from_slice(&kind.to_ne_bytes());
    m.extend_from_slice(value);
    while !m.len().is_multiple_of(4) {
        m.push(0);
    }
}

/// `RTM_GETROUTE` for a TCP connection to one address.
fn request(ip: IpAddr, port: Option<u16>, uid: u32) -> Vec<u8> {
    let (family, addr): (u8, Vec<u8>) = match ip {
        IpAddr::V4(v4) => (nix::libc::AF_INET as u8, v4.octets().to_vec()),
        IpAddr::V6(v6) => (nix::libc::AF_INET6 as u8, v6.octets().to_vec()),
    };
    let mut m = Vec::with_capacity(64);
    m.extend_from_slice(&0u32.to_ne_bytes()); // the length, set below
    m.extend_from_slice(&RTM_GETROUTE.to_ne_bytes());
    m.extend_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    m.extend_from_slice(&1u32.to_ne_bytes()); // sequence
    m.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills it
                                              // rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags
    m.extend_from_slice(&[family, (addr.len() * 8) as u8, 0, 0, 0, 0, 0, 0]);
    m.extend_from_slice(&RTM_F_FIB_MATCH.to_ne_bytes());
    attr(&mut m, RTA_DST, &addr);
    attr(&mut m, RTA_IP_PROTO, &[nix::libc::IPPROTO_TCP as u8]);
    if let Some(port) = port {
        // Network byte order, as the kernel reads it.
        attr(&mut m, RTA_DPORT, &port.to_be_bytes());
    }
    attr(&mut m, RTA_UID, &uid.to_ne_bytes());
    let total = m.len() as u32;
    m[..4].copy_from_slice(&total.to_ne_bytes());
    m
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// The kernel's answer: one `RTM_NEWROUTE`, or an error message.
fn parse(reply: &[u8]) -> io::Result<Reach> {
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, format!("netlink answer: {what}"));
    let len = u32_at(reply, 0).ok_or_else(|| bad("too short"))? as usize;
    let kind = u16_at(reply, 4).ok_or_else(|| bad("too short"))?;
    let msg = reply.get(..len).ok_or_else(|| bad("length past the end"))?;
    match kind {
        NLMSG_ERROR => {
            let code = u32_at(msg, NLMSG_HDR).ok_or_else(|| bad("short error"))? as i32;
            // No route at all: the connect would fail; nothing to refuse.
            if [nix::libc::ENETUNREACH, nix::libc::EHOSTUNREACH, nix::libc::ESRCH].contains(&-code) {
                return Ok(Reach::Elsewhere);
            }
            Err(io::Error::from_raw_os_error(-code))
        }
        RTM_NEWROUTE => {
            let rt = msg
                .get(NLMSG_HDR..NLMSG_HDR + RTMSG)
                .ok_or_else(|| bad("short route"))?;
            let (dst_len, route_type) = (rt[1], rt[7]);
            let mut gateway = false;
            let mut at = NLMSG_HDR + RTMSG;
            while let Some(attr_len) = u16_at(msg, at) {
                let attr_len = attr_len as usize;
                if attr_len < 4 {
                    break;
                }
                let attr_type = u16_at(msg, at + 2).unwrap_or(0) & 0x3fff;
                gateway |= [RTA_GATEWAY, RTA_VIA, RTA_MULTIPATH].contains(&attr_type);
                at += (attr_len + 3) & !3;
            }
            Ok(match route_type {
                RTN_LOCAL => Reach::ThisHost,
                RTN_BROADCAST | RTN_ANYCAST => Reach::Broadcast,
                RTN_UNICAST if !gateway && dst_len > 0 => Reach::OnLink,
                _ => Reach::Elsewhere,
            })
        }
        other => Err(bad(&format!("unexpected message type {other}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(route_type: u8, dst_len: u8, attrs: &[(u16, &[u8])]) -> Vec<u8> {
        let mut body = vec![
            nix::libc::AF_INET as u8,
            dst_len,
            0,
            0,
            254,
            2,
            0,
            route_type,
            0,
            0,
            0,
            0,
        ];
        for (t, v) in attrs {
            let len = 4 + v.len();
            body.extend_from_slice(&(len as u16).to_ne_bytes());
            body.extend_from_slice(&t.to_ne_bytes());
            body.extend_from_slice(v);
            while !body.len().is_multiple_of(4) {
                body.push(0);
            }
        }
        let mut m = ((NLMSG_HDR + body.len()) as u32).to_ne_bytes().to_vec();
        m.extend_from_slice(&RTM_NEWROUTE.to_ne_bytes());
        m.extend_from_slice(&[0; 10]);
        m.extend_from_slice(&body);
        m
    }

    #[test]
    fn answers_are_read_as_the_kernel_means_them() {
        assert_eq!(parse(&route(RTN_LOCAL, 32, &[])).unwrap(), Reach::ThisHost);
        assert_eq!(parse(&route(RTN_BROADCAST, 32, &[])).unwrap(), Reach::Broadcast);
        // A connected /24: on-link.
        assert_eq!(
            parse(&route(RTN_UNICAST, 24, &[(4, &[2, 0, 0, 0])])).unwrap(),
            Reach::OnLink
        );
        // Through a gateway.
        let gw = route(RTN_UNICAST, 0, &[(RTA_GATEWAY, &[192, 0, 2, 1]), (4, &[2, 0, 0, 0])]);
        assert_eq!(parse(&gw).unwrap(), Reach::Elsewhere);
        // A default route over a tunnel, no gateway: not "on-link".
        assert_eq!(
            parse(&route(RTN_UNICAST, 0, &[(4, &[5, 0, 0, 0])])).unwrap(),
            Reach::Elsewhere
        );
        // No route: the connect fails by itself.
        let mut err = ((NLMSG_HDR + 4) as u32).to_ne_bytes().to_vec();
        err.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
        err.extend_from_slice(&[0; 10]);
        err.extend_from_slice(&(-nix::libc::ENETUNREACH).to_ne_bytes());
        assert_eq!(parse(&err).unwrap(), Reach::Elsewhere);
        // Garbage is an error, never a pass.
        assert!(parse(&[1, 2, 3]).is_err());
        assert!(parse(&[200, 0, 0, 0, 24, 0]).is_err());
    }

    #[test]
    fn the_kernel_knows_loopback_is_this_host() {
        assert_eq!(reach("127.0.0.1".parse().unwrap(), Some(80)).unwrap(), Reach::ThisHost);
        assert_eq!(reach("127.0.0.1".parse().unwrap(), None).unwrap(), Reach::ThisHost);
        if std::path::Path::new("/proc/net/if_inet6").exists() {
            assert_eq!(reach("::1".parse().unwrap(), Some(443)).unwrap(), Reach::ThisHost);
        }
    }
}
