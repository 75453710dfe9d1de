//! What `oxibotctl` reads and changes in the state database: stored
//! conversations, the audit log, and the admin's per-user decisions.

use oxibot_proto::messages::{AuditEntry, AuditQuery, HistoryEntry, SessionInfo};
use rusqlite::{params, OptionalExtension};

use super::{now, Store, StoreError};

impl Store {
    /// Every conversation, most recently used first.
    pub fn sessions(&self, limit: u32) -> Result<Vec<SessionInfo>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT s.id, (SELECT COUNT(*) FROM messages m WHERE m.session_id = s.id),
                    s.updated_at, s.prompt_tokens, s.completion_tokens
             FROM sessions s ORDER BY s.updated_at DESC, s.id LIMIT ?1",
        )?;
        let rows = stmt.query_map(params![limit], |r| {
            Ok(SessionInfo {
                session: r.get(0)?,
                messages: r.get::<_, i64>(1)? as u64,
                updated_at: r.get(2)?,
                prompt_tokens: r.get::<_, i64>(3)? as u64,
                completion_tokens: r.get::<_, i64>(4)? as u64,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Whether a conversation with this id was ever stored.
    pub fn session_exists(&self, session: &str) -> Result<bool, StoreError> {
        Ok(self
            .lock()
            .prepare_cached("SELECT 1 FROM sessions WHERE id = ?1")?
            .query_row(params![session], |_| Ok(()))
            .optional()?
            .is_some())
    }

    /// The last `limit` messages, oldest first, as stored (tool results
    /// included, so the admin sees what the model saw).
    pub fn session_messages(&self, session: &str, limit: u32) -> Result<Vec<HistoryEntry>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT role, content, tool_calls, created_at FROM messages
             WHERE session_id = ?1 ORDER BY id DESC LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![session, limit], |r| {
            let content: String = r.get(1)?;
            let calls: Option<String> = r.get(2)?;
            let text = match calls {
                Some(c) if content.is_empty() => format!("[tool calls] {c}"),
                Some(c) => format!("{content}\n[tool calls] {c}"),
                None => content,
            };
            Ok(HistoryEntry {
                role: r.get(0)?,
                text,
                at: r.get(3)?,
            })
        })?;
        let mut out: Vec<HistoryEntry> = rows.collect::<Result<_, _>>()?;
        out.reverse();
        Ok(out)
    }

    /// Audit entries matching `q`, oldest first.
    pub fn audit_entries(&self, q: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        // Fixed SQL with every filter a parameter ("no filter" is NULL), so
        // nothing an admin types becomes SQL.
        let kinds = if q.kinds.is_empty() {
            None
        } else {
            serde_json::to_string(&q.kinds).ok()
        };
        let newest_first = q.after_id == 0;
        let sql = format!(
            "SELECT id, ts, kind, channel, user, detail FROM audit
             WHERE id > ?1
               AND (?2 IS NULL OR kind IN (SELECT value FROM json_each(?2)))
               AND (?3 IS NULL OR channel = ?3)
               AND (?4 IS NULL OR user = ?4)
               AND (?5 IS NULL OR ts >= ?5)
             ORDER BY id {} LIMIT ?6",
            if newest_first { "DESC" } else { "ASC" }
        );
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(
            params![q.after_id as i64, kinds, q.channel, q.user, q.since, q.limit],
            |r| {
                Ok(AuditEntry {
                    id: r.get::<_, i64>(0)? as u64,
                    at: r.get(1)?,
                    kind: r.get(2)?,
                    channel: r.get(3)?,
                    user: r.get(4)?,
                    detail: r.get(5)?,
                })
            },
        )?;
        let mut out: Vec<AuditEntry> = rows.collect::<Result<_, _>>()?;
        if newest_first {
            out.reverse();
        }
        Ok(out)
    }

    /// Records the admin's decision about one user on one channel.
    pub fn decide_user(&self, channel: &str, sender: &str, allowed: bool) -> Result<(), StoreError> {
        self.lock()
            .prepare_cached(
                "INSERT INTO user_decisions (channel, sender, allowed, decided_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(channel, sender) DO UPDATE SET allowed = ?3, decided_at = ?4",
            )?
            .execute(params![channel, sender, allowed, now()])?;
        Ok(())
    }

    /// The admin's decision about this user, if there is one.
    pub fn user_decision(&self, channel: &str, sender: &str) -> Result<Option<bool>, StoreError> {
        Ok(self
            .lock()
            .prepare_cached("SELECT allowed FROM user_decisions WHERE channel = ?1 AND sender = ?2")?
            .query_row(params![channel, sender], |r| r.get(0))
            .optional()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(q: AuditQuery) -> AuditQuery {
        AuditQuery { limit: 100, ..q }
    }

    #[test]
    fn audit_filters_are_parameters_and_combine() {
        let s = Store::open_in_memory().unwrap();
        s.audit_about("access_denied", Some("telegram"), Some("42"), "user 42");
        s.audit_about("access_denied", Some("discord"), Some("42"), "user 42");
        s.audit_about("link_established", Some("telegram"), None, "up");
        s.audit("reload", "reloaded");
        let all = s.audit_entries(&query(AuditQuery::default())).unwrap();
        assert_eq!(all.len(), 4);
        assert!(all.windows(2).all(|w| w[0].id < w[1].id), "oldest first");
        let tg = s
            .audit_entries(&query(AuditQuery {
                channel: Some("telegram".into()),
                ..Default::default()
            }))
            .unwrap();
        assert_eq!(tg.len(), 2);
        let denied_42 = s
            .audit_entries(&query(AuditQuery {
                kinds: vec!["access_denied".into()],
                user: Some("42".into()),
                ..Default::default()
            }))
            .unwrap();
        assert_eq!(denied_42.len(), 2);
        // A filter that looks like SQL matches nothing and breaks nothing.
        let injected = s
            .audit_entries(&query(AuditQuery {
                channel: Some("x' OR '1'='1".into()),
                kinds: vec!["') OR 1=1 --".into()],
                ..Default::default()
            }))
            .unwrap();
        assert!(injected.is_empty());
        // Tail: the newest two; follow: what came after an id.
        let tail = s
            .audit_entries(&AuditQuery {
                limit: 2,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(
            tail.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>(),
            ["link_established", "reload"]
        );
        let after = s
            .audit_entries(&query(AuditQuery {
                after_id: all[1].id,
                ..Default::default()
            }))
            .unwrap();
        assert_eq!(after.len(), 2);
        let future = s
            .audit_entries(&query(AuditQuery {
                since: Some(now() + 3600),
                ..Default::default()
            }))
            .unwrap();
        assert!(future.is_empty());
    }

    #[test]
    fn user_decisions_are_per_channel_and_the_last_one_counts() {
        let s = Store::open_in_memory().unwrap();
        assert_eq!(s.user_decision("telegram", "42").unwrap(), None);
        s.decide_user("telegram", "42", true).unwrap();
        assert_eq!(s.user_decision("telegram", "42").unwrap(), Some(true));
        assert_eq!(s.user_decision("discord", "42").unwrap(), None);
        s.decide_user("telegram", "42", false).unwrap();
        assert_eq!(s.user_decision("telegram", "42").unwrap(), Some(false));
    }
}
