//! The opening of a tunnel: TLS stays end to end, but the server name a
//! client asks for in its hello (SNI) is in clear, and it must be the host
//! the tunnel was opened to. A hello naming another host is refused: on a
//! shared address (a CDN, a hosting provider) it would reach a service the
//! list never allowed. What is not TLS passes as it is (a protocol whose
//! server speaks first, such as SSH or SMTP, is recognised by its server
//! speaking first).

use std::time::Duration;

use rustls::server::Acceptor;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::Decision;

/// A hello may span several records; no legitimate one is this long.
const MAX_HELLO: usize = 64 * 1024;
/// A client that opened a tunnel speaks at once (or its server does).
const OPENING_TIMEOUT: Duration = Duration::from_secs(10);
/// The first byte of a TLS handshake record.
const HANDSHAKE: u8 = 0x16;

/// Reads what the client sends first (after `seen`, the bytes that came
/// with its `CONNECT`), as much as it takes to read a TLS hello, and
/// returns it all, to be sent on. When the server speaks first, what it
/// said goes to the client and the opening is what the client had sent.
/// Waits no longer than `idle`, and not past the exec's end (`revoked`):
/// the relay then closes the tunnel for either reason.
pub(super) async fn opening<C, U>(
    client: &mut C,
    upstream: &mut U,
    mut seen: Vec<u8>,
    host: &str,
    idle: Duration,
    revoked: &mut tokio::sync::watch::Receiver<bool>,
) -> Result<Vec<u8>, Decision>
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; 16 * 1024];
    let mut from_upstream = vec![0u8; 16 * 1024];
    loop {
        if let Some(decided) = judge(&seen, host) {
            return decided.map(|()| seen);
        }
        let read = tokio::time::timeout(OPENING_TIMEOUT.min(idle), async {
            tokio::select! {
                n = client.read(&mut buf) => Side::Client(n),
                n = upstream.read(&mut from_upstream), if seen.is_empty() => Side::Upstream(n),
                _ = revoked.changed() => Side::Revoked,
            }
        })
        .await;
        match read {
            Ok(Side::Client(Ok(n))) if n > 0 => seen.extend_from_slice(&buf[..n]),
            // The client is done or gone: the relay sees to it.
            Ok(Side::Client(_)) => return Ok(seen),
            Ok(Side::Upstream(Ok(n))) if n > 0 => {
                // The server spoke first: not TLS.
                let _ = client.write_all(&from_upstream[..n]).await;
                return Ok(seen);
            }
            Ok(Side::Upstream(_)) | Ok(Side::Revoked) => return Ok(seen),
            Err(_) if seen.is_empty() => return Ok(seen),
            Err(_) => return Err(Decision::BadRequest("a TLS hello that never ended")),
        }
    }
}

enum Side {
    Client(std::io::Result<usize>),
    Upstream(std::io::Result<usize>),
    Revoked,
}

/// What the bytes so far decide: None while a hello is incomplete.
fn judge(seen: &[u8], host: &str) -> Option<Result<(), Decision>> {
    let first = *seen.first()?;
    if first != HANDSHAKE {
        return Some(Ok(()));
    }
    if seen.len() > MAX_HELLO {
        return Some(Err(Decision::BadRequest("a TLS hello over 64 KiB")));
    }
    let mut acceptor = Acceptor::default();
    let mut rest = seen;
    while !rest.is_empty() {
        match acceptor.read_tls(&mut rest) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    match acceptor.accept() {
        Ok(None) => None,
        Ok(Some(accepted)) => Some(match accepted.client_hello().server_name() {
            Some(sni) if !crate::same_host(sni, host) => {
                Err(Decision::OtherServerName(sni.chars().take(253).collect()))
            }
            _ => Ok(()),
        }),
        // A handshake record that is no hello rustls can read: its server
        // name cannot be checked, so it does not pass.
        Err(_) => Some(Err(Decision::BadRequest("a TLS handshake whose hello cannot be read"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real client's hello for `name`, as rustls writes it.
    fn hello(name: &str) -> Vec<u8> {
        let config =
            rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from(name.to_string()).unwrap();
        let mut conn = rustls::ClientConnection::new(std::sync::Arc::new(config), name).unwrap();
        let mut out = Vec::new();
        conn.write_tls(&mut out).unwrap();
        out
    }

    #[test]
    fn a_hello_must_name_the_tunnels_host() {
        let ok = hello("api.github.com");
        assert!(matches!(judge(&ok, "api.github.com"), Some(Ok(()))));
        assert!(matches!(judge(&ok, "API.github.com."), Some(Ok(()))));
        let other = hello("evil.example");
        assert!(matches!(
            judge(&other, "api.github.com"),
            Some(Err(Decision::OtherServerName(n))) if n == "evil.example"
        ));
        // Cut anywhere, it is undecided until whole.
        for cut in 1..other.len() {
            assert!(judge(&other[..cut], "api.github.com").is_none(), "cut at {cut}");
        }
        // Not TLS: passes as it is. A broken handshake record: refused.
        assert!(matches!(judge(b"SSH-2.0-OpenSSH\r\n", "h"), Some(Ok(()))));
        let mut broken = other.clone();
        broken[5] = 0x42; // not a ClientHello
        assert!(matches!(judge(&broken, "api.github.com"), Some(Err(_))));
        assert!(judge(&[], "h").is_none());
    }
}
