//! The request head: read within its bounds, parsed with `httparse`, and,
//! for a plain request, rewritten for the upstream.

use tokio::io::{AsyncRead, AsyncReadExt};

use super::{Decision, MAX_HEAD};
use crate::same_host;

/// A request head, as much as the door needs of it.
pub(super) struct Head {
    pub host: String,
    pub port: u16,
    /// A plain request to forward; None for a `CONNECT` tunnel.
    pub forward: Option<Forward>,
    /// Bytes the client sent after its head (the start of a body or of
    /// TLS), to be passed on first.
    pub rest: Vec<u8>,
}

/// A plain request, kept as its parts so that the head the upstream reads
/// is written once the destination is decided (with a credential or not).
pub(super) struct Forward {
    method: String,
    /// Origin form: the path and the query.
    target: String,
    /// The client's headers but `Proxy-*`, `Connection` and `Keep-Alive`.
    headers: Vec<(String, Vec<u8>)>,
    /// How the request's body is delimited: the door passes on that body
    /// and nothing after it.
    pub body: Body,
}

/// A request body's framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Body {
    None,
    Length(u64),
    /// `Transfer-Encoding: chunked`: the upstream finds its end (and,
    /// told `Connection: close`, reads nothing after it).
    Chunked,
}

impl Forward {
    /// The head for the upstream, one request per connection. With a
    /// credential (`(header, value)`), the client's header of that name is
    /// replaced. `scrubbed`: the door reads the answer (to scrub it), so
    /// no coding is asked for (it decodes gzip and deflate, and chunks,
    /// when the upstream sends them anyway) and no interim answer
    /// (`Expect` is dropped).
    pub fn render(&self, credential: Option<(&str, &str)>, scrubbed: bool) -> Vec<u8> {
        let mut out = format!("{} {} HTTP/1.1\r\n", self.method, self.target).into_bytes();
        for (name, value) in &self.headers {
            let replaced = credential.is_some_and(|(header, _)| name.eq_ignore_ascii_case(header))
                || (scrubbed
                    && (name.eq_ignore_ascii_case("accept-encoding")
                        || name.eq_ignore_ascii_case("te")
                        || name.eq_ignore_ascii_case("expect")));
            if replaced {
                continue;
            }
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        }
        if let Some((header, value)) = credential {
            out.extend_from_slice(format!("{header}: {value}\r\n").as_bytes());
        }
        if scrubbed {
            // Plain bytes are what the door can scrub (a coded answer is
            // decoded, but asking for none is cheaper).
            out.extend_from_slice(b"Accept-Encoding: identity\r\n");
        }
        out.extend_from_slice(b"Connection: close\r\n\r\n");
        out
    }
}

/// Reads and parses the head. `inside`: the host and port of a tunnel
/// whose TLS the door answered; the request then names its target in
/// origin form (`GET /path`), and its `Host` must name that host.
pub(super) async fn read_head<C: AsyncRead + Unpin>(
    client: &mut C,
    inside: Option<(&str, u16)>,
) -> Result<Head, Decision> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let end = loop {
        let n = client.read(&mut chunk).await.map_err(|_| Decision::ClientGone)?;
        if n == 0 {
            return Err(Decision::ClientGone);
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        if buf.len() > MAX_HEAD {
            return Err(Decision::BadRequest("request head too long"));
        }
    };
    let rest = buf.split_off(end);
    parse_head(&buf, inside).map(|mut head| {
        head.rest = rest;
        head
    })
}

fn parse_head(bytes: &[u8], inside: Option<(&str, u16)>) -> Result<Head, Decision> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(bytes) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) | Err(_) => return Err(Decision::BadRequest("not an HTTP request head")),
    }
    let method = request.method.unwrap_or_default().to_string();
    let target = request.path.unwrap_or_default();
    if method == "CONNECT" && inside.is_none() {
        let (host, port) = authority(target).ok_or(Decision::BadRequest("CONNECT needs host:port"))?;
        return Ok(Head {
            host,
            port,
            forward: None,
            rest: Vec::new(),
        });
    }
    let url = match inside {
        Some((host, port)) if target.starts_with('/') => url::Url::parse(&format!("http://{host}:{port}{target}"))
            .map_err(|_| Decision::BadRequest("the request's target does not parse"))?,
        Some(_) => {
            return Err(Decision::BadRequest(
                "inside TLS a request names its path (origin form)",
            ))
        }
        None => {
            url::Url::parse(target).map_err(|_| Decision::BadRequest("a proxy request names a whole http:// URL"))?
        }
    };
    if url.scheme() != "http" {
        return Err(Decision::BadRequest(
            "only http:// is forwarded; https goes through CONNECT",
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Decision::BadRequest("URLs with a user name or password are refused"));
    }
    let host = url
        .host_str()
        .ok_or(Decision::BadRequest("the URL has no host"))?
        .to_string();
    let port = url.port_or_known_default().unwrap_or(80);
    // The upstream reads Host, the door judged the URL: they must agree.
    let lengths = request
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("content-length"))
        .count();
    let chunked = request
        .headers
        .iter()
        .any(|h| h.name.eq_ignore_ascii_case("transfer-encoding"));
    if lengths > 1 || (lengths == 1 && chunked) {
        return Err(Decision::BadRequest("ambiguous body length"));
    }
    let body = if chunked {
        let only_chunked = request
            .headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("transfer-encoding"))
            .all(|h| h.value.eq_ignore_ascii_case(b"chunked"));
        if !only_chunked {
            return Err(Decision::BadRequest("a Transfer-Encoding other than chunked"));
        }
        Body::Chunked
    } else if let Some(h) = request
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
    {
        let n = std::str::from_utf8(h.value)
            .ok()
            .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or(Decision::BadRequest("Content-Length is not a number"))?;
        Body::Length(n)
    } else {
        Body::None
    };
    let mut forward = Forward {
        method,
        target: format!(
            "{}{}",
            url.path(),
            url.query().map(|q| format!("?{q}")).unwrap_or_default()
        ),
        headers: Vec::new(),
        body,
    };
    let mut saw_host = false;
    for h in request.headers.iter() {
        let name = h.name.to_ascii_lowercase();
        if name == "host" {
            let value = std::str::from_utf8(h.value).map_err(|_| Decision::BadRequest("Host is not text"))?;
            let (named, named_port) = match authority(value) {
                Some(a) => a,
                None => (value.to_ascii_lowercase(), port),
            };
            if saw_host || !same_host(&named, &host) || named_port != port {
                return Err(Decision::BadRequest("Host names another place than the URL"));
            }
            saw_host = true;
        }
        if name.starts_with("proxy-") || name == "connection" || name == "keep-alive" {
            continue;
        }
        forward.headers.push((h.name.to_string(), h.value.to_vec()));
    }
    if !saw_host {
        forward
            .headers
            .push(("Host".into(), url.authority().as_bytes().to_vec()));
    }
    Ok(Head {
        host,
        port,
        forward: Some(forward),
        rest: Vec::new(),
    })
}

/// `host:port` (IPv6 in brackets) with a port 1..=65535.
fn authority(text: &str) -> Option<(String, u16)> {
    let (host, port) = text.rsplit_once(':')?;
    if host.is_empty() || (host.contains(':') && !(host.starts_with('[') && host.ends_with(']'))) {
        return None;
    }
    let port: u16 = port.parse().ok().filter(|p| *p != 0)?;
    Some((host.to_ascii_lowercase(), port))
}
