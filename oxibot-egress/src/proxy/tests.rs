//! The door's core against a real loopback upstream and a scripted resolver.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::AsyncReadExt;
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

/// A door, and the key of one running exec.
pub(super) fn policy(allowed: &[&str], private: &[&str]) -> (Policy, String) {
    let policy = Policy {
        allowed: allowed.iter().map(|p| HostPattern::parse(p).unwrap()).collect(),
        guard: guard(private),
        grants: Default::default(),
        injections: Vec::new(),
        authority: None,
        upstream_tls: crate::tls::upstream_config(&[], "").unwrap().0,
        idle: IDLE,
    };
    let token = policy.grants.grant(exec(1)).unwrap();
    (policy, token)
}

pub(super) fn exec(call: u64) -> Grant {
    Grant {
        session: "telegram:42".into(),
        call: format!("exec {call}"),
        credentials: vec!["github".into()],
        hosts: None,
    }
}

/// Answers every name with these addresses, and counts the questions.
pub(super) struct Scripted(pub Vec<SocketAddr>, pub AtomicUsize);

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

/// Sends `request` through the door as the running exec's;
/// returns what came back and the record.
async fn through(request: String, door: &(Policy, String), lookup: &dyn Lookup) -> (String, Record) {
    send(request, door.1.as_bytes(), &door.0, lookup).await
}

/// Sends `request` tagged with `key`.
async fn send(request: String, key: &[u8], policy: &Policy, lookup: &dyn Lookup) -> (String, Record) {
    let (mut ours, theirs) = tokio::io::duplex(64 * 1024);
    ours.write_all(request.as_bytes()).await.unwrap();
    let (record, answer) = tokio::join!(serve(theirs, key, policy, lookup), async move {
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
async fn only_a_running_exec_key_opens_the_door() {
    let (port, seen) = upstream(b"for exec 2").await;
    let (p, first) = policy(&[&format!("127.0.0.1:{port}")], &["127.0.0.1"]);
    let request = format!("CONNECT 127.0.0.1:{port} HTTP/1.1\r\n\r\n");
    // No key at all: a connection no running exec's process holds.
    let (answer, record) = send(request.clone(), b"", &p, &no_names()).await;
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert!(answer.contains("no running command"), "{answer}");
    assert!(matches!(record.decision, Decision::NoGrant));
    // Exec 1 ended; a `nohup curl` it left behind is still tagged with its
    // key while exec 2 runs.
    p.grants.revoke(&first);
    let second = p.grants.grant(exec(2)).unwrap();
    let (answer, record) = send(request.clone(), first.as_bytes(), &p, &no_names()).await;
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert!(record.grant.is_none());
    let (answer, record) = send(format!("{request}hi"), second.as_bytes(), &p, &no_names()).await;
    assert!(answer.ends_with("for exec 2"), "{answer}");
    assert_eq!(record.grant, Some(exec(2)));
    assert_eq!(seen.await.unwrap(), b"hi");
}

#[tokio::test]
async fn an_mcp_servers_key_reaches_its_own_hosts_and_not_the_commands() {
    let (own, seen) = upstream(b"for the server").await;
    let (commands, _) = upstream(b"for commands").await;
    let (p, _) = policy(&[&format!("127.0.0.1:{commands}")], &["127.0.0.1"]);
    let server = Grant {
        session: "mcp:alpha".into(),
        call: "MCP server alpha".into(),
        credentials: Vec::new(),
        hosts: Some(vec![HostPattern::parse(&format!("127.0.0.1:{own}")).unwrap()]),
    };
    let key = p.grants.grant(server.clone()).unwrap();
    let ask = |port: u16| format!("CONNECT 127.0.0.1:{port} HTTP/1.1\r\n\r\nhi");
    let (answer, record) = send(ask(own), key.as_bytes(), &p, &no_names()).await;
    assert!(answer.ends_with("for the server"), "{answer}");
    assert_eq!(record.grant, Some(server));
    assert_eq!(seen.await.unwrap(), b"hi");
    // The commands' list is not the server's.
    let (answer, record) = send(ask(commands), key.as_bytes(), &p, &no_names()).await;
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert!(answer.contains("is not in this MCP server's allowedHosts"), "{answer}");
    assert!(matches!(record.decision, Decision::NotListedForServer(..)));
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
    // The name is the one listed as private: a name reaches a private
    // address only so.
    let p = policy(&[&format!("svc.test:{port}")], &["svc.test"]);
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
        (
            "GET http://a.test/ HTTP/1.1\r\nHost: b.test\r\n\r\n",
            "Host names another place",
        ),
        (
            "GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n",
            "Host names another place",
        ),
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

const SECRET: &str = "ghp_INJECTED0123456789";

/// An API on loopback that echoes what it was sent: the request in its
/// body and the Authorization header it got in a header of its own, in
/// two writes that cut the secret in the middle; or, with `framing`, an
/// answer the door cannot scrub.
async fn echoing_api(framing: Option<&'static str>) -> (u16, tokio::task::JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&buf[..n]);
        }
        let seen = String::from_utf8(seen).unwrap();
        let auth = seen
            .lines()
            .find_map(|l| l.strip_prefix("Authorization: "))
            .unwrap_or("")
            .to_string();
        let extra = framing.map(|f| format!("{f}\r\n")).unwrap_or_default();
        let answer = format!("HTTP/1.0 200 OK\r\nX-Echo: {auth}\r\n{extra}\r\nyou sent:\n{seen}");
        let cut = answer.find(SECRET).map(|at| at + SECRET.len() / 2).unwrap_or(0);
        s.write_all(&answer.as_bytes()[..cut]).await.unwrap();
        s.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        s.write_all(&answer.as_bytes()[cut..]).await.unwrap();
        s.shutdown().await.unwrap();
        seen
    });
    (port, task)
}

fn with_credential(door: &mut (Policy, String), port: u16) {
    door.0.injections.push(Injection {
        name: "github".into(),
        hosts: vec![HostPattern::parse(&format!("127.0.0.1:{port}")).unwrap()],
        header: "Authorization".into(),
        prefix: "Bearer ".into(),
        secret: SECRET.into(),
        plain_http: true,
    });
}

#[tokio::test]
async fn a_credential_is_set_at_the_door_and_scrubbed_from_the_answer() {
    let (port, seen) = echoing_api(None).await;
    let mut door = policy(&[&format!("127.0.0.1:{port}")], &["127.0.0.1"]);
    with_credential(&mut door, port);
    // The command sends a header of its own, and asks for gzip.
    let request = format!(
        "GET http://127.0.0.1:{port}/user HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
         Authorization: Bearer mine\r\nAccept-Encoding: gzip\r\n\r\n"
    );
    let (answer, record) = through(request, &door, &no_names()).await;
    let seen = seen.await.unwrap();
    // The upstream got the credential, once, in place of the command's.
    assert!(seen.starts_with("GET /user HTTP/1.1\r\n"), "{seen}");
    assert_eq!(seen.matches(SECRET).count(), 1, "{seen}");
    assert!(seen.contains(&format!("Authorization: Bearer {SECRET}\r\n")), "{seen}");
    assert!(!seen.contains("Bearer mine"), "{seen}");
    assert!(
        seen.contains("Accept-Encoding: identity\r\n") && !seen.contains("gzip"),
        "{seen}"
    );
    // The jail got the echo, in the header and the body, without it.
    assert!(!answer.contains(SECRET), "{answer}");
    assert!(
        answer.contains(&format!("X-Echo: {}", "*".repeat(SECRET.len() + 7))),
        "{answer}"
    );
    assert!(
        answer.contains(&format!("Authorization: {}", "*".repeat(SECRET.len() + 7))),
        "{answer}"
    );
    assert_eq!(record.injected.as_deref(), Some("github"));
    assert!(matches!(record.decision, Decision::Allowed));
}

#[tokio::test]
async fn a_credential_for_tls_only_is_not_sent_over_plain_http() {
    // The attack: `http://` to the credential host's port, which another
    // local program may hold while the real service is down.
    let (port, seen) = echoing_api(None).await;
    let mut door = policy(&[&format!("127.0.0.1:{port}")], &["127.0.0.1"]);
    with_credential(&mut door, port);
    door.0.injections[0].plain_http = false;
    let request = format!("GET http://127.0.0.1:{port}/user HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n");
    let (_, record) = through(request, &door, &no_names()).await;
    assert!(!seen.await.unwrap().contains(SECRET));
    assert_eq!(record.injected, None);
}

#[tokio::test]
async fn a_request_written_behind_the_first_goes_nowhere() {
    // Behind a plain request (with its body), a second one for another
    // name on the same address: the upstream must see the first only.
    for (framing, body) in [
        ("Content-Length: 4", "abcd"),
        ("Content-Length: 0", ""),
        ("X-None: 1", ""),
    ] {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut seen = Vec::new();
            let mut buf = [0u8; 4096];
            // Read for a while: whatever comes, until the door stops sending.
            while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(300), s.read(&mut buf)).await {
                if n == 0 {
                    break;
                }
                seen.extend_from_slice(&buf[..n]);
            }
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                .await
                .unwrap();
            s.shutdown().await.unwrap();
            String::from_utf8(seen).unwrap()
        });
        let door = policy(&[&format!("127.0.0.1:{port}")], &["127.0.0.1"]);
        let request = format!(
            "POST http://127.0.0.1:{port}/first HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{framing}\r\n\r\n{body}\
             GET /second HTTP/1.1\r\nHost: internal.other\r\n\r\n"
        );
        let (answer, record) = through(request, &door, &no_names()).await;
        let seen = seen.await.unwrap();
        assert!(
            seen.contains("/first") && seen.ends_with(&format!("\r\n\r\n{body}")),
            "{framing}: {seen}"
        );
        assert!(
            !seen.contains("/second") && !seen.contains("internal.other"),
            "{framing}: {seen}"
        );
        assert!(answer.ends_with("ok"), "{answer}");
        assert_eq!(record.bytes_up, body.len() as u64, "{framing}");
    }
}

/// An upstream that answers `head` and then `body` as it is.
async fn answering(head: String, body: Vec<u8>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 4096];
        let _ = s.read(&mut buf).await;
        let _ = s.write_all(head.as_bytes()).await;
        // In small pieces: a secret is cut across reads.
        for piece in body.chunks(7) {
            let _ = s.write_all(piece).await;
            let _ = s.flush().await;
        }
        let _ = s.shutdown().await;
    });
    port
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn chunked(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for piece in bytes.chunks(5) {
        out.extend_from_slice(format!("{:x};ext=1\r\n", piece.len()).as_bytes());
        out.extend_from_slice(piece);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("0\r\nX-Trailer: {SECRET}\r\n\r\n").as_bytes());
    out
}

#[tokio::test]
async fn an_echo_chunked_or_compressed_reaches_the_jail_decoded_and_scrubbed() {
    let echo = format!("{{\"you_sent\": \"Bearer {SECRET}\"}}");
    let cases: Vec<(&str, String, Vec<u8>)> = vec![
        ("chunked", "Transfer-Encoding: chunked".into(), chunked(echo.as_bytes())),
        (
            "gzip",
            format!(
                "Content-Encoding: gzip\r\nContent-Length: {}",
                gzip(echo.as_bytes()).len()
            ),
            gzip(echo.as_bytes()),
        ),
        (
            "gzip, chunked",
            "Content-Encoding: gzip\r\nTransfer-Encoding: chunked".into(),
            chunked(&gzip(echo.as_bytes())),
        ),
    ];
    for (what, framing, body) in cases {
        let port = answering(format!("HTTP/1.1 200 OK\r\n{framing}\r\n\r\n"), body).await;
        let mut door = policy(&[&format!("127.0.0.1:{port}")], &["127.0.0.1"]);
        with_credential(&mut door, port);
        let request = format!("GET http://127.0.0.1:{port}/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n");
        let (answer, record) = through(request, &door, &no_names()).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{what}: {answer}");
        assert!(!answer.contains(SECRET), "{what}: {answer}");
        assert!(
            answer.ends_with(&format!("{{\"you_sent\": \"{}\"}}", "*".repeat(SECRET.len() + 7))),
            "{what}: the body arrives decoded, the secret masked: {answer}"
        );
        assert!(
            !answer.to_ascii_lowercase().contains("transfer-encoding"),
            "{what}: {answer}"
        );
        assert!(
            !answer.to_ascii_lowercase().contains("content-encoding"),
            "{what}: {answer}"
        );
        assert!(matches!(record.decision, Decision::Allowed), "{what}: {record:?}");
    }
}

#[tokio::test]
async fn an_answer_the_door_cannot_read_is_withheld() {
    for (what, head, body) in [
        ("brotli", "Content-Encoding: br", b"anything".to_vec()),
        (
            "broken chunks",
            "Transfer-Encoding: chunked",
            b"zz\r\nabc\r\n0\r\n\r\n".to_vec(),
        ),
        ("cut chunks", "Transfer-Encoding: chunked", b"10\r\nabc".to_vec()),
        (
            "broken gzip",
            "Content-Encoding: gzip",
            b"\x1f\x8b\x08\x00garbage-not-deflate".to_vec(),
        ),
        (
            "gzip, gzip",
            "Content-Encoding: gzip\r\nContent-Encoding: gzip",
            gzip(b"x"),
        ),
        // The second header would have had the door pass the gzip on unread.
        (
            "gzip, then identity",
            "Content-Encoding: gzip\r\nContent-Encoding: identity",
            gzip(SECRET.as_bytes()),
        ),
        ("a list", "Content-Encoding: gzip, identity", gzip(SECRET.as_bytes())),
    ] {
        let port = answering(format!("HTTP/1.1 200 OK\r\n{head}\r\n\r\n"), body).await;
        let mut door = policy(&[&format!("127.0.0.1:{port}")], &["127.0.0.1"]);
        with_credential(&mut door, port);
        let request = format!("GET http://127.0.0.1:{port}/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n");
        let (answer, record) = through(request, &door, &no_names()).await;
        assert!(
            answer.contains("withheld") || answer.contains("502"),
            "{what}: {answer}"
        );
        assert!(matches!(record.decision, Decision::Withheld(_)), "{what}: {record:?}");
    }
}

#[tokio::test]
async fn a_tunnel_to_a_credential_host_is_refused() {
    // A stateful service could hand back, through a tunnel the door cannot
    // read, what it kept of an earlier request that carried the credential.
    let (port, _seen) = upstream(b"kept: Bearer ghp_...").await;
    let mut door = policy(&[&format!("127.0.0.1:{port}")], &["127.0.0.1"]);
    with_credential(&mut door, port);
    let (answer, record) = through(format!("CONNECT 127.0.0.1:{port} HTTP/1.1\r\n\r\n"), &door, &no_names()).await;
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert!(
        matches!(record.decision, Decision::TunnelToCredentialHost(..)),
        "{record:?}"
    );
}

#[tokio::test]
async fn an_interim_answer_before_the_real_one_is_withheld() {
    // An answer the check would withhold, behind an interim 100.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 4096];
        let _ = s.read(&mut buf).await;
        let _ = s
            .write_all(
                format!("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n\r\n{SECRET}")
                    .as_bytes(),
            )
            .await;
    });
    let mut door = policy(&[&format!("127.0.0.1:{port}")], &["127.0.0.1"]);
    with_credential(&mut door, port);
    let request = format!("GET http://127.0.0.1:{port}/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n");
    let (answer, record) = through(request, &door, &no_names()).await;
    assert!(
        answer.starts_with("HTTP/1.1 502") && answer.contains("interim"),
        "{answer}"
    );
    assert!(!answer.contains(SECRET));
    assert!(matches!(record.decision, Decision::Withheld(_)));
}

/// An upstream that holds its connection open and never speaks.
async fn silent_upstream() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let (s, _) = listener.accept().await.unwrap();
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(s);
    });
    port
}

#[tokio::test]
async fn revoking_a_key_closes_the_tunnels_opened_with_it() {
    let port = silent_upstream().await;
    let (door, token) = policy(&[&format!("127.0.0.1:{port}")], &["127.0.0.1"]);
    let door = std::sync::Arc::new(door);
    let (mut ours, theirs) = tokio::io::duplex(4096);
    ours.write_all(format!("CONNECT 127.0.0.1:{port} HTTP/1.1\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let served = tokio::spawn({
        let door = door.clone();
        let token = token.clone();
        async move { serve(theirs, token.as_bytes(), &door, &no_names()).await }
    });
    let mut established = [0u8; 39];
    ours.read_exact(&mut established).await.unwrap();
    // The exec ends: its key goes, and the open tunnel with it.
    door.grants.revoke(&token);
    let record = tokio::time::timeout(Duration::from_secs(5), served)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.end, Some(End::Revoked), "{record:?}");
    let mut rest = Vec::new();
    assert_eq!(ours.read_to_end(&mut rest).await.unwrap(), 0);
}

#[tokio::test]
async fn an_idle_tunnel_is_closed() {
    let port = silent_upstream().await;
    let (mut door, token) = policy(&[&format!("127.0.0.1:{port}")], &["127.0.0.1"]);
    door.idle = Duration::from_millis(200);
    let (mut ours, theirs) = tokio::io::duplex(4096);
    ours.write_all(format!("CONNECT 127.0.0.1:{port} HTTP/1.1\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let record = tokio::time::timeout(
        Duration::from_secs(5),
        serve(theirs, token.as_bytes(), &door, &no_names()),
    )
    .await
    .unwrap();
    assert_eq!(record.end, Some(End::Idle), "{record:?}");
}

#[tokio::test]
async fn an_address_allowed_privately_is_not_reached_by_another_name() {
    // 127.0.0.1 is allowed for a local service by address; a listed name
    // whose DNS a stranger controls must not reach it too.
    let lookup = Scripted(vec!["127.0.0.1:443".parse().unwrap()], AtomicUsize::new(0));
    let door = policy(&["127.0.0.1:8080", "rebind.example.com"], &["127.0.0.1"]);
    let (answer, record) = through("CONNECT rebind.example.com:443 HTTP/1.1\r\n\r\n".into(), &door, &lookup).await;
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert!(
        matches!(record.decision, Decision::Unreachable(Unreachable::Refused(_))),
        "{record:?}"
    );
    // A name listed as private itself still is.
    let (port, _seen) = upstream(b"nas").await;
    let lookup = Scripted(vec![format!("127.0.0.1:{port}").parse().unwrap()], AtomicUsize::new(0));
    let door = policy(&[&format!("nas.lan:{port}")], &["nas.lan"]);
    let (answer, _) = through(format!("CONNECT nas.lan:{port} HTTP/1.1\r\n\r\nx"), &door, &lookup).await;
    assert!(answer.ends_with("nas"), "{answer}");
}

#[tokio::test]
async fn a_connection_of_no_running_exec_is_let_go_at_once() {
    let (p, _) = policy(&["127.0.0.1:1"], &["127.0.0.1"]);
    // It says nothing: refused after a moment, not after the head's 10 s.
    let (_ours, theirs) = tokio::io::duplex(4096);
    let started = std::time::Instant::now();
    let record = tokio::time::timeout(Duration::from_secs(5), serve(theirs, b"", &p, &no_names()))
        .await
        .unwrap();
    assert!(matches!(record.decision, Decision::NoGrant), "{:?}", record.decision);
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn a_running_execs_bad_request_is_filed_under_its_exec() {
    let p = policy(&["127.0.0.1:1"], &["127.0.0.1"]);
    let (answer, record) = through("NONSENSE\r\n\r\n".into(), &p, &no_names()).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert_eq!(record.grant, Some(exec(1)));
}
