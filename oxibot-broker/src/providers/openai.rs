//! OpenAI-compatible `POST {base}/chat/completions` with tool calls.

use serde_json::{json, Value};

use super::{decode, send_for_json, ChatRequest, ChatResponse, Endpoint, ProviderError, Role, ToolCallRequest, Usage};

pub(super) async fn complete(
    http: &reqwest::Client,
    ep: &Endpoint,
    req: &ChatRequest<'_>,
) -> Result<ChatResponse, ProviderError> {
    let messages: Vec<Value> = req.messages.iter().map(message_json).collect();
    let mut body = json!({
        "model": ep.model,
        "messages": messages,
        "max_tokens": req.max_tokens,
        "temperature": req.temperature,
    });
    if !req.tools.is_empty() {
        body["tools"] = req
            .tools
            .iter()
            .map(|t| json!({"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.parameters}}))
            .collect();
    }
    if req.stream.is_some() {
        body["stream"] = json!(true);
        // The usage comes in a last chunk of its own.
        body["stream_options"] = json!({"include_usage": true});
    }
    let mut rb = http.post(format!("{}/chat/completions", ep.base)).json(&body);
    if let Some(key) = &ep.key {
        rb = rb.bearer_auth(key.expose());
    }
    if let Some(sink) = req.stream {
        return super::stream::read(rb, ep, sink, false).await;
    }
    let v = send_for_json(rb, ep).await?;
    parse(ep, &v)
}

fn message_json(m: &super::ChatMessage) -> Value {
    let mut v = json!({"role": m.role.as_str(), "content": m.content});
    if !m.images.is_empty() {
        let mut parts = vec![json!({"type": "text", "text": m.content})];
        parts.extend(m.images.iter().map(
            |i| json!({"type": "image_url", "image_url": {"url": format!("data:{};base64,{}", i.mime, i.base64)}}),
        ));
        v["content"] = Value::Array(parts);
    }
    if m.role == Role::Assistant && !m.tool_calls.is_empty() {
        v["tool_calls"] = m
            .tool_calls
            .iter()
            .map(|c| json!({"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}))
            .collect();
    }
    if let Some(id) = &m.tool_call_id {
        v["tool_call_id"] = json!(id);
    }
    v
}

fn parse(ep: &Endpoint, v: &Value) -> Result<ChatResponse, ProviderError> {
    let msg = v
        .pointer("/choices/0/message")
        .ok_or_else(|| decode(ep, "no choices[0].message in the reply".into()))?;
    let content = msg
        .get("content")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let mut tool_calls = Vec::new();
    for (i, call) in msg
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let name = call
            .pointer("/function/name")
            .and_then(Value::as_str)
            .ok_or_else(|| decode(ep, format!("tool_calls[{i}] has no function.name")))?;
        let arguments = match call.pointer("/function/arguments") {
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => "{}".into(),
        };
        let id = call
            .get("id")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| format!("call_{i}"));
        tool_calls.push(ToolCallRequest {
            id,
            name: name.to_string(),
            arguments,
        });
    }
    let usage = Usage {
        prompt_tokens: v.pointer("/usage/prompt_tokens").and_then(Value::as_u64).unwrap_or(0),
        completion_tokens: v
            .pointer("/usage/completion_tokens")
            .and_then(Value::as_u64)
            .unwrap_or(0),
    };
    Ok(ChatResponse {
        content,
        tool_calls,
        usage,
        model: ep.model.clone(),
        cut: v.pointer("/choices/0/finish_reason").and_then(Value::as_str) == Some("length"),
    })
}
