//! The inbound queue and the outbox: a message committed before its
//! platform's cursor moves, its reply queued in the same transaction that
//! finishes it, and each reply followed until the platform takes it.

use oxibot_proto::messages::Attachment;
use rusqlite::{params, OptionalExtension};

use super::*;
use oxibot_proto::messages::Button;

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
    pub buttons: Vec<Button>,
    /// The platform message this reply replaces (a streamed answer's draft).
    pub edit: Option<String>,
}

/// An inbound message answered: done, and its files forgotten (the turn
/// has used them; they are in the workspace now).
fn mark_done(tx: &rusqlite::Transaction<'_>, inbound: &Inbound) -> Result<(), StoreError> {
    tx.prepare_cached("UPDATE inbound SET status = 'done' WHERE id = ?1")?
        .execute(params![inbound.id])?;
    tx.prepare_cached("DELETE FROM inbound_files WHERE inbound_id = ?1")?
        .execute(params![inbound.id])?;
    Ok(())
}

impl Store {
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
    /// Marks an inbound message answered without a reply (a budget's stop
    /// the chat was already told about).
    pub fn finish_inbound_silently(&self, inbound: &Inbound) -> Result<(), StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        mark_done(&tx, inbound)?;
        tx.commit()?;
        Ok(())
    }

    pub fn finish_inbound(&self, inbound: &Inbound, reply: &str) -> Result<i64, StoreError> {
        self.finish_inbound_replacing(inbound, reply, None)
    }

    /// As [`Store::finish_inbound`], the reply replacing the platform
    /// message `edit` (the draft its streamed answer was shown in).
    pub fn finish_inbound_replacing(
        &self,
        inbound: &Inbound,
        reply: &str,
        edit: Option<&str>,
    ) -> Result<i64, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        mark_done(&tx, inbound)?;
        tx.prepare_cached(
            "INSERT INTO outbox (channel, chat_id, text, reply_to, created_at, edit_message) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?
        .execute(params![
            inbound.channel,
            inbound.chat_id,
            reply,
            inbound.platform_id,
            now(),
            edit
        ])?;
        let id = tx.last_insert_rowid();
        tx.commit()?;
        Ok(id)
    }

    pub fn pending_outbox(&self, channel: &str) -> Result<Vec<Outgoing>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT id, channel, chat_id, text, reply_to, parts_sent, buttons, edit_message FROM outbox
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
                buttons: r
                    .get::<_, Option<String>>(6)?
                    .and_then(|b| serde_json::from_str::<Vec<(String, String)>>(&b).ok())
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(label, says)| Button { label, says })
                    .collect(),
                edit: r.get(7)?,
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
        self.queue_outbox_with(channel, chat_id, text, &[])
    }

    /// Queues a message with buttons under it.
    pub fn queue_outbox_with(
        &self,
        channel: &str,
        chat_id: &str,
        text: &str,
        buttons: &[Button],
    ) -> Result<i64, StoreError> {
        let buttons = (!buttons.is_empty()).then(|| {
            let pairs: Vec<(&str, &str)> = buttons.iter().map(|b| (b.label.as_str(), b.says.as_str())).collect();
            serde_json::to_string(&pairs).unwrap_or_default()
        });
        let conn = self.lock();
        conn.prepare_cached(
            "INSERT INTO outbox (channel, chat_id, text, created_at, buttons) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![channel, chat_id, text, now(), buttons])?;
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
}
