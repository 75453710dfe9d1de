//! Streamable HTTP servers (`tools.mcpServers.<name>.url`), reached from
//! the broker — not from the jail — through the same guard as `web_fetch`:
//! the server's name is resolved once per run and every request goes to
//! the addresses checked then (private ones only where
//! `tools.web.allowPrivate` lists them), with no proxy from the
//! environment and no redirect followed. The `headers` (secrets) are set
//! here, on every request, and never leave for another address.
//!
//! rmcp speaks the protocol; this is its HTTP client (rmcp's own would
//! bring a second reqwest), with every body bounded: a JSON answer at
//! 4 MiB, an SSE event at 4 MiB, an error's text at 2 KiB.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, ACCEPT, CONTENT_TYPE};
use rmcp::model::{ClientJsonRpcMessage, ServerJsonRpcMessage};
use rmcp::transport::streamable_http_client::{
    SseError, StreamableHttpClient, StreamableHttpError, StreamableHttpPostResponse,
};
use sse_stream::{Sse, SseStream};

use crate::config::Config;
use crate::secret::Secret;

const SESSION_ID: &str = "mcp-session-id";
const LAST_EVENT_ID: &str = "last-event-id";
const JSON: &str = "application/json";
const EVENT_STREAM: &str = "text/event-stream";
/// The largest JSON answer, and the largest SSE event, read.
const MAX_BODY: usize = 4 << 20;
/// How long one POST (and the answer it streams) may take.
const POST_TIMEOUT: std::time::Duration =
    std::time::Duration::from_secs(oxibot_config::mcp::MAX_TOOL_TIMEOUT as u64 + 30);
/// How much of an error's body is kept for the message.
const MAX_ERROR_TEXT: usize = 2048;

type Failure = StreamableHttpError<reqwest::Error>;

/// A client pinned to one server's checked addresses, carrying its
/// headers.
#[derive(Clone)]
pub struct Guarded {
    client: reqwest::Client,
    headers: Arc<HeaderMap>,
}

impl Guarded {
    /// Checks `url` against the guard and pins its addresses.
    pub async fn connect(url: &str, headers: &BTreeMap<String, Secret>, config: &Config) -> Result<Guarded, String> {
        let parsed = url::Url::parse(url).map_err(|e| format!("url does not parse: {e}"))?;
        let guard = crate::web::guard::Guard::new(&config.tools.web.allow_private).map_err(|e| e.to_string())?;
        let limits = crate::web::fetch::Limits {
            max_bytes: MAX_BODY as u64,
            timeout: std::time::Duration::from_secs(20),
            max_redirects: 0,
        };
        let client = crate::web::fetch::client_for(&parsed, &guard, &crate::web::fetch::SystemLookup, &limits)
            .await
            .map_err(|e| e.to_string())?;
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            // Checked when the configuration loaded; a value is never
            // quoted in the error.
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| format!("header {name:?} is not valid"))?;
            let mut value = HeaderValue::from_str(value.expose()).map_err(|_| format!("header {name} is not valid"))?;
            value.set_sensitive(true);
            map.insert(name, value);
        }
        Ok(Guarded {
            client,
            headers: Arc::new(map),
        })
    }

    fn request(&self, method: reqwest::Method, uri: &str, session: Option<&str>) -> reqwest::RequestBuilder {
        let mut request = self
            .client
            .request(method, uri)
            .headers((*self.headers).clone())
            .header(ACCEPT, format!("{JSON}, {EVENT_STREAM}"));
        if let Some(session) = session {
            request = request.header(SESSION_ID, session);
        }
        request
    }
}

impl StreamableHttpClient for Guarded {
    type Error = reqwest::Error;

    async fn post_message(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        _auth_header: Option<String>,
        _custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<StreamableHttpPostResponse, Failure> {
        let response = self
            .request(reqwest::Method::POST, &uri, session_id.as_deref())
            // The longest call a server may be given, and a margin.
            .timeout(POST_TIMEOUT)
            .json(&message)
            .send()
            .await
            .map_err(StreamableHttpError::Client)?;
        let status = response.status();
        if matches!(status, reqwest::StatusCode::ACCEPTED | reqwest::StatusCode::NO_CONTENT) {
            return Ok(StreamableHttpPostResponse::Accepted);
        }
        if status == reqwest::StatusCode::NOT_FOUND && session_id.is_some() {
            return Err(StreamableHttpError::SessionExpired);
        }
        if !status.is_success() {
            return Err(failed(response).await);
        }
        let session = response
            .headers()
            .get(SESSION_ID)
            .and_then(|v| v.to_str().ok())
            .map(String::from);
        let awaits_nothing = !matches!(message, ClientJsonRpcMessage::Request(_));
        match content_type(&response).as_deref() {
            Some(EVENT_STREAM) => Ok(StreamableHttpPostResponse::Sse(
                events(response.bytes_stream()),
                session,
            )),
            Some(JSON) => {
                let body = bounded(response).await?;
                match serde_json::from_slice::<ServerJsonRpcMessage>(&body) {
                    Ok(answer) => Ok(StreamableHttpPostResponse::Json(answer, session)),
                    Err(_) if awaits_nothing => Ok(StreamableHttpPostResponse::Accepted),
                    Err(e) => Err(StreamableHttpError::Deserialize(e)),
                }
            }
            // A notification's answer is not read (some servers answer 200
            // with any body).
            _ if awaits_nothing => Ok(StreamableHttpPostResponse::Accepted),
            other => Err(StreamableHttpError::UnexpectedContentType(other.map(String::from))),
        }
    }

    async fn delete_session(
        &self,
        uri: Arc<str>,
        session_id: Arc<str>,
        _auth_header: Option<String>,
        _custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<(), Failure> {
        let response = self
            .request(reqwest::Method::DELETE, &uri, Some(&session_id))
            .timeout(std::time::Duration::from_secs(20))
            .send()
            .await
            .map_err(StreamableHttpError::Client)?;
        if response.status() == reqwest::StatusCode::METHOD_NOT_ALLOWED || response.status().is_success() {
            return Ok(());
        }
        Err(failed(response).await)
    }

    async fn get_stream(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        _auth_header: Option<String>,
        _custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<BoxStream<'static, Result<Sse, SseError>>, Failure> {
        let mut request = self.request(reqwest::Method::GET, &uri, session_id.as_deref());
        if let Some(id) = last_event_id {
            request = request.header(LAST_EVENT_ID, id);
        }
        let response = request.send().await.map_err(StreamableHttpError::Client)?;
        if response.status() == reqwest::StatusCode::METHOD_NOT_ALLOWED {
            return Err(StreamableHttpError::ServerDoesNotSupportSse);
        }
        if !response.status().is_success() {
            return Err(failed(response).await);
        }
        match content_type(&response).as_deref() {
            Some(EVENT_STREAM) => Ok(events(response.bytes_stream())),
            other => Err(StreamableHttpError::UnexpectedContentType(other.map(String::from))),
        }
    }
}

/// The media type without its parameters, in lower case.
fn content_type(response: &reqwest::Response) -> Option<String> {
    let value = response.headers().get(CONTENT_TYPE)?.to_str().ok()?;
    Some(value.split(';').next()?.trim().to_ascii_lowercase())
}

/// A whole body, at most [`MAX_BODY`].
async fn bounded(response: reqwest::Response) -> Result<Vec<u8>, Failure> {
    let mut body = Vec::new();
    let mut chunks = response.bytes_stream();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(StreamableHttpError::Client)?;
        if body.len() + chunk.len() > MAX_BODY {
            return Err(StreamableHttpError::ResponseBodyTooLarge { max_size: MAX_BODY });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// An HTTP failure, with the start of its body (the server's words).
async fn failed(response: reqwest::Response) -> Failure {
    let status = response.status();
    let mut text = Vec::new();
    let mut chunks = response.bytes_stream();
    while let Some(Ok(chunk)) = chunks.next().await {
        text.extend_from_slice(&chunk);
        if text.len() >= MAX_ERROR_TEXT {
            text.truncate(MAX_ERROR_TEXT);
            break;
        }
    }
    StreamableHttpError::UnexpectedServerResponse(Cow::Owned(format!(
        "HTTP {status}: {}",
        String::from_utf8_lossy(&text).trim()
    )))
}

/// Server-sent events, each at most [`MAX_BODY`] bytes: the bytes since
/// the last blank line are counted, and a stream past the bound ends in
/// an error instead of growing the parser's buffer.
fn events<S>(bytes: S) -> BoxStream<'static, Result<Sse, SseError>>
where
    S: futures_util::Stream<Item = Result<bytes::Bytes, reqwest::Error>> + Send + 'static,
{
    let mut since_blank = 0usize;
    let bounded = bytes.map(move |chunk| {
        let chunk = chunk.map_err(std::io::Error::other)?;
        let data = chunk.as_ref();
        since_blank = match last_blank_line(data) {
            Some(end) => data.len() - end,
            None => since_blank + data.len(),
        };
        if since_blank > MAX_BODY {
            return Err(std::io::Error::other(format!(
                "an event of the server's stream is over {MAX_BODY} bytes"
            )));
        }
        Ok(chunk)
    });
    SseStream::from_bytes_stream(bounded).boxed()
}

/// Where the last event in `data` ends (after its blank line).
fn last_blank_line(data: &[u8]) -> Option<usize> {
    let lf = data.windows(2).rposition(|w| w == b"\n\n").map(|i| i + 2);
    let crlf = data.windows(4).rposition(|w| w == b"\r\n\r\n").map(|i| i + 4);
    lf.max(crlf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_events_end_is_found_in_either_line_ending() {
        assert_eq!(last_blank_line(b"data: a\n\ndata: b"), Some(9));
        assert_eq!(last_blank_line(b"data: a\r\n\r\n"), Some(11));
        assert_eq!(last_blank_line(b"data: a\n"), None);
    }
}
