//! LLM providers: OpenAI-compatible chat completions and the native
//! Anthropic Messages API, behind one client that retries, honours
//! `Retry-After`, and falls back to other models.

mod anthropic;
mod openai;
pub use oxibot_config::registry;
mod stream;
mod transcribe;

pub use stream::{Sink, Streamed};

pub use transcribe::Transcriber;

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::{Config, ProviderName};
use crate::secret::Secret;
use registry::ApiStyle;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
    Tool,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        }
    }
    pub fn parse(s: &str) -> Option<Role> {
        Some(match s {
            "system" => Role::System,
            "user" => Role::User,
            "assistant" => Role::Assistant,
            "tool" => Role::Tool,
            _ => return None,
        })
    }
}

/// One tool call the model asked for; `arguments` is the JSON text it sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCallRequest {
    pub id: String,
    pub name: String,
    pub arguments: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ChatMessage {
    pub role: Role,
    pub content: String,
    /// For assistant messages that call tools.
    pub tool_calls: Vec<ToolCallRequest>,
    /// For tool results: which call this answers.
    pub tool_call_id: Option<String>,
    /// Pictures that come with a user message (only on the turn they
    /// arrive; history keeps a note of them in the text).
    pub images: Vec<Image>,
}

/// An image for a vision model, already base64-encoded.
#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    pub mime: String,
    pub base64: String,
}

impl ChatMessage {
    pub fn text(role: Role, content: impl Into<String>) -> Self {
        ChatMessage {
            role,
            content: content.into(),
            tool_calls: Vec::new(),
            tool_call_id: None,
            images: Vec::new(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ToolDef {
    /// Ours are static; an MCP server's are its own.
    pub name: std::borrow::Cow<'static, str>,
    pub description: std::borrow::Cow<'static, str>,
    pub parameters: Value,
}

pub struct ChatRequest<'a> {
    pub messages: &'a [ChatMessage],
    pub tools: &'a [ToolDef],
    pub max_tokens: u32,
    pub temperature: f64,
    /// Streams the answer's text here as it comes (someone watches).
    pub stream: Option<Sink<'a>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

#[derive(Debug, Clone)]
pub struct ChatResponse {
    pub content: String,
    pub tool_calls: Vec<ToolCallRequest>,
    pub usage: Usage,
    /// The model that answered (the primary or a fallback).
    pub model: String,
    /// It stopped at `max_tokens`: the text is not the whole answer.
    pub cut: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error("{provider} answered HTTP {status}: {body}")]
    Http {
        provider: &'static str,
        status: u16,
        retry_after: Option<Duration>,
        body: String,
    },
    #[error("cannot reach {provider}: {message}")]
    Network { provider: &'static str, message: String },
    #[error("{provider} sent a reply we cannot read: {message}")]
    Decode { provider: &'static str, message: String },
}

/// Every model of a request failed: each model with its provider's error,
/// in the order they were tried. Kept typed until it is shown.
#[derive(Debug)]
pub struct LlmError {
    pub failures: Vec<(String, ProviderError)>,
}

impl std::fmt::Display for LlmError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("every model failed: ")?;
        for (i, (model, e)) in self.failures.iter().enumerate() {
            let provider = match e {
                ProviderError::Http { provider, .. }
                | ProviderError::Network { provider, .. }
                | ProviderError::Decode { provider, .. } => provider,
            };
            let sep = if i == 0 { "" } else { "; " };
            write!(f, "{sep}{model} ({provider}): {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for LlmError {}

impl LlmError {
    /// Every provider said 429: the answer is to wait, not to fix anything.
    pub fn rate_limited(&self) -> bool {
        !self.failures.is_empty()
            && self
                .failures
                .iter()
                .all(|(_, e)| matches!(e, ProviderError::Http { status: 429, .. }))
    }
}

impl ProviderError {
    fn retryable(&self) -> bool {
        match self {
            ProviderError::Http { status, .. } => *status == 429 || *status >= 500,
            ProviderError::Network { .. } => true,
            ProviderError::Decode { .. } => false,
        }
    }
    fn retry_after(&self) -> Option<Duration> {
        match self {
            ProviderError::Http { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// One model at one provider, with the key that provider (and only that
/// provider) gets.
struct Endpoint {
    provider: &'static str,
    style: ApiStyle,
    base: String,
    model: String,
    key: Option<Secret>,
    headers: BTreeMap<String, String>,
}

/// Why the model clients of a configuration cannot be built (the
/// configuration is refused: at start, or by a reload, which keeps the old).
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    Provider(#[from] crate::config::UnresolvedProvider),
    #[error("cannot build the HTTP client: {0}")]
    Http(reqwest::Error),
    #[error("transcription.provider is not set: which provider serves \"{0}\"? (e.g. \"groq\")")]
    NoTranscriptionProvider(String),
    #[error("transcription.provider \"{0}\" has no OpenAI-compatible /audio/transcriptions; use e.g. groq or openai")]
    NoTranscriptionApi(&'static str),
}

impl Endpoint {
    fn new(config: &Config, spec: &'static registry::ProviderSpec, model: &str) -> Result<Endpoint, SetupError> {
        let settings = config.providers.get(&ProviderName(spec.name.to_string()));
        let base = settings
            .and_then(|s| s.api_base.clone())
            .or_else(|| spec.default_base.map(str::to_string))
            .ok_or(crate::config::UnresolvedProvider::NoBase(spec.name))?;
        let key = settings.and_then(|s| s.api_key.clone()).filter(|k| !k.is_empty());
        if key.is_none() && spec.needs_key {
            tracing::warn!(
                provider = spec.name,
                "no API key configured; requests will likely be refused"
            );
        }
        let prefix = format!("{}/", spec.name);
        Ok(Endpoint {
            provider: spec.name,
            style: spec.style,
            base: base.trim_end_matches('/').to_string(),
            model: model.strip_prefix(&prefix).unwrap_or(model).to_string(),
            key,
            headers: settings.map(|s| s.extra_headers.clone()).unwrap_or_default(),
        })
    }
}

pub struct LlmClient {
    http: reqwest::Client,
    /// The primary model first, then the fallbacks.
    endpoints: Vec<Endpoint>,
    max_retries: u32,
    base_delay: Duration,
}

/// The HTTP client for provider requests, with the configured timeout. It
/// follows no redirect: reqwest would carry `x-api-key` and `extraHeaders`
/// (it strips only `Authorization`) to whatever host the redirect names.
fn http_client(config: &Config) -> Result<reqwest::Client, SetupError> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(config.agents.defaults.request_timeout_secs))
        .connect_timeout(Duration::from_secs(10))
        .build()
        .map_err(SetupError::Http)
}

/// No single wait is longer than this, whatever `Retry-After` says.
const MAX_RETRY_WAIT: Duration = Duration::from_secs(60);

impl LlmClient {
    pub fn new(config: &Config) -> Result<Self, SetupError> {
        let d = &config.agents.defaults;
        let http = http_client(config)?;
        let mut endpoints = Vec::new();
        for model in std::iter::once(&d.model).chain(&d.fallback_models) {
            let spec = config.resolve_provider(model)?;
            endpoints.push(Endpoint::new(config, spec, model)?);
        }
        Ok(LlmClient {
            http,
            endpoints,
            max_retries: d.max_retries,
            base_delay: Duration::from_millis(d.retry_base_delay_ms),
        })
    }

    /// (provider, base URL, model) for each endpoint, for `oxibotctl status`.
    pub fn describe(&self) -> Vec<(String, String, String, bool)> {
        self.endpoints
            .iter()
            .map(|e| (e.provider.to_string(), e.base.clone(), e.model.clone(), e.key.is_some()))
            .collect()
    }

    /// Asks the primary model, retrying retryable failures with backoff, then
    /// each fallback model in turn. The error names every model that failed.
    pub async fn complete(&self, req: &ChatRequest<'_>) -> Result<ChatResponse, LlmError> {
        let mut failures = Vec::new();
        for ep in &self.endpoints {
            match self.complete_with_retries(ep, req).await {
                Ok(resp) => return Ok(resp),
                Err(e) => {
                    tracing::warn!(provider = ep.provider, model = %ep.model, error = %e, "model failed");
                    failures.push((ep.model.clone(), e));
                }
            }
        }
        Err(LlmError { failures })
    }

    async fn complete_with_retries(&self, ep: &Endpoint, req: &ChatRequest<'_>) -> Result<ChatResponse, ProviderError> {
        let mut attempt = 0;
        loop {
            let started = std::time::Instant::now();
            // Text already streamed by a failed attempt (or model) is void.
            let shown = std::sync::atomic::AtomicBool::new(false);
            let sink = |piece: Streamed<'_>| {
                shown.store(true, std::sync::atomic::Ordering::Relaxed);
                if let Some(outer) = req.stream {
                    outer(piece);
                }
            };
            let req = &ChatRequest {
                stream: req.stream.map(|_| &sink as Sink<'_>),
                ..*req
            };
            let result = match ep.style {
                ApiStyle::OpenAi => openai::complete(&self.http, ep, req).await,
                ApiStyle::Anthropic => anthropic::complete(&self.http, ep, req).await,
            };
            if result.is_err() && shown.load(std::sync::atomic::Ordering::Relaxed) {
                if let Some(outer) = req.stream {
                    outer(Streamed::Restart);
                }
            }
            crate::metrics::provider_request(ep.provider, result.is_ok(), started.elapsed());
            match result {
                Ok(resp) => return Ok(resp),
                Err(e) if e.retryable() && attempt < self.max_retries => {
                    let backoff = self.base_delay.saturating_mul(1u32 << attempt.min(16));
                    let wait = e.retry_after().unwrap_or(backoff).min(MAX_RETRY_WAIT);
                    tracing::info!(provider = ep.provider, attempt, wait_ms = wait.as_millis() as u64, error = %e, "retrying");
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// The most of an error body we read: enough for any provider's message.
const ERROR_BODY_LIMIT: usize = 64 * 1024;

/// Reads an error response: status, `Retry-After` (seconds) and a short body.
/// The body and a redirect's target are scrubbed of this endpoint's key and
/// header values *before* they are shortened: a gateway that echoes the key would otherwise leave a
/// prefix that no later scrub recognises.
async fn http_error(ep: &Endpoint, mut resp: reqwest::Response) -> ProviderError {
    let provider = ep.provider;
    let own_secrets = ep
        .key
        .iter()
        .map(|k| k.expose())
        .chain(ep.headers.values().map(String::as_str));
    let scrubber = oxibot_runtime::redact::Redactor::new(own_secrets);
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64);
    if resp.status().is_redirection() {
        let to = resp
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("(no Location)");
        return ProviderError::Http {
            provider,
            status,
            retry_after: None,
            body: format!(
                "a redirect to {}; OxiBot never follows a provider's redirect (the key would go along). \
                 If the provider moved, set providers.{provider}.apiBase to the new URL",
                shorten(&scrubber.redact(to).0, 200)
            ),
        };
    }
    let mut raw = Vec::new();
    while raw.len() < ERROR_BODY_LIMIT {
        match resp.chunk().await {
            Ok(Some(chunk)) => raw.extend_from_slice(&chunk),
            _ => break,
        }
    }
    raw.truncate(ERROR_BODY_LIMIT);
    let body = String::from_utf8_lossy(&raw);
    let (body, _) = scrubber.redact(&body);
    ProviderError::Http {
        provider,
        status,
        retry_after,
        body: shorten(&body, 300),
    }
}

fn network_error(provider: &'static str, e: reqwest::Error) -> ProviderError {
    // reqwest's Display includes the URL but never our headers.
    ProviderError::Network {
        provider,
        message: e.to_string(),
    }
}

pub(crate) fn shorten(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

fn apply_headers(mut rb: reqwest::RequestBuilder, ep: &Endpoint) -> reqwest::RequestBuilder {
    for (k, v) in &ep.headers {
        rb = rb.header(k, v);
    }
    rb
}

/// Sends a completion request (with the endpoint's extra headers) and
/// reads the JSON answer: a network failure, an HTTP error (with its
/// status, `Retry-After` and body) or a body that is not JSON becomes the
/// provider error the retry logic reads.
async fn send_for_json(rb: reqwest::RequestBuilder, ep: &Endpoint) -> Result<Value, ProviderError> {
    let resp = apply_headers(rb, ep)
        .send()
        .await
        .map_err(|e| network_error(ep.provider, e))?;
    if !resp.status().is_success() {
        return Err(http_error(ep, resp).await);
    }
    // Read in pieces, and no further than an answer can be.
    let mut resp = resp;
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| network_error(ep.provider, e))? {
        if body.len() + chunk.len() > MAX_ANSWER_BODY {
            return Err(decode(ep, format!("the answer passed {MAX_ANSWER_BODY} bytes")));
        }
        body.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&body).map_err(|e| decode(ep, e.to_string()))
}

/// The largest answer read from a provider (a streamed one is bounded by
/// its own reader).
const MAX_ANSWER_BODY: usize = 16 << 20;

/// An answer that is not what the provider's API promises.
fn decode(ep: &Endpoint, message: String) -> ProviderError {
    ProviderError::Decode {
        provider: ep.provider,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http(status: u16) -> ProviderError {
        ProviderError::Http {
            provider: "openai",
            status,
            retry_after: None,
            body: "slow down".into(),
        }
    }

    #[test]
    fn every_failure_is_named_and_only_an_all_429_answer_is_rate_limiting() {
        let both = LlmError {
            failures: vec![("gpt-a".into(), http(429)), ("gpt-b".into(), http(429))],
        };
        assert!(both.rate_limited());
        assert_eq!(
            both.to_string(),
            "every model failed: gpt-a (openai): openai answered HTTP 429: slow down; \
             gpt-b (openai): openai answered HTTP 429: slow down"
        );
        let mixed = LlmError {
            failures: vec![("gpt-a".into(), http(429)), ("gpt-b".into(), http(401))],
        };
        assert!(!mixed.rate_limited(), "a bad key is something to fix");
        assert!(!LlmError { failures: vec![] }.rate_limited());
    }
}
