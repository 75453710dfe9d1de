//! Approvals: before a command, a file change outside `writePaths`, or an
//! MCP tool runs, the owner's policy (`tools.approval`) says run, refuse,
//! or ask. Asking posts the request in the chat the turn speaks for, with
//! a code; the turn waits for `/approve CODE`, `/deny CODE` (from that
//! chat's owner) or `oxibotctl approvals`, and no answer in time is no.
//!
//! `shell` reads what a command line runs, `policy` decides over it; this
//! file holds the requests waiting for an answer, and the answers.

pub mod policy;
pub mod shell;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use oxibot_config::owner::{ApprovalMode, Pattern};
use oxibot_proto::messages::ApprovalInfo;
use tokio::sync::oneshot;

use crate::services::Services;
use crate::turn::{ChatRef, Turn, TurnKind};
use policy::Verdict;

/// Requests waiting at once, all chats together; more are refused.
const MAX_WAITING: usize = 64;
/// What a request shows of a tool's arguments or a command, at most.
const MAX_SHOWN: usize = 3000;

/// The owner's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Once,
    /// Run it, and allow its pattern from now on.
    Always,
    Deny,
}

struct Waiting {
    session: String,
    chat: Option<ChatRef>,
    what: String,
    why: String,
    asked_at: i64,
    timeout_secs: u32,
    /// The patterns "approve always" adds, or why it cannot.
    always: Result<Vec<Pattern>, String>,
    reply: oneshot::Sender<Answer>,
}

/// The requests waiting for an answer, by code.
#[derive(Default)]
pub struct Approvals {
    waiting: Mutex<HashMap<String, Waiting>>,
}

/// What the gate was asked about.
pub struct Request {
    /// "run a command", "use the MCP tool x", "write docs/a.md".
    pub action: String,
    /// Shown in a code block.
    pub shown: String,
    pub why: String,
    pub always: Result<Vec<Pattern>, String>,
}

/// Takes a waiting request out when the turn stops waiting (answered,
/// timed out, or the turn was stopped): a code is good once.
struct Forget<'a> {
    approvals: &'a Approvals,
    code: String,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.approvals.lock().remove(&self.code);
    }
}

impl Approvals {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Waiting>> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every waiting request, oldest first.
    pub fn list(&self) -> Vec<ApprovalInfo> {
        let now = oxibot_runtime::clock::unix_now();
        let mut list: Vec<ApprovalInfo> = self
            .lock()
            .iter()
            .map(|(code, w)| ApprovalInfo {
                id: code.clone(),
                session: w.session.clone(),
                chat: w.chat.as_ref().map(ChatRef::session),
                what: w.what.clone(),
                why: w.why.clone(),
                age_secs: (now - w.asked_at).max(0) as u64,
                timeout_secs: u64::from(w.timeout_secs),
            })
            .collect();
        list.sort_by_key(|a| std::cmp::Reverse(a.age_secs));
        list
    }

    /// Hands an answer to the request with this code. `from_chat`: the
    /// chat it came from, which must be the request's own.
    fn answer(&self, code: &str, from_chat: Option<&ChatRef>, answer: Answer) -> Result<Waiting, String> {
        let mut waiting = self.lock();
        let Some(w) = waiting.get(code) else {
            return Err(format!("no request is waiting with code {code}"));
        };
        if let Some(chat) = from_chat {
            if w.chat.as_ref() != Some(chat) {
                return Err(format!("no request is waiting with code {code} in this chat"));
            }
        }
        if answer == Answer::Always {
            if let Err(why) = &w.always {
                return Err(format!(
                    "\"always\" is not possible here: {why}. Answer /approve {code} to run it once"
                ));
            }
        }
        let w = waiting
            .remove(code)
            .ok_or_else(|| format!("no request is waiting with code {code}"))?;
        Ok(w)
    }
}

/// For `oxibotctl status`: how many requests wait for the owner.
pub fn status_note(approvals: &Approvals) -> Option<String> {
    match approvals.lock().len() {
        0 => None,
        n => Some(format!(
            "{n} approval request(s) wait for the owner: oxibotctl approvals list"
        )),
    }
}

/// The gate for one `exec`: Ok to run, Err with what the model is told.
pub async fn check_command(
    svc: &Arc<Services>,
    turn: &Turn,
    command: &str,
    working_dir: Option<&str>,
) -> Result<(), String> {
    let config = svc.config();
    let settings = &config.tools.approval;
    if settings.mode == ApprovalMode::Off && settings.deny.is_empty() {
        return Ok(());
    }
    let analysis = shell::analyze(command);
    let learned = learned_patterns(svc);
    let working_dir = working_dir.filter(|d| !d.trim().is_empty() && d.trim() != ".");
    match policy::judge(settings, &learned, &analysis, working_dir) {
        Verdict::Allow => Ok(()),
        Verdict::Deny(why) => {
            audit(
                svc,
                turn,
                "approval_refused",
                &format!(
                    "command refused: it {why} (arguments sha256:{})",
                    crate::agent::arguments_digest(command)
                ),
            );
            Err(format!(
                "the command was refused without asking: it {why}. It did not run; do not try to run it another way"
            ))
        }
        Verdict::Ask(why) => {
            // Where it runs matters (a planted Makefile, a relative path).
            let mut shown = match working_dir {
                Some(dir) => format!("(in {})\n{}", clip(dir), clip(command)),
                None => clip(command),
            };
            let parts: Vec<String> = analysis.parts.iter().map(policy::render_part).collect();
            if parts.len() > 1 || parts.first().is_some_and(|p| p != command.trim()) {
                shown.push_str("\n\nruns:\n");
                shown.push_str(&clip(&parts.join("\n")));
            }
            let always = analysis
                .parts
                .iter()
                .map(policy::always_pattern)
                .collect::<Result<Vec<_>, _>>()
                .and_then(|p| match analysis.resolved() {
                    true if !p.is_empty() => Ok(p),
                    _ => Err("the command cannot be read with certainty".to_string()),
                });
            ask(
                svc,
                turn,
                Request {
                    action: "run a command".into(),
                    shown,
                    why,
                    always,
                },
            )
            .await
        }
    }
}

/// The gate for an MCP tool: `tools.approval.allowTools` lists those that
/// run without asking.
pub async fn check_mcp_tool(svc: &Arc<Services>, turn: &Turn, name: &str, arguments: &str) -> Result<(), String> {
    let config = svc.config();
    let settings = &config.tools.approval;
    if settings.mode == ApprovalMode::Off {
        return Ok(());
    }
    let listed = settings.allow_tools.iter().any(|t| match t.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => t == name,
    });
    if listed && settings.mode == ApprovalMode::OnMiss {
        return Ok(());
    }
    let why = if listed {
        "tools.approval.mode is \"always\"".to_string()
    } else {
        format!("{name} is not in tools.approval.allowTools")
    };
    let shown = clip(&svc.audit.scrub(arguments, "MCP tool arguments"));
    ask(
        svc,
        turn,
        Request {
            action: format!("use the MCP tool {name}"),
            shown,
            why,
            always: Err("MCP tools are allowed in tools.approval.allowTools".into()),
        },
    )
    .await
}

/// The gate for a file change: each path must be under
/// `tools.approval.writePaths`, or the change is asked.
pub async fn check_write(
    svc: &Arc<Services>,
    turn: &Turn,
    tool: &str,
    paths: Option<Vec<String>>,
    shown: &str,
) -> Result<(), String> {
    let config = svc.config();
    let settings = &config.tools.approval;
    if settings.mode == ApprovalMode::Off {
        return Ok(());
    }
    let why = match &paths {
        None => "its file names cannot be read with certainty".to_string(),
        Some(paths) => match paths.iter().find(|p| !policy::write_covered(settings, p)) {
            None => return Ok(()),
            Some(p) => format!("{p} is outside tools.approval.writePaths"),
        },
    };
    ask(
        svc,
        turn,
        Request {
            action: format!("change files with {tool}"),
            shown: clip(shown),
            why,
            always: Err("file changes are allowed in tools.approval.writePaths".into()),
        },
    )
    .await
}

fn learned_patterns(svc: &Services) -> Vec<Pattern> {
    match svc.store.approval_patterns() {
        Ok(list) => list.iter().filter_map(|p| Pattern::parse(p).ok()).collect(),
        Err(e) => {
            tracing::error!("cannot read the approved patterns: {e}");
            Vec::new()
        }
    }
}

/// The model's text as the owner is shown it: no code fence it could
/// close, and no character that hides or reorders what follows
/// (controls, bidirectional overrides, zero-width marks): those are
/// written as `\u{…}`.
fn clip(text: &str) -> String {
    let hidden = |c: char| {
        (c.is_control() && c != '\n' && c != '\t')
            || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}')
    };
    let text: String = text
        .replace("```", "'''")
        .chars()
        .map(|c| {
            if hidden(c) {
                format!("\\u{{{:x}}}", c as u32)
            } else {
                c.to_string()
            }
        })
        .collect();
    if text.len() <= MAX_SHOWN {
        return text;
    }
    let mut end = MAX_SHOWN;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}\n… ({} bytes more)", &text[..end], text.len() - end)
}

fn audit(svc: &Services, turn: &Turn, kind: &str, detail: &str) {
    let channel = turn.origin.as_ref().map(|c| c.channel.as_str());
    svc.audit
        .about(kind, channel, None, &format!("session {}: {detail}", turn.session));
}

/// Asks the owner and waits for the answer.
pub async fn ask(svc: &Arc<Services>, turn: &Turn, request: Request) -> Result<(), String> {
    let timeout_secs = svc.config().tools.approval.timeout_secs;
    // Unattended work with no chat has nobody to ask.
    if turn.origin.is_none() && turn.kind != TurnKind::Chat {
        audit(
            svc,
            turn,
            "approval_refused",
            &format!("{}: no chat to ask ({})", request.action, request.why),
        );
        return Err(format!(
            "this needs the owner's approval ({}), and this run has no chat to ask: it did not run",
            request.why
        ));
    }
    let (tx, rx) = oneshot::channel();
    let code = {
        let mut waiting = svc.approvals.lock();
        if waiting.len() >= MAX_WAITING {
            drop(waiting);
            audit(
                svc,
                turn,
                "approval_refused",
                &format!("{}: {MAX_WAITING} requests already wait", request.action),
            );
            return Err("too many approval requests are waiting; it did not run. Try again later".into());
        }
        let code = loop {
            let c = crate::channels::new_code();
            if !waiting.contains_key(&c) {
                break c;
            }
        };
        waiting.insert(
            code.clone(),
            Waiting {
                session: turn.session.clone(),
                chat: turn.origin.clone(),
                what: format!("{}:\n{}", request.action, request.shown),
                why: request.why.clone(),
                asked_at: oxibot_runtime::clock::unix_now(),
                timeout_secs,
                always: request.always.clone(),
                reply: tx,
            },
        );
        code
    };
    let _forget = Forget {
        approvals: &svc.approvals,
        code: code.clone(),
    };
    let started = std::time::Instant::now();
    let who = match turn.kind {
        TurnKind::Chat => "",
        TurnKind::Scheduled => " (for a scheduled job)",
        TurnKind::Heartbeat => " (for the heartbeat)",
        TurnKind::Subagent => " (for a background task)",
    };
    let always_hint = match &request.always {
        Ok(patterns) => format!(
            ", /approve {code} always to also allow {} from now on",
            patterns
                .iter()
                .map(|p| format!("`{}`", p.render()))
                .collect::<Vec<_>>()
                .join(" and ")
        ),
        Err(_) => String::new(),
    };
    // The reason quotes the model's words too: shown like them, and short.
    let why = clip(&crate::providers::shorten(&request.why, 600));
    let text = format!(
        "Approval needed{who}: I want to {}:\n```\n{}\n```\nAsked because {}.\nReply /approve {code} to allow it once{always_hint}, or /deny {code}. No answer in {} means no.",
        clip(&request.action),
        request.shown,
        why,
        human_secs(timeout_secs),
    );
    match &turn.origin {
        Some(chat) => {
            let button = |label: &str, says: String| oxibot_proto::messages::Button {
                label: label.into(),
                says,
            };
            let mut buttons = vec![button("Approve", format!("/approve {code}"))];
            if request.always.is_ok() {
                buttons.push(button("Approve always", format!("/approve {code} always")));
            }
            buttons.push(button("Deny", format!("/deny {code}")));
            if let Err(e) = crate::message::queue_with_buttons(svc, chat, &text, buttons).await {
                audit(
                    svc,
                    turn,
                    "approval_refused",
                    &format!("{}: the request could not be queued: {e}", request.action),
                );
                return Err(format!("the approval request could not be sent ({e}); it did not run"));
            }
        }
        None => tracing::warn!(code, "an approval waits for oxibotctl approvals approve|deny"),
    }
    audit(
        svc,
        turn,
        "approval_requested",
        &format!("code {code}: {}, because {}", request.action, request.why),
    );
    let answer = tokio::time::timeout(Duration::from_secs(u64::from(timeout_secs)), rx).await;
    let waited = started.elapsed().as_millis();
    match answer {
        Ok(Ok(Answer::Once | Answer::Always)) => {
            tracing::info!(code, waited_ms = waited as u64, "approved");
            Ok(())
        }
        Ok(Ok(Answer::Deny)) => Err(format!(
            "the owner denied it ({}); it did not run. Do not try it another way: ask the user what to do instead",
            request.action
        )),
        Ok(Err(_)) | Err(_) => {
            audit(
                svc,
                turn,
                "approval_timeout",
                &format!("code {code}: no answer in {timeout_secs} s; not run"),
            );
            Err(format!(
                "the owner did not answer within {}, so it did not run",
                human_secs(timeout_secs)
            ))
        }
    }
}

fn human_secs(secs: u32) -> String {
    match secs {
        s if s % 60 == 0 && s >= 60 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

/// `/approve CODE [always]` or `/deny CODE` from a chat: only that chat's
/// owner (an allowed user by name, an approved pairing, or a user the
/// admin allowed) answers; anyone else, a wrong or an old code is refused
/// and audited. Returns the reply for the chat.
pub fn answer_from_chat(svc: &Services, chat: &ChatRef, sender: &str, text: &str, approve: bool) -> String {
    let mut words = text.split_whitespace().skip(1);
    let code = words.next().unwrap_or("").trim().to_ascii_uppercase();
    let always = approve && words.next().is_some_and(|w| w.eq_ignore_ascii_case("always"));
    let verb = if approve { "approve" } else { "deny" };
    if code.is_empty() {
        return format!("Write /{verb} CODE with the code of the request.");
    }
    let refuse = |why: &str| {
        svc.audit.about(
            "approval_refused",
            Some(&chat.channel),
            Some(sender),
            &format!("{}: /{verb} {code} from {sender} refused: {why}", chat.session()),
        );
    };
    if !is_owner(svc, &chat.channel, sender) {
        refuse("not the chat's owner");
        return "Only the owner of this chat can answer approval requests.".into();
    }
    let answer = match (approve, always) {
        (false, _) => Answer::Deny,
        (true, false) => Answer::Once,
        (true, true) => Answer::Always,
    };
    decide(
        svc,
        &code,
        Some(chat),
        answer,
        &format!("{} in {}", sender, chat.session()),
    )
    .unwrap_or_else(|e| {
        refuse(&e);
        format!("{e}.")
    })
}

/// An answer from `oxibotctl approvals approve|deny`.
pub fn answer_from_admin(svc: &Services, id: &str, approve: bool, always: bool) -> Result<String, String> {
    let code = id.trim().to_ascii_uppercase();
    let answer = match (approve, always) {
        (false, _) => Answer::Deny,
        (true, false) => Answer::Once,
        (true, true) => Answer::Always,
    };
    decide(svc, &code, None, answer, "oxibotctl").inspect_err(|e| {
        svc.audit
            .log("approval_refused", &format!("oxibotctl approvals {id}: {e}"));
    })
}

fn decide(svc: &Services, code: &str, chat: Option<&ChatRef>, answer: Answer, by: &str) -> Result<String, String> {
    let w = svc.approvals.answer(code, chat, answer)?;
    let channel = w.chat.as_ref().map(|c| c.channel.clone());
    let mut added = Vec::new();
    if answer == Answer::Always {
        for p in w.always.as_ref().map(Vec::as_slice).unwrap_or_default() {
            let text = p.render();
            if let Err(e) = svc.store.add_approval_pattern(&text, by) {
                return Err(format!("the pattern could not be saved ({e}); nothing was approved"));
            }
            added.push(text);
        }
    }
    let what = w.what.lines().next().unwrap_or("").trim_end_matches(':').to_string();
    let (kind, verb) = match answer {
        Answer::Deny => ("approval_denied", "denied"),
        _ => ("approval_granted", "approved"),
    };
    let detail = match added.is_empty() {
        true => format!("session {}: code {code} {verb} by {by}: {what}", w.session),
        false => format!(
            "session {}: code {code} {verb} by {by}: {what}; allowed from now on: {}",
            w.session,
            added.join(", ")
        ),
    };
    svc.audit.about(kind, channel.as_deref(), None, &detail);
    if w.reply.send(answer).is_err() {
        return Err(format!("the request {code} is no longer waiting"));
    }
    Ok(match (answer, added.is_empty()) {
        (Answer::Deny, _) => format!("Denied ({code})."),
        (_, true) => format!("Approved ({code})."),
        (_, false) => format!(
            "Approved ({code}); from now on {} runs without asking.",
            added.join(", ")
        ),
    })
}

/// The chat's owner: named in the channel's `allowedUsers` (not `*`),
/// paired through `oxibotctl pairing approve`, or allowed with
/// `oxibotctl users allow`, and not refused with `users deny`.
fn is_owner(svc: &Services, channel: &str, sender: &str) -> bool {
    if crate::access::is_unverified(sender) {
        return false;
    }
    let sender = crate::access::user_id(channel, sender);
    match svc.store.user_decision(channel, &sender) {
        Ok(Some(allowed)) => return allowed,
        Ok(None) => {}
        Err(_) => return false,
    }
    let config = svc.config();
    let named = config
        .channels
        .get(channel)
        .and_then(|s| crate::access_settings::Access::of(channel, s).ok())
        .is_some_and(|a| {
            a.allowed_users
                .iter()
                .any(|u| u != "*" && crate::access::user_id(channel, u) == sender)
        });
    named || svc.store.is_paired(channel, &sender).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    #[test]
    fn what_the_owner_is_shown_cannot_hide_or_reorder_text() {
        let shown = super::clip("ls\u{202e}txt.exe\u{200b} ```\r\n");
        assert_eq!(shown, "ls\\u{202e}txt.exe\\u{200b} '''\\u{d}\n");
    }
}
