//! Which destinations `web_fetch` may reach. The model chooses URLs, and a
//! page it reads may choose them for it, so every address is checked:
//! loopback, private, link-local, CGNAT, multicast, unspecified and
//! reserved ranges, the IPv4 inside IPv4-mapped, 6to4, Teredo and NAT64
//! addresses, and the cloud metadata names, are refused unless
//! `tools.web.allowPrivate` lists them. So is what the routing table says
//! is this host or on its links (`route`): the host's own public addresses,
//! and the global IPv6 addresses of the devices next to it, look public.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Names of cloud metadata services (their addresses are link-local or
/// private, and refused as such; the names are refused before any lookup).
const METADATA_NAMES: &[&str] = &[
    "metadata",
    "metadata.google.internal",
    "metadata.goog",
    "instance-data",
    "instance-data.ec2.internal",
];

/// How the guard asks the routing table (a test answers for the kernel):
/// the address, and the TCP port when known (policy routing may go by it).
pub type RouteQuery = fn(IpAddr, Option<u16>) -> std::io::Result<crate::route::Reach>;

#[derive(Debug, Clone)]
pub struct Guard {
    hosts: Vec<String>,
    nets: Vec<(IpAddr, u8)>,
    route: RouteQuery,
}

impl Default for Guard {
    fn default() -> Self {
        Guard {
            hosts: Vec::new(),
            nets: Vec::new(),
            route: crate::route::reach,
        }
    }
}

/// Why an address is not reached. Displayed as the sentence the model and
/// the audit read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("{host} is a cloud metadata service; refused (list it in tools.web.allowPrivate to allow it)")]
    Metadata { host: String },
    #[error(
        "{shown} is a {why} address; OxiBot reaches only the public internet \
         (the admin may list it in tools.web.allowPrivate)"
    )]
    NotPublic { shown: String, why: NotPublic },
}

/// What kind of address that is not on the public internet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotPublic {
    /// A reserved range (private, loopback, link-local, …).
    #[error("{0}")]
    Range(&'static str),
    #[error("this host's own (assigned to one of its interfaces)")]
    ThisHost,
    #[error("broadcast or anycast (of a network this host is on)")]
    Broadcast,
    #[error("on-link (on a network this host is attached to, reached without a gateway)")]
    OnLink,
    /// Not knowing is not a pass.
    #[error("unchecked (the routing table could not be asked: {0})")]
    Unchecked(String),
}

/// A `tools.web.allowPrivate` entry that means nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadAllowEntry {
    #[error("tools.web.allowPrivate: \"{0}\" is not a CIDR block")]
    NotCidr(String),
    #[error("tools.web.allowPrivate: \"{0}\" has a bad prefix length")]
    PrefixLength(String),
}

impl Guard {
    /// From `tools.web.allowPrivate`: host names, addresses, CIDR blocks.
    pub fn new(allow: &[String]) -> Result<Guard, BadAllowEntry> {
        let mut guard = Guard::default();
        for entry in allow {
            let entry = entry.trim();
            if let Some((addr, bits)) = entry.split_once('/') {
                let ip: IpAddr = addr.parse().map_err(|_| BadAllowEntry::NotCidr(entry.to_string()))?;
                let max = if ip.is_ipv4() { 32 } else { 128 };
                let bits: u8 = bits
                    .parse()
                    .ok()
                    .filter(|b| *b <= max)
                    .ok_or_else(|| BadAllowEntry::PrefixLength(entry.to_string()))?;
                guard.nets.push((ip, bits));
            } else if let Ok(ip) = entry.trim_matches(|c| c == '[' || c == ']').parse::<IpAddr>() {
                guard.nets.push((ip, if ip.is_ipv4() { 32 } else { 128 }));
            } else if !entry.is_empty() {
                guard.hosts.push(normal_host(entry));
            }
        }
        Ok(guard)
    }

    /// The same guard with its allowed addresses and blocks left out, names
    /// kept: for a destination given by name where an address allowed for
    /// something else must not become reachable by any name that resolves
    /// to it (the egress door: a name whose DNS a stranger controls).
    pub fn names_only(&self) -> Guard {
        Guard {
            nets: Vec::new(),
            ..self.clone()
        }
    }

    fn host_allowed(&self, host: &str) -> bool {
        self.hosts.contains(&normal_host(host))
    }

    /// A host name, before it is looked up.
    pub fn check_name(&self, host: &str) -> Result<(), Refusal> {
        let host = normal_host(host);
        if METADATA_NAMES.contains(&host.as_str()) && !self.host_allowed(&host) {
            return Err(Refusal::Metadata { host });
        }
        Ok(())
    }

    /// The same guard asking `route` instead of the kernel (tests, here
    /// and in the crates that use the guard).
    pub fn with_routes(self, route: RouteQuery) -> Guard {
        Guard { route, ..self }
    }

    /// An address `host` resolved to (or is), port unknown.
    pub fn check_ip(&self, host: &str, ip: IpAddr) -> Result<(), Refusal> {
        self.check(host, ip, None)
    }

    /// An address `host` resolved to (or is), and the TCP port the fetch
    /// connects to. Checked at every hop.
    pub fn check(&self, host: &str, ip: IpAddr, port: Option<u16>) -> Result<(), Refusal> {
        // An IPv4-mapped IPv6 address is an IPv4 connection from a
        // dual-stack socket: judged (ranges, routes, the allow-list) as the
        // IPv4 address it carries, or the kernel is asked about an IPv6
        // destination it has no route for and says "elsewhere".
        let ip = ip.to_canonical();
        if self.host_allowed(host) || self.nets.iter().any(|(net, bits)| contains(*net, *bits, ip)) {
            return Ok(());
        }
        let why = match forbidden(ip) {
            Some(range) => NotPublic::Range(range),
            None => match (self.route)(ip, port) {
                Ok(crate::route::Reach::Elsewhere) => return Ok(()),
                Ok(crate::route::Reach::ThisHost) => NotPublic::ThisHost,
                Ok(crate::route::Reach::Broadcast) => NotPublic::Broadcast,
                Ok(crate::route::Reach::OnLink) => NotPublic::OnLink,
                Err(e) => NotPublic::Unchecked(e.to_string()),
            },
        };
        let shown = if host == ip.to_string() {
            ip.to_string()
        } else {
            format!("{host} ({ip})")
        };
        Err(Refusal::NotPublic { shown, why })
    }
}

fn normal_host(host: &str) -> String {
    host.trim_end_matches('.').to_ascii_lowercase()
}

fn contains(net: IpAddr, bits: u8, ip: IpAddr) -> bool {
    match (net, ip) {
        (IpAddr::V4(n), IpAddr::V4(i)) => prefix_eq(u32::from(n) as u128, u32::from(i) as u128, bits, 32),
        (IpAddr::V6(n), IpAddr::V6(i)) => prefix_eq(u128::from(n), u128::from(i), bits, 128),
        _ => false,
    }
}

fn prefix_eq(a: u128, b: u128, bits: u8, width: u8) -> bool {
    if bits == 0 {
        return true;
    }
    let shift = u32::from(width - bits.min(width));
    (a >> shift) == (b >> shift)
}

fn in_v4(ip: Ipv4Addr, net: [u8; 4], bits: u8) -> bool {
    prefix_eq(u32::from(Ipv4Addr::from(net)) as u128, u32::from(ip) as u128, bits, 32)
}

fn in_v6(ip: Ipv6Addr, net: Ipv6Addr, bits: u8) -> bool {
    prefix_eq(u128::from(net), u128::from(ip), bits, 128)
}

/// Why an address is not on the public internet, or None when it is.
pub fn forbidden(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => forbidden_v6(v6),
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> Option<&'static str> {
    const RANGES: &[([u8; 4], u8, &str)] = &[
        ([0, 0, 0, 0], 8, "unspecified (\"this network\")"),
        ([10, 0, 0, 0], 8, "private"),
        ([100, 64, 0, 0], 10, "carrier-grade NAT (shared)"),
        ([127, 0, 0, 0], 8, "loopback"),
        ([169, 254, 0, 0], 16, "link-local (cloud metadata lives here)"),
        ([172, 16, 0, 0], 12, "private"),
        ([192, 0, 0, 0], 24, "IETF protocol assignment"),
        ([192, 0, 2, 0], 24, "documentation"),
        ([192, 88, 99, 0], 24, "6to4 relay anycast"),
        ([192, 168, 0, 0], 16, "private"),
        ([198, 18, 0, 0], 15, "benchmarking"),
        ([198, 51, 100, 0], 24, "documentation"),
        ([203, 0, 113, 0], 24, "documentation"),
        ([224, 0, 0, 0], 4, "multicast"),
        ([240, 0, 0, 0], 4, "reserved (and broadcast)"),
    ];
    RANGES
        .iter()
        .find(|(net, bits, _)| in_v4(ip, *net, *bits))
        .map(|(_, _, why)| *why)
}

fn forbidden_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let v = u128::from(ip);
    let low32 = Ipv4Addr::from((v & 0xffff_ffff) as u32);
    if ip.is_unspecified() {
        return Some("unspecified");
    }
    if ip.is_loopback() {
        return Some("loopback");
    }
    // IPv4-mapped (::ffff:a.b.c.d) and IPv4-compatible (::a.b.c.d):
    // judged by the IPv4 inside.
    // IPv4-translated (::ffff:0:a.b.c.d, SIIT) likewise.
    if in_v6(ip, Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0, 0), 96)
        || in_v6(ip, Ipv6Addr::UNSPECIFIED, 96)
        || in_v6(ip, Ipv6Addr::new(0, 0, 0, 0, 0xffff, 0, 0, 0), 96)
    {
        return forbidden_v4(low32).map(|_| "IPv4-embedded non-public");
    }
    // NAT64 (64:ff9b::/96): the IPv4 it reaches.
    if in_v6(ip, Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0), 96) {
        return forbidden_v4(low32).map(|_| "NAT64-embedded non-public");
    }
    // Local-use NAT64 (64:ff9b:1::/48): a site's own translator.
    if in_v6(ip, Ipv6Addr::new(0x64, 0xff9b, 1, 0, 0, 0, 0, 0), 48) {
        return Some("local-use NAT64");
    }
    // 6to4 (2002:a.b.c.d::/48): the IPv4 in bits 16..48.
    if in_v6(ip, Ipv6Addr::new(0x2002, 0, 0, 0, 0, 0, 0, 0), 16) {
        let embedded = Ipv4Addr::from(((v >> 80) & 0xffff_ffff) as u32);
        return forbidden_v4(embedded).map(|_| "6to4-embedded non-public");
    }
    // Teredo (2001:0::/32): the client's IPv4, inverted, in the low bits.
    if in_v6(ip, Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0), 32) {
        let client = Ipv4Addr::from(!((v & 0xffff_ffff) as u32));
        return forbidden_v4(client).map(|_| "Teredo-embedded non-public");
    }
    const RANGES: &[(Ipv6Addr, u8, &str)] = &[
        (Ipv6Addr::new(0x100, 0, 0, 0, 0, 0, 0, 0), 64, "discard-only"),
        (Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0), 32, "documentation"),
        (Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0), 7, "unique local (private)"),
        (Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 10, "link-local"),
        (Ipv6Addr::new(0xfec0, 0, 0, 0, 0, 0, 0, 0), 10, "site-local"),
        (Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0), 8, "multicast"),
    ];
    RANGES
        .iter()
        .find(|(net, bits, _)| in_v6(ip, *net, *bits))
        .map(|(_, _, why)| *why)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(ip: &str) -> bool {
        forbidden(ip.parse().unwrap()).is_some()
    }

    #[test]
    fn every_non_public_range_is_refused() {
        for ip in [
            "127.0.0.1",
            "127.255.0.9",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.100.100.200",
            "0.0.0.0",
            "224.0.0.1",
            "239.255.255.250",
            "255.255.255.255",
            "240.0.0.1",
            "198.18.0.1",
            "192.0.0.170",
            "::1",
            "::",
            "fe80::1",
            "fc00::1",
            "fd00:ec2::254",
            "ff02::1",
            "fec0::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::127.0.0.1",
            "64:ff9b::a00:1",
            "64:ff9b:1::8.8.8.8",
            "2002:7f00:1::",
            "2002:c0a8:101::1",
            "2002:a9fe:a9fe::",
            "2001:0:4136:e378:8000:63bf:80ff:fffe", // Teredo, client 127.0.0.1
            "2001:db8::1",
            "100::1",
        ] {
            assert!(refused(ip), "{ip} was allowed");
        }
    }

    #[test]
    fn public_addresses_pass() {
        for ip in [
            "8.8.8.8",
            "1.1.1.1",
            "93.184.216.34",
            "172.32.0.1",
            "100.128.0.1",
            "192.169.0.1",
            "2606:4700:4700::1111",
            "2a00:1450:4001:80b::200e",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ] {
            assert!(!refused(ip), "{ip} was refused: {:?}", forbidden(ip.parse().unwrap()));
        }
    }

    #[test]
    fn the_allow_list_opens_exactly_what_it_names() {
        let g = Guard::new(&["192.168.1.0/24".into(), "nas.local".into(), "::1".into()]).unwrap();
        assert!(g.check_ip("x", "192.168.1.20".parse().unwrap()).is_ok());
        assert!(g.check_ip("x", "192.168.2.20".parse().unwrap()).is_err());
        assert!(g.check_ip("NAS.local.", "10.0.0.5".parse().unwrap()).is_ok());
        assert!(g.check_ip("other.local", "10.0.0.5".parse().unwrap()).is_err());
        assert!(g.check_ip("::1", "::1".parse().unwrap()).is_ok());
        assert!(g.check_ip("127.0.0.1", "127.0.0.1".parse().unwrap()).is_err());
        let e = Guard::default()
            .check_ip("db.internal", "10.0.0.5".parse().unwrap())
            .unwrap_err();
        assert_eq!(
            e,
            Refusal::NotPublic {
                shown: "db.internal (10.0.0.5)".into(),
                why: NotPublic::Range("private")
            }
        );
        assert!(
            e.to_string().contains("db.internal (10.0.0.5) is a private address"),
            "{e}"
        );
        assert!(Guard::default().check_name("metadata.google.internal.").is_err());
        assert!(Guard::new(&["metadata.google.internal".into()])
            .unwrap()
            .check_name("metadata.google.internal")
            .is_ok());
        assert!(Guard::new(&["10.0.0.0/33".into()]).is_err());
    }
}
