//! Durable state in SQLite (WAL): sessions and their messages, the inbound
//! queue, the outbox and the audit log, with versioned migrations.
//!
//! Each call is one short transaction under a mutex. SQLite in WAL mode with
//! `synchronous=NORMAL` commits in tens of microseconds, so the calls run
//! inline rather than hopping to a blocking thread.

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use rusqlite::{params, Connection, OptionalExtension};

use crate::providers::{ChatMessage, Role, ToolCallRequest, Usage};
use oxibot_proto::messages::AttachmentKind;

/// Append-only list of migrations; `PRAGMA user_version` records how many ran.
const MIGRATIONS: &[&str] = &[
    // 1: the initial schema.
    "CREATE TABLE sessions (
        id TEXT PRIMARY KEY,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        prompt_tokens INTEGER NOT NULL DEFAULT 0,
        completion_tokens INTEGER NOT NULL DEFAULT 0
     );
     CREATE TABLE messages (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        session_id TEXT NOT NULL REFERENCES sessions(id),
        role TEXT NOT NULL,
        content TEXT NOT NULL,
        tool_calls TEXT,
        tool_call_id TEXT,
        created_at INTEGER NOT NULL
     );
     CREATE INDEX messages_by_session ON messages(session_id, id);
     CREATE TABLE inbound (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        channel TEXT NOT NULL,
        platform_id TEXT NOT NULL,
        chat_id TEXT NOT NULL,
        sender TEXT NOT NULL,
        text TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'pending',
        created_at INTEGER NOT NULL,
        UNIQUE(channel, platform_id)
     );
     CREATE TABLE outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        channel TEXT NOT NULL,
        chat_id TEXT NOT NULL,
        text TEXT NOT NULL,
        reply_to TEXT,
        status TEXT NOT NULL DEFAULT 'pending',
        attempts INTEGER NOT NULL DEFAULT 0,
        last_error TEXT,
        created_at INTEGER NOT NULL
     );
     CREATE TABLE audit (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        ts INTEGER NOT NULL,
        kind TEXT NOT NULL,
        detail TEXT NOT NULL
     );",
    // 2: pairing codes for dmPolicy "pairing".
    "CREATE TABLE pairings (
        code TEXT PRIMARY KEY,
        channel TEXT NOT NULL,
        sender TEXT NOT NULL,
        chat_id TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'pending',
        created_at INTEGER NOT NULL
     );
     CREATE INDEX pairings_by_sender ON pairings(channel, sender);",
    // 3: files that came with inbound messages, kept until the turn used them.
    "CREATE TABLE inbound_files (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        inbound_id INTEGER NOT NULL REFERENCES inbound(id),
        kind TEXT NOT NULL,
        name TEXT NOT NULL,
        mime TEXT NOT NULL,
        data BLOB NOT NULL
     );
     CREATE INDEX inbound_files_by_inbound ON inbound_files(inbound_id);",
    // 4: how many parts of a split reply the platform already took, so a
    // retry does not send them again.
    "ALTER TABLE outbox ADD COLUMN parts_sent INTEGER NOT NULL DEFAULT 0;",
    // 5: who an audit entry is about, for `oxibotctl audit --channel/--user`,
    // and the admin's own per-user decisions (`oxibotctl users allow|deny`).
    "ALTER TABLE audit ADD COLUMN channel TEXT;
     ALTER TABLE audit ADD COLUMN user TEXT;
     CREATE INDEX audit_by_ts ON audit(ts);
     CREATE TABLE user_decisions (
        channel TEXT NOT NULL,
        sender TEXT NOT NULL,
        allowed INTEGER NOT NULL,
        decided_at INTEGER NOT NULL,
        PRIMARY KEY (channel, sender)
     );",
    // 6: the queue depths (status, the health endpoint) count pending rows
    // without reading the whole history.
    "CREATE INDEX inbound_pending ON inbound(status) WHERE status = 'pending';
     CREATE INDEX outbox_pending ON outbox(status) WHERE status = 'pending';",
    // 7: scheduled jobs and their claimed runs; an outbox message may name
    // what produced it (a cron run, a heartbeat tick), at most once each;
    // a session's summary of its consolidated turns.
    "CREATE TABLE cron_jobs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL,
        channel TEXT NOT NULL,
        chat_id TEXT NOT NULL,
        schedule TEXT NOT NULL,
        message TEXT NOT NULL,
        enabled INTEGER NOT NULL DEFAULT 1,
        anchor INTEGER NOT NULL,
        next_run_at INTEGER,
        last_run_at INTEGER,
        last_status TEXT,
        created_at INTEGER NOT NULL,
        source TEXT UNIQUE
     );
     CREATE INDEX cron_jobs_due ON cron_jobs(next_run_at) WHERE enabled = 1;
     CREATE TABLE cron_runs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        job_id INTEGER NOT NULL,
        due_at INTEGER NOT NULL,
        status TEXT NOT NULL DEFAULT 'running',
        started_at INTEGER NOT NULL,
        finished_at INTEGER,
        UNIQUE(job_id, due_at)
     );
     ALTER TABLE outbox ADD COLUMN origin TEXT;
     CREATE UNIQUE INDEX outbox_by_origin ON outbox(origin) WHERE origin IS NOT NULL;
     CREATE TABLE subagents (
        session_id TEXT PRIMARY KEY,
        parent TEXT NOT NULL,
        channel TEXT,
        chat_id TEXT,
        label TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'running',
        started_at INTEGER NOT NULL
     );
     CREATE TABLE session_summaries (
        session_id TEXT PRIMARY KEY,
        summary TEXT NOT NULL,
        upto_id INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
     );",
    // 8: the accepted version of each prompt file (store/prompt.rs), and
    // flags the broker keeps for itself.
    "CREATE TABLE prompt_files (
        path TEXT PRIMARY KEY,
        accepted_text TEXT,
        accepted_sha TEXT,
        accepted_at INTEGER,
        pending_text TEXT,
        pending_sha TEXT,
        pending_at INTEGER,
        notified_sha TEXT
     );
     CREATE TABLE broker_flags (
        name TEXT PRIMARY KEY,
        value TEXT NOT NULL
     );",
    // 9: the owner's state (store/owner.rs): patterns "approve always"
    // added, and what each chat spent per day (tokens, cost) and per hour
    // (tool calls), with the once-per-window flags; buttons under an
    // outbox message (an approval request's).
    "CREATE TABLE approval_patterns (
        pattern TEXT PRIMARY KEY,
        added_at INTEGER NOT NULL,
        added_by TEXT NOT NULL
     );
     CREATE TABLE budget_spend (
        key TEXT NOT NULL,
        window TEXT NOT NULL,
        tokens INTEGER NOT NULL DEFAULT 0,
        cost_micro INTEGER NOT NULL DEFAULT 0,
        tool_calls INTEGER NOT NULL DEFAULT 0,
        stopped INTEGER NOT NULL DEFAULT 0,
        warned INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (key, window)
     );
     ALTER TABLE outbox ADD COLUMN buttons TEXT;",
    // 10: the platform message a reply replaces (the draft its streamed
    // answer was shown in), so that a retry edits it again.
    "ALTER TABLE outbox ADD COLUMN edit_message TEXT;",
];

fn kind_name(kind: AttachmentKind) -> &'static str {
    match kind {
        AttachmentKind::Image => "image",
        AttachmentKind::Audio => "audio",
        AttachmentKind::Document => "document",
    }
}

fn kind_from_name(name: &str) -> AttachmentKind {
    match name {
        "image" => AttachmentKind::Image,
        "audio" => AttachmentKind::Audio,
        _ => AttachmentKind::Document,
    }
}

#[derive(Clone)]
pub struct Store {
    conn: Arc<Mutex<Connection>>,
}

#[derive(Debug, thiserror::Error)]
#[error("state database error: {0}")]
pub struct StoreError(#[from] rusqlite::Error);

/// Columns role, content, tool_calls, tool_call_id (from `first`) → a message.
fn message_row(r: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<ChatMessage> {
    let role: String = r.get(first)?;
    let calls: Option<String> = r.get(first + 2)?;
    Ok(ChatMessage {
        role: Role::parse(&role).unwrap_or(Role::User),
        content: r.get(first + 1)?,
        tool_calls: calls
            .and_then(|c| serde_json::from_str::<Vec<ToolCallRequest>>(&c).ok())
            .unwrap_or_default(),
        tool_call_id: r.get(first + 3)?,
        images: Vec::new(),
    })
}

use oxibot_runtime::clock::unix_now as now;

impl Store {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open(path)?;
        Self::init(conn)
    }

    pub fn open_in_memory() -> Result<Self, StoreError> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(mut conn: Connection) -> Result<Self, StoreError> {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", true)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        // Every statement is prepared once and reused: parsing SQL was a
        // measurable share of a message's cost.
        conn.set_prepared_statement_cache_capacity(128);
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version.max(0) as usize) {
            let tx = conn.transaction()?;
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", (i + 1) as i64)?;
            tx.commit()?;
        }
        if version == 0 {
            // A new install: what the admin put in the workspace before the
            // first start is accepted then (an upgrade accepts nothing by
            // itself: `oxibotctl prompt accept --all`).
            conn.execute(
                "INSERT OR IGNORE INTO broker_flags (name, value) VALUES (?1, '1')",
                params![prompt::FIRST_START_FLAG],
            )?;
        }
        Ok(Store {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite inconsistent
        // (transactions roll back), so a poisoned lock is still usable.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The last `limit` messages of a session, oldest first, starting at a
    /// user message so that no tool result is cut from its call.
    pub fn history(&self, session: &str, limit: usize) -> Result<Vec<ChatMessage>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT role, content, tool_calls, tool_call_id FROM messages
             WHERE session_id = ?1 ORDER BY id DESC LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![session, limit as i64], |r| message_row(r, 0))?;
        let mut msgs: Vec<ChatMessage> = rows.collect::<Result<_, _>>()?;
        msgs.reverse();
        let start = msgs.iter().position(|m| m.role == Role::User).unwrap_or(msgs.len());
        Ok(msgs.split_off(start))
    }

    /// Appends messages (an assistant turn with its tool results, say) in one
    /// transaction: either all of them are stored or none.
    pub fn append(&self, session: &str, msgs: &[ChatMessage], usage: &Usage) -> Result<(), StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let t = now();
        tx.prepare_cached(
            "INSERT INTO sessions (id, created_at, updated_at, prompt_tokens, completion_tokens)
             VALUES (?1, ?2, ?2, ?3, ?4)
             ON CONFLICT(id) DO UPDATE SET updated_at = ?2,
               prompt_tokens = prompt_tokens + ?3, completion_tokens = completion_tokens + ?4",
        )?
        .execute(params![
            session,
            t,
            usage.prompt_tokens as i64,
            usage.completion_tokens as i64
        ])?;
        for m in msgs {
            let calls = if m.tool_calls.is_empty() {
                None
            } else {
                serde_json::to_string(&m.tool_calls).ok()
            };
            tx.prepare_cached(
                "INSERT INTO messages (session_id, role, content, tool_calls, tool_call_id, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![session, m.role.as_str(), m.content, calls, m.tool_call_id, t])?;
        }
        tx.commit()?;
        Ok(())
    }

    pub fn clear_session(&self, session: &str) -> Result<(), StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        tx.prepare_cached("DELETE FROM messages WHERE session_id = ?1")?
            .execute(params![session])?;
        tx.prepare_cached("DELETE FROM session_summaries WHERE session_id = ?1")?
            .execute(params![session])?;
        tx.commit()?;
        Ok(())
    }

    pub fn audit(&self, kind: &str, detail: &str) {
        self.audit_about(kind, None, None, detail);
    }

    /// An audit entry about a channel and (when known) one of its users, so
    /// that `oxibotctl audit --channel/--user` finds it.
    pub fn audit_about(&self, kind: &str, channel: Option<&str>, user: Option<&str>, detail: &str) {
        tracing::warn!(target: "audit", kind, channel, user, detail);
        let written = self
            .lock()
            .prepare_cached("INSERT INTO audit (ts, kind, channel, user, detail) VALUES (?1, ?2, ?3, ?4, ?5)")
            .and_then(|mut stmt| stmt.execute(params![now(), kind, channel, user, detail]));
        if let Err(e) = written {
            tracing::error!("cannot write the audit log: {e}");
        }
    }

    /// (inbound pending, outbox pending)
    pub fn queue_depths(&self) -> Result<(u64, u64), StoreError> {
        let conn = self.lock();
        let inbound: i64 = conn
            .prepare_cached("SELECT COUNT(*) FROM inbound WHERE status = 'pending'")?
            .query_row([], |r| r.get(0))?;
        let outbox: i64 = conn
            .prepare_cached("SELECT COUNT(*) FROM outbox WHERE status = 'pending'")?
            .query_row([], |r| r.get(0))?;
        Ok((inbound as u64, outbox as u64))
    }

    pub fn session_usage(&self, session: &str) -> Result<Option<Usage>, StoreError> {
        Ok(self
            .lock()
            .prepare_cached("SELECT prompt_tokens, completion_tokens FROM sessions WHERE id = ?1")?
            .query_row(params![session], |r| {
                Ok(Usage {
                    prompt_tokens: r.get::<_, i64>(0)? as u64,
                    completion_tokens: r.get::<_, i64>(1)? as u64,
                })
            })
            .optional()?)
    }
}

mod admin;
mod cron;
mod memory;
mod owner;
mod pairing;
mod prompt;
mod queues;

pub use cron::{ChatFull, Claim, CronJob, NewJob};
pub use memory::{Interrupted, Summary};
pub use owner::Spent;
pub use pairing::Pairing;
pub use prompt::{PromptChange, PromptRow, ABSENT};
pub use queues::{Inbound, Outgoing};
#[cfg(test)]
mod tests;
