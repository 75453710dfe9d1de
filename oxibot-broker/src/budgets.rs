//! Budgets: how much each chat (`<channel>:<chat id>`) may spend, checked
//! *before* each model call and each tool call, so the call that would go
//! past a limit never starts. Spending is counted from the usage the
//! provider reports, in SQLite (a restart does not reset it), by day in
//! `cron.timezone` (tokens, cost) and by clock hour (tool calls).
//!
//! The chat is told once per window, in our words (the model is not called
//! to write them), and once at 80 % of a daily budget. Scheduled runs, the
//! heartbeat and background tasks count against the chat they belong to;
//! an `oxibotctl agent` session with no chat has no budget.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use jiff::tz::TimeZone;
use oxibot_config::owner::BudgetLimits;
use oxibot_proto::messages::BudgetInfo;

use crate::providers::Usage;
use crate::services::Services;
use crate::turn::{ChatRef, Turn};

/// The turns running (or waiting for their chat) now, per chat.
#[derive(Default)]
pub struct Budgets {
    running: Mutex<HashMap<String, u32>>,
}

/// Why a call did not start: the chat's words, or None when the chat was
/// already told in this window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stopped {
    pub message: Option<String>,
}

/// A running turn's place among its chat's; given back when dropped.
pub struct Slot<'a> {
    budgets: &'a Budgets,
    key: String,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut running = self.budgets.lock();
        if let Some(n) = running.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                running.remove(&self.key);
            }
        }
    }
}

impl Budgets {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, u32>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn running(&self, key: &str) -> u32 {
        self.lock().get(key).copied().unwrap_or(0)
    }
}

/// The chat a turn spends for, and its limits; None: no budget applies.
fn scope(svc: &Services, turn: &Turn) -> Option<(ChatRef, BudgetLimits)> {
    let config = svc.config();
    if !config.budgets.any() {
        return None;
    }
    let chat = turn.origin.clone()?;
    let limits = config.budgets.for_channel(&chat.channel);
    Some((chat, limits))
}

/// Takes a place for a turn, or refuses it when its chat already has
/// `concurrentTurns` started or waiting.
pub fn enter<'a>(svc: &'a Services, turn: &Turn) -> Result<Option<Slot<'a>>, Stopped> {
    let Some((chat, limits)) = scope(svc, turn) else {
        return Ok(None);
    };
    let key = chat.session();
    let mut running = svc.budgets.lock();
    let now = running.get(&key).copied().unwrap_or(0);
    if let Some(limit) = limits.concurrent_turns {
        if now >= limit {
            drop(running);
            audit(
                svc,
                &chat,
                &format!("turn refused: {now} of its {limit} concurrent turns run"),
            );
            return Err(Stopped {
                message: Some(format!(
                    "I'm still working on {now} earlier request(s) for this chat, the most at once \
                     (budgets.concurrentTurns = {limit}). Send this again when I've answered."
                )),
            });
        }
    }
    running.insert(key.clone(), now + 1);
    Ok(Some(Slot {
        budgets: &svc.budgets,
        key,
    }))
}

/// Today and this hour in the configured time zone, and when today ends.
struct Clock {
    day: String,
    hour: String,
    zone_name: String,
    day_ends: i64,
    hour_ends: i64,
}

fn clock(svc: &Services) -> Clock {
    let zone_name = svc.config().cron.timezone.clone();
    let zone = TimeZone::get(&zone_name).unwrap_or(TimeZone::UTC);
    let now = jiff::Timestamp::now().to_zoned(zone.clone());
    let day_ends = now
        .date()
        .tomorrow()
        .ok()
        .and_then(|d| d.to_zoned(zone).ok())
        .map(|z| z.timestamp().as_second())
        .unwrap_or_else(|| now.timestamp().as_second() + 86_400);
    let secs = now.timestamp().as_second();
    Clock {
        day: format!("day:{}", now.date()),
        hour: format!("hour:{}T{:02}", now.date(), now.hour()),
        zone_name,
        day_ends,
        hour_ends: secs - secs.rem_euclid(3600) + 3600,
    }
}

fn until(ends: i64) -> String {
    let left = (ends - oxibot_runtime::clock::unix_now()).max(0);
    match (left / 3600, left % 3600 / 60) {
        (0, m) => format!("{} min", m.max(1)),
        (h, m) => format!("{h} h {m} min"),
    }
}

fn audit(svc: &Services, chat: &ChatRef, detail: &str) {
    svc.audit.about(
        "budget",
        Some(&chat.channel),
        None,
        &format!("{}: {detail}", chat.session()),
    );
}

/// Stops the turn (once told per window) when a daily budget is spent.
pub fn before_model_call(svc: &Services, turn: &Turn) -> Result<(), Stopped> {
    let Some((chat, limits)) = scope(svc, turn) else {
        return Ok(());
    };
    let key = chat.session();
    let c = clock(svc);
    let spent = match svc.store.spent(&key, &c.day) {
        Ok(s) => s,
        Err(e) => {
            // Not knowing what was spent is not permission to spend.
            tracing::error!("cannot read the budget of {key}: {e}");
            return Err(Stopped {
                message: Some(format!(
                    "I cannot check this chat's budget right now ({e}); nothing was spent."
                )),
            });
        }
    };
    let over = match (limits.tokens_per_day, limits.cost_per_day_usd) {
        (Some(limit), _) if spent.tokens >= limit => Some(format!(
            "This chat has used {} of its {} tokens for today (budgets.tokensPerDay)",
            spent.tokens, limit
        )),
        (_, Some(limit)) if spent.cost_usd() >= limit => Some(format!(
            "This chat has spent ${:.4} of its ${limit:.2} for today (budgets.costPerDayUsd)",
            spent.cost_usd()
        )),
        _ => None,
    };
    let Some(over) = over else {
        return Ok(());
    };
    stop(
        svc,
        &chat,
        &c.day,
        &format!(
            "{over}. I'll answer again at midnight ({}), in {}.",
            c.zone_name,
            until(c.day_ends)
        ),
    )
}

/// Records what the provider reported for one call, and tells the chat
/// once when it crosses 80 % of a daily budget.
pub async fn after_model_call(svc: &Arc<Services>, turn: &Turn, usage: &Usage, model: &str) {
    let Some((chat, limits)) = scope(svc, turn) else {
        return;
    };
    let key = chat.session();
    let c = clock(svc);
    let config = svc.config();
    let price = config.budgets.prices.get(model).or_else(|| {
        config
            .budgets
            .prices
            .iter()
            .find(|(name, _)| name.rsplit('/').next() == Some(model))
            .map(|(_, p)| p)
    });
    // Tokens × USD per million tokens = micro-dollars.
    let cost_micro = price.map_or(0.0, |p| {
        usage.prompt_tokens as f64 * p.input_per_m_tok + usage.completion_tokens as f64 * p.output_per_m_tok
    });
    let tokens = usage.prompt_tokens + usage.completion_tokens;
    let (before, after) = match svc.store.add_spent(&key, &c.day, tokens, cost_micro.round() as i64) {
        Ok(pair) => pair,
        Err(e) => {
            tracing::error!("cannot record the usage of {key}: {e}");
            return;
        }
    };
    let crossed = |limit: f64, b: f64, a: f64| b < 0.8 * limit && a >= 0.8 * limit;
    let warn = match (limits.tokens_per_day, limits.cost_per_day_usd) {
        (Some(l), _) if crossed(l as f64, before.tokens as f64, after.tokens as f64) => Some(format!(
            "Heads-up: this chat has used {} of its {} tokens for today (80 %).",
            after.tokens, l
        )),
        (_, Some(l)) if crossed(l, before.cost_usd(), after.cost_usd()) => Some(format!(
            "Heads-up: this chat has spent ${:.4} of its ${l:.2} for today (80 %).",
            after.cost_usd()
        )),
        _ => None,
    };
    if let Some(warn) = warn {
        if svc.store.mark_budget_flag(&key, &c.day, "warned").unwrap_or(false) {
            audit(svc, &chat, &format!("80 % of a daily budget: {warn}"));
            let text = format!(
                "{warn} It resets at midnight ({}), in {}.",
                c.zone_name,
                until(c.day_ends)
            );
            if let Err(e) = crate::message::queue_and_deliver(svc, &chat, &text, None).await {
                tracing::error!("cannot queue the budget warning: {e}");
            }
        }
    }
}

/// Counts one tool call, or stops the turn when the hour's are spent.
pub fn before_tool_call(svc: &Services, turn: &Turn) -> Result<(), Stopped> {
    let Some((chat, limits)) = scope(svc, turn) else {
        return Ok(());
    };
    let key = chat.session();
    let c = clock(svc);
    let Some(limit) = limits.tool_calls_per_hour else {
        return Ok(());
    };
    match svc.store.count_tool_call(&key, &c.hour, limit) {
        Ok(true) => Ok(()),
        Ok(false) => stop(
            svc,
            &chat,
            &c.hour,
            &format!(
                "This chat has made its {limit} tool calls for this hour (budgets.toolCallsPerHour), so I stopped. \
             I can use tools again in {}.",
                until(c.hour_ends)
            ),
        ),
        Err(e) => {
            tracing::error!("cannot count the tool calls of {key}: {e}");
            Err(Stopped {
                message: Some(format!(
                    "I cannot check this chat's budget right now ({e}); the tool did not run."
                )),
            })
        }
    }
}

/// A stop: the message once per window, audited every time.
fn stop(svc: &Services, chat: &ChatRef, window: &str, message: &str) -> Result<(), Stopped> {
    let first = svc
        .store
        .mark_budget_flag(&chat.session(), window, "stopped")
        .unwrap_or(true);
    audit(
        svc,
        chat,
        &format!(
            "call not started: {message}{}",
            if first { "" } else { " (already told)" }
        ),
    );
    Err(Stopped {
        message: first.then(|| message.to_string()),
    })
}

/// `oxibotctl budgets`: each chat with spending today or this hour, or a
/// turn running, against its limits.
pub fn report(svc: &Services) -> Result<Vec<BudgetInfo>, String> {
    let c = clock(svc);
    let config = svc.config();
    let rows = svc.store.spending(&c.day, &c.hour).map_err(|e| e.to_string())?;
    let mut keys: Vec<String> = rows.keys().cloned().collect();
    keys.extend(svc.budgets.lock().keys().cloned());
    keys.sort();
    keys.dedup();
    Ok(keys
        .into_iter()
        .take(oxibot_proto::messages::MAX_LISTED as usize)
        .map(|key| {
            let channel = key.split_once(':').map_or(key.as_str(), |(c, _)| c);
            let limits = config.budgets.for_channel(channel);
            let (spent, calls) = rows.get(&key).cloned().unwrap_or_default();
            BudgetInfo {
                running_turns: svc.budgets.running(&key),
                chat: key,
                day: c.day.trim_start_matches("day:").to_string(),
                tokens_today: spent.tokens,
                tokens_limit: limits.tokens_per_day,
                cost_today_usd: spent.cost_usd(),
                cost_limit_usd: limits.cost_per_day_usd,
                tool_calls_this_hour: calls,
                tool_calls_limit: limits.tool_calls_per_hour,
                concurrent_limit: limits.concurrent_turns,
                day_resets_at: c.day_ends,
            }
        })
        .collect())
}

/// For `oxibotctl status`: each chat with a limit, what it spent (at most
/// 20 lines; `oxibotctl budgets` has them all).
pub fn status_notes(svc: &Services) -> Vec<String> {
    if !svc.config().budgets.any() {
        return Vec::new();
    }
    let Ok(list) = report(svc) else {
        return Vec::new();
    };
    let of = |spent: String, limit: Option<String>, what: &str| limit.map(|l| format!("{spent} of {l} {what}"));
    list.iter()
        .filter_map(|b| {
            let parts: Vec<String> = [
                of(
                    b.tokens_today.to_string(),
                    b.tokens_limit.map(|l| l.to_string()),
                    "tokens today",
                ),
                of(
                    format!("${:.4}", b.cost_today_usd),
                    b.cost_limit_usd.map(|l| format!("${l:.2}")),
                    "today",
                ),
                of(
                    b.tool_calls_this_hour.to_string(),
                    b.tool_calls_limit.map(|l| l.to_string()),
                    "tool calls this hour",
                ),
            ]
            .into_iter()
            .flatten()
            .collect();
            (!parts.is_empty()).then(|| format!("budget of {}: {}", b.chat, parts.join(", ")))
        })
        .take(20)
        .collect()
}

/// `oxibotctl budgets reset CHAT`: today's and this hour's spending go.
pub fn reset(svc: &Services, chat: &str) -> Result<String, String> {
    let removed = svc.store.reset_spending(chat).map_err(|e| e.to_string())?;
    svc.audit.about(
        "budget",
        chat.split_once(':').map(|(c, _)| c),
        None,
        &format!("{chat}: spending reset by oxibotctl ({removed} record(s))"),
    );
    Ok(match removed {
        0 => format!("{chat} had spent nothing; nothing to reset"),
        _ => format!("{chat} starts afresh: its spending for today and this hour is forgotten"),
    })
}
