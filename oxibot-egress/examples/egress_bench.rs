//! The egress door's added latency: 1,000 requests to a local upstream,
//! each on a fresh connection, direct and through the door's core
//! (`oxibot_egress::proxy::serve` behind a loopback listener, as a
//! `CONNECT` tunnel), printed as p50 and p99. The upstream answers a small
//! HTTP response; TLS, end to end in a tunnel, would cost the same on both
//! paths and is left out of the difference.
//!
//! `cargo run --release -p oxibot-egress --example egress_bench` (an
//! example of this crate, so that it builds without the test crate's
//! dependencies).

mod common;

use std::sync::Arc;

use oxibot_egress::grants::Grant;
use oxibot_egress::proxy::{serve, Policy};
use oxibot_egress::route::Reach;
use oxibot_egress::{Guard, SystemLookup};
use oxibot_proto::settings::HostPattern;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use common::{measure, report, ROUNDS};

const REQUEST: &[u8] = b"GET /pulls HTTP/1.1\r\nHost: api.test\r\nUser-Agent: bench\r\nConnection: close\r\n\r\n";
const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\nConnection: close\r\n\r\n{\"pulls\": []}";

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let upstream = TcpListener::bind("127.0.0.1:0").await.expect("bind the upstream");
    let up_port = upstream.local_addr().expect("its address").port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = upstream.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(RESPONSE).await;
                let _ = s.shutdown().await;
            });
        }
    });

    let policy = Arc::new(Policy {
        allowed: vec![HostPattern::parse(&format!("127.0.0.1:{up_port}")).expect("a pattern")],
        guard: Guard::new(&["127.0.0.1".to_string()])
            .expect("an allow-list")
            .with_routes(|_, _| Ok(Reach::Elsewhere)),
        grants: Default::default(),
        injections: Vec::new(),
        authority: None,
        upstream_tls: oxibot_egress::tls::upstream_config(&[], "").expect("no anchors").0,
        idle: oxibot_egress::proxy::IDLE,
    });
    let token = policy
        .grants
        .grant(Grant {
            session: "bench".into(),
            call: "exec 1".into(),
            credentials: Vec::new(),
            hosts: None,
        })
        .expect("random bytes");
    let token: &'static str = Box::leak(token.into_boxed_str());
    let connect: &'static str = Box::leak(
        format!("CONNECT 127.0.0.1:{up_port} HTTP/1.1\r\nHost: 127.0.0.1:{up_port}\r\n\r\n").into_boxed_str(),
    );
    let door = TcpListener::bind("127.0.0.1:0").await.expect("bind the door");
    let door_port = door.local_addr().expect("its address").port();
    tokio::spawn(async move {
        while let Ok((s, _)) = door.accept().await {
            let policy = policy.clone();
            tokio::spawn(async move {
                serve(s, token.as_bytes(), &policy, &SystemLookup).await;
            });
        }
    });

    let direct = measure(|| async move {
        let mut s = TcpStream::connect(("127.0.0.1", up_port)).await.expect("connect");
        exchange(&mut s).await;
    })
    .await;
    let tunnel = measure(|| async move {
        let mut s = TcpStream::connect(("127.0.0.1", door_port)).await.expect("connect");
        s.write_all(connect.as_bytes()).await.expect("CONNECT");
        let mut established = [0u8; 39];
        s.read_exact(&mut established)
            .await
            .expect("200 Connection established");
        exchange(&mut s).await;
    })
    .await;
    println!("egress door, {ROUNDS} requests each on a new connection to a local upstream:");
    report("direct", &direct);
    report("CONNECT tunnel through the door", &tunnel);
}

async fn exchange(s: &mut TcpStream) {
    s.write_all(REQUEST).await.expect("request");
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).await.expect("response");
    assert!(
        answer.ends_with(b"{\"pulls\": []}"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
}
