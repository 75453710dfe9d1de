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
//!   as one request in origin form, with `Connection: close` and its body
//!   as its head frames it (nothing written behind it goes on), its
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
use crate::tls::{Authority, TlsError};
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
    /// Answers the jail's TLS for hosts with a credential (None: such a
    /// host is refused to tunnels, reached by plain loopback HTTP only).
    pub authority: Option<std::sync::Arc<Authority>>,
    /// How the door checks those hosts' real certificates.
    pub upstream_tls: std::sync::Arc<rustls::ClientConfig>,
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
    #[error("{0}:{1} is not in this MCP server's allowedHosts")]
    NotListedForServer(String, u16),
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
    #[error("{0}:{1} has a credential set at the door, which cannot answer TLS (no certificate authority)")]
    TunnelToCredentialHost(String, u16),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("the TLS server name (SNI) {0:?} is not the host the tunnel was opened to")]
    OtherServerName(String),
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
    let head = tokio::time::timeout(patience, read_head(&mut client, None)).await;
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
    // An MCP server's key has its own list; an exec's, the jail's.
    let (allowed, own_list) = match &held.grant.hosts {
        Some(hosts) => (hosts, true),
        None => (&policy.allowed, false),
    };
    if !allowed.iter().any(|p| p.allows(&head.host, head.port)) {
        let decision = if own_list {
            Decision::NotListedForServer(head.host.clone(), head.port)
        } else {
            Decision::NotListed(head.host.clone(), head.port)
        };
        return refuse(client, record, decision, started).await;
    }
    // A host whose credential the door sets is reached only where the
    // door sees the answer (it scrubs the credential from it): a tunnel
    // to it is answered by the door's own TLS.
    let credentials: Vec<&Injection> = policy
        .injections
        .iter()
        .filter(|i| i.hosts.iter().any(|p| p.allows(&head.host, head.port)))
        .collect();
    let terminate = head.forward.is_none() && !credentials.is_empty();
    let authority = match (&policy.authority, terminate) {
        (Some(a), true) => Some(a.clone()),
        (None, true) => {
            let decision = Decision::TunnelToCredentialHost(head.host.clone(), head.port);
            return refuse(client, record, decision, started).await;
        }
        _ => None,
    };
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
    // Only a credential this exec was given (its chat, its kind of turn).
    let granted = |i: &Injection| held.grant.credentials.contains(&i.name);
    if let Some(authority) = authority {
        let credential = credentials.iter().copied().find(|i| granted(i));
        let secrets: Vec<&str> = credentials.iter().map(|i| i.secret.as_str()).collect();
        let (host, port) = (head.host.clone(), head.port);
        // A hello sent with the CONNECT is read first.
        let client = prefixed::Prefixed::new(head.rest, client);
        let terminated = terminated(
            client,
            upstream,
            &authority,
            (&host, port),
            credential,
            &secrets,
            policy,
            record,
        );
        let mut record = tokio::select! {
            record = terminated => record,
            _ = revoked.changed() => Record {
                host: Some(host),
                port: Some(port),
                grant: Some(held.grant.clone()),
                end: Some(End::Revoked),
                ..empty(started)
            },
        };
        record.duration = started.elapsed();
        return record;
    }
    // A plain request to a host with a credential: set only on loopback
    // (elsewhere it would cross the wire in clear), and the answer is
    // scrubbed of the host's secrets either way.
    if let (Some(forward), false) = (&head.forward, credentials.is_empty()) {
        let injection = inject::for_plain_http(&policy.injections, &head.host, head.port, &addresses, granted);
        let value = injection.map(|i| (i.header.as_str(), format!("{}{}", i.prefix, i.secret)));
        if upstream
            .write_all(&forward.render(value.as_ref().map(|(h, v)| (*h, v.as_str())), true))
            .await
            .is_err()
        {
            return refuse(
                client,
                record,
                Decision::ConnectFailed(std::io::ErrorKind::BrokenPipe.into()),
                started,
            )
            .await;
        }
        record.injected = injection.map(|i| i.name.clone());
        let mut secrets: Vec<&str> = credentials.iter().map(|i| i.secret.as_str()).collect();
        if let Some((_, v)) = &value {
            secrets.push(v);
        }
        let (host, port, grant, injected) = (
            record.host.clone(),
            record.port,
            record.grant.clone(),
            record.injected.clone(),
        );
        let relayed = relay_injected(
            client,
            upstream,
            &secrets,
            (head.rest, forward.body),
            record,
            policy.idle,
        );
        let mut record = tokio::select! {
            record = relayed => record,
            _ = revoked.changed() => {
                // The client and the upstream go with the relay.
                Record {
                    host,
                    port,
                    grant,
                    injected,
                    end: Some(End::Revoked),
                    ..empty(started)
                }
            }
        };
        record.duration = started.elapsed();
        return record;
    }
    let sent_first = match &head.forward {
        Some(forward) => upstream.write_all(&forward.render(None, false)).await,
        None => client.write_all(ESTABLISHED).await,
    };
    let mut first = head.rest;
    if sent_first.is_ok() && head.forward.is_none() {
        // A tunnel opened to one host does not speak TLS to another that
        // shares its address (a CDN's other customers).
        match tunnel::opening(&mut client, &mut upstream, first, &head.host, policy.idle, &mut revoked).await {
            Ok(opening) => first = opening,
            Err(decision) => {
                record.decision = decision;
                record.duration = started.elapsed();
                return record;
            }
        }
    }
    if let (Some(forward), Ok(())) = (&head.forward, &sent_first) {
        // A plain request: its body, then only the answer.
        let (mut client_read, mut client_write) = tokio::io::split(client);
        let (mut upstream_read, mut upstream_write) = upstream.split();
        let up = send_body(&mut client_read, &mut upstream_write, first, forward.body);
        let down = relay::one_way(&mut upstream_read, &mut client_write, &mut revoked, policy.idle);
        tokio::pin!(up, down);
        let mut up_done = false;
        // The answer ends the exchange; the request side may still be open.
        let (down, end) = loop {
            tokio::select! {
                n = &mut up, if !up_done => {
                    up_done = true;
                    record.bytes_up += n;
                }
                answer = &mut down => break answer,
            }
        };
        record.bytes_down += down;
        record.end = Some(end);
        record.duration = started.elapsed();
        return record;
    }
    if sent_first.is_ok() && !first.is_empty() {
        record.bytes_up += first.len() as u64;
        let _ = upstream.write_all(&first).await;
    }
    let (up, down, end) = relay::both_ways(&mut client, &mut upstream, &mut revoked, policy.idle).await;
    record.bytes_up += up;
    record.bytes_down += down;
    record.end = Some(end);
    record.duration = started.elapsed();
    record
}

const ESTABLISHED: &[u8] = b"HTTP/1.1 200 Connection established\r\n\r\n";

/// A tunnel to a host with a credential, answered by the door's TLS: the
/// one request inside it is read, its `Host` checked against the tunnel's,
/// the credential set (when this exec has it), and the request sent on
/// over real TLS; the answer comes back scrubbed of every secret of the
/// host.
#[allow(clippy::too_many_arguments)]
async fn terminated<C>(
    mut client: C,
    upstream: TcpStream,
    authority: &Authority,
    (host, port): (&str, u16),
    credential: Option<&Injection>,
    secrets: &[&str],
    policy: &Policy,
    mut record: Record,
) -> Record
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    let started = Instant::now();
    if client.write_all(ESTABLISHED).await.is_err() {
        record.decision = Decision::ClientGone;
        return record;
    }
    let mut inside = match authority.accept(client, host).await {
        Ok(tls) => tls,
        Err(e) => {
            // Mid-handshake there is no HTTP to answer in: the reason is
            // in the audit.
            record.decision = e.into();
            return record;
        }
    };
    let head = match tokio::time::timeout(HEAD_TIMEOUT, read_head(&mut inside, Some((host, port)))).await {
        Ok(Ok(head)) => head,
        Ok(Err(decision)) => return refuse(inside, record, decision, started).await,
        Err(_) => return refuse(inside, record, Decision::BadRequest("request head too slow"), started).await,
    };
    let Some(forward) = head.forward else {
        return refuse(
            inside,
            record,
            Decision::BadRequest("a CONNECT inside a tunnel"),
            started,
        )
        .await;
    };
    let mut upstream = match crate::tls::connect_upstream(&policy.upstream_tls, host, upstream).await {
        Ok(tls) => tls,
        Err(e) => return refuse(inside, record, e.into(), started).await,
    };
    let value = credential.map(|i| (i.header.as_str(), format!("{}{}", i.prefix, i.secret)));
    let rendered = forward.render(value.as_ref().map(|(h, v)| (*h, v.as_str())), true);
    if let Err(e) = upstream.write_all(&rendered).await {
        return refuse(inside, record, Decision::ConnectFailed(e), started).await;
    }
    record.injected = credential.map(|i| i.name.clone());
    let mut secrets = secrets.to_vec();
    if let Some((_, v)) = &value {
        secrets.push(v);
    }
    relay_injected(
        inside,
        upstream,
        &secrets,
        (head.rest, forward.body),
        record,
        policy.idle,
    )
    .await
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

/// The answer to a request that may carry a credential: scrubbed of the
/// host's secrets on the way back (see `inject::relay_scrubbed`); the
/// request's body goes on as it is, and nothing after it.
/// The request's body, as its head frames it, and nothing after it (a
/// second request written behind the first goes nowhere). Returns the
/// bytes sent.
async fn send_body<R, W>(client: &mut R, upstream: &mut W, rest: Vec<u8>, body: head::Body) -> u64
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    use tokio::io::AsyncReadExt;
    let sent = match body {
        head::Body::None => 0,
        head::Body::Length(n) => {
            let first = rest.len().min(usize::try_from(n).unwrap_or(usize::MAX));
            let _ = upstream.write_all(&rest[..first]).await;
            let more = tokio::io::copy(&mut client.take(n - first as u64), upstream)
                .await
                .unwrap_or(0);
            first as u64 + more
        }
        // The upstream finds its end, and reads nothing after it: it was
        // told `Connection: close`.
        head::Body::Chunked => {
            let _ = upstream.write_all(&rest).await;
            rest.len() as u64 + tokio::io::copy(client, upstream).await.unwrap_or(0)
        }
    };
    let _ = upstream.flush().await;
    sent
}

async fn relay_injected<C, U>(
    client: C,
    upstream: U,
    secrets: &[&str],
    (rest, body): (Vec<u8>, head::Body),
    mut record: Record,
    idle: Duration,
) -> Record
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let (mut client_read, mut client_write) = tokio::io::split(client);
    let (mut upstream_read, mut upstream_write) = tokio::io::split(upstream);
    let answer = {
        let up = send_body(&mut client_read, &mut upstream_write, rest, body);
        let down = inject::relay_scrubbed(&mut upstream_read, &mut client_write, secrets, idle);
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
    record.end = Some(End::Closed);
    record
}

async fn refuse<C: AsyncWrite + Unpin>(
    mut client: C,
    mut record: Record,
    decision: Decision,
    started: Instant,
) -> Record {
    let status = match &decision {
        Decision::NoGrant
        | Decision::NotListed(..)
        | Decision::NotListedForServer(..)
        | Decision::Unreachable(Unreachable::Refused(_)) => "403 Forbidden",
        Decision::Unreachable(_) | Decision::ConnectFailed(_) => "502 Bad Gateway",
        Decision::BadRequest(_) => "400 Bad Request",
        Decision::Withheld(_) | Decision::Tls(_) => "502 Bad Gateway",
        Decision::TunnelToCredentialHost(..) | Decision::OtherServerName(_) => "403 Forbidden",
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
mod prefixed;
mod relay;
mod tunnel;

use head::read_head;
pub use relay::End;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tls_tests;
