//! A session's consolidated past: the summary of its older turns and the
//! id of the last message it covers. The turns themselves stay.

use rusqlite::{params, OptionalExtension};

use super::{message_row, now, Store, StoreError};
use crate::providers::ChatMessage;

/// What a session's older turns were consolidated into.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub text: String,
    /// The last message id the summary covers.
    pub upto_id: i64,
}

/// A background task that was running when the broker stopped.
#[derive(Debug, Clone)]
pub struct Interrupted {
    pub session: String,
    pub parent: String,
    pub chat: Option<(String, String)>,
    pub label: String,
}

impl Store {
    /// Records a background task as running.
    pub fn subagent_started(
        &self,
        session: &str,
        parent: &str,
        chat: Option<(&str, &str)>,
        label: &str,
    ) -> Result<(), StoreError> {
        self.lock().prepare_cached("INSERT INTO subagents (session_id, parent, channel, chat_id, label, started_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")?.execute(params![session, parent, chat.map(|c| c.0), chat.map(|c| c.1), label, now()],
        )?;
        Ok(())
    }

    /// Records how a background task ended ("done", "failed", "cancelled").
    pub fn subagent_ended(&self, session: &str, status: &str) -> Result<(), StoreError> {
        self.lock()
            .prepare_cached("UPDATE subagents SET status = ?2 WHERE session_id = ?1")?
            .execute(params![session, status])?;
        Ok(())
    }

    /// The tasks a previous broker left running, now marked interrupted.
    pub fn subagents_interrupted(&self) -> Result<Vec<Interrupted>, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let list = {
            let mut stmt = tx.prepare(
                "SELECT session_id, parent, channel, chat_id, label FROM subagents WHERE status = 'running'",
            )?;
            let rows = stmt.query_map([], |r| {
                let channel: Option<String> = r.get(2)?;
                let chat: Option<String> = r.get(3)?;
                Ok(Interrupted {
                    session: r.get(0)?,
                    parent: r.get(1)?,
                    chat: channel.zip(chat),
                    label: r.get(4)?,
                })
            })?;
            rows.collect::<Result<Vec<_>, _>>()?
        };
        tx.prepare_cached("UPDATE subagents SET status = 'interrupted' WHERE status = 'running'")?
            .execute([])?;
        tx.commit()?;
        Ok(list)
    }

    pub fn summary(&self, session: &str) -> Result<Option<Summary>, StoreError> {
        Ok(self
            .lock()
            .prepare_cached("SELECT summary, upto_id FROM session_summaries WHERE session_id = ?1")?
            .query_row(params![session], |r| {
                Ok(Summary {
                    text: r.get(0)?,
                    upto_id: r.get(1)?,
                })
            })
            .optional()?)
    }

    pub fn set_summary(&self, session: &str, summary: &Summary) -> Result<(), StoreError> {
        self.lock()
            .prepare_cached(
                "INSERT INTO session_summaries (session_id, summary, upto_id, updated_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(session_id) DO UPDATE SET summary = ?2, upto_id = ?3, updated_at = ?4",
            )?
            .execute(params![session, summary.text, summary.upto_id, now()])?;
        Ok(())
    }

    /// The newest `limit` messages after message `after_id`, oldest first,
    /// with their ids.
    pub fn history_since(
        &self,
        session: &str,
        after_id: i64,
        limit: usize,
    ) -> Result<Vec<(i64, ChatMessage)>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT id, role, content, tool_calls, tool_call_id FROM messages
             WHERE session_id = ?1 AND id > ?2 ORDER BY id DESC LIMIT ?3",
        )?;
        let rows = stmt.query_map(params![session, after_id, limit as i64], |r| {
            Ok((r.get::<_, i64>(0)?, message_row(r, 1)?))
        })?;
        let mut out: Vec<(i64, ChatMessage)> = rows.collect::<Result<_, _>>()?;
        out.reverse();
        Ok(out)
    }
}
