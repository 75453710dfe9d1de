//! Streamed answers: both APIs send server-sent events, one JSON object
//! per `data:` line. The text goes to the caller's sink as it comes; the
//! pieces are put together into the same [`ChatResponse`] a plain request
//! gives, so the stored turn does not depend on whether it was streamed.

use std::collections::BTreeMap;

use serde_json::Value;

use super::{decode, http_error, network_error, ChatResponse, Endpoint, ProviderError, ToolCallRequest, Usage};

/// What a streaming request shows as it goes.
pub enum Streamed<'a> {
    /// The next piece of the model's text.
    Text(&'a str),
    /// A failed attempt is being tried again (or by another model): the
    /// text shown since the request began is void.
    Restart,
}

/// The caller's sink; called on the request's task, so it must not block.
pub type Sink<'a> = &'a (dyn Fn(Streamed<'_>) + Send + Sync);

/// One `data:` line at most this long: a tool call's arguments arrive in
/// pieces, so no single event is large.
const MAX_LINE: usize = 4 << 20;

/// The whole answer at most this long: text, tool names, ids and
/// arguments together.
const MAX_ANSWER: usize = 8 << 20;
/// At most this many tool calls in one answer.
const MAX_CALLS: usize = 128;
/// A tool call's name or id at most this long.
const MAX_NAME: usize = 256;

/// The answer being put together.
#[derive(Default)]
struct Answer {
    content: String,
    /// Tool calls by the index the provider gives them.
    calls: BTreeMap<u64, ToolCallRequest>,
    usage: Usage,
    cut: bool,
    size: usize,
}

/// Sends the request and reads its event stream to the end.
pub(super) async fn read(
    rb: reqwest::RequestBuilder,
    ep: &Endpoint,
    sink: Sink<'_>,
    anthropic: bool,
) -> Result<ChatResponse, ProviderError> {
    let mut resp = super::apply_headers(rb, ep)
        .send()
        .await
        .map_err(|e| network_error(ep.provider, e))?;
    if !resp.status().is_success() {
        return Err(http_error(ep, resp).await);
    }
    let mut answer = Answer::default();
    let mut pending: Vec<u8> = Vec::new();
    let mut finished = false;
    while !finished {
        let chunk = match resp.chunk().await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => break,
            Err(e) => return Err(network_error(ep.provider, e)),
        };
        pending.extend_from_slice(&chunk);
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line);
            let Some(data) = line.trim_end().strip_prefix("data:") else {
                continue;
            };
            let data = data.trim_start();
            if data == "[DONE]" {
                finished = true;
                break;
            }
            let event: Value =
                serde_json::from_str(data).map_err(|e| decode(ep, format!("a streamed event is not JSON: {e}")))?;
            finished = if anthropic {
                anthropic_event(ep, &event, &mut answer, sink)?
            } else {
                openai_event(ep, &event, &mut answer, sink)?
            };
            if answer.size > MAX_ANSWER {
                return Err(decode(ep, format!("the streamed answer passed {MAX_ANSWER} bytes")));
            }
            if finished {
                break;
            }
        }
        if pending.len() > MAX_LINE {
            return Err(decode(ep, format!("a streamed line passed {MAX_LINE} bytes")));
        }
    }
    if !finished {
        return Err(ProviderError::Network {
            provider: ep.provider,
            message: "the stream ended before the answer did".into(),
        });
    }
    Ok(ChatResponse {
        content: answer.content,
        tool_calls: answer.calls.into_values().collect(),
        usage: answer.usage,
        model: ep.model.clone(),
        cut: answer.cut,
    })
}

/// One chunk of an OpenAI-compatible stream. True once the usage (sent
/// last, with `include_usage`) or `[DONE]` says the answer is whole.
fn openai_event(ep: &Endpoint, v: &Value, answer: &mut Answer, sink: Sink<'_>) -> Result<bool, ProviderError> {
    if let Some(error) = v.get("error") {
        return Err(stream_error(ep, error));
    }
    if let Some(usage) = v.get("usage").filter(|u| u.is_object()) {
        answer.usage = Usage {
            prompt_tokens: usage.get("prompt_tokens").and_then(Value::as_u64).unwrap_or(0),
            completion_tokens: usage.get("completion_tokens").and_then(Value::as_u64).unwrap_or(0),
        };
    }
    let Some(choice) = v.pointer("/choices/0") else {
        return Ok(false);
    };
    if let Some(text) = choice.pointer("/delta/content").and_then(Value::as_str) {
        if !text.is_empty() {
            answer.size += text.len();
            answer.content.push_str(text);
            sink(Streamed::Text(text));
        }
    }
    for piece in choice
        .pointer("/delta/tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let index = piece.get("index").and_then(Value::as_u64).unwrap_or(0);
        if !answer.calls.contains_key(&index) && answer.calls.len() >= MAX_CALLS {
            return Err(decode(
                ep,
                format!("the streamed answer asked for more than {MAX_CALLS} tool calls"),
            ));
        }
        let call = answer.calls.entry(index).or_insert_with(|| ToolCallRequest {
            id: format!("call_{index}"),
            name: String::new(),
            arguments: String::new(),
        });
        if let Some(id) = piece.get("id").and_then(Value::as_str) {
            answer.size += id.len();
            call.id = id.to_string();
        }
        if let Some(name) = piece.pointer("/function/name").and_then(Value::as_str) {
            answer.size += name.len();
            call.name.push_str(name);
        }
        if call.name.len() > MAX_NAME || call.id.len() > MAX_NAME {
            return Err(decode(
                ep,
                format!("a streamed tool call's name or id passed {MAX_NAME} bytes"),
            ));
        }
        if let Some(args) = piece.pointer("/function/arguments").and_then(Value::as_str) {
            answer.size += args.len();
            call.arguments.push_str(args);
        }
    }
    if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
        answer.cut = reason == "length";
        for (i, call) in &mut answer.calls {
            if call.name.is_empty() {
                return Err(decode(ep, format!("streamed tool call {i} has no function.name")));
            }
            if call.arguments.is_empty() {
                call.arguments = "{}".into();
            }
        }
    }
    Ok(false)
}

/// One event of an Anthropic stream. True at `message_stop`.
fn anthropic_event(ep: &Endpoint, v: &Value, answer: &mut Answer, sink: Sink<'_>) -> Result<bool, ProviderError> {
    let index = v.get("index").and_then(Value::as_u64).unwrap_or(0);
    match v.get("type").and_then(Value::as_str) {
        Some("message_start") => {
            answer.usage.prompt_tokens = v
                .pointer("/message/usage/input_tokens")
                .and_then(Value::as_u64)
                .unwrap_or(0);
        }
        Some("content_block_start") => {
            let block = v.get("content_block").unwrap_or(&Value::Null);
            if block.get("type").and_then(Value::as_str) == Some("tool_use") {
                let name = block
                    .get("name")
                    .and_then(Value::as_str)
                    .ok_or_else(|| decode(ep, format!("content block {index}: tool_use without a name")))?;
                let id = block
                    .get("id")
                    .and_then(Value::as_str)
                    .map_or_else(|| format!("toolu_{index}"), str::to_string);
                if name.len() > MAX_NAME || id.len() > MAX_NAME {
                    return Err(decode(
                        ep,
                        format!("a streamed tool call's name or id passed {MAX_NAME} bytes"),
                    ));
                }
                if !answer.calls.contains_key(&index) && answer.calls.len() >= MAX_CALLS {
                    return Err(decode(
                        ep,
                        format!("the streamed answer asked for more than {MAX_CALLS} tool calls"),
                    ));
                }
                answer.size += name.len() + id.len();
                answer.calls.insert(
                    index,
                    ToolCallRequest {
                        id,
                        name: name.to_string(),
                        arguments: String::new(),
                    },
                );
            }
        }
        Some("content_block_delta") => match v.pointer("/delta/type").and_then(Value::as_str) {
            Some("text_delta") => {
                let text = v.pointer("/delta/text").and_then(Value::as_str).unwrap_or_default();
                answer.size += text.len();
                answer.content.push_str(text);
                if !text.is_empty() {
                    sink(Streamed::Text(text));
                }
            }
            Some("input_json_delta") => {
                let json = v
                    .pointer("/delta/partial_json")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                answer.size += json.len();
                match answer.calls.get_mut(&index) {
                    Some(call) => call.arguments.push_str(json),
                    None => {
                        return Err(decode(
                            ep,
                            format!("arguments for content block {index}, not a tool_use"),
                        ))
                    }
                }
            }
            _ => {}
        },
        Some("message_delta") => {
            answer.cut = v.pointer("/delta/stop_reason").and_then(Value::as_str) == Some("max_tokens");
            if let Some(out) = v.pointer("/usage/output_tokens").and_then(Value::as_u64) {
                answer.usage.completion_tokens = out;
            }
        }
        Some("message_stop") => {
            for call in answer.calls.values_mut() {
                if call.arguments.is_empty() {
                    call.arguments = "{}".into();
                }
            }
            return Ok(true);
        }
        Some("error") => return Err(stream_error(ep, v.get("error").unwrap_or(&Value::Null))),
        _ => {}
    }
    Ok(false)
}

/// An error the provider reports inside a stream (overloaded, say): the
/// request is tried again, like a dropped connection. Scrubbed of this
/// endpoint's key and headers before it is shortened (a prefix of a key
/// would be recognised by no later scrub).
fn stream_error(ep: &Endpoint, error: &Value) -> ProviderError {
    let scrubber = oxibot_runtime::redact::Redactor::new(
        ep.key
            .iter()
            .map(|k| k.expose())
            .chain(ep.headers.values().map(String::as_str)),
    );
    let (clean, _) = scrubber.redact(&error.to_string());
    ProviderError::Network {
        provider: ep.provider,
        message: format!("the stream reported an error: {}", super::shorten(&clean, 300)),
    }
}
