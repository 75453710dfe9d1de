//! A destination's addresses, each checked by the guard, looked up once:
//! the connection then goes to exactly these addresses, so a DNS answer
//! that changes between the check and the connect (rebinding) cannot move
//! it. `web_fetch` and the egress door both reach the network this way.

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;

use crate::guard::{Guard, Refusal};

/// Name resolution, replaceable in tests (a resolver that changes its
/// answer proves that we ask only once).
pub trait Lookup: Send + Sync {
    fn lookup<'a>(
        &'a self,
        host: &'a str,
        port: u16,
    ) -> Pin<Box<dyn Future<Output = io::Result<Vec<SocketAddr>>> + Send + 'a>>;
}

/// The system resolver.
pub struct SystemLookup;

impl Lookup for SystemLookup {
    fn lookup<'a>(
        &'a self,
        host: &'a str,
        port: u16,
    ) -> Pin<Box<dyn Future<Output = io::Result<Vec<SocketAddr>>> + Send + 'a>> {
        Box::pin(async move { Ok(tokio::net::lookup_host((host, port)).await?.collect()) })
    }
}

/// Why a destination has no address to connect to.
#[derive(Debug, thiserror::Error)]
pub enum Unreachable {
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error("cannot resolve {name}: {source}")]
    Resolve { name: String, source: io::Error },
    #[error("{0} has no address")]
    NoAddress(String),
}

/// The addresses to connect to for `host` (a name, or an address literal,
/// with or without IPv6 brackets) on `port`. Every answer must pass the
/// guard: a name that also points inward is refused rather than tried.
pub async fn checked_addresses(
    host: &str,
    port: u16,
    guard: &Guard,
    lookup: &dyn Lookup,
) -> Result<Vec<SocketAddr>, Unreachable> {
    let literal = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    if let Ok(ip) = literal.parse::<IpAddr>() {
        guard.check(&ip.to_string(), ip, Some(port))?;
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    guard.check_name(host)?;
    let addrs = lookup.lookup(host, port).await.map_err(|source| Unreachable::Resolve {
        name: host.to_string(),
        source,
    })?;
    if addrs.is_empty() {
        return Err(Unreachable::NoAddress(host.to_string()));
    }
    for a in &addrs {
        guard.check(host, a.ip(), Some(port))?;
    }
    Ok(addrs)
}
