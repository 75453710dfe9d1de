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
    #[error("the upstream's chunked body is malformed")]
    BadChunk,
    #[error("the upstream's compressed body does not decompress: {0}")]
    BadCoding(std::io::Error),
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
    loop {
        let plain = body.decode(&piece)?;
        let out = scrub.push(&plain);
        send(client, &out).await?;
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

/// The answer's head as the client gets it (framing and coding headers
/// rewritten for the decoded body), and the body's decoder.
fn answer_head(head: &[u8]) -> Result<(Vec<u8>, BodyDecoder), Withheld> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut headers);
    match response.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return Err(Withheld::BadHead),
    }
    let code = response.code.unwrap_or(0);
    // Another answer could follow an interim one, unchecked.
    if code < 200 {
        return Err(Withheld::Unscrubbable("an interim 1xx answer"));
    }
    let mut chunked = false;
    let mut coding = Coding::Identity;
    let mut length = None;
    for h in response.headers.iter() {
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            if !h.value.eq_ignore_ascii_case(b"chunked") || chunked {
                return Err(Withheld::Unscrubbable("a Transfer-Encoding other than chunked"));
            }
            chunked = true;
        }
        if h.name.eq_ignore_ascii_case("content-encoding") {
            coding = match h.value.to_ascii_lowercase().as_slice() {
                b"identity" => Coding::Identity,
                b"gzip" | b"x-gzip" if matches!(coding, Coding::Identity) => {
                    Coding::Gzip(flate2::write::GzDecoder::new(Vec::new()))
                }
                b"deflate" if matches!(coding, Coding::Identity) => {
                    Coding::Deflate(flate2::write::ZlibDecoder::new(Vec::new()))
                }
                _ => return Err(Withheld::Unscrubbable("a Content-Encoding other than gzip or deflate")),
            };
        }
        if h.name.eq_ignore_ascii_case("content-length") {
            let n = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok());
            if n.is_none() || (length.is_some() && length != n) {
                return Err(Withheld::BadHead);
            }
            length = n;
        }
    }
    let rewritten = chunked || !matches!(coding, Coding::Identity);
    let mut out = format!(
        "HTTP/1.{} {code} {}\r\n",
        response.version.unwrap_or(1),
        response.reason.unwrap_or("")
    )
    .into_bytes();
    for h in response.headers.iter() {
        let name = h.name.to_ascii_lowercase();
        let framing = [
            "transfer-encoding",
            "content-encoding",
            "content-length",
            "connection",
            "keep-alive",
            "trailer",
        ]
        .contains(&name.as_str());
        if framing && (rewritten || name != "content-length") {
            continue;
        }
        out.extend_from_slice(h.name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(h.value);
        out.extend_from_slice(b"\r\n");
    }
    // One answer per connection: a rewritten body ends when it closes.
    out.extend_from_slice(b"Connection: close\r\n\r\n");
    let no_body = code == 204 || code == 304;
    let framing = if no_body {
        Framing::Length(0)
    } else if chunked {
        Framing::Chunked(Dechunk::default())
    } else if let Some(n) = length {
        Framing::Length(n)
    } else {
        Framing::Close
    };
    Ok((out, BodyDecoder { framing, coding }))
}

/// How the upstream delimits the body, and how it is coded.
struct BodyDecoder {
    framing: Framing,
    coding: Coding,
}

enum Framing {
    Close,
    /// Bytes still to come.
    Length(u64),
    Chunked(Dechunk),
}

enum Coding {
    Identity,
    Gzip(flate2::write::GzDecoder<Vec<u8>>),
    Deflate(flate2::write::ZlibDecoder<Vec<u8>>),
}

impl BodyDecoder {
    /// The plain bytes in `piece` (what follows the body's end is dropped).
    fn decode(&mut self, piece: &[u8]) -> Result<Vec<u8>, Withheld> {
        use std::io::Write;
        let framed = match &mut self.framing {
            Framing::Close => piece.to_vec(),
            Framing::Length(left) => {
                let take = piece.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
                *left -= take as u64;
                piece[..take].to_vec()
            }
            Framing::Chunked(dechunk) => dechunk.push(piece)?,
        };
        Ok(match &mut self.coding {
            Coding::Identity => framed,
            Coding::Gzip(d) => {
                d.write_all(&framed).map_err(Withheld::BadCoding)?;
                std::mem::take(d.get_mut())
            }
            Coding::Deflate(d) => {
                d.write_all(&framed).map_err(Withheld::BadCoding)?;
                std::mem::take(d.get_mut())
            }
        })
    }

    fn done(&self) -> bool {
        match &self.framing {
            Framing::Close => false,
            Framing::Length(left) => *left == 0,
            Framing::Chunked(d) => d.done(),
        }
    }

    /// The upstream closed: an error unless the framing allows it.
    fn end(&self) -> Result<(), Withheld> {
        match &self.framing {
            Framing::Chunked(d) if !d.done() => Err(Withheld::BadChunk),
            _ => Ok(()),
        }
    }

    /// What the decompressor still holds.
    fn finish(&mut self) -> Result<Vec<u8>, Withheld> {
        Ok(match &mut self.coding {
            Coding::Identity => Vec::new(),
            Coding::Gzip(d) => {
                d.try_finish().map_err(Withheld::BadCoding)?;
                std::mem::take(d.get_mut())
            }
            Coding::Deflate(d) => {
                d.try_finish().map_err(Withheld::BadCoding)?;
                std::mem::take(d.get_mut())
            }
        })
    }
}

/// A `Transfer-Encoding: chunked` body, unchunked as it comes. Trailers
/// are read and dropped.
#[derive(Default)]
struct Dechunk {
    state: ChunkState,
    line: Vec<u8>,
}

#[derive(Default, PartialEq, Eq)]
enum ChunkState {
    #[default]
    Size,
    Data(u64),
    DataEnd,
    Trailers,
    Done,
}

/// A chunk-size line or a trailer may be no longer.
const MAX_CHUNK_LINE: usize = 4096;

impl Dechunk {
    fn push(&mut self, mut input: &[u8]) -> Result<Vec<u8>, Withheld> {
        let mut out = Vec::new();
        while !input.is_empty() && self.state != ChunkState::Done {
            match self.state {
                ChunkState::Data(left) => {
                    let take = input.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                    out.extend_from_slice(&input[..take]);
                    input = &input[take..];
                    self.state = if left == take as u64 {
                        ChunkState::DataEnd
                    } else {
                        ChunkState::Data(left - take as u64)
                    };
                }
                _ => {
                    let Some(at) = input.iter().position(|b| *b == b'\n') else {
                        self.line.extend_from_slice(input);
                        if self.line.len() > MAX_CHUNK_LINE {
                            return Err(Withheld::BadChunk);
                        }
                        break;
                    };
                    self.line.extend_from_slice(&input[..at]);
                    input = &input[at + 1..];
                    if self.line.len() > MAX_CHUNK_LINE {
                        return Err(Withheld::BadChunk);
                    }
                    let line = std::mem::take(&mut self.line);
                    let line = line.strip_suffix(b"\r").unwrap_or(&line);
                    self.state = match self.state {
                        ChunkState::Size => {
                            let size = line.split(|b| *b == b';').next().unwrap_or_default();
                            let size = std::str::from_utf8(size)
                                .ok()
                                .map(str::trim)
                                .filter(|s| !s.is_empty() && s.len() <= 15)
                                .and_then(|s| u64::from_str_radix(s, 16).ok())
                                .ok_or(Withheld::BadChunk)?;
                            if size == 0 {
                                ChunkState::Trailers
                            } else {
                                ChunkState::Data(size)
                            }
                        }
                        ChunkState::DataEnd if line.is_empty() => ChunkState::Size,
                        ChunkState::DataEnd => return Err(Withheld::BadChunk),
                        ChunkState::Trailers if line.is_empty() => ChunkState::Done,
                        ChunkState::Trailers => ChunkState::Trailers,
                        ChunkState::Data(_) | ChunkState::Done => return Err(Withheld::BadChunk),
                    };
                }
            }
        }
        Ok(out)
    }

    fn done(&self) -> bool {
        self.state == ChunkState::Done
    }
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
