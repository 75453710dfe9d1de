//! Credentials injected at the door (issue 18, point 2): a command in the
//! jail calls an API without its key; the door sets the header on the way
//! out and scrubs the key from the answer on the way back, so the key never
//! enters the jail.
//!
//! Two ways a request reaches a host with a credential: `https://` through
//! a tunnel whose TLS the door answers (`tls`), and plain `http://` to a
//! loopback destination only (local services and tests): plain HTTP
//! elsewhere would put the key on the wire in clear.

use std::net::SocketAddr;
use std::time::Duration;

use oxibot_proto::settings::HostPattern;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::answer::answer_head;
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
    /// Also on plain `http://` to loopback (off: inside checked TLS only).
    pub plain_http: bool,
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
/// addresses are `addresses`, among those `granted` to the exec: only one
/// that allows plain HTTP, and only when every address is loopback (plain
/// HTTP elsewhere would put the key on the wire in clear).
pub fn for_plain_http<'a>(
    injections: &'a [Injection],
    host: &str,
    port: u16,
    addresses: &[SocketAddr],
    granted: impl Fn(&Injection) -> bool,
) -> Option<&'a Injection> {
    if addresses.is_empty() || !addresses.iter().all(|a| a.ip().to_canonical().is_loopback()) {
        return None;
    }
    injections
        .iter()
        .find(|i| i.plain_http && granted(i) && i.hosts.iter().any(|p| p.allows(host, port)))
}

/// The most a compressed answer may inflate to (the door scrubs what it
/// inflates, so it bounds the work one answer can cost).
pub const MAX_INFLATED: u64 = 256 << 20;

/// Why an answer was not passed to the jail.
#[derive(Debug, thiserror::Error)]
pub enum Withheld {
    #[error("the upstream answered in a form the door cannot scrub ({0}); the answer was withheld")]
    Unscrubbable(&'static str),
    #[error("the upstream's answer head is over {MAX_HEAD} bytes or malformed")]
    BadHead,
    #[error("the upstream's chunked body is malformed")]
    BadChunk,
    #[error("the upstream's compressed body does not decompress: {0}")]
    BadCoding(std::io::Error),
    #[error("the upstream's compressed answer inflates past {} MiB; the rest was withheld", MAX_INFLATED >> 20)]
    TooLarge,
    #[error("the upstream sent nothing for the idle limit")]
    Idle,
    #[error("the connection failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Relays the upstream's answer to the client with every occurrence of
/// each secret masked, also across reads (see [`Scrub`]). The masking is
/// done on what the client will read: a chunked body is unchunked and a
/// gzip or deflate body decompressed first (the answer then ends when the
/// connection does), since either could split or hide the secret; a
/// trailer is dropped. An interim (1xx) answer, or another coding, is
/// withheld. Returns the bytes written.
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
    let early_body = head.split_off(body_start);
    let (head, mut body) = answer_head(&head)?;
    let mut written = 0u64;
    let mut send = async |client: &mut C, bytes: &[u8]| -> Result<(), Withheld> {
        client.write_all(bytes).await?;
        written += bytes.len() as u64;
        Ok(())
    };
    let out = scrub.push(&head);
    send(client, &out).await?;
    let mut piece = early_body;
    let mut decoded = 0u64;
    loop {
        // A compressed body is inflated a little at a time and written out
        // before more is inflated: a small answer that inflates to
        // gigabytes (a bomb) holds no more than a step's output in memory,
        // and is cut off at MAX_INFLATED.
        let framed = body.unframe(&piece)?;
        for step in framed.chunks(body.step()) {
            let plain = body.inflate(step)?;
            decoded += plain.len() as u64;
            if body.compressed() && decoded > MAX_INFLATED {
                return Err(Withheld::TooLarge);
            }
            let out = scrub.push(&plain);
            send(client, &out).await?;
            if plain.len() > 64 * 1024 {
                // Others' connections share these threads.
                tokio::task::yield_now().await;
            }
        }
        let n = if body.done() {
            0
        } else {
            read(upstream, &mut buf).await?
        };
        if n == 0 {
            body.end()?;
            let plain = body.finish()?;
            let out = scrub.push(&plain);
            send(client, &out).await?;
            break;
        }
        piece = buf[..n].to_vec();
    }
    let out = scrub.finish();
    send(client, &out).await?;
    client.shutdown().await?;
    Ok(written)
}

/// A streaming mask of several needles, each in the forms a service that
/// echoes its input commonly writes it: as it is, JSON with `\/` or every
/// character `\u`-escaped, percent-encoded, hex, UTF-16, and base64 at any
/// alignment; compared without regard to ASCII case. Not caught: a form
/// cut by line breaks (base64 wrapped at 76 columns) or another encoding;
/// a credential is for hosts that do not hand it back transformed.
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
            let bytes = secret.as_bytes();
            needles.push(bytes.to_vec());
            needles.push(secret.replace('/', "\\/").into_bytes());
            needles.push(percent(secret, false));
            needles.push(percent(secret, true));
            // Base64, wherever the secret falls in what was encoded: the
            // characters that depend on it alone, at each of the three
            // alignments (standard and URL-safe alphabets).
            for skip in 0..3.min(bytes.len()) {
                let aligned = &bytes[skip..];
                let whole = &aligned[..aligned.len() - aligned.len() % 3];
                if whole.len() >= 6 {
                    needles.push(
                        base64::engine::general_purpose::STANDARD_NO_PAD
                            .encode(whole)
                            .into_bytes(),
                    );
                    needles.push(
                        base64::engine::general_purpose::URL_SAFE_NO_PAD
                            .encode(whole)
                            .into_bytes(),
                    );
                }
            }
            needles.push(
                bytes
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<String>()
                    .into_bytes(),
            );
            needles.push(
                bytes
                    .iter()
                    .map(|b| format!("\\u{:04x}", b))
                    .collect::<String>()
                    .into_bytes(),
            );
            // UTF-16, both byte orders.
            needles.push(bytes.iter().flat_map(|b| [*b, 0]).collect());
            needles.push(bytes.iter().flat_map(|b| [0, *b]).collect());
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
    fn a_secret_transformed_by_an_echoing_service_is_masked_at_any_alignment() {
        use base64::Engine;
        let secret = "oxi-TOPSECRET-7d1e5c";
        let mut forms = Vec::new();
        // Base64 of what surrounded it, whatever the command put before.
        for before in ["", "a", "ab", "abc", "User-Agent: ab\r\nAuthorization: Bearer "] {
            let text = format!("{before}{secret}, and more");
            forms.push(base64::engine::general_purpose::STANDARD.encode(&text));
            forms.push(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&text));
        }
        let hex: String = secret.bytes().map(|b| format!("{b:02x}")).collect();
        forms.push(hex.clone());
        forms.push(hex.to_ascii_uppercase());
        forms.push(secret.bytes().map(|b| format!("\\u{b:04X}")).collect());
        for form in &forms {
            let out = scrubbed(&[secret], &[form.as_bytes()]);
            assert_ne!(out, *form, "not masked: {form}");
        }
        for utf16 in [
            secret.bytes().flat_map(|b| [b, 0]).collect::<Vec<u8>>(),
            secret.bytes().flat_map(|b| [0, b]).collect(),
        ] {
            let mut scrub = Scrub::new(&[secret]);
            let mut out = scrub.push(&utf16);
            out.extend(scrub.finish());
            assert_ne!(out, utf16);
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
            plain_http: true,
        }];
        let local: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let public: SocketAddr = "93.184.216.34:8080".parse().unwrap();
        assert!(for_plain_http(&injections, "svc.test", 8080, &[local], |_| true).is_some());
        assert!(for_plain_http(&injections, "svc.test", 8080, &[public], |_| true).is_none());
        assert!(for_plain_http(&injections, "svc.test", 8080, &[local, public], |_| true).is_none());
        assert!(for_plain_http(&injections, "other.test", 8080, &[local], |_| true).is_none());
        // Not granted to this exec; or granted, but for TLS only.
        assert!(for_plain_http(&injections, "svc.test", 8080, &[local], |_| false).is_none());
        let https_only = [Injection {
            name: "local".into(),
            hosts: vec![HostPattern::parse("svc.test:8080").unwrap()],
            header: "Authorization".into(),
            prefix: "Bearer ".into(),
            secret: "s3cr3t-VALUE".into(),
            plain_http: false,
        }];
        assert!(for_plain_http(&https_only, "svc.test", 8080, &[local], |_| true).is_none());
        assert!(!format!("{:?}", injections[0]).contains("s3cr3t"));
    }
}
