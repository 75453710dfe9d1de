//! The commands answered by the running broker: channels, sessions, the
//! audit log, per-user decisions and pairing.

use std::time::Duration;

use oxibot_proto::messages::{AuditEntry, AuditQuery, CtlReply, CtlRequest, MAX_LISTED};
use serde_json::json;

use crate::cli::AuditFilter;
use crate::client::{self, ask, done, CtlConn};
use crate::show::{emit, shown, shown_line, utc};

pub async fn channels_list(conn: &mut CtlConn, json: bool) -> Result<Vec<String>, String> {
    let s = match ask(conn, CtlRequest::Status).await? {
        CtlReply::Status(s) => s,
        other => return Err(client::unexpected(&other)),
    };
    let problems: Vec<String> = s
        .channels
        .iter()
        .filter(|c| !c.connected)
        .map(|c| c.name.clone())
        .collect();
    if json {
        crate::show::print_json(&json!({"channels": crate::status::channels_json(&s)}));
    } else if s.channels.is_empty() {
        println!("no channel is enabled (channels.NAME.enabled in the configuration)");
    } else {
        crate::status::print_channels(&s);
    }
    Ok(problems)
}

pub async fn simple(conn: &mut CtlConn, request: CtlRequest, json: bool) -> Result<(), String> {
    let message = done(conn, request).await?;
    emit(json, json!({"ok": true, "message": message}), || shown(&message));
    Ok(())
}

pub async fn sessions_list(conn: &mut CtlConn, json: bool) -> Result<(), String> {
    let list = match ask(conn, CtlRequest::SessionList).await? {
        CtlReply::Sessions(l) => l,
        other => return Err(client::unexpected(&other)),
    };
    if json {
        let items: Vec<_> = list
            .iter()
            .map(|s| {
                json!({"session": s.session, "messages": s.messages, "updatedAt": s.updated_at,
                            "promptTokens": s.prompt_tokens, "completionTokens": s.completion_tokens})
            })
            .collect();
        crate::show::print_json(&json!({"sessions": items}));
    } else if list.is_empty() {
        println!("no stored conversation");
    } else {
        for s in list {
            println!(
                "{:<40} {:>6} messages  last {}  tokens {} in / {} out",
                shown_line(&s.session),
                s.messages,
                utc(s.updated_at),
                s.prompt_tokens,
                s.completion_tokens
            );
        }
    }
    Ok(())
}

pub async fn sessions_show(conn: &mut CtlConn, session: String, limit: u32, json: bool) -> Result<(), String> {
    let limit = limit.clamp(1, MAX_LISTED);
    let list = match ask(conn, CtlRequest::SessionShow { session, limit }).await? {
        CtlReply::History(l) => l,
        other => return Err(client::unexpected(&other)),
    };
    if json {
        let items: Vec<_> = list
            .iter()
            .map(|m| json!({"role": m.role, "text": m.text, "at": m.at}))
            .collect();
        crate::show::print_json(&json!({"messages": items}));
    } else {
        for m in list {
            println!("[{}] {}:\n{}\n", utc(m.at), m.role, shown(&m.text));
        }
    }
    Ok(())
}

fn query(filter: &AuditFilter, after_id: u64, limit: u32) -> Result<AuditQuery, String> {
    Ok(AuditQuery {
        after_id,
        limit: limit.clamp(1, MAX_LISTED),
        kinds: filter.kinds.clone(),
        channel: filter.channel.clone(),
        user: filter.user.clone(),
        since: filter.since.as_deref().map(crate::show::since).transpose()?,
    })
}

async fn audit_page(conn: &mut CtlConn, q: AuditQuery) -> Result<Vec<AuditEntry>, String> {
    match ask(conn, CtlRequest::Audit(q)).await? {
        CtlReply::Audit(list) => Ok(list),
        other => Err(client::unexpected(&other)),
    }
}

fn print_entry(e: &AuditEntry, json: bool) {
    if json {
        crate::show::print_json(
            &json!({"id": e.id, "at": e.at, "kind": e.kind, "channel": e.channel, "user": e.user, "detail": e.detail}),
        );
    } else {
        println!(
            "{}  {:<20} {:<10} {:<16} {}",
            utc(e.at),
            shown_line(&e.kind),
            shown_line(e.channel.as_deref().unwrap_or("-")),
            shown_line(e.user.as_deref().unwrap_or("-")),
            shown_line(&e.detail)
        );
    }
}

/// The newest `lines` entries; with `follow`, then every new one as it is
/// written (one JSON object per line with --json).
pub async fn audit(
    conn: &mut CtlConn,
    filter: &AuditFilter,
    lines: u32,
    follow: bool,
    json: bool,
) -> Result<(), String> {
    let first = if lines == 0 {
        Vec::new()
    } else {
        audit_page(conn, query(filter, 0, lines)?).await?
    };
    if json && !follow {
        let items: Vec<_> = first
            .iter()
            .map(|e| json!({"id": e.id, "at": e.at, "kind": e.kind, "channel": e.channel, "user": e.user, "detail": e.detail}))
            .collect();
        crate::show::print_json(&json!({"entries": items}));
        return Ok(());
    }
    first.iter().for_each(|e| print_entry(e, json));
    if !follow {
        return Ok(());
    }
    // Follow every new entry by id (unfiltered, so that none is skipped
    // between two polls) and filter here.
    let q = query(filter, 0, 1)?;
    let newest = AuditQuery {
        limit: 1,
        ..AuditQuery::default()
    };
    let mut last = audit_page(conn, newest).await?.last().map_or(0, |e| e.id);
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let next = AuditQuery {
            after_id: last,
            limit: MAX_LISTED,
            ..AuditQuery::default()
        };
        let page = audit_page(conn, next).await?;
        for e in page.iter().filter(|e| matches(&q, e)) {
            print_entry(e, json);
        }
        if let Some(e) = page.last() {
            last = e.id;
        }
    }
}

/// The server's filter, applied here (see `audit`).
fn matches(q: &AuditQuery, e: &AuditEntry) -> bool {
    (q.kinds.is_empty() || q.kinds.contains(&e.kind))
        && q.channel.as_ref().is_none_or(|c| e.channel.as_ref() == Some(c))
        && q.user.as_ref().is_none_or(|u| e.user.as_ref() == Some(u))
        && q.since.is_none_or(|t| e.at >= t)
}

pub async fn pairing_list(conn: &mut CtlConn, json: bool) -> Result<(), String> {
    let list = match ask(conn, CtlRequest::PairingList).await? {
        CtlReply::Pairings(l) => l,
        other => return Err(client::unexpected(&other)),
    };
    if json {
        let items: Vec<_> = list
            .iter()
            .map(|p| json!({"code": p.code, "channel": p.channel, "sender": p.sender, "status": p.status, "ageSecs": p.age_secs}))
            .collect();
        crate::show::print_json(&json!({"pairings": items}));
    } else if list.is_empty() {
        println!("no pairing requests");
    } else {
        for p in list {
            println!(
                "{}  {:<10} {:<24} {:<9} {}s ago",
                shown_line(&p.code),
                shown_line(&p.channel),
                shown_line(&p.sender),
                shown_line(&p.status),
                p.age_secs
            );
        }
    }
    Ok(())
}
