//! A scripted LLM server on 127.0.0.1 speaking OpenAI chat completions
//! (`POST …/chat/completions`) and Anthropic Messages (`POST …/v1/messages`).
//! It records every request (headers and body) for assertions.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

/// One scripted answer.
#[derive(Debug, Clone)]
pub enum Step {
    /// Reply with text.
    Text(String),
    /// Ask for one tool call.
    Tool { name: String, args: Value },
    /// Reply with text quoting the last tool result in the request:
    /// "tool said: <result>".
    EchoLastTool,
    /// Reply "re: <the last user message>", so a reply names its message.
    EchoUser,
    /// An HTTP error, optionally with `Retry-After`.
    Status {
        code: u16,
        retry_after: Option<String>,
        body: String,
    },
    /// Wait, then answer with the inner step.
    Delay(Duration, Box<Step>),
    /// A 200 with a body that is not an LLM reply at all.
    Garbage(String),
    /// A 307 redirect to this URL (a provider that moved, or a hostile one).
    Redirect(String),
    /// A memory consolidation's answer, made from the request: every line
    /// of the transcript holding "FACT: x" gives the fact "x".
    Consolidate,
    /// Text in these parts, `gap` apart when the request streams (all at
    /// once when it does not).
    Parts { parts: Vec<String>, gap: Duration },
    /// Text that stopped at the token limit (`length`, `max_tokens`).
    Cut(String),
    /// A hostile provider's stream: these `data:` payloads as they are.
    RawStream(Vec<String>),
}

#[derive(Debug, Clone)]
pub struct Recorded {
    pub at: Instant,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Value,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn model(&self) -> &str {
        self.body["model"].as_str().unwrap_or_default()
    }
}

#[derive(Default)]
struct Inner {
    script: VecDeque<Step>,
    /// (needle, steps): a request whose body contains the needle takes
    /// the next of these steps instead of the script's.
    routes: Vec<(String, VecDeque<Step>)>,
    /// (needle, step): answered this way every time.
    always: Vec<(String, Step)>,
    requests: Vec<Recorded>,
    /// Models that always answer HTTP 500.
    failing_models: HashSet<String>,
    calls: u64,
    transcriptions: Vec<Transcription>,
    /// When set, transcriptions fail with 401 and this body.
    transcription_error: Option<String>,
}

/// One `POST …/audio/transcriptions` (a multipart form), as received.
#[derive(Debug, Clone)]
pub struct Transcription {
    pub authorization: String,
    pub content_type: String,
    pub body: Vec<u8>,
}

/// What the fake hears in every voice message.
pub const TRANSCRIPT: &str = "please water the plants at six";

#[derive(Clone)]
pub struct FakeLlm {
    pub base_url: String,
    inner: Arc<Mutex<Inner>>,
    _shutdown: Arc<tokio::sync::oneshot::Sender<()>>,
}

impl FakeLlm {
    /// Starts the server on its own thread and runtime, so tests may block.
    pub fn start(script: Vec<Step>) -> FakeLlm {
        let inner = Arc::new(Mutex::new(Inner {
            script: script.into(),
            ..Default::default()
        }));
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let state = inner.clone();
        let addr = crate::serve::in_background(move |addr_tx| async move {
            let listener = crate::serve::local_listener().await;
            addr_tx.send(listener.local_addr().unwrap()).unwrap();
            let app = axum::Router::new().fallback(handle).with_state(state);
            tokio::select! {
                _ = crate::serve::http(listener, app) => {}
                _ = stop_rx => {}
            }
        });
        FakeLlm {
            base_url: format!("http://{addr}"),
            inner,
            _shutdown: Arc::new(stop_tx),
        }
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.inner.lock().unwrap().requests.clone()
    }

    /// Every later transcription fails with 401 Unauthorized and `body`.
    pub fn fail_transcriptions(&self, body: &str) {
        self.inner.lock().unwrap().transcription_error = Some(body.to_string());
    }

    pub fn transcriptions(&self) -> Vec<Transcription> {
        self.inner.lock().unwrap().transcriptions.clone()
    }

    pub fn fail_model(&self, model: &str) {
        self.inner.lock().unwrap().failing_models.insert(model.to_string());
    }

    pub fn push(&self, step: Step) {
        self.inner.lock().unwrap().script.push_back(step);
    }

    /// Requests containing `needle` (a subagent's task, say) take these
    /// steps, in order, whatever the main script is doing.
    pub fn route(&self, needle: &str, steps: Vec<Step>) {
        self.inner
            .lock()
            .unwrap()
            .routes
            .push((needle.to_string(), steps.into()));
    }

    /// Requests containing `needle` are always answered with `step`.
    pub fn always(&self, needle: &str, step: Step) {
        self.inner.lock().unwrap().always.push((needle.to_string(), step));
    }

    /// Requests that contain `needle`.
    pub fn requests_with(&self, needle: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.body.to_string().contains(needle))
            .collect()
    }

    /// Blocks until at least `n` requests arrived, or panics after `timeout`.
    pub fn wait_requests(&self, n: usize, timeout: Duration) -> Vec<Recorded> {
        crate::poll::wait_for(&format!("{n} LLM requests"), timeout, || {
            Some(self.requests()).filter(|r| r.len() >= n)
        })
    }
}

async fn handle(State(state): State<Arc<Mutex<Inner>>>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    if uri.path().ends_with("/audio/transcriptions") {
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string()
        };
        let mut s = state.lock().unwrap();
        s.transcriptions.push(Transcription {
            authorization: header("authorization"),
            content_type: header("content-type"),
            body: body.to_vec(),
        });
        if let Some(error) = s.transcription_error.clone() {
            return (StatusCode::UNAUTHORIZED, error).into_response();
        }
        return axum::Json(json!({"text": TRANSCRIPT})).into_response();
    }
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let path = uri.path().to_string();
    let anthropic = path.ends_with("/messages");
    let step = {
        let mut s = state.lock().unwrap();
        s.calls += 1;
        s.requests.push(Recorded {
            at: Instant::now(),
            path: path.clone(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_string()))
                .collect(),
            body: body.clone(),
        });
        let model = body["model"].as_str().unwrap_or_default();
        let text = body.to_string();
        let routed = s
            .routes
            .iter_mut()
            .find(|(needle, steps)| !steps.is_empty() && text.contains(needle.as_str()))
            .and_then(|(_, steps)| steps.pop_front())
            .or_else(|| {
                s.always
                    .iter()
                    .find(|(needle, _)| text.contains(needle.as_str()))
                    .map(|(_, step)| step.clone())
            });
        if let Some(step) = routed {
            step
        } else if s.failing_models.contains(model) {
            Step::Status {
                code: 500,
                retry_after: None,
                body: format!("model {model} is down"),
            }
        } else {
            s.script.pop_front().unwrap_or(Step::Status {
                code: 500,
                retry_after: None,
                body: "fake LLM: script exhausted".into(),
            })
        }
    };
    let calls = state.lock().unwrap().calls;
    if body["stream"] == json!(true) {
        return stream(step, anthropic, &body, calls).await;
    }
    respond(step, anthropic, &body, calls).await
}

/// A streamed answer: server-sent events as each API sends them, the
/// text in pieces (a `Parts` step's, `gap` apart; others word by word).
async fn stream(step: Step, anthropic: bool, req: &Value, n: u64) -> Response {
    let (pieces, gap) = match step {
        Step::Parts { parts, gap } => (parts, gap),
        Step::RawStream(lines) => {
            let body: String = lines.iter().map(|l| format!("data: {l}\n\n")).collect();
            let mut resp = (StatusCode::OK, body).into_response();
            resp.headers_mut()
                .insert("content-type", "text/event-stream".parse().unwrap());
            return resp;
        }
        other => {
            let resp = respond(other, anthropic, req, n).await;
            if resp.status() != StatusCode::OK {
                return resp;
            }
            let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
            let Ok(whole) = serde_json::from_slice::<Value>(&bytes) else {
                // Garbage stays garbage.
                return (StatusCode::OK, bytes).into_response();
            };
            return sse(events(&whole, anthropic), Duration::ZERO);
        }
    };
    let text = pieces.concat();
    let whole = text_reply(anthropic, &text);
    let mut events = events(&whole, anthropic);
    // The text events are the pieces given.
    let text_at = events
        .iter()
        .position(|e| e.to_string().contains("\"delta\""))
        .unwrap_or(0);
    events.retain(|e| !is_text_delta(e));
    for (i, piece) in pieces.iter().enumerate() {
        events.insert(text_at + i, text_delta(anthropic, piece));
    }
    sse(events, gap)
}

fn is_text_delta(e: &Value) -> bool {
    e["delta"]["type"] == "text_delta" || e["choices"][0]["delta"]["content"].is_string()
}

fn text_delta(anthropic: bool, piece: &str) -> Value {
    if anthropic {
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}})
    } else {
        json!({"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": null}]})
    }
}

/// The events that carry a whole answer, text word by word.
fn events(whole: &Value, anthropic: bool) -> Vec<Value> {
    let words = |text: &str| -> Vec<String> { text.split_inclusive(' ').map(str::to_string).collect() };
    let mut out = Vec::new();
    if anthropic {
        out.push(
            json!({"type": "message_start", "message": {"usage": {"input_tokens": whole["usage"]["input_tokens"]}}}),
        );
        for (i, block) in whole["content"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            if block["type"] == "tool_use" {
                out.push(json!({"type": "content_block_start", "index": i,
                    "content_block": {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}}));
                let args = block["input"].to_string();
                let (a, b) = args.split_at(args.len() / 2);
                for part in [a, b] {
                    out.push(json!({"type": "content_block_delta", "index": i, "delta": {"type": "input_json_delta", "partial_json": part}}));
                }
            } else {
                out.push(
                    json!({"type": "content_block_start", "index": i, "content_block": {"type": "text", "text": ""}}),
                );
                for w in words(block["text"].as_str().unwrap_or_default()) {
                    out.push(
                        json!({"type": "content_block_delta", "index": i, "delta": {"type": "text_delta", "text": w}}),
                    );
                }
            }
            out.push(json!({"type": "content_block_stop", "index": i}));
        }
        out.push(
            json!({"type": "message_delta", "delta": {"stop_reason": whole["stop_reason"]},
            "usage": {"output_tokens": whole["usage"]["output_tokens"]}}),
        );
        out.push(json!({"type": "message_stop"}));
    } else {
        let message = &whole["choices"][0]["message"];
        out.push(json!({"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"role": "assistant"}}]}));
        for w in words(message["content"].as_str().unwrap_or_default()) {
            out.push(text_delta(false, &w));
        }
        for (i, call) in message["tool_calls"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            let args = call["function"]["arguments"].as_str().unwrap_or("{}").to_string();
            let (a, b) = args.split_at(args.len() / 2);
            out.push(json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": i, "id": call["id"], "type": "function",
                "function": {"name": call["function"]["name"], "arguments": a}}]}}]}));
            out.push(json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": i, "function": {"arguments": b}}]}}]}));
        }
        out.push(
            json!({"choices": [{"index": 0, "delta": {}, "finish_reason": whole["choices"][0]["finish_reason"]}]}),
        );
        out.push(json!({"choices": [], "usage": whole["usage"]}));
    }
    out
}

/// The events as `text/event-stream`, `gap` apart; OpenAI's end with
/// `[DONE]`.
fn sse(events: Vec<Value>, gap: Duration) -> Response {
    let anthropic = events.first().is_some_and(|e| e["type"] == "message_start");
    let mut lines: Vec<String> = events
        .iter()
        .map(|e| match e["type"].as_str() {
            Some(kind) if anthropic => format!("event: {kind}\ndata: {e}\n\n"),
            _ => format!("data: {e}\n\n"),
        })
        .collect();
    if !anthropic {
        lines.push("data: [DONE]\n\n".into());
    }
    let body = futures_util::stream::unfold((lines.into_iter(), true), move |(mut rest, first)| async move {
        let line = rest.next()?;
        if !first && !gap.is_zero() && line.contains("delta") {
            tokio::time::sleep(gap).await;
        }
        Some((Ok::<_, std::convert::Infallible>(line), (rest, false)))
    });
    let mut resp = axum::body::Body::from_stream(body).into_response();
    resp.headers_mut()
        .insert("content-type", "text/event-stream".parse().unwrap());
    resp
}

fn respond(
    step: Step,
    anthropic: bool,
    req: &Value,
    n: u64,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Response> + Send>> {
    let req = req.clone();
    Box::pin(async move {
        match step {
            Step::Delay(d, inner) => {
                tokio::time::sleep(d).await;
                respond(*inner, anthropic, &req, n).await
            }
            Step::Status {
                code,
                retry_after,
                body,
            } => {
                let mut resp = (
                    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                    body,
                )
                    .into_response();
                if let Some(ra) = retry_after {
                    resp.headers_mut().insert("retry-after", ra.parse().unwrap());
                }
                resp
            }
            Step::Garbage(text) => (StatusCode::OK, text).into_response(),
            Step::Redirect(to) => {
                let mut resp = StatusCode::TEMPORARY_REDIRECT.into_response();
                resp.headers_mut().insert("location", to.parse().unwrap());
                resp
            }
            Step::Text(text) => axum::Json(text_reply(anthropic, &text)).into_response(),
            Step::Parts { parts, .. } => axum::Json(text_reply(anthropic, &parts.concat())).into_response(),
            Step::RawStream(_) => (StatusCode::BAD_REQUEST, "a raw stream needs a streaming request").into_response(),
            Step::Cut(text) => {
                let mut reply = text_reply(anthropic, &text);
                if anthropic {
                    reply["stop_reason"] = json!("max_tokens");
                } else {
                    reply["choices"][0]["finish_reason"] = json!("length");
                }
                axum::Json(reply).into_response()
            }
            Step::Consolidate => {
                let transcript = req.to_string();
                let facts: Vec<String> = transcript
                    .split("FACT: ")
                    .skip(1)
                    .map(|rest| {
                        rest.split(['\\', '"', '\n'])
                            .next()
                            .unwrap_or_default()
                            .trim()
                            .to_string()
                    })
                    .collect();
                let summary = format!("Consolidated a stretch of conversation ({} facts).", facts.len());
                let answer = json!({"summary": summary, "facts": facts}).to_string();
                axum::Json(text_reply(anthropic, &answer)).into_response()
            }
            Step::EchoUser => {
                let last = last_user_text(&req).unwrap_or_else(|| "<no user message>".into());
                axum::Json(text_reply(anthropic, &format!("re: {last}"))).into_response()
            }
            Step::EchoLastTool => {
                let last = last_tool_result(&req, anthropic).unwrap_or_else(|| "<no tool result>".into());
                axum::Json(text_reply(anthropic, &format!("tool said: {last}"))).into_response()
            }
            Step::Tool { name, args } => {
                let id = format!("call_{n}");
                let body = if anthropic {
                    json!({
                        "id": format!("msg_{n}"), "type": "message", "role": "assistant", "model": req["model"],
                        "content": [{"type": "text", "text": "working on it"},
                                    {"type": "tool_use", "id": id, "name": name, "input": args}],
                        "stop_reason": "tool_use",
                        "usage": {"input_tokens": 11, "output_tokens": 7}
                    })
                } else {
                    json!({
                        "id": format!("chatcmpl-{n}"), "object": "chat.completion", "model": req["model"],
                        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
                            "role": "assistant", "content": null,
                            "tool_calls": [{"id": id, "type": "function",
                                            "function": {"name": name, "arguments": args.to_string()}}]}}],
                        "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
                    })
                };
                axum::Json(body).into_response()
            }
        }
    })
}

fn text_reply(anthropic: bool, text: &str) -> Value {
    if anthropic {
        json!({
            "id": "msg_final", "type": "message", "role": "assistant",
            "content": [{"type": "text", "text": text}], "stop_reason": "end_turn",
            "usage": {"input_tokens": 13, "output_tokens": 5}
        })
    } else {
        json!({
            "id": "chatcmpl-final", "object": "chat.completion",
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": 13, "completion_tokens": 5, "total_tokens": 18}
        })
    }
}

/// The text of the last user message in an OpenAI or Anthropic request.
fn last_user_text(req: &Value) -> Option<String> {
    let last = req["messages"].as_array()?.iter().rev().find(|m| m["role"] == "user")?;
    match &last["content"] {
        Value::String(s) => Some(s.clone()),
        Value::Array(blocks) => Some(
            blocks
                .iter()
                .filter_map(|b| b["text"].as_str())
                .collect::<Vec<_>>()
                .join(" "),
        ),
        _ => None,
    }
}

/// The content of the last tool result in an OpenAI or Anthropic request.
pub fn last_tool_result(req: &Value, anthropic: bool) -> Option<String> {
    let msgs = req["messages"].as_array()?;
    if anthropic {
        msgs.iter().rev().find_map(|m| {
            m["content"].as_array()?.iter().rev().find_map(|b| {
                (b["type"] == "tool_result").then(|| b["content"].as_str().unwrap_or_default().to_string())
            })
        })
    } else {
        msgs.iter()
            .rev()
            .find(|m| m["role"] == "tool")
            .map(|m| m["content"].as_str().unwrap_or_default().to_string())
    }
}
