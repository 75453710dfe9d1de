//! Background tasks (`spawn`): a turn with its own session, iteration cap
//! and time limit, running while the chat goes on. Its result is reported
//! to the chat that started it and noted in that chat's conversation, so
//! the assistant knows it. `/stop` cancels a chat's tasks.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::providers::{ChatMessage, Role, Usage};
use crate::services::Services;
use crate::turn::{Turn, TurnKind};

pub mod registry;
use registry::Running;

/// The `spawn` tool.
pub fn spawn(svc: &Arc<Services>, turn: &Turn, task: &str, label: Option<&str>) -> Result<String, String> {
    if task.trim().is_empty() {
        return Err("the task is empty; say what the background task should do".into());
    }
    let limits = &svc.config().subagents;
    let (max_per_chat, max_total) = (limits.max_per_chat as usize, limits.max_total as usize);
    let (iterations, timeout) = (limits.max_iterations, Duration::from_secs(limits.timeout_secs));
    let label: String = label
        .filter(|l| !l.trim().is_empty())
        .unwrap_or(task)
        .chars()
        .take(40)
        .collect();
    let registry = &svc.subagents;
    // Checked and registered under one lock, so two spawns cannot both
    // take the last slot.
    let chat_key = turn
        .origin
        .as_ref()
        .map_or_else(|| turn.session.clone(), |o| o.session());
    let mut running = registry.lock();
    let mine = running.values().filter(|r| r.chat_key == chat_key).count();
    if mine >= max_per_chat {
        return Err(format!(
            "{mine} background tasks already run for this chat (subagents.maxPerChat); wait for one to finish"
        ));
    }
    if running.len() >= max_total {
        return Err(format!(
            "{} background tasks already run (subagents.maxTotal); wait for one to finish",
            running.len()
        ));
    }
    let id = registry.next.fetch_add(1, Ordering::Relaxed) + 1;
    let session = format!("subagent:{}-{id}", oxibot_runtime::clock::unix_now());
    // Recorded, so that a restart that ends it tells the chat.
    let chat = turn.origin.as_ref().map(|o| (o.channel.as_str(), o.chat_id.as_str()));
    svc.store
        .subagent_started(&session, &turn.session, chat, &label)
        .map_err(|e| format!("the task could not be recorded ({e}); it was not started"))?;
    let sub_turn = Turn {
        session: session.clone(),
        origin: turn.origin.clone(),
        kind: TurnKind::Subagent,
        max_iterations: Some(iterations),
        by_admin: false,
        watcher: None,
    };
    let prompt = format!(
        "You are a background task started by the assistant of a chat. Your task:\n\n{task}\n\n\
         Work on it with your tools, then answer with the result. Your answer is reported to the chat."
    );
    let (start_tx, start_rx) = tokio::sync::oneshot::channel::<()>();
    let session_for_registry = session.clone();
    let (svc2, parent, label2) = (svc.clone(), turn.session.clone(), label.clone());
    let handle = tokio::spawn(async move {
        // Registered before it starts, so its end always finds its entry.
        if start_rx.await.is_err() {
            return;
        }
        let outcome =
            tokio::time::timeout(timeout, crate::agent::run_turn(&svc2, &sub_turn, &prompt, Vec::new())).await;
        let (report, ok) = match outcome {
            Ok(Ok(answer)) => (format!("[Background task \"{label2}\" finished]\n{answer}"), true),
            Ok(Err(e)) => (format!("[Background task \"{label2}\" failed: {e}]"), false),
            Err(_) => (
                format!(
                    "[Background task \"{label2}\" stopped after {} s (subagents.timeoutSecs) without a result]",
                    timeout.as_secs()
                ),
                false,
            ),
        };
        crate::metrics::background_run("subagent", ok);
        report_back(&svc2, &parent, sub_turn.origin.as_ref(), &session, &label2, &report).await;
        let _ = svc2.store.subagent_ended(&session, if ok { "done" } else { "failed" });
        svc2.subagents.lock().remove(&id);
    });
    running.insert(
        id,
        Running {
            session: session_for_registry,
            chat_key,
            label: label.clone(),
            task: handle.abort_handle(),
        },
    );
    drop(running);
    let _ = start_tx.send(());
    svc.audit.about(
        "subagent_started",
        turn.origin.as_ref().map(|o| o.channel.as_str()),
        None,
        &format!("session {}: background task {id} \"{label}\"", turn.session),
    );
    Ok(format!(
        "Started background task {id} \"{label}\". Its result will be sent to this chat when it finishes; \
         you can go on meanwhile."
    ))
}

/// The name of the tool result a task's report is stored as.
pub const REPORT_TOOL: &str = "background_task_result";

/// What a task produced goes into its parent conversation as a tool
/// result, wrapped as untrusted: never as the assistant's own words (a
/// task that read a hostile page would speak with the assistant's voice),
/// and never as the user's (memory takes facts only from those).
pub fn report_messages(session: &str, label: &str, report: &str) -> [ChatMessage; 2] {
    let id = format!(
        "report-{}",
        crate::prompt_files::short(&crate::prompt_files::digest(session))
    );
    let call = ChatMessage {
        tool_calls: vec![crate::providers::ToolCallRequest {
            id: id.clone(),
            name: REPORT_TOOL.into(),
            arguments: serde_json::json!({"task": label}).to_string(),
        }],
        ..ChatMessage::text(Role::Assistant, "")
    };
    let result = ChatMessage {
        tool_call_id: Some(id),
        ..ChatMessage::text(
            Role::Tool,
            crate::web::wrap(&format!("background task {label}"), report),
        )
    };
    [call, result]
}

/// Notes the report in the parent conversation and sends it to the chat.
async fn report_back(
    svc: &Services,
    parent: &str,
    chat: Option<&crate::turn::ChatRef>,
    session: &str,
    label: &str,
    report: &str,
) {
    let note = report_messages(session, label, report);
    if let Err(e) = svc.store.append(parent, &note, &Usage::default()) {
        tracing::error!(parent, "cannot note a background task's result: {e}");
    }
    if let Some(chat) = chat {
        let origin = format!("report:{session}");
        if let Err(e) = crate::message::queue_and_deliver(svc, chat, report, Some(&origin)).await {
            tracing::error!(parent, "cannot queue a background task's result: {e}");
        }
    }
}

/// Cancels the tasks working for the chat whose session this is (`/stop`);
/// returns how many.
pub fn cancel_chat(svc: &Services, session: &str) -> usize {
    let cancelled: Vec<Running> = {
        let mut running = svc.subagents.lock();
        let ids: Vec<u64> = running
            .iter()
            .filter(|(_, r)| r.chat_key == session)
            .map(|(id, _)| *id)
            .collect();
        ids.into_iter().filter_map(|id| running.remove(&id)).collect()
    };
    for r in &cancelled {
        r.task.abort();
        let _ = svc.store.subagent_ended(&r.session, "cancelled");
        crate::metrics::background_run("subagent", false);
        let note = report_messages(
            &r.session,
            &r.label,
            &format!("[Background task \"{}\" was cancelled with /stop]", r.label),
        );
        if let Err(e) = svc.store.append(session, &note, &Usage::default()) {
            tracing::error!(session, "cannot note a cancelled background task: {e}");
        }
    }
    if !cancelled.is_empty() {
        svc.audit.about(
            "subagent_cancelled",
            session.split_once(':').map(|(c, _)| c),
            None,
            &format!(
                "session {session}: {} background task(s) cancelled with /stop",
                cancelled.len()
            ),
        );
    }
    cancelled.len()
}

/// At start: tells each chat whose background task a previous broker was
/// running that it ended unfinished (nothing disappears without a word).
pub async fn report_interrupted(svc: &Services) {
    let list = match svc.store.subagents_interrupted() {
        Ok(list) => list,
        Err(e) => {
            tracing::error!("cannot read the background tasks of the last run: {e}");
            return;
        }
    };
    for t in list {
        let report = format!(
            "[Background task \"{}\" was interrupted when OxiBot restarted, before it finished; ask again if it is still needed]",
            t.label
        );
        let chat = t
            .chat
            .map(|(channel, chat_id)| crate::turn::ChatRef { channel, chat_id });
        report_back(svc, &t.parent, chat.as_ref(), &t.session, &t.label, &report).await;
    }
}
