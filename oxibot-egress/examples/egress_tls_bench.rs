//! The egress door's added latency for HTTPS: 1,000 requests to a local
//! HTTPS upstream (its own test authority), each on a fresh connection,
//! three ways, printed as p50 and p99:
//! - direct;
//! - through the door as a `CONNECT` tunnel (TLS end to end, the client
//!   checks the upstream's certificate);
//! - through the door to a host with a credential: the door answers the
//!   client's TLS with its own authority, sets the header, speaks real TLS
//!   to the upstream, and scrubs the answer.
//!
//! `cargo run --release -p oxibot-egress --example egress_tls_bench`

mod common;

use std::sync::Arc;

use oxibot_egress::grants::Grant;
use oxibot_egress::inject::Injection;
use oxibot_egress::proxy::{serve, Policy};
use oxibot_egress::route::Reach;
use oxibot_egress::tls::{upstream_config, Authority};
use oxibot_egress::{Guard, SystemLookup};
use oxibot_proto::settings::HostPattern;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use common::{measure, report, ROUNDS};

const REQUEST: &[u8] = b"GET /pulls HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: bench\r\nConnection: close\r\n\r\n";
const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\nConnection: close\r\n\r\n{\"pulls\": []}";

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn client_trusting(pem: &str) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        roots.add(c.expect("a certificate")).expect("an anchor");
    }
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // The upstream: HTTPS for 127.0.0.1, signed by a test authority.
    let ca_key = KeyPair::generate().expect("a key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_pem = ca.self_signed(&ca_key).expect("the test authority").pem();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().expect("a key");
    let cert = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .expect("params")
        .signed_by(&key, &issuer)
        .expect("the upstream's certificate");
    let server = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .expect("a server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    let upstream = TcpListener::bind("127.0.0.1:0").await.expect("bind the upstream");
    let up_port = upstream.local_addr().expect("its address").port();
    tokio::spawn(async move {
        while let Ok((s, _)) = upstream.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut s) = acceptor.accept(s).await else { return };
                let mut buf = [0u8; 2048];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(RESPONSE).await;
                let _ = s.shutdown().await;
            });
        }
    });

    // Two doors: one tunnels, one answers TLS and sets a credential.
    let door = |injecting: bool| {
        let authority = Arc::new(Authority::generate().expect("the door's authority"));
        let host = HostPattern::parse(&format!("127.0.0.1:{up_port}")).expect("a pattern");
        let policy = Policy {
            allowed: vec![host.clone()],
            guard: Guard::new(&["127.0.0.1".to_string()])
                .expect("an allow-list")
                .with_routes(|_, _| Ok(Reach::Elsewhere)),
            grants: Default::default(),
            injections: match injecting {
                true => vec![Injection {
                    name: "bench".into(),
                    hosts: vec![host],
                    header: "Authorization".into(),
                    prefix: "Bearer ".into(),
                    secret: "ghp_bench0123456789abcdef".into(),
                    plain_http: false,
                }],
                false => Vec::new(),
            },
            authority: Some(authority.clone()),
            upstream_tls: upstream_config(&[], &ca_pem).expect("the upstream's anchor").0,
            idle: oxibot_egress::proxy::IDLE,
        };
        let key = policy
            .grants
            .grant(Grant {
                session: "bench".into(),
                call: "exec 1".into(),
                credentials: vec!["bench".into()],
                hosts: None,
            })
            .expect("random bytes");
        (Arc::new(policy), key, authority)
    };
    let start_door = |policy: Arc<Policy>, key: String| async move {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the door");
        let port = listener.local_addr().expect("its address").port();
        let key: &'static str = Box::leak(key.into_boxed_str());
        tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                let policy = policy.clone();
                tokio::spawn(async move {
                    serve(s, key.as_bytes(), &policy, &SystemLookup).await;
                });
            }
        });
        port
    };
    let (tunnel_policy, tunnel_key, _) = door(false);
    let tunnel_port = start_door(tunnel_policy, tunnel_key).await;
    let (inject_policy, inject_key, authority) = door(true);
    let inject_port = start_door(inject_policy, inject_key).await;

    let to_upstream = client_trusting(&ca_pem);
    let to_door = client_trusting(authority.certificate_pem());
    let connect: &'static str = Box::leak(
        format!("CONNECT 127.0.0.1:{up_port} HTTP/1.1\r\nHost: 127.0.0.1:{up_port}\r\n\r\n").into_boxed_str(),
    );

    let direct = measure(|| {
        let c = to_upstream.clone();
        async move {
            let s = TcpStream::connect(("127.0.0.1", up_port)).await.expect("connect");
            exchange(&c, s).await;
        }
    })
    .await;
    let tunnel = measure(|| {
        let c = to_upstream.clone();
        async move { exchange(&c, through(tunnel_port, connect).await).await }
    })
    .await;
    let injected = measure(|| {
        let c = to_door.clone();
        async move { exchange(&c, through(inject_port, connect).await).await }
    })
    .await;
    println!("egress door, {ROUNDS} HTTPS requests each on a new connection to a local upstream:");
    report("direct", &direct);
    report("CONNECT tunnel (TLS end to end)", &tunnel);
    report("credential set at the door", &injected);
}

async fn through(door: u16, connect: &str) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", door)).await.expect("connect");
    s.write_all(connect.as_bytes()).await.expect("CONNECT");
    let mut established = [0u8; 39];
    s.read_exact(&mut established)
        .await
        .expect("200 Connection established");
    s
}

async fn exchange(connector: &tokio_rustls::TlsConnector, tcp: TcpStream) {
    let name = ServerName::try_from("127.0.0.1").expect("a name");
    let mut s = connector.connect(name, tcp).await.expect("TLS");
    request(&mut s).await;
}

async fn request<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S) {
    s.write_all(REQUEST).await.expect("request");
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer).await;
    assert!(
        answer.ends_with(b"{\"pulls\": []}"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
}
