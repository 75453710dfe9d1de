//! The fetch guard against real sockets: small HTTP servers on loopback
//! addresses, a resolver the test controls, and counters that prove which
//! server was (not) reached.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;

/// A server that counts connections and answers each with `response`.
struct Server {
    port: u16,
    hits: Arc<AtomicUsize>,
}

async fn serve_on(ip: &str, port: u16, response: Vec<u8>) -> std::io::Result<Server> {
    let listener = TcpListener::bind((ip, port)).await?;
    let port = listener.local_addr()?.port();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            let response = response.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                if !response.is_empty() {
                    let _ = stream.write_all(&response).await;
                    let _ = stream.shutdown().await;
                } else {
                    // Never answer.
                    tokio::time::sleep(Duration::from_secs(30)).await;
                }
            });
        }
    });
    Ok(Server { port, hits })
}

fn ok(body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn redirect(to: &str) -> Vec<u8> {
    format!("HTTP/1.1 302 Found\r\nLocation: {to}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").into_bytes()
}

/// Two servers on the same port: one on 127.0.0.2 (the allowed address),
/// one on 127.0.0.1 (where an attacker wants us).
async fn pair(allowed: Vec<u8>, inner: Vec<u8>) -> (Server, Server) {
    for _ in 0..20 {
        let a = serve_on("127.0.0.2", 0, allowed.clone()).await.unwrap();
        if let Ok(b) = serve_on("127.0.0.1", a.port, inner.clone()).await {
            return (a, b);
        }
    }
    panic!("no port free on both 127.0.0.1 and 127.0.0.2");
}

/// Answers each lookup with the next list, counting the calls.
struct Scripted {
    answers: Mutex<Vec<Vec<SocketAddr>>>,
    calls: AtomicUsize,
}

impl Scripted {
    fn new(answers: Vec<Vec<&str>>) -> Scripted {
        Scripted {
            answers: Mutex::new(
                answers
                    .into_iter()
                    .rev()
                    .map(|a| a.into_iter().map(|s| s.parse().unwrap()).collect())
                    .collect(),
            ),
            calls: AtomicUsize::new(0),
        }
    }
}

impl Lookup for Scripted {
    fn lookup<'a>(
        &'a self,
        _host: &'a str,
        _port: u16,
    ) -> Pin<Box<dyn Future<Output = io::Result<Vec<SocketAddr>>> + Send + 'a>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let next = self.answers.lock().unwrap().pop().unwrap_or_default();
        Box::pin(async move { Ok(next) })
    }
}

fn limits() -> Limits {
    Limits {
        max_bytes: 1 << 20,
        timeout: Duration::from_secs(5),
        max_redirects: 5,
    }
}

fn allow(entries: &[&str]) -> Guard {
    Guard::new(&entries.iter().map(|e| e.to_string()).collect::<Vec<_>>()).unwrap()
}

#[tokio::test]
async fn a_local_server_is_refused_by_default_and_reached_when_listed() {
    let (a, b) = pair(ok("allowed page"), ok("inner page")).await;
    let url = format!("http://127.0.0.1:{}/", b.port);
    let e = fetch(&url, &Guard::default(), &SystemLookup, &limits())
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("127.0.0.1 is a loopback address"), "{e}");
    assert_eq!(b.hits.load(Ordering::SeqCst), 0, "refused, yet connected");
    let got = fetch(&url, &allow(&["127.0.0.1"]), &SystemLookup, &limits())
        .await
        .unwrap();
    assert_eq!(got.body, b"inner page");
    assert_eq!(b.hits.load(Ordering::SeqCst), 1);
    assert_eq!(a.hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn dns_rebinding_cannot_move_the_connection() {
    let (a, b) = pair(ok("checked address"), ok("rebound address")).await;
    // The first answer is the allowed address; any later one points home.
    let lookup = Scripted::new(vec![vec!["127.0.0.2:1"], vec!["127.0.0.1:1"], vec!["127.0.0.1:1"]]);
    let url = format!("http://rebind.test:{}/", a.port);
    let got = fetch(&url, &allow(&["127.0.0.2"]), &lookup, &limits()).await.unwrap();
    assert_eq!(got.body, b"checked address");
    assert_eq!(lookup.calls.load(Ordering::SeqCst), 1, "the name was looked up again");
    assert_eq!(b.hits.load(Ordering::SeqCst), 0);

    // A name whose answers include an inner address is refused outright.
    let lookup = Scripted::new(vec![vec!["127.0.0.2:1", "127.0.0.1:1"]]);
    let e = fetch(&url, &allow(&["127.0.0.2"]), &lookup, &limits())
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("rebind.test (127.0.0.1) is a loopback address"), "{e}");
    assert_eq!(b.hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_redirect_to_loopback_from_an_allowed_host_is_refused() {
    let (_, b) = pair(Vec::new(), ok("inner page")).await;
    let bounce = serve_on("127.0.0.2", 0, redirect(&format!("http://127.0.0.1:{}/admin", b.port)))
        .await
        .unwrap();
    let url = format!("http://127.0.0.2:{}/", bounce.port);
    let e = fetch(&url, &allow(&["127.0.0.2"]), &SystemLookup, &limits())
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("127.0.0.1 is a loopback address"), "{e}");
    assert_eq!(bounce.hits.load(Ordering::SeqCst), 1);
    assert_eq!(b.hits.load(Ordering::SeqCst), 0, "the redirect was followed");

    // A redirect by name is resolved and checked like the first hop.
    let lookup = Scripted::new(vec![vec!["127.0.0.1:1"]]);
    let named = serve_on("127.0.0.2", 0, redirect(&format!("http://inner.test:{}/", b.port)))
        .await
        .unwrap();
    let url = format!("http://127.0.0.2:{}/", named.port);
    let e = fetch(&url, &allow(&["127.0.0.2"]), &lookup, &limits())
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("inner.test (127.0.0.1) is a loopback address"), "{e}");
    assert_eq!(b.hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn other_spellings_of_loopback_are_refused() {
    let (_, b) = pair(Vec::new(), ok("inner page")).await;
    let p = b.port;
    for url in [
        format!("http://2130706433:{p}/"),
        format!("http://0177.0.0.1:{p}/"),
        format!("http://0x7f.0.0.1:{p}/"),
        format!("http://0x7f000001:{p}/"),
        format!("http://127.1:{p}/"),
        format!("http://017700000001:{p}/"),
        format!("http://[::ffff:127.0.0.1]:{p}/"),
        format!("http://[::ffff:7f00:1]:{p}/"),
        format!("http://[::1]:{p}/"),
        format!("http://[64:ff9b::7f00:1]:{p}/"),
    ] {
        let e = fetch(&url, &Guard::default(), &SystemLookup, &limits())
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("address; OxiBot reaches only the public internet"),
            "{url}: {e}"
        );
    }
    assert_eq!(b.hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn schemes_credentials_metadata_bytes_and_time_are_bounded() {
    let guard = Guard::default();
    for (url, why) in [
        ("file:///etc/passwd", "file: URLs are refused"),
        ("ftp://example.com/", "ftp: URLs are refused"),
        ("http://user:pw@example.com/", "user name or password"),
        ("http://metadata.google.internal/computeMetadata/v1/", "cloud metadata"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
    ] {
        let e = fetch(url, &guard, &SystemLookup, &limits())
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains(why), "{url}: {e}");
    }
    let big = serve_on("127.0.0.1", 0, ok(&"x".repeat(10_000))).await.unwrap();
    let small = Limits {
        max_bytes: 1000,
        ..limits()
    };
    let url = format!("http://127.0.0.1:{}/", big.port);
    let got = fetch(&url, &allow(&["127.0.0.1"]), &SystemLookup, &small)
        .await
        .unwrap();
    assert_eq!(got.body.len(), 1000);
    assert!(got.truncated);

    let silent = serve_on("127.0.0.1", 0, Vec::new()).await.unwrap();
    let quick = Limits {
        timeout: Duration::from_millis(500),
        ..limits()
    };
    let url = format!("http://127.0.0.1:{}/", silent.port);
    let e = fetch(&url, &allow(&["127.0.0.1"]), &SystemLookup, &quick)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("no complete answer within"), "{e}");

    // Too many redirects: a server that redirects to itself.
    let lookup = Scripted::new(vec![]);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let looping = serve_on("127.0.0.1", port, redirect(&format!("http://127.0.0.1:{port}/again")))
        .await
        .unwrap();
    let e = fetch(
        &format!("http://127.0.0.1:{port}/"),
        &allow(&["127.0.0.1"]),
        &lookup,
        &limits(),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(e.contains("more than 5 redirects"), "{e}");
    assert_eq!(looping.hits.load(Ordering::SeqCst), 6);
}

/// Runs `script` with sh in this thread's network namespace.
fn sh(script: &str) {
    // `ip` lives in /usr/sbin, which a non-login PATH may lack.
    let script = format!("PATH=\"$PATH:/usr/sbin:/sbin\"; {script}");
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(&script)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The review's attack, in a network namespace of the test's own (only
/// loopback and a veth pair, nothing routed out): the host's own
/// public IPv4 and global IPv6 addresses, a device on the same link, the
/// link's broadcast, and a redirect from an allowed hop to the host's own
/// address. Before the routing check every one of them reached the
/// "internal" server (`http://203.0.114.7:PORT/admin.txt` answered).
#[test]
fn the_hosts_own_and_on_link_addresses_are_refused_at_every_hop() {
    if !nix::unistd::geteuid().is_root() {
        assert!(std::env::var_os("CI").is_none(), "CI runs as root: this test must run");
        return;
    }
    // This thread only (nextest runs each test in a process of its own);
    // the runtime below runs on this thread, so every socket is inside.
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
    sh(
        "ip link set lo up && ip link add d0 type veth peer name d1 && ip link set d1 up \
        && ip addr add 203.0.114.7/24 dev d0 \
        && ip -6 addr add 2a01:4f8:1:2::7/64 dev d0 nodad && ip link set d0 up",
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // The "internal" service, bound to every address (dual stack).
        let internal = serve_on("::", 0, ok("internal admin page")).await.unwrap();
        let port = internal.port;
        let lookup = Scripted::new(vec![]);
        for (url, why) in [
            (format!("http://203.0.114.7:{port}/admin.txt"), "this host's own"),
            (format!("http://[2a01:4f8:1:2::7]:{port}/admin.txt"), "this host's own"),
            (format!("http://203.0.114.9:{port}/"), "on-link"),
            (format!("http://[2a01:4f8:1:2::9]:{port}/"), "on-link"),
            (format!("http://203.0.114.255:{port}/"), "broadcast"),
            // IPv4-mapped IPv6: an IPv4 connection from a dual-stack
            // socket (the second review reached the page this way).
            (format!("http://[::ffff:203.0.114.7]:{port}/"), "this host's own"),
            (format!("http://[::ffff:cb00:7209]:{port}/"), "on-link"),
        ] {
            let e = fetch(&url, &Guard::default(), &lookup, &limits())
                .await
                .unwrap_err()
                .to_string();
            assert!(e.contains(why), "{url}: {e}");
        }
        // A hop the admin allowed redirects to the host's own address.
        let hop = serve_on(
            "127.0.0.1",
            0,
            redirect(&format!("http://203.0.114.7:{port}/admin.txt")),
        )
        .await
        .unwrap();
        let url = format!("http://127.0.0.1:{}/", hop.port);
        let e = fetch(&url, &allow(&["127.0.0.1"]), &lookup, &limits())
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("this host's own"), "{e}");
        assert_eq!(hop.hits.load(Ordering::SeqCst), 1);
        assert_eq!(
            internal.hits.load(Ordering::SeqCst),
            0,
            "the internal server was reached"
        );
        // The legitimate path: what the admin listed is reached.
        let listed = fetch(
            &format!("http://203.0.114.7:{port}/admin.txt"),
            &allow(&["203.0.114.0/24"]),
            &lookup,
            &limits(),
        )
        .await
        .unwrap();
        assert!(String::from_utf8_lossy(&listed.body).contains("internal admin page"));
    });
}

/// Not knowing is not a pass: a routing table that cannot be asked refuses.
#[tokio::test]
async fn an_unanswered_route_query_refuses() {
    let guard = Guard::default().with_routes(|_, _| Err(std::io::Error::from_raw_os_error(nix::libc::EAFNOSUPPORT)));
    let e = guard
        .check_ip("example.com", "93.184.216.34".parse().unwrap())
        .unwrap_err()
        .to_string();
    assert!(e.contains("routing table could not be asked"), "{e}");
    let open = Guard::default().with_routes(|_, _| Ok(crate::web::route::Reach::Elsewhere));
    assert!(open.check_ip("example.com", "93.184.216.34".parse().unwrap()).is_ok());
}
