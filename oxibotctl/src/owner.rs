//! `oxibotctl approvals` and `oxibotctl budgets`: the owner's gate and
//! spending, as the broker holds them. What a request shows is the
//! model's text: printed through `shown` (no terminal escapes).

use oxibot_proto::messages::{CtlReply, CtlRequest};
use serde_json::json;

use crate::client::{self, ask, CtlConn};
use crate::show::{shown, shown_line};

pub async fn approvals_list(conn: &mut CtlConn, json: bool) -> Result<(), String> {
    let (waiting, learned) = match ask(conn, CtlRequest::ApprovalList).await? {
        CtlReply::Approvals { waiting, learned } => (waiting, learned),
        other => return Err(client::unexpected(&other)),
    };
    if json {
        let items: Vec<_> = waiting
            .iter()
            .map(|a| {
                json!({"id": a.id, "session": a.session, "chat": a.chat, "what": a.what, "why": a.why,
                       "ageSecs": a.age_secs, "timeoutSecs": a.timeout_secs})
            })
            .collect();
        crate::show::print_json(&json!({"waiting": items, "learned": learned}));
        return Ok(());
    }
    if waiting.is_empty() {
        println!("no approval request is waiting");
    }
    for a in &waiting {
        let chat = a.chat.as_deref().unwrap_or("no chat: answer here");
        println!(
            "{}  {}  ({chat}, asked {} s ago, no answer in {} s means no)",
            a.id,
            shown_line(&a.session),
            a.age_secs,
            a.timeout_secs.saturating_sub(a.age_secs)
        );
        for line in shown(&a.what).lines() {
            println!("    {line}");
        }
        println!("    asked because {}", shown_line(&a.why));
    }
    if !learned.is_empty() {
        println!("allowed with \"approve always\" (oxibotctl approvals forget PATTERN removes one):");
        for p in &learned {
            println!("  {}", shown_line(p));
        }
    }
    Ok(())
}

pub async fn budgets_list(conn: &mut CtlConn, json: bool) -> Result<(), String> {
    let list = match ask(conn, CtlRequest::BudgetList).await? {
        CtlReply::Budgets(l) => l,
        other => return Err(client::unexpected(&other)),
    };
    if json {
        let items: Vec<_> = list
            .iter()
            .map(|b| {
                json!({"chat": b.chat, "day": b.day, "tokensToday": b.tokens_today, "tokensLimit": b.tokens_limit,
                       "costTodayUsd": b.cost_today_usd, "costLimitUsd": b.cost_limit_usd,
                       "toolCallsThisHour": b.tool_calls_this_hour, "toolCallsLimit": b.tool_calls_limit,
                       "runningTurns": b.running_turns, "concurrentLimit": b.concurrent_limit,
                       "dayResetsAt": b.day_resets_at})
            })
            .collect();
        crate::show::print_json(&json!({"budgets": items}));
        return Ok(());
    }
    if list.is_empty() {
        println!("nothing spent today by any chat with a budget (budgets in config.json)");
        return Ok(());
    }
    let of = |spent: String, limit: Option<String>| match limit {
        Some(l) => format!("{spent} of {l}"),
        None => format!("{spent} (no limit)"),
    };
    println!(
        "day {} (resets {})",
        list[0].day,
        oxibot_runtime::clock::utc(list[0].day_resets_at)
    );
    for b in &list {
        println!("{}", shown_line(&b.chat));
        println!(
            "  tokens today:     {}",
            of(b.tokens_today.to_string(), b.tokens_limit.map(|l| l.to_string()))
        );
        println!(
            "  cost today:       {}",
            of(
                format!("${:.4}", b.cost_today_usd),
                b.cost_limit_usd.map(|l| format!("${l:.2}"))
            )
        );
        println!(
            "  tool calls, hour: {}",
            of(
                b.tool_calls_this_hour.to_string(),
                b.tool_calls_limit.map(|l| l.to_string())
            )
        );
        println!(
            "  turns running:    {}",
            of(b.running_turns.to_string(), b.concurrent_limit.map(|l| l.to_string()))
        );
    }
    Ok(())
}
