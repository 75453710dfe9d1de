//! TLS answered at the door, against a real HTTPS upstream with its own
//! test authority, and a client that trusts only the door's.

use std::sync::Arc;

use rcgen::{CertificateParams, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::tests::{exec, policy, Scripted};
use super::*;
use crate::tls::Authority;

const SECRET: &str = "ghp_TERMINATED0123456789";

/// An HTTPS API on loopback, answering for `name` with a certificate of
/// its own test authority: it echoes the Authorization header it got, in
/// a header and in a chunked body. Returns its port, the authority's PEM
/// and what it read.
async fn https_api(name: &str) -> (u16, String, tokio::task::JoinHandle<String>) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_pem = ca.self_signed(&ca_key).unwrap().pem();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec![name.to_string()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut s = acceptor.accept(tcp).await.unwrap();
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
            .unwrap_or("none")
            .to_string();
        let body = format!("{{\"token\": \"{auth}\"}}");
        let answer = format!(
            "HTTP/1.1 200 OK\r\nX-Echo: {auth}\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
            body.len()
        );
        s.write_all(answer.as_bytes()).await.unwrap();
        s.shutdown().await.unwrap();
        seen
    });
    (port, ca_pem, task)
}

/// A door that answers TLS for `api.test:port` (which resolves to
/// loopback) and sets the `github` credential there.
fn answering_door(port: u16, upstream_ca: &str) -> ((Policy, String), Arc<Authority>) {
    let (mut p, key) = policy(&[&format!("api.test:{port}")], &["api.test"]);
    let authority = Arc::new(Authority::generate().unwrap());
    p.authority = Some(authority.clone());
    p.upstream_tls = crate::tls::upstream_config(&[], upstream_ca).unwrap().0;
    p.injections.push(Injection {
        name: "github".into(),
        hosts: vec![HostPattern::parse(&format!("api.test:{port}")).unwrap()],
        header: "Authorization".into(),
        prefix: "Bearer ".into(),
        secret: SECRET.into(),
        plain_http: false,
    });
    ((p, key), authority)
}

fn loopback(port: u16) -> Scripted {
    Scripted(vec![SocketAddr::from(([127, 0, 0, 1], port))], Default::default())
}

/// The jail's side: `CONNECT`, then TLS trusting only the door's
/// authority, with `sni`, then `request`. Returns what came back in clear.
async fn client(
    door: &(Policy, String),
    key: &[u8],
    authority: &Authority,
    port: u16,
    sni: &str,
    request: String,
) -> (Result<String, std::io::Error>, Record) {
    let (mut ours, theirs) = tokio::io::duplex(64 * 1024);
    let lookup = loopback(port);
    let config = trusting(authority.certificate_pem());
    let sni = ServerName::try_from(sni.to_string()).unwrap();
    let jail = async move {
        ours.write_all(format!("CONNECT api.test:{port} HTTP/1.1\r\nHost: api.test:{port}\r\n\r\n").as_bytes())
            .await?;
        let mut established = [0u8; 39];
        ours.read_exact(&mut established).await?;
        assert!(established.starts_with(b"HTTP/1.1 200"));
        let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(sni, ours)
            .await?;
        tls.write_all(request.as_bytes()).await?;
        let mut answer = Vec::new();
        let _ = tls.read_to_end(&mut answer).await;
        Ok(String::from_utf8_lossy(&answer).into_owned())
    };
    let (record, answer) = tokio::join!(serve(theirs, key, &door.0, &lookup), jail);
    (answer, record)
}

use rustls::pki_types::pem::PemObject;

/// A client that trusts the authorities in `pem` alone.
fn trusting(pem: &str) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth()
}

#[tokio::test]
async fn https_to_a_credential_host_gets_the_header_and_the_echo_comes_back_scrubbed() {
    let (port, upstream_ca, seen) = https_api("api.test").await;
    let (door, authority) = answering_door(port, &upstream_ca);
    let request = format!(
        "GET /user HTTP/1.1\r\nHost: api.test:{port}\r\nAuthorization: Bearer mine\r\nAccept-Encoding: gzip\r\n\r\n"
    );
    let (answer, record) = client(&door, door.1.as_bytes(), &authority, port, "api.test", request).await;
    let answer = answer.unwrap();
    let seen = seen.await.unwrap();
    // The real upstream, over real TLS, got the credential in place of
    // the command's own header.
    assert!(seen.contains(&format!("Authorization: Bearer {SECRET}\r\n")), "{seen}");
    assert!(!seen.contains("Bearer mine"), "{seen}");
    // The jail got the echo, unchunked, without the secret.
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(!answer.contains(SECRET), "{answer}");
    let masked = "*".repeat("Bearer ".len() + SECRET.len());
    assert!(answer.contains(&format!("X-Echo: {masked}")), "{answer}");
    assert!(answer.ends_with(&format!("{{\"token\": \"{masked}\"}}")), "{answer}");
    assert_eq!(record.injected.as_deref(), Some("github"));
    assert!(matches!(record.decision, Decision::Allowed), "{record:?}");
}

#[tokio::test]
async fn an_exec_not_given_the_credential_reaches_the_host_without_it() {
    let (port, upstream_ca, seen) = https_api("api.test").await;
    let (door, authority) = answering_door(port, &upstream_ca);
    let mut other = exec(2);
    other.credentials.clear();
    let key = door.0.grants.grant(other).unwrap();
    let request = "GET / HTTP/1.1\r\nHost: api.test\r\n\r\n".to_string();
    let (answer, record) = client(&door, key.as_bytes(), &authority, port, "api.test", request).await;
    assert!(answer.unwrap().starts_with("HTTP/1.1 200"));
    assert!(!seen.await.unwrap().contains(SECRET));
    assert_eq!(record.injected, None);
}

#[tokio::test]
async fn a_tunnel_to_one_host_does_not_speak_for_another() {
    let (port, upstream_ca, _seen) = https_api("api.test").await;
    let (door, authority) = answering_door(port, &upstream_ca);
    // Another server name in the TLS hello than the CONNECT named.
    let request = "GET / HTTP/1.1\r\nHost: api.test\r\n\r\n".to_string();
    let (answer, record) = client(&door, door.1.as_bytes(), &authority, port, "other.test", request).await;
    assert!(answer.is_err(), "the handshake fails: {answer:?}");
    assert!(
        matches!(record.decision, Decision::Tls(TlsError::OtherServerName { .. })),
        "{record:?}"
    );
    // The right server name, but a Host of another place inside.
    let (port, upstream_ca, _seen) = https_api("api.test").await;
    let (door, authority) = answering_door(port, &upstream_ca);
    let request = "GET / HTTP/1.1\r\nHost: other.test\r\n\r\n".to_string();
    let (answer, record) = client(&door, door.1.as_bytes(), &authority, port, "api.test", request).await;
    assert!(answer.unwrap().starts_with("HTTP/1.1 400"));
    assert!(matches!(record.decision, Decision::BadRequest(_)), "{record:?}");
}

#[tokio::test]
async fn an_upstream_the_system_does_not_trust_gets_no_credential() {
    // The door checks the real host's certificate: an upstream signed by
    // an authority it was not given is refused before the header is sent.
    let (port, _its_ca, seen) = https_api("api.test").await;
    let (door, authority) = answering_door(port, "");
    let request = "GET / HTTP/1.1\r\nHost: api.test\r\n\r\n".to_string();
    let (answer, record) = client(&door, door.1.as_bytes(), &authority, port, "api.test", request).await;
    let answer = answer.unwrap();
    assert!(answer.starts_with("HTTP/1.1 502"), "{answer}");
    assert!(
        matches!(record.decision, Decision::Tls(TlsError::Upstream { .. })),
        "{record:?}"
    );
    assert!(seen.await.is_err(), "the upstream's handshake failed, it read nothing");
}

#[tokio::test]
async fn a_plain_tunnel_passes_its_own_hosts_hello_and_refuses_anothers() {
    // No credential: the door only tunnels, and the client checks the
    // upstream's own certificate; the hello's name must still be the
    // tunnel's host.
    for (sni, passes) in [("api.test", true), ("other.test", false)] {
        let (port, upstream_ca, seen) = https_api("api.test").await;
        let (mut door, _) = answering_door(port, &upstream_ca);
        door.0.injections.clear();
        let (mut ours, theirs) = tokio::io::duplex(64 * 1024);
        let lookup = loopback(port);
        let config = trusting(&upstream_ca);
        let name = ServerName::try_from(sni.to_string()).unwrap();
        let jail = async move {
            ours.write_all(format!("CONNECT api.test:{port} HTTP/1.1\r\n\r\n").as_bytes())
                .await?;
            let mut established = [0u8; 39];
            ours.read_exact(&mut established).await?;
            let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
                .connect(name, ours)
                .await?;
            tls.write_all(b"GET / HTTP/1.1\r\nHost: api.test\r\n\r\n").await?;
            let mut answer = Vec::new();
            let _ = tls.read_to_end(&mut answer).await;
            Ok::<_, std::io::Error>(String::from_utf8_lossy(&answer).into_owned())
        };
        let (record, answer) = tokio::join!(serve(theirs, door.1.as_bytes(), &door.0, &lookup), jail);
        if passes {
            // End to end: the upstream saw the command's request as sent.
            assert!(answer.unwrap().contains("\"token\": \"none\""));
            assert!(seen.await.unwrap().starts_with("GET / HTTP/1.1"));
            assert!(matches!(record.decision, Decision::Allowed), "{record:?}");
        } else {
            assert!(answer.is_err(), "{answer:?}");
            assert!(
                matches!(&record.decision, Decision::OtherServerName(n) if n == "other.test"),
                "{record:?}"
            );
        }
    }
}
