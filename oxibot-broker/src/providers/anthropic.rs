//! The native Anthropic Messages API (`POST {base}/v1/messages`) with tool use.

use serde_json::{json, Value};

use super::{
    decode, send_for_json, ChatMessage, ChatRequest, ChatResponse, Endpoint, ProviderError, Role, ToolCallRequest,
    Usage,
};

const API_VERSION: &str = "2023-06-01";

/// The system prompt as blocks: its stable part (instructions, prompt
/// files, skills) marked for Anthropic's prompt cache, and the part that
/// changes from call to call (the time, the history note: from `## Now`
/// on) after it, unmarked.
fn system_blocks(system: &str) -> Value {
    let (stable, changing) = match system.find(crate::prompt::CHANGING_PART) {
        Some(at) => system.split_at(at),
        None => (system, ""),
    };
    let mut blocks = vec![json!({"type": "text", "text": stable, "cache_control": {"type": "ephemeral"}})];
    if !changing.is_empty() {
        blocks.push(json!({"type": "text", "text": changing}));
    }
    Value::Array(blocks)
}

pub(super) async fn complete(
    http: &reqwest::Client,
    ep: &Endpoint,
    req: &ChatRequest<'_>,
) -> Result<ChatResponse, ProviderError> {
    let system: Vec<&str> = req
        .messages
        .iter()
        .filter(|m| m.role == Role::System)
        .map(|m| m.content.as_str())
        .collect();
    let mut body = json!({
        "model": ep.model,
        "max_tokens": req.max_tokens,
        "temperature": req.temperature,
        "messages": messages_json(req.messages),
    });
    if !system.is_empty() {
        body["system"] = system_blocks(&system.join("\n\n"));
    }
    if !req.tools.is_empty() {
        let mut tools: Vec<Value> = req
            .tools
            .iter()
            .map(|t| json!({"name": t.name, "description": t.description, "input_schema": t.parameters}))
            .collect();
        // The tools are the same on every call of a turn (and of the
        // chat's turns): the prefix up to the last one is billed as cached.
        if let Some(last) = tools.last_mut() {
            last["cache_control"] = json!({"type": "ephemeral"});
        }
        body["tools"] = Value::Array(tools);
    }
    if req.stream.is_some() {
        body["stream"] = json!(true);
    }
    let mut rb = http
        .post(format!("{}/v1/messages", ep.base))
        .header("anthropic-version", API_VERSION)
        .json(&body);
    if let Some(key) = &ep.key {
        rb = rb.header("x-api-key", key.expose());
    }
    if let Some(sink) = req.stream {
        return super::stream::read(rb, ep, sink, true).await;
    }
    let v = send_for_json(rb, ep).await?;
    parse(ep, &v)
}

/// Anthropic wants tool calls as `tool_use` blocks in the assistant turn and
/// tool results as `tool_result` blocks in the *next user* turn; consecutive
/// results are merged into one user message.
fn messages_json(messages: &[ChatMessage]) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    for m in messages {
        match m.role {
            Role::System => {}
            Role::User if m.images.is_empty() => out.push(json!({"role": "user", "content": m.content})),
            Role::User => {
                let mut blocks: Vec<Value> = m
                    .images
                    .iter()
                    .map(|i| json!({"type": "image", "source": {"type": "base64", "media_type": i.mime, "data": i.base64}}))
                    .collect();
                blocks.push(json!({"type": "text", "text": m.content}));
                out.push(json!({"role": "user", "content": blocks}));
            }
            Role::Assistant => {
                let mut blocks = Vec::new();
                if !m.content.is_empty() {
                    blocks.push(json!({"type": "text", "text": m.content}));
                }
                for c in &m.tool_calls {
                    let input: Value = serde_json::from_str(&c.arguments).unwrap_or_else(|_| json!({}));
                    blocks.push(json!({"type": "tool_use", "id": c.id, "name": c.name, "input": input}));
                }
                if blocks.is_empty() {
                    blocks.push(json!({"type": "text", "text": ""}));
                }
                out.push(json!({"role": "assistant", "content": blocks}));
            }
            Role::Tool => {
                let block = json!({"type": "tool_result", "tool_use_id": m.tool_call_id, "content": m.content});
                let merged = match out.last_mut() {
                    Some(last) if last["role"] == "user" && last["content"].is_array() => {
                        if let Some(arr) = last["content"].as_array_mut() {
                            arr.push(block.clone());
                        }
                        true
                    }
                    _ => false,
                };
                if !merged {
                    out.push(json!({"role": "user", "content": [block]}));
                }
            }
        }
    }
    out
}

fn parse(ep: &Endpoint, v: &Value) -> Result<ChatResponse, ProviderError> {
    let blocks = v
        .get("content")
        .and_then(Value::as_array)
        .ok_or_else(|| decode(ep, "no content array".into()))?;
    let mut content = String::new();
    let mut tool_calls = Vec::new();
    for (i, b) in blocks.iter().enumerate() {
        match b.get("type").and_then(Value::as_str) {
            Some("text") => content.push_str(b.get("text").and_then(Value::as_str).unwrap_or_default()),
            Some("tool_use") => {
                let name = b
                    .get("name")
                    .and_then(Value::as_str)
                    .ok_or_else(|| decode(ep, format!("content[{i}] tool_use without a name")))?;
                let id = b
                    .get("id")
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("toolu_{i}"));
                let arguments = b.get("input").cloned().unwrap_or_else(|| json!({})).to_string();
                tool_calls.push(ToolCallRequest {
                    id,
                    name: name.to_string(),
                    arguments,
                });
            }
            _ => {}
        }
    }
    let usage = Usage {
        prompt_tokens: v.pointer("/usage/input_tokens").and_then(Value::as_u64).unwrap_or(0),
        completion_tokens: v.pointer("/usage/output_tokens").and_then(Value::as_u64).unwrap_or(0),
    };
    Ok(ChatResponse {
        content,
        tool_calls,
        usage,
        model: ep.model.clone(),
        cut: v.get("stop_reason").and_then(Value::as_str) == Some("max_tokens"),
    })
}
