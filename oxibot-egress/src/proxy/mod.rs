//! One connection from the jail through the door: the request head is read
//! (bounded in size and time), the destination is decided here — outside
//! the jail — and, if it may be reached, dialled at the one address that
//! was checked, then the bytes are relayed both ways. The caller gets a
//! record of what happened, for the audit.
//!
//! Two request forms, as HTTP proxies take them:
//! - `CONNECT host:port`: a tunnel (TLS end to end: nothing here sees its
//!   plaintext);
//! - `GET http://host[:port]/path` (any method, absolute form): forwarded
//!   as one request in origin form, with `Connection: close`, its
//!   `Proxy-*` headers dropped, and its `Host` required to name the same
//!   place as the URL. A request whose length is ambiguous (both
//!   `Content-Length` and `Transfer-Encoding`, or two lengths) is refused:
//!   the upstream could read a second request out of it.
//!
//! Every connection comes with the key of the exec whose processes opened
//! it (`grants`; the jail's end of the door finds it, no command sees it);
//! when the exec ends its key is revoked and its open connections are
//! closed with it, as is any connection idle for [`IDLE`]. A destination given by name
//! reaches a private address only if that name itself is allowed
//! privately (an address allowed for one service is not reachable by any
//! name that resolves to it). A host whose credential the door sets is
//! reached only by plain requests, whose answers the door scrubs.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::grants::{Grant, Grants};
use crate::guard::Guard;
use crate::inject::{self, Injection, Withheld};
use crate::resolve::{checked_addresses, Lookup, Unreachable};
use oxibot_proto::settings::HostPattern;

pub use crate::MAX_HEAD;
/// A client sends its head at once; a slower one is holding a slot.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a connection of no running exec is listened to.
const KEYLESS_HEAD_TIMEOUT: Duration = Duration::from_secs(1);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A relayed connection with no byte either way for this long is closed.
pub const IDLE: Duration = Duration::from_secs(300);

/// Where the jail's commands may go, and who may ask.
pub struct Policy {
    pub allowed: Vec<HostPattern>,
    pub guard: Guard,
    /// Shared with the link that grants and revokes keys: a reload of
    /// the settings keeps them.
    pub grants: std::sync::Arc<Grants>,
    /// `tools.exec.credentials`: headers set at the door.
    pub injections: Vec<Injection>,
    /// See [`IDLE`] (tests shorten it).
    pub idle: Duration,
}

/// What became of one connection.
#[derive(Debug)]
pub struct Record {
    /// As the client asked (absent when the head could not be read).
    pub host: Option<String>,
    pub port: Option<u16>,
    /// The exec call whose token came with the request.
    pub grant: Option<Grant>,
    /// The credential set on the request, by name.
    pub injected: Option<String>,
    pub decision: Decision,
    /// From the client to the destination, and back.
    pub bytes_up: u64,
    pub bytes_down: u64,
    pub duration: Duration,
    /// How a relayed connection ended (None when it was never relayed).
    pub end: Option<End>,
}

/// Why a connection went through or did not.
#[derive(Debug, thiserror::Error)]
pub enum Decision {
    #[error("allowed")]
    Allowed,
    #[error("the connection came from no running command (a process left behind by an earlier command gets nothing)")]
    NoGrant,
    #[error("{0}:{1} is not in tools.exec.allowedHosts")]
    NotListed(String, u16),
    #[error(transparent)]
    Unreachable(#[from] Unreachable),
    #[error("the destination did not answer: {0}")]
    ConnectFailed(std::io::Error),
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    #[error("the client went away before its request was whole")]
    ClientGone,
    #[error(transparent)]
    Withheld(#[from] Withheld),
    #[error(
        "{0}:{1} has a credential set at the door, which a tunnel would bypass; use http:// (TLS is not yet terminated at the door)"
    )]
    TunnelToCredentialHost(String, u16),
}

/// Serves one accepted connection to its end. `key` is what the jail's end
/// of the door tagged it with: the key of the exec whose processes hold
/// the client's socket (empty when none does).
pub async fn serve<C>(mut client: C, key: &[u8], policy: &Policy, lookup: &dyn Lookup) -> Record
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    let started = Instant::now();
    let mut record = empty(started);
    // The key first: a running exec's bad request is filed under its exec,
    // and a connection of no running exec holds its slot for a moment
    // only (its head is read, for the audit and so that the refusal
    // reaches it, but not waited for).
    let held = policy.grants.held(key);
    let patience = if held.is_some() {
        HEAD_TIMEOUT
    } else {
        KEYLESS_HEAD_TIMEOUT
    };
    record.grant = held.as_ref().map(|h| h.grant.clone());
    let head = tokio::time::timeout(patience, read_head(&mut client)).await;
    let Some(held) = held else {
        if let Ok(Ok(head)) = &head {
            record.host = Some(head.host.clone());
            record.port = Some(head.port);
        }
        return refuse(client, record, Decision::NoGrant, started).await;
    };
    let head = match head {
        Ok(Ok(head)) => head,
        Ok(Err(decision)) => return refuse(client, record, decision, started).await,
        Err(_) => return refuse(client, record, Decision::BadRequest("request head too slow"), started).await,
    };
    record.host = Some(head.host.clone());
    record.port = Some(head.port);
    let mut revoked = held.revoked;
    if !policy.allowed.iter().any(|p| p.allows(&head.host, head.port)) {
        let decision = Decision::NotListed(head.host.clone(), head.port);
        return refuse(client, record, decision, started).await;
    }
    // A host whose credential the door sets is reached only where the
    // door sees the answer: a tunnel would carry back, unscrubbed, what a
    // stateful service kept of an earlier request.
    let credential_host = policy
        .injections
        .iter()
        .any(|i| i.hosts.iter().any(|p| p.allows(&head.host, head.port)));
    if head.forward.is_none() && credential_host {
        let decision = Decision::TunnelToCredentialHost(head.host.clone(), head.port);
        return refuse(client, record, decision, started).await;
    }
    // An address allowed privately is reached by that address, or by a
    // name listed as private itself: not by any name that resolves to it.
    let literal = head
        .host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<std::net::IpAddr>()
        .is_ok();
    let guard = if literal {
        policy.guard.clone()
    } else {
        policy.guard.names_only()
    };
    let addresses = match checked_addresses(&head.host, head.port, &guard, lookup).await {
        Ok(a) => a,
        Err(e) => return refuse(client, record, e.into(), started).await,
    };
    let mut upstream = match connect(&addresses).await {
        Ok(s) => s,
        Err(e) => return refuse(client, record, Decision::ConnectFailed(e), started).await,
    };
    let credential = head
        .forward
        .as_ref()
        .and_then(|_| inject::for_plain_http(&policy.injections, &head.host, head.port, &addresses));
    if let (Some(forward), Some(injection)) = (&head.forward, credential) {
        record.injected = Some(injection.name.clone());
        let value = format!("{}{}", injection.prefix, injection.secret);
        let sent = upstream
            .write_all(&forward.render(Some((&injection.header, &value))))
            .await;
        if sent.is_ok() && !head.rest.is_empty() {
            record.bytes_up += head.rest.len() as u64;
            let _ = upstream.write_all(&head.rest).await;
        }
        let value = format!("{}{}", injection.prefix, injection.secret);
        let (host, port, grant) = (record.host.clone(), record.port, record.grant.clone());
        let relayed = relay_injected(client, upstream, [&injection.secret, &value], record, policy.idle);
        let mut record = tokio::select! {
            record = relayed => record,
            _ = revoked.changed() => {
                // The client and the upstream go with the relay.
                Record {
                    host,
                    port,
                    grant,
                    injected: Some(injection.name.clone()),
                    end: Some(End::Revoked),
                    ..empty(started)
                }
            }
        };
        record.duration = started.elapsed();
        return record;
    }
    let sent_first = match &head.forward {
        Some(forward) => upstream.write_all(&forward.render(None)).await,
        None => client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n").await,
    };
    if sent_first.is_ok() && !head.rest.is_empty() {
        record.bytes_up += head.rest.len() as u64;
        let _ = upstream.write_all(&head.rest).await;
    }
    let (up, down, end) = relay::both_ways(&mut client, &mut upstream, &mut revoked, policy.idle).await;
    record.bytes_up += up;
    record.bytes_down += down;
    record.end = Some(end);
    record.duration = started.elapsed();
    record
}

/// A record with nothing in it yet.
fn empty(started: Instant) -> Record {
    Record {
        host: None,
        port: None,
        grant: None,
        injected: None,
        decision: Decision::Allowed,
        bytes_up: 0,
        bytes_down: 0,
        duration: started.elapsed(),
        end: None,
    }
}

/// The answer to a request that carried a credential: scrubbed of it on
/// the way back (see `inject::relay_scrubbed`); the request body goes on
/// as it is.
async fn relay_injected<C>(
    client: C,
    mut upstream: TcpStream,
    secrets: [&str; 2],
    mut record: Record,
    idle: Duration,
) -> Record
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    let (mut client_read, mut client_write) = tokio::io::split(client);
    let (mut upstream_read, mut upstream_write) = upstream.split();
    let answer = {
        let up = async {
            let n = tokio::io::copy(&mut client_read, &mut upstream_write)
                .await
                .unwrap_or(0);
            let _ = upstream_write.shutdown().await;
            n
        };
        let down = inject::relay_scrubbed(&mut upstream_read, &mut client_write, &secrets, idle);
        tokio::pin!(up, down);
        let mut up_done = false;
        // The answer ends the exchange; the request side may still be open.
        loop {
            tokio::select! {
                n = &mut up, if !up_done => {
                    up_done = true;
                    record.bytes_up += n;
                }
                answer = &mut down => break answer,
            }
        }
    };
    match answer {
        Ok(n) => record.bytes_down += n,
        Err(withheld) => {
            let decision = Decision::Withheld(withheld);
            let body = format!("OxiBot egress: {decision}\n");
            let _ = client_write
                .write_all(
                    format!(
                        "HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    )
                    .as_bytes(),
                )
                .await;
            let _ = client_write.shutdown().await;
            record.decision = decision;
        }
    }
    record
}

async fn refuse<C: AsyncWrite + Unpin>(
    mut client: C,
    mut record: Record,
    decision: Decision,
    started: Instant,
) -> Record {
    let status = match &decision {
        Decision::NoGrant | Decision::NotListed(..) | Decision::Unreachable(Unreachable::Refused(_)) => "403 Forbidden",
        Decision::Unreachable(_) | Decision::ConnectFailed(_) => "502 Bad Gateway",
        Decision::BadRequest(_) => "400 Bad Request",
        Decision::Withheld(_) => "502 Bad Gateway",
        Decision::TunnelToCredentialHost(..) => "403 Forbidden",
        Decision::ClientGone | Decision::Allowed => "400 Bad Request",
    };
    if !matches!(decision, Decision::ClientGone) {
        // The reason is OxiBot's own words (no secret is in them): the
        // command that was refused learns why, and what to configure.
        let body = format!("OxiBot egress: {decision}\n");
        let answer = format!(
            "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = client.write_all(answer.as_bytes()).await;
        let _ = client.shutdown().await;
    }
    record.decision = decision;
    record.duration = started.elapsed();
    record
}

async fn connect(addresses: &[SocketAddr]) -> std::io::Result<TcpStream> {
    let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "no address");
    for a in addresses {
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(a)).await {
            Ok(Ok(s)) => return Ok(s),
            Ok(Err(e)) => last = e,
            Err(_) => last = std::io::Error::new(std::io::ErrorKind::TimedOut, format!("{a}: no answer")),
        }
    }
    Err(last)
}

mod head;
mod relay;

use head::read_head;
pub use relay::End;

#[cfg(test)]
mod tests;
