//! Pairing: an unknown user's one-time code, and the admin's decision.

use rusqlite::{params, OptionalExtension};

use super::*;

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

impl Store {
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
}
