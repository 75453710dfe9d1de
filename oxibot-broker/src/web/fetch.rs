//! `web_fetch`: one URL, each hop checked by the guard before we connect.
//!
//! A name is looked up once, its addresses are checked, and the
//! connection goes to exactly those addresses (`resolve_to_addrs`): a DNS
//! answer that changes between the check and the connect (rebinding)
//! cannot move us. Redirects are followed by hand, each hop checked the
//! same way. No proxy from the environment is used: the guard judges the
//! address we really connect to. Bytes and time are capped.

use std::time::Duration;

use oxibot_egress::{checked_addresses, Unreachable};
use reqwest::Url;

use super::guard::Guard;
pub use oxibot_egress::{Lookup, SystemLookup};

#[derive(Debug, Clone)]
pub struct Limits {
    pub max_bytes: u64,
    pub timeout: Duration,
    pub max_redirects: u32,
}

#[derive(Debug)]
pub struct Fetched {
    pub url: String,
    pub status: u16,
    pub content_type: String,
    pub body: Vec<u8>,
    /// The body was longer than `max_bytes`.
    pub truncated: bool,
    pub redirects: u32,
}

/// Why a fetch has no page. URLs in it are origins only (see
/// `url_for_errors`): a page's path may hold tokens.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("no complete answer within {0} s (tools.web.fetch.timeoutSecs)")]
    TimedOut(u64),
    #[error("\"{url}\" is not a URL: {source}")]
    NotAUrl { url: String, source: url::ParseError },
    #[error("{origin}: {detail}")]
    Request { origin: String, detail: String },
    #[error("{origin}: reading the body: {detail}")]
    Body { origin: String, detail: String },
    #[error("{origin} answered {status} without a Location")]
    NoLocation {
        origin: String,
        status: reqwest::StatusCode,
    },
    #[error("{0} redirected to an unreadable Location")]
    UnreadableLocation(String),
    #[error("{origin} redirected to a bad URL: {source}")]
    BadRedirect { origin: String, source: url::ParseError },
    #[error("more than {max} redirects (tools.web.fetch.maxRedirects); stopped at {origin}")]
    TooManyRedirects { max: u32, origin: String },
    #[error("{0}: URLs are refused; web_fetch reads http and https only")]
    Scheme(String),
    #[error("URLs with a user name or password are refused")]
    UserInfo,
    #[error("{0}: no port")]
    NoPort(String),
    #[error("{0}: no host")]
    NoHost(String),
    #[error(transparent)]
    Unreachable(#[from] Unreachable),
    #[error("cannot set up the HTTP client: {0}")]
    Client(reqwest::Error),
}

/// Fetches `url`, or says why not.
pub async fn fetch(url: &str, guard: &Guard, lookup: &dyn Lookup, limits: &Limits) -> Result<Fetched, FetchError> {
    match tokio::time::timeout(limits.timeout, follow(url, guard, lookup, limits)).await {
        Ok(result) => result,
        Err(_) => Err(FetchError::TimedOut(limits.timeout.as_secs())),
    }
}

async fn follow(url: &str, guard: &Guard, lookup: &dyn Lookup, limits: &Limits) -> Result<Fetched, FetchError> {
    let mut url = Url::parse(url.trim()).map_err(|source| FetchError::NotAUrl {
        url: url.to_string(),
        source,
    })?;
    for hop in 0..=limits.max_redirects {
        let client = client_for(&url, guard, lookup, limits).await?;
        let mut resp = client.get(url.clone()).send().await.map_err(|e| FetchError::Request {
            origin: url_for_errors(&url),
            detail: without_url(&e),
        })?;
        let status = resp.status();
        if status.is_redirection() {
            let Some(location) = resp.headers().get(reqwest::header::LOCATION) else {
                return Err(FetchError::NoLocation {
                    origin: url_for_errors(&url),
                    status,
                });
            };
            let location = location
                .to_str()
                .map_err(|_| FetchError::UnreadableLocation(url_for_errors(&url)))?;
            url = url.join(location).map_err(|source| FetchError::BadRedirect {
                origin: url_for_errors(&url),
                source,
            })?;
            continue;
        }
        let content_type = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let mut body = Vec::new();
        let mut truncated = false;
        while let Some(chunk) = resp.chunk().await.map_err(|e| FetchError::Body {
            origin: url_for_errors(&url),
            detail: without_url(&e),
        })? {
            let room = limits.max_bytes.saturating_sub(body.len() as u64) as usize;
            if chunk.len() > room {
                body.extend_from_slice(&chunk[..room]);
                truncated = true;
                break;
            }
            body.extend_from_slice(&chunk);
        }
        return Ok(Fetched {
            url: url.to_string(),
            status: status.as_u16(),
            content_type,
            body,
            truncated,
            redirects: hop,
        });
    }
    Err(FetchError::TooManyRedirects {
        max: limits.max_redirects,
        origin: url_for_errors(&url),
    })
}

/// A client that can reach this one URL's checked addresses and nothing else.
pub(crate) async fn client_for(
    url: &Url,
    guard: &Guard,
    lookup: &dyn Lookup,
    limits: &Limits,
) -> Result<reqwest::Client, FetchError> {
    match url.scheme() {
        "http" | "https" => {}
        other => return Err(FetchError::Scheme(other.to_string())),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(FetchError::UserInfo);
    }
    let port = url
        .port_or_known_default()
        .ok_or_else(|| FetchError::NoPort(url_for_errors(url)))?;
    let builder = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(limits.timeout)
        .user_agent(concat!("OxiBot/", env!("CARGO_PKG_VERSION"), " (web_fetch)"));
    let builder = match url.host() {
        None => return Err(FetchError::NoHost(url_for_errors(url))),
        // An address in the URL is the one connected to.
        Some(url::Host::Ipv4(ip)) => {
            checked_addresses(&ip.to_string(), port, guard, lookup).await?;
            builder
        }
        Some(url::Host::Ipv6(ip)) => {
            checked_addresses(&ip.to_string(), port, guard, lookup).await?;
            builder
        }
        Some(url::Host::Domain(name)) => {
            let addrs = checked_addresses(name, port, guard, lookup).await?;
            builder.resolve_to_addrs(name, &addrs)
        }
    };
    builder.build().map_err(FetchError::Client)
}

/// Where a URL points, for error messages: scheme, host and port only.
/// The path and query are the page's words (a redirect chooses them) and
/// may hold tokens; errors are not wrapped as untrusted, so they carry
/// neither.
fn url_for_errors(url: &Url) -> String {
    url.origin().ascii_serialization()
}

/// reqwest's error without the URL it repeats (the caller names it).
fn without_url(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    if let Some(url) = e.url() {
        text = text.replace(&format!(" ({url})"), "").replace(url.as_str(), "");
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests;
