//! Credentials injected at the door (issue 18, point 2): a command in the
//! jail calls an API without its key; the door sets the header on the way
//! out and scrubs the key from the answer on the way back, so the key never
//! enters the jail.
//!
//! Built so far: plain `http://` to a loopback destination (local services
//! and tests, as the issue allows). TLS to a listed host, terminated at the
//! door with a per-install CA, is the next step; until then a `CONNECT` to
//! such a host is an ordinary end-to-end tunnel, without the credential.

use std::net::SocketAddr;

use oxibot_proto::settings::HostPattern;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::MAX_HEAD;

/// `tools.exec.credentials.<name>`: which hosts get which header.
pub struct Injection {
    pub name: String,
    pub hosts: Vec<HostPattern>,
    /// The header set (replacing any the command sent), e.g. `Authorization`.
    pub header: String,
    /// Written before the secret, e.g. `Bearer `.
    pub prefix: String,
    /// From the secrets file; never enters the jail.
    pub secret: String,
}

impl std::fmt::Debug for Injection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Injection {{ name: {:?}, header: {:?}, .. }}",
            self.name, self.header
        )
    }
}

/// The credential for a plain-HTTP request to `host:port` whose checked
/// addresses are `addresses`: only when every address is loopback (plain
/// HTTP elsewhere would put the key on the wire in clear).
pub fn for_plain_http<'a>(
    injections: &'a [Injection],
    host: &str,
    port: u16,
    addresses: &[SocketAddr],
) -> Option<&'a Injection> {
    if addresses.is_empty() || !addresses.iter().all(|a| a.ip().to_canonical().is_loopback()) {
        return None;
    }
    injections.iter().find(|i| i.hosts.iter().any(|p| p.allows(host, port)))
}

/// Why an answer was not passed to the jail.
#[derive(Debug, thiserror::Error)]
pub enum Withheld {
    #[error("the upstream answered in a form the door cannot scrub ({0}); the answer was withheld")]
    Unscrubbable(&'static str),
    #[error("the upstream's answer head is over {MAX_HEAD} bytes or malformed")]
    BadHead,
    #[error("the connection failed: {0}")]
    Io(#[from] std::io::Error),
}

/// What replaces the secret in an answer.
pub const SCRUBBED: &[u8] = b"[REDACTED]";

/// Relays the upstream's answer to the client with every occurrence of
/// `secret` replaced, also across reads. The answer must come without
/// chunked framing or content coding (which could split or hide the
/// secret); one that does not is withheld. Returns the bytes written.
pub async fn relay_scrubbed<U, C>(upstream: &mut U, client: &mut C, secret: &[u8]) -> Result<u64, Withheld>
where
    U: AsyncRead + Unpin,
    C: AsyncWrite + Unpin,
{
    let mut scrub = Scrub::new(secret);
    let mut buf = vec![0u8; 16 * 1024];
    // The head first, whole, to see how the body is framed.
    let mut head = Vec::new();
    let body_start = loop {
        let n = upstream.read(&mut buf).await?;
        if n == 0 {
            return Err(Withheld::BadHead);
        }
        head.extend_from_slice(&buf[..n]);
        if let Some(at) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        if head.len() > MAX_HEAD {
            return Err(Withheld::BadHead);
        }
    };
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut headers);
    match response.parse(&head[..body_start]) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return Err(Withheld::BadHead),
    }
    for h in response.headers.iter() {
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(Withheld::Unscrubbable("Transfer-Encoding"));
        }
        if h.name.eq_ignore_ascii_case("content-encoding") && !h.value.eq_ignore_ascii_case(b"identity") {
            return Err(Withheld::Unscrubbable("Content-Encoding"));
        }
    }
    let mut written = 0u64;
    let out = scrub.push(&head);
    client.write_all(&out).await?;
    written += out.len() as u64;
    loop {
        let n = upstream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        let out = scrub.push(&buf[..n]);
        client.write_all(&out).await?;
        written += out.len() as u64;
    }
    let out = scrub.finish();
    client.write_all(&out).await?;
    written += out.len() as u64;
    client.shutdown().await?;
    Ok(written)
}

/// A streaming replace of one needle: holds back the last `needle - 1`
/// bytes of each piece, where a match could still begin.
struct Scrub<'a> {
    needle: &'a [u8],
    held: Vec<u8>,
}

impl<'a> Scrub<'a> {
    fn new(needle: &'a [u8]) -> Self {
        Scrub {
            needle,
            held: Vec::new(),
        }
    }

    fn push(&mut self, input: &[u8]) -> Vec<u8> {
        self.held.extend_from_slice(input);
        let mut out = Vec::with_capacity(self.held.len());
        if self.needle.is_empty() {
            out.append(&mut self.held);
            return out;
        }
        while let Some(at) = self.held.windows(self.needle.len()).position(|w| w == self.needle) {
            out.extend_from_slice(&self.held[..at]);
            out.extend_from_slice(SCRUBBED);
            self.held.drain(..at + self.needle.len());
        }
        let keep = self.held.len().min(self.needle.len() - 1);
        out.extend(self.held.drain(..self.held.len() - keep));
        out
    }

    fn finish(self) -> Vec<u8> {
        self.held
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_is_scrubbed_however_the_reads_cut_it() {
        let secret = b"ghp_SECRET123";
        let text = b"echo: Authorization: Bearer ghp_SECRET123 and again ghp_SECRET123!";
        for cut in 1..text.len() {
            let mut scrub = Scrub::new(secret);
            let mut out = scrub.push(&text[..cut]);
            out.extend(scrub.push(&text[cut..]));
            out.extend(scrub.finish());
            let out = String::from_utf8(out).unwrap();
            assert_eq!(
                out, "echo: Authorization: Bearer [REDACTED] and again [REDACTED]!",
                "cut at {cut}"
            );
        }
        // One byte at a time.
        let mut scrub = Scrub::new(secret);
        let mut out: Vec<u8> = text.iter().flat_map(|b| scrub.push(&[*b])).collect();
        out.extend(scrub.finish());
        assert!(!out.windows(secret.len()).any(|w| w == secret));
    }

    #[test]
    fn only_loopback_plain_http_gets_a_credential() {
        let injections = [Injection {
            name: "local".into(),
            hosts: vec![HostPattern::parse("svc.test:8080").unwrap()],
            header: "Authorization".into(),
            prefix: "Bearer ".into(),
            secret: "s3cr3t-VALUE".into(),
        }];
        let local: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let public: SocketAddr = "93.184.216.34:8080".parse().unwrap();
        assert!(for_plain_http(&injections, "svc.test", 8080, &[local]).is_some());
        assert!(for_plain_http(&injections, "svc.test", 8080, &[public]).is_none());
        assert!(for_plain_http(&injections, "svc.test", 8080, &[local, public]).is_none());
        assert!(for_plain_http(&injections, "other.test", 8080, &[local]).is_none());
        assert!(!format!("{:?}", injections[0]).contains("s3cr3t"));
    }
}
