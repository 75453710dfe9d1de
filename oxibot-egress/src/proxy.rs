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

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::grants::{Grant, Grants};
use crate::guard::Guard;
use crate::resolve::{checked_addresses, Lookup, Unreachable};
use oxibot_proto::settings::HostPattern;

/// The most a request head may hold (request line and headers).
pub const MAX_HEAD: usize = 16 * 1024;
/// A client sends its head at once; a slower one is holding a slot.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the jail's commands may go, and who may ask.
pub struct Policy {
    pub allowed: Vec<HostPattern>,
    pub guard: Guard,
    pub grants: Grants,
}

/// What became of one connection.
#[derive(Debug)]
pub struct Record {
    /// As the client asked (absent when the head could not be read).
    pub host: Option<String>,
    pub port: Option<u16>,
    /// The exec call whose token came with the request.
    pub grant: Option<Grant>,
    pub decision: Decision,
    /// From the client to the destination, and back.
    pub bytes_up: u64,
    pub bytes_down: u64,
    pub duration: Duration,
}

/// Why a connection went through or did not.
#[derive(Debug, thiserror::Error)]
pub enum Decision {
    #[error("allowed")]
    Allowed,
    #[error("no proxy token of a running command (a process left behind by an earlier command gets nothing)")]
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
}

/// A request head, as much as the door needs of it.
struct Head {
    method: String,
    host: String,
    port: u16,
    /// For a forwarded request: its head rewritten for the upstream.
    forward: Option<Vec<u8>>,
    /// Bytes the client sent after its head (the start of a body or of
    /// TLS), to be passed on first.
    rest: Vec<u8>,
    /// The `Proxy-Authorization` value, if any.
    proxy_authorization: Option<Vec<u8>>,
}

/// Serves one accepted connection to its end.
pub async fn serve<C>(mut client: C, policy: &Policy, lookup: &dyn Lookup) -> Record
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    let started = Instant::now();
    let mut record = Record {
        host: None,
        port: None,
        grant: None,
        decision: Decision::Allowed,
        bytes_up: 0,
        bytes_down: 0,
        duration: Duration::ZERO,
    };
    let head = match tokio::time::timeout(HEAD_TIMEOUT, read_head(&mut client)).await {
        Ok(Ok(head)) => head,
        Ok(Err(decision)) => return refuse(client, record, decision, started).await,
        Err(_) => return refuse(client, record, Decision::BadRequest("request head too slow"), started).await,
    };
    record.host = Some(head.host.clone());
    record.port = Some(head.port);
    record.grant = head
        .proxy_authorization
        .as_deref()
        .and_then(|a| policy.grants.holder(a));
    if record.grant.is_none() {
        return refuse(client, record, Decision::NoGrant, started).await;
    }
    if !policy.allowed.iter().any(|p| p.allows(&head.host, head.port)) {
        let decision = Decision::NotListed(head.host.clone(), head.port);
        return refuse(client, record, decision, started).await;
    }
    let addresses = match checked_addresses(&head.host, head.port, &policy.guard, lookup).await {
        Ok(a) => a,
        Err(e) => return refuse(client, record, e.into(), started).await,
    };
    let mut upstream = match connect(&addresses).await {
        Ok(s) => s,
        Err(e) => return refuse(client, record, Decision::ConnectFailed(e), started).await,
    };
    let sent_first = match &head.forward {
        Some(forward) => upstream.write_all(forward).await,
        None => {
            let _ = &head.method;
            client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n").await
        }
    };
    if sent_first.is_ok() && !head.rest.is_empty() {
        record.bytes_up += head.rest.len() as u64;
        let _ = upstream.write_all(&head.rest).await;
    }
    if let Ok((up, down)) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
        record.bytes_up += up;
        record.bytes_down += down;
    }
    record.duration = started.elapsed();
    record
}

async fn refuse<C: AsyncWrite + Unpin>(
    mut client: C,
    mut record: Record,
    decision: Decision,
    started: Instant,
) -> Record {
    let status = match &decision {
        Decision::NoGrant => "407 Proxy Authentication Required",
        Decision::NotListed(..) | Decision::Unreachable(Unreachable::Refused(_)) => "403 Forbidden",
        Decision::Unreachable(_) | Decision::ConnectFailed(_) => "502 Bad Gateway",
        Decision::BadRequest(_) => "400 Bad Request",
        Decision::ClientGone | Decision::Allowed => "400 Bad Request",
    };
    if !matches!(decision, Decision::ClientGone) {
        // The reason is OxiBot's own words (no secret is in them): the
        // command that was refused learns why, and what to configure.
        let body = format!("OxiBot egress: {decision}\n");
        let challenge = if matches!(decision, Decision::NoGrant) {
            "Proxy-Authenticate: Basic realm=\"OxiBot\"\r\n"
        } else {
            ""
        };
        let answer = format!(
            "HTTP/1.1 {status}\r\n{challenge}Content-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
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

/// Reads and parses the head.
async fn read_head<C: AsyncRead + Unpin>(client: &mut C) -> Result<Head, Decision> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let end = loop {
        let n = client.read(&mut chunk).await.map_err(|_| Decision::ClientGone)?;
        if n == 0 {
            return Err(Decision::ClientGone);
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        if buf.len() > MAX_HEAD {
            return Err(Decision::BadRequest("request head too long"));
        }
    };
    let rest = buf.split_off(end);
    parse_head(&buf).map(|mut head| {
        head.rest = rest;
        head
    })
}

fn parse_head(bytes: &[u8]) -> Result<Head, Decision> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(bytes) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) | Err(_) => return Err(Decision::BadRequest("not an HTTP request head")),
    }
    let method = request.method.unwrap_or_default().to_string();
    let target = request.path.unwrap_or_default();
    let proxy_authorization = request
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("proxy-authorization"))
        .map(|h| h.value.to_vec());
    if method == "CONNECT" {
        let (host, port) = authority(target).ok_or(Decision::BadRequest("CONNECT needs host:port"))?;
        return Ok(Head {
            method,
            host,
            port,
            forward: None,
            rest: Vec::new(),
            proxy_authorization,
        });
    }
    let url = url::Url::parse(target).map_err(|_| Decision::BadRequest("a proxy request names a whole http:// URL"))?;
    if url.scheme() != "http" {
        return Err(Decision::BadRequest(
            "only http:// is forwarded; https goes through CONNECT",
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Decision::BadRequest("URLs with a user name or password are refused"));
    }
    let host = url
        .host_str()
        .ok_or(Decision::BadRequest("the URL has no host"))?
        .to_string();
    let port = url.port_or_known_default().unwrap_or(80);
    // The upstream reads Host, the door judged the URL: they must agree.
    let lengths = request
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("content-length"))
        .count();
    let chunked = request
        .headers
        .iter()
        .any(|h| h.name.eq_ignore_ascii_case("transfer-encoding"));
    if lengths > 1 || (lengths == 1 && chunked) {
        return Err(Decision::BadRequest("ambiguous body length"));
    }
    let mut forward = format!(
        "{method} {}{} HTTP/1.1\r\n",
        url.path(),
        url.query().map(|q| format!("?{q}")).unwrap_or_default()
    )
    .into_bytes();
    let mut saw_host = false;
    for h in request.headers.iter() {
        let name = h.name.to_ascii_lowercase();
        if name == "host" {
            let value = std::str::from_utf8(h.value).map_err(|_| Decision::BadRequest("Host is not text"))?;
            let (named, named_port) = match authority(value) {
                Some(a) => a,
                None => (value.to_ascii_lowercase(), port),
            };
            if saw_host || !same_host(&named, &host) || named_port != port {
                return Err(Decision::BadRequest("Host names another place than the URL"));
            }
            saw_host = true;
        }
        if name.starts_with("proxy-") || name == "connection" || name == "keep-alive" {
            continue;
        }
        forward.extend_from_slice(h.name.as_bytes());
        forward.extend_from_slice(b": ");
        forward.extend_from_slice(h.value);
        forward.extend_from_slice(b"\r\n");
    }
    if !saw_host {
        forward.extend_from_slice(format!("Host: {}\r\n", url.authority()).as_bytes());
    }
    forward.extend_from_slice(b"Connection: close\r\n\r\n");
    Ok(Head {
        method,
        host,
        port,
        forward: Some(forward),
        rest: Vec::new(),
        proxy_authorization,
    })
}

/// `host:port` (IPv6 in brackets) with a port 1..=65535.
fn authority(text: &str) -> Option<(String, u16)> {
    let (host, port) = text.rsplit_once(':')?;
    if host.is_empty() || (host.contains(':') && !(host.starts_with('[') && host.ends_with(']'))) {
        return None;
    }
    let port: u16 = port.parse().ok().filter(|p| *p != 0)?;
    Some((host.to_ascii_lowercase(), port))
}

fn same_host(a: &str, b: &str) -> bool {
    let plain = |h: &str| {
        h.trim_end_matches('.')
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase()
    };
    plain(a) == plain(b)
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::net::TcpListener;

    use super::*;
    use crate::route::Reach;

    /// A guard that lets `private` through and asks no kernel (the test
    /// machine's routes are not the point here).
    fn guard(private: &[&str]) -> Guard {
        Guard::new(&private.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap()
            .with_routes(|_, _| Ok(Reach::Elsewhere))
    }

    /// A door, and the token of one running exec.
    fn policy(allowed: &[&str], private: &[&str]) -> (Policy, String) {
        let policy = Policy {
            allowed: allowed.iter().map(|p| HostPattern::parse(p).unwrap()).collect(),
            guard: guard(private),
            grants: Grants::default(),
        };
        let token = policy.grants.grant(exec(1)).unwrap();
        (policy, token)
    }

    fn exec(call: u64) -> Grant {
        Grant {
            session: "telegram:42".into(),
            call,
        }
    }

    /// `request` with the token a command's proxy URL gives it.
    fn with_token(request: &str, token: &str) -> String {
        use base64::Engine;
        let credential = base64::engine::general_purpose::STANDARD.encode(format!("oxibot:{token}"));
        match request.split_once("\r\n") {
            Some((line, rest)) => format!("{line}\r\nProxy-Authorization: Basic {credential}\r\n{rest}"),
            None => request.to_string(),
        }
    }

    /// Answers every name with these addresses, and counts the questions.
    struct Scripted(Vec<SocketAddr>, AtomicUsize);

    impl Lookup for Scripted {
        fn lookup<'a>(
            &'a self,
            _: &'a str,
            _: u16,
        ) -> Pin<Box<dyn Future<Output = std::io::Result<Vec<SocketAddr>>> + Send + 'a>> {
            self.1.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move { Ok(self.0.clone()) })
        }
    }

    fn no_names() -> Scripted {
        Scripted(Vec::new(), AtomicUsize::new(0))
    }

    /// An upstream that records what it read and answers `reply`.
    async fn upstream(reply: &'static [u8]) -> (u16, tokio::task::JoinHandle<Vec<u8>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut seen = vec![0u8; 4096];
            let n = s.read(&mut seen).await.unwrap();
            seen.truncate(n);
            s.write_all(reply).await.unwrap();
            s.shutdown().await.unwrap();
            seen
        });
        (port, task)
    }

    /// Sends `request` through the door with the running exec's token;
    /// returns what came back and the record.
    async fn through(request: String, door: &(Policy, String), lookup: &dyn Lookup) -> (String, Record) {
        send(with_token(&request, &door.1), &door.0, lookup).await
    }

    /// Sends `request` as it is.
    async fn send(request: String, policy: &Policy, lookup: &dyn Lookup) -> (String, Record) {
        let (mut ours, theirs) = tokio::io::duplex(64 * 1024);
        ours.write_all(request.as_bytes()).await.unwrap();
        let (record, answer) = tokio::join!(serve(theirs, policy, lookup), async move {
            let mut answer = Vec::new();
            let _ = ours.read_to_end(&mut answer).await;
            answer
        });
        (String::from_utf8_lossy(&answer).into_owned(), record)
    }

    #[tokio::test]
    async fn an_allowed_tunnel_reaches_the_checked_address_and_is_counted() {
        let (port, seen) = upstream(b"pong").await;
        let p = policy(&[&format!("127.0.0.1:{port}")], &["127.0.0.1"]);
        let (answer, record) = through(
            format!("CONNECT 127.0.0.1:{port} HTTP/1.1\r\n\r\nping"),
            &p,
            &no_names(),
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with("pong"), "{answer}");
        assert_eq!(seen.await.unwrap(), b"ping");
        assert!(matches!(record.decision, Decision::Allowed));
        assert_eq!(record.grant, Some(exec(1)));
        assert_eq!((record.bytes_up, record.bytes_down), (4, 4));
    }

    #[tokio::test]
    async fn only_a_running_exec_token_opens_the_door() {
        let (port, seen) = upstream(b"for exec 2").await;
        let (p, first) = policy(&[&format!("127.0.0.1:{port}")], &["127.0.0.1"]);
        let request = format!("CONNECT 127.0.0.1:{port} HTTP/1.1\r\n\r\n");
        // No token at all: a command that found the port by itself.
        let (answer, record) = send(request.clone(), &p, &no_names()).await;
        assert!(answer.starts_with("HTTP/1.1 407"), "{answer}");
        assert!(answer.contains("Proxy-Authenticate: Basic"), "{answer}");
        assert!(matches!(record.decision, Decision::NoGrant));
        // Exec 1 ended; a `nohup curl` it left behind still holds its token
        // while exec 2 runs.
        p.grants.revoke(&first);
        let second = p.grants.grant(exec(2)).unwrap();
        let (answer, record) = send(with_token(&request, &first), &p, &no_names()).await;
        assert!(answer.starts_with("HTTP/1.1 407"), "{answer}");
        assert!(record.grant.is_none());
        let (answer, record) = send(with_token(&format!("{request}hi"), &second), &p, &no_names()).await;
        assert!(answer.ends_with("for exec 2"), "{answer}");
        assert_eq!(record.grant, Some(exec(2)));
        assert_eq!(seen.await.unwrap(), b"hi");
    }

    #[tokio::test]
    async fn a_host_not_listed_is_refused_and_nothing_is_dialled() {
        let lookup = no_names();
        let p = policy(&["api.github.com"], &[]);
        let (answer, record) = through("CONNECT example.com:443 HTTP/1.1\r\n\r\n".into(), &p, &lookup).await;
        assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
        assert!(
            answer.contains("example.com:443 is not in tools.exec.allowedHosts"),
            "{answer}"
        );
        assert!(matches!(record.decision, Decision::NotListed(..)));
        assert_eq!(lookup.1.load(Ordering::SeqCst), 0, "a refused name was looked up");
        // Listed, on a port the pattern does not give.
        let (answer, _) = through("CONNECT api.github.com:22 HTTP/1.1\r\n\r\n".into(), &p, &lookup).await;
        assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    }

    #[tokio::test]
    async fn a_listed_name_that_points_inward_is_refused_by_the_guard() {
        for inward in ["127.0.0.1:443", "169.254.169.254:443", "10.0.0.7:443"] {
            let lookup = Scripted(vec![inward.parse().unwrap()], AtomicUsize::new(0));
            let p = policy(&["api.github.com"], &[]);
            let (answer, record) = through("CONNECT api.github.com:443 HTTP/1.1\r\n\r\n".into(), &p, &lookup).await;
            assert!(answer.starts_with("HTTP/1.1 403"), "{inward}: {answer}");
            assert!(
                matches!(record.decision, Decision::Unreachable(Unreachable::Refused(_))),
                "{inward}: {record:?}"
            );
        }
        // The cloud metadata name, listed by mistake, is refused before any lookup.
        let lookup = no_names();
        let p = policy(&["metadata.google.internal"], &[]);
        let (answer, _) = through(
            "CONNECT metadata.google.internal:80 HTTP/1.1\r\n\r\n".into(),
            &p,
            &lookup,
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
        assert_eq!(lookup.1.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_name_is_looked_up_once_and_that_answer_is_dialled() {
        let (port, seen) = upstream(b"hi").await;
        let lookup = Scripted(vec![format!("127.0.0.1:{port}").parse().unwrap()], AtomicUsize::new(0));
        let p = policy(&[&format!("svc.test:{port}")], &["127.0.0.1"]);
        let (answer, _) = through(format!("CONNECT svc.test:{port} HTTP/1.1\r\n\r\nx"), &p, &lookup).await;
        assert!(answer.ends_with("hi"), "{answer}");
        assert_eq!(seen.await.unwrap(), b"x");
        assert_eq!(lookup.1.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_plain_request_is_forwarded_in_origin_form_without_proxy_headers() {
        let (port, seen) = upstream(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").await;
        let p = policy(&[&format!("127.0.0.1:{port}")], &["127.0.0.1"]);
        let request = format!(
            "GET http://127.0.0.1:{port}/a?b=c HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
             Proxy-Authorization: Basic dG9rZW46eA==\r\nConnection: keep-alive\r\n\r\n"
        );
        let (answer, record) = through(request, &p, &no_names()).await;
        assert!(answer.ends_with("ok"), "{answer}");
        let seen = String::from_utf8(seen.await.unwrap()).unwrap();
        assert!(seen.starts_with("GET /a?b=c HTTP/1.1\r\n"), "{seen}");
        assert!(seen.contains(&format!("Host: 127.0.0.1:{port}\r\n")), "{seen}");
        assert!(seen.contains("Connection: close\r\n"), "{seen}");
        assert!(!seen.to_ascii_lowercase().contains("proxy-authorization"), "{seen}");
        assert!(!seen.contains("keep-alive"), "{seen}");
        assert!(matches!(record.decision, Decision::Allowed));
    }

    #[tokio::test]
    async fn confusing_requests_are_refused() {
        let p = policy(&["a.test", "b.test"], &[]);
        for (request, why) in [
            // Host names another place than the URL the door judged.
            ("GET http://a.test/ HTTP/1.1\r\nHost: b.test\r\n\r\n", "Host names another place"),
            ("GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n", "Host names another place"),
            // Smuggling: two ways of saying where the body ends.
            (
                "POST http://a.test/ HTTP/1.1\r\nHost: a.test\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n",
                "ambiguous body length",
            ),
            (
                "POST http://a.test/ HTTP/1.1\r\nHost: a.test\r\nContent-Length: 4\r\nContent-Length: 40\r\n\r\n",
                "ambiguous body length",
            ),
            ("GET /relative HTTP/1.1\r\nHost: a.test\r\n\r\n", "whole http:// URL"),
            ("GET https://a.test/ HTTP/1.1\r\n\r\n", "only http://"),
            ("GET http://user:pw@a.test/ HTTP/1.1\r\n\r\n", "user name or password"),
            ("CONNECT a.test HTTP/1.1\r\n\r\n", "CONNECT needs host:port"),
            ("not http at all\r\n\r\n", "not an HTTP request head"),
        ] {
            let (answer, record) = through(request.into(), &p, &no_names()).await;
            assert!(answer.starts_with("HTTP/1.1 400"), "{request:?}: {answer}");
            assert!(answer.contains(why), "{request:?}: {answer}");
            assert!(matches!(record.decision, Decision::BadRequest(_)), "{record:?}");
        }
        // A head that never ends.
        let huge = format!("GET http://a.test/ HTTP/1.1\r\nX: {}\r\n", "y".repeat(MAX_HEAD));
        let (answer, _) = through(huge, &p, &no_names()).await;
        assert!(answer.contains("request head too long"), "{answer}");
    }
}
