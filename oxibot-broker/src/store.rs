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
use oxibot_proto::messages::{Attachment, AttachmentKind};

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

/// One pairing request, for `oxibotctl pairing list`.
#[derive(Debug, Clone)]
pub struct Pairing {
    pub code: String,
    pub channel: String,
    pub sender: String,
    pub chat_id: String,
    pub status: String,
    pub created_at: i64,
}

#[derive(Clone)]
pub struct Store {
    conn: Arc<Mutex<Connection>>,
}

#[derive(Debug, thiserror::Error)]
#[error("state database error: {0}")]
pub struct StoreError(#[from] rusqlite::Error);

/// A committed inbound message awaiting its agent turn.
#[derive(Debug, Clone)]
pub struct Inbound {
    pub id: i64,
    pub channel: String,
    pub platform_id: String,
    pub chat_id: String,
    pub sender: String,
    pub text: String,
    pub files: Vec<Attachment>,
}

#[derive(Debug, Clone)]
pub struct Outgoing {
    pub id: i64,
    pub channel: String,
    pub chat_id: String,
    pub text: String,
    pub reply_to: Option<String>,
    /// Parts of the split text the platform already took.
    pub parts_sent: u32,
}

/// Columns code, channel, sender, chat_id, status, created_at → Pairing.
fn pairing_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Pairing> {
    Ok(Pairing {
        code: r.get(0)?,
        channel: r.get(1)?,
        sender: r.get(2)?,
        chat_id: r.get(3)?,
        status: r.get(4)?,
        created_at: r.get(5)?,
    })
}

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

    /// Commits an inbound message. Returns None when this platform id was
    /// already committed (a redelivery after a crash before the ack).
    pub fn commit_inbound(
        &self,
        channel: &str,
        platform_id: &str,
        chat_id: &str,
        sender: &str,
        text: &str,
        files: Vec<Attachment>,
    ) -> Result<Option<Inbound>, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let n = tx
            .prepare_cached(
                "INSERT OR IGNORE INTO inbound (channel, platform_id, chat_id, sender, text, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![channel, platform_id, chat_id, sender, text, now()])?;
        if n == 0 {
            return Ok(None);
        }
        let id = tx.last_insert_rowid();
        for f in &files {
            tx.prepare_cached(
                "INSERT INTO inbound_files (inbound_id, kind, name, mime, data) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![id, kind_name(f.kind), f.name, f.mime, f.data])?;
        }
        tx.commit()?;
        Ok(Some(Inbound {
            id,
            channel: channel.into(),
            platform_id: platform_id.into(),
            chat_id: chat_id.into(),
            sender: sender.into(),
            text: text.into(),
            files,
        }))
    }

    /// The newest committed message of each of the channel's most recent
    /// chats: where a daemon without a platform cursor resumes.
    pub fn resume_points(&self, channel: &str, max_chats: usize) -> Result<Vec<(String, String)>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT chat_id, platform_id FROM inbound WHERE id IN
               (SELECT MAX(id) FROM inbound WHERE channel = ?1 GROUP BY chat_id)
             ORDER BY id DESC LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![channel, max_chats as i64], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn pending_inbound(&self) -> Result<Vec<Inbound>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT id, channel, platform_id, chat_id, sender, text FROM inbound WHERE status = 'pending' ORDER BY id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(Inbound {
                id: r.get(0)?,
                channel: r.get(1)?,
                platform_id: r.get(2)?,
                chat_id: r.get(3)?,
                sender: r.get(4)?,
                text: r.get(5)?,
                files: Vec::new(),
            })
        })?;
        let mut pending: Vec<Inbound> = rows.collect::<Result<_, _>>()?;
        let mut files =
            conn.prepare_cached("SELECT kind, name, mime, data FROM inbound_files WHERE inbound_id = ?1 ORDER BY id")?;
        for inbound in &mut pending {
            let rows = files.query_map(params![inbound.id], |r| {
                let kind: String = r.get(0)?;
                Ok(Attachment {
                    kind: kind_from_name(&kind),
                    name: r.get(1)?,
                    mime: r.get(2)?,
                    data: r.get(3)?,
                })
            })?;
            inbound.files = rows.collect::<Result<_, _>>()?;
        }
        Ok(pending)
    }

    /// Marks the inbound message answered and queues the reply, atomically,
    /// so a crash never loses the reply nor answers twice.
    pub fn finish_inbound(&self, inbound: &Inbound, reply: &str) -> Result<i64, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        tx.prepare_cached("UPDATE inbound SET status = 'done' WHERE id = ?1")?
            .execute(params![inbound.id])?;
        // The turn has used them (they are in the workspace now).
        tx.prepare_cached("DELETE FROM inbound_files WHERE inbound_id = ?1")?
            .execute(params![inbound.id])?;
        tx.prepare_cached(
            "INSERT INTO outbox (channel, chat_id, text, reply_to, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![
            inbound.channel,
            inbound.chat_id,
            reply,
            inbound.platform_id,
            now()
        ])?;
        let id = tx.last_insert_rowid();
        tx.commit()?;
        Ok(id)
    }

    pub fn pending_outbox(&self, channel: &str) -> Result<Vec<Outgoing>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT id, channel, chat_id, text, reply_to, parts_sent FROM outbox
             WHERE channel = ?1 AND status = 'pending' ORDER BY id",
        )?;
        let rows = stmt.query_map(params![channel], |r| {
            Ok(Outgoing {
                id: r.get(0)?,
                channel: r.get(1)?,
                chat_id: r.get(2)?,
                text: r.get(3)?,
                reply_to: r.get(4)?,
                parts_sent: r.get::<_, i64>(5)?.clamp(0, i64::from(u32::MAX)) as u32,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Marks `channel`'s outbox message `id` delivered. False when no such
    /// message belongs to that channel: a daemon may only confirm its own.
    pub fn outbox_delivered(&self, channel: &str, id: i64) -> Result<bool, StoreError> {
        let n = self
            .lock()
            .prepare_cached("UPDATE outbox SET status = 'delivered' WHERE id = ?1 AND channel = ?2")?
            .execute(params![id, channel])?;
        Ok(n == 1)
    }

    /// Records that the platform took the first `parts` parts of `channel`'s
    /// outbox message `id`. False when it is not that channel's.
    pub fn outbox_progress(&self, channel: &str, id: i64, parts: u32) -> Result<bool, StoreError> {
        let n = self
            .lock()
            .prepare_cached("UPDATE outbox SET parts_sent = MAX(parts_sent, ?3) WHERE id = ?1 AND channel = ?2")?
            .execute(params![id, channel, i64::from(parts)])?;
        Ok(n == 1)
    }

    /// Records a failed delivery of `channel`'s outbox message `id`; returns
    /// the attempts so far, or None when it is not that channel's.
    pub fn outbox_failed(
        &self,
        channel: &str,
        id: i64,
        error: &str,
        retryable: bool,
    ) -> Result<Option<u32>, StoreError> {
        let status = if retryable { "pending" } else { "failed" };
        let conn = self.lock();
        let n = conn.prepare_cached("UPDATE outbox SET status = ?3, attempts = attempts + 1, last_error = ?4 WHERE id = ?1 AND channel = ?2")?.execute(params![id, channel, status, error],
        )?;
        if n == 0 {
            return Ok(None);
        }
        let attempts = conn
            .prepare_cached("SELECT attempts FROM outbox WHERE id = ?1")?
            .query_row(params![id], |r| r.get::<_, i64>(0))
            .optional()?
            .unwrap_or(0);
        Ok(Some(attempts as u32))
    }

    /// Queues a message that answers no inbound message (a pairing code, a
    /// notice), with the same at-least-once delivery.
    pub fn queue_outbox(&self, channel: &str, chat_id: &str, text: &str) -> Result<i64, StoreError> {
        let conn = self.lock();
        conn.prepare_cached("INSERT INTO outbox (channel, chat_id, text, created_at) VALUES (?1, ?2, ?3, ?4)")?
            .execute(params![channel, chat_id, text, now()])?;
        Ok(conn.last_insert_rowid())
    }

    /// Queues a message produced by `origin` ("heartbeat:…", "message:…"):
    /// one outbox row per origin, however often this is called (a retry
    /// after a crash). Returns (id, newly queued).
    pub fn queue_outbox_once(
        &self,
        channel: &str,
        chat_id: &str,
        text: &str,
        origin: &str,
    ) -> Result<(i64, bool), StoreError> {
        let conn = self.lock();
        let n = conn
            .prepare_cached(
                "INSERT OR IGNORE INTO outbox (channel, chat_id, text, created_at, origin) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![channel, chat_id, text, now(), origin])?;
        let id = conn
            .prepare_cached("SELECT id FROM outbox WHERE origin = ?1")?
            .query_row(params![origin], |r| r.get(0))?;
        Ok((id, n == 1))
    }

    /// Where an outbox message stands: ("pending" | "delivered" | "failed",
    /// attempts, last error). None when there is no such message.
    pub fn outbox_state(&self, id: i64) -> Result<Option<(String, u32, Option<String>)>, StoreError> {
        Ok(self
            .lock()
            .prepare_cached("SELECT status, attempts, last_error FROM outbox WHERE id = ?1")?
            .query_row(params![id], |r| {
                Ok((
                    r.get(0)?,
                    r.get::<_, i64>(1)?.clamp(0, i64::from(u32::MAX)) as u32,
                    r.get(2)?,
                ))
            })
            .optional()?)
    }

    pub fn is_paired(&self, channel: &str, sender: &str) -> Result<bool, StoreError> {
        Ok(self
            .lock()
            .prepare_cached("SELECT 1 FROM pairings WHERE channel = ?1 AND sender = ?2 AND status = 'approved'")?
            .query_row(params![channel, sender], |_| Ok(()))
            .optional()?
            .is_some())
    }

    /// The pending code for this sender, or a new one made from `fresh`.
    /// Returns (code, newly created).
    pub fn pairing_code(
        &self,
        channel: &str,
        sender: &str,
        chat_id: &str,
        fresh: &str,
    ) -> Result<(String, bool), StoreError> {
        let conn = self.lock();
        let existing: Option<String> = conn
            .prepare_cached("SELECT code FROM pairings WHERE channel = ?1 AND sender = ?2 AND status = 'pending'")?
            .query_row(params![channel, sender], |r| r.get(0))
            .optional()?;
        if let Some(code) = existing {
            return Ok((code, false));
        }
        conn.prepare_cached(
            "INSERT INTO pairings (code, channel, sender, chat_id, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![fresh, channel, sender, chat_id, now()])?;
        Ok((fresh.to_string(), true))
    }

    pub fn pairings(&self) -> Result<Vec<Pairing>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT code, channel, sender, chat_id, status, created_at FROM pairings ORDER BY created_at, code",
        )?;
        let rows = stmt.query_map([], pairing_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Approves or denies a pending code; None when no such pending code.
    pub fn decide_pairing(&self, code: &str, approve: bool) -> Result<Option<Pairing>, StoreError> {
        let status = if approve { "approved" } else { "denied" };
        let conn = self.lock();
        let n = conn
            .prepare_cached("UPDATE pairings SET status = ?2 WHERE code = ?1 AND status = 'pending'")?
            .execute(params![code, status])?;
        if n == 0 {
            return Ok(None);
        }
        let pairing = conn
            .prepare_cached("SELECT code, channel, sender, chat_id, status, created_at FROM pairings WHERE code = ?1")?
            .query_row(params![code], pairing_row)
            .optional()?;
        Ok(pairing)
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
mod prompt;
pub use cron::{Claim, CronJob, NewJob};
pub use memory::{Interrupted, Summary};
pub use prompt::{PromptChange, PromptRow, ABSENT};
#[cfg(test)]
mod tests;
