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
use std::time::Duration;

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
    #[error("the upstream sent nothing for the idle limit")]
    Idle,
    #[error("the connection failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Relays the upstream's answer to the client with every occurrence of
/// each secret masked, also across reads (see [`Scrub`]). The answer must
/// be one final answer without chunked framing or content coding (which
/// could split or hide the secret); an interim (1xx) answer or such a one
/// is withheld. Returns the bytes written.
///
/// This catches a service that echoes what it was sent (an error message
/// quoting the header, a debugging endpoint), in the common encodings. It
/// cannot stop a destination that sets out to leak the secret (it could
/// encrypt it): a credential is configured only for hosts trusted with it.
pub async fn relay_scrubbed<U, C>(
    upstream: &mut U,
    client: &mut C,
    secrets: &[&str],
    idle: Duration,
) -> Result<u64, Withheld>
where
    U: AsyncRead + Unpin,
    C: AsyncWrite + Unpin,
{
    let mut scrub = Scrub::new(secrets);
    let mut buf = vec![0u8; 16 * 1024];
    let read = async |upstream: &mut U, buf: &mut [u8]| -> Result<usize, Withheld> {
        tokio::time::timeout(idle, upstream.read(buf))
            .await
            .map_err(|_| Withheld::Idle)?
            .map_err(Withheld::Io)
    };
    // The head first, whole, to see how the body is framed.
    let mut head = Vec::new();
    let body_start = loop {
        let n = read(upstream, &mut buf).await?;
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
    if body_start > MAX_HEAD {
        return Err(Withheld::BadHead);
    }
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut headers);
    match response.parse(&head[..body_start]) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return Err(Withheld::BadHead),
    }
    // Another answer could follow an interim one, unchecked.
    if response.code.is_some_and(|c| c < 200) {
        return Err(Withheld::Unscrubbable("an interim 1xx answer"));
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
        let n = read(upstream, &mut buf).await?;
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

/// A streaming mask of several needles, each in the forms a service that
/// echoes its input commonly writes it: as it is, JSON with `\/`,
/// percent-encoded, and base64; compared without regard to ASCII case.
/// A match is replaced by as many `*` as it has bytes, so the answer's
/// `Content-Length` stays true. The last bytes of each piece, where a
/// match could still begin, are held back until the next.
pub struct Scrub {
    needles: Vec<Vec<u8>>,
    longest: usize,
    held: Vec<u8>,
}

impl Scrub {
    pub fn new(secrets: &[&str]) -> Self {
        use base64::Engine;
        let mut needles: Vec<Vec<u8>> = Vec::new();
        for secret in secrets.iter().filter(|s| !s.is_empty()) {
            needles.push(secret.as_bytes().to_vec());
            needles.push(secret.replace('/', "\\/").into_bytes());
            needles.push(percent(secret, false));
            needles.push(percent(secret, true));
            needles.push(base64::engine::general_purpose::STANDARD.encode(secret).into_bytes());
            needles.push(
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .encode(secret)
                    .into_bytes(),
            );
        }
        for n in &mut needles {
            n.make_ascii_lowercase();
        }
        needles.sort_by_key(|n| std::cmp::Reverse(n.len()));
        needles.dedup();
        let longest = needles.first().map_or(0, Vec::len);
        Scrub {
            needles,
            longest,
            held: Vec::new(),
        }
    }

    pub fn push(&mut self, input: &[u8]) -> Vec<u8> {
        self.held.extend_from_slice(input);
        let lower = self.held.to_ascii_lowercase();
        for needle in &self.needles {
            let mut from = 0;
            while let Some(at) = lower[from..].windows(needle.len()).position(|w| w == needle.as_slice()) {
                let at = from + at;
                self.held[at..at + needle.len()].fill(b'*');
                from = at + needle.len();
            }
        }
        let keep = self.held.len().min(self.longest.saturating_sub(1));
        self.held.drain(..self.held.len() - keep).collect()
    }

    pub fn finish(self) -> Vec<u8> {
        self.held
    }
}

/// Percent-encoding of every byte but unreserved ones (`A-Z a-z 0-9 - . _ ~`).
fn percent(text: &str, space_as_plus: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => out.push(b),
            b' ' if space_as_plus => out.push(b'+'),
            _ => out.extend_from_slice(format!("%{b:02X}").as_bytes()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrubbed(secrets: &[&str], pieces: &[&[u8]]) -> String {
        let mut scrub = Scrub::new(secrets);
        let mut out: Vec<u8> = pieces.iter().flat_map(|p| scrub.push(p)).collect();
        out.extend(scrub.finish());
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn a_secret_is_masked_however_the_reads_cut_it() {
        let text = b"echo: Authorization: Bearer ghp_SECRET123 and again ghp_SECRET123!";
        for cut in 1..text.len() {
            let out = scrubbed(&["ghp_SECRET123"], &[&text[..cut], &text[cut..]]);
            assert_eq!(
                out, "echo: Authorization: Bearer ************* and again *************!",
                "cut at {cut}"
            );
        }
        let bytes: Vec<&[u8]> = text.chunks(1).collect();
        assert!(!scrubbed(&["ghp_SECRET123"], &bytes).contains("SECRET"));
    }

    #[test]
    fn the_usual_encodings_of_a_secret_are_masked_too() {
        use base64::Engine;
        let secret = "ghp_S3cr3t/Tok+en=";
        for echoed in [
            secret.to_string(),
            secret.to_ascii_lowercase(),
            secret.replace('/', "\\/"),
            "ghp_S3cr3t%2FTok%2Ben%3D".to_string(),
            base64::engine::general_purpose::STANDARD.encode(secret),
        ] {
            let text = format!("you sent: {echoed}.");
            let out = scrubbed(&[secret], &[text.as_bytes()]);
            assert_eq!(out.len(), text.len(), "the length is kept: {out}");
            assert!(!out.contains(&echoed), "{echoed} passed: {out}");
        }
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
