//! The owner's state: the patterns "approve always" added, and what each
//! chat spent per day and per hour (`crate::budgets`).

use std::collections::HashMap;

use rusqlite::{params, OptionalExtension};

use super::{now, Store, StoreError};

/// What one chat spent in one day.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Spent {
    pub tokens: u64,
    /// Millionths of a US dollar.
    pub cost_micro: i64,
}

impl Spent {
    pub fn cost_usd(&self) -> f64 {
        self.cost_micro as f64 / 1e6
    }
}

/// What `key` spent in `day`, inside a transaction or not.
fn spent_in(conn: &rusqlite::Connection, key: &str, day: &str) -> Result<Spent, StoreError> {
    Ok(conn
        .prepare_cached("SELECT tokens, cost_micro FROM budget_spend WHERE key = ?1 AND window = ?2")?
        .query_row(params![key, day], |r| {
            Ok(Spent {
                tokens: r.get::<_, i64>(0)?.max(0) as u64,
                cost_micro: r.get(1)?,
            })
        })
        .optional()?
        .unwrap_or_default())
}

impl Store {
    /// The patterns added with "approve always", oldest first.
    pub fn approval_patterns(&self) -> Result<Vec<String>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached("SELECT pattern FROM approval_patterns ORDER BY added_at, pattern")?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn add_approval_pattern(&self, pattern: &str, by: &str) -> Result<(), StoreError> {
        self.lock()
            .prepare_cached(
                "INSERT OR IGNORE INTO approval_patterns (pattern, added_at, added_by) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![pattern, now(), by])?;
        Ok(())
    }

    /// Removes a learned pattern; whether there was one.
    pub fn remove_approval_pattern(&self, pattern: &str) -> Result<bool, StoreError> {
        Ok(self
            .lock()
            .prepare_cached("DELETE FROM approval_patterns WHERE pattern = ?1")?
            .execute(params![pattern])?
            > 0)
    }

    pub fn spent(&self, key: &str, day: &str) -> Result<Spent, StoreError> {
        spent_in(&self.lock(), key, day)
    }

    /// Adds one call's usage; (before, after).
    pub fn add_spent(&self, key: &str, day: &str, tokens: u64, cost_micro: i64) -> Result<(Spent, Spent), StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let before = spent_in(&tx, key, day)?;
        let tokens = i64::try_from(tokens).unwrap_or(i64::MAX);
        tx.prepare_cached(
            "INSERT INTO budget_spend (key, window, tokens, cost_micro) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(key, window) DO UPDATE SET tokens = tokens + ?3, cost_micro = cost_micro + ?4",
        )?
        .execute(params![key, day, tokens, cost_micro])?;
        tx.commit()?;
        let after = Spent {
            tokens: before.tokens.saturating_add(tokens as u64),
            cost_micro: before.cost_micro.saturating_add(cost_micro),
        };
        Ok((before, after))
    }

    /// Counts a tool call in the hour unless `limit` are counted already;
    /// whether it was counted.
    pub fn count_tool_call(&self, key: &str, hour: &str, limit: u64) -> Result<bool, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let calls: i64 = tx
            .prepare_cached("SELECT tool_calls FROM budget_spend WHERE key = ?1 AND window = ?2")?
            .query_row(params![key, hour], |r| r.get(0))
            .optional()?
            .unwrap_or(0);
        if calls.max(0) as u64 >= limit {
            return Ok(false);
        }
        tx.prepare_cached(
            "INSERT INTO budget_spend (key, window, tool_calls) VALUES (?1, ?2, 1)
             ON CONFLICT(key, window) DO UPDATE SET tool_calls = tool_calls + 1",
        )?
        .execute(params![key, hour])?;
        tx.commit()?;
        Ok(true)
    }

    /// Sets a once-per-window flag ("stopped" or "warned"); whether it was
    /// not set before.
    pub fn mark_budget_flag(&self, key: &str, window: &str, flag: &str) -> Result<bool, StoreError> {
        let column = match flag {
            "warned" => "warned",
            _ => "stopped",
        };
        let conn = self.lock();
        conn.prepare_cached("INSERT OR IGNORE INTO budget_spend (key, window) VALUES (?1, ?2)")?
            .execute(params![key, window])?;
        let changed = conn
            .prepare_cached(&format!(
                "UPDATE budget_spend SET {column} = 1 WHERE key = ?1 AND window = ?2 AND {column} = 0"
            ))?
            .execute(params![key, window])?;
        Ok(changed > 0)
    }

    /// Each chat's spending today and its tool calls this hour.
    pub fn spending(&self, day: &str, hour: &str) -> Result<HashMap<String, (Spent, u64)>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT key, window, tokens, cost_micro, tool_calls FROM budget_spend WHERE window IN (?1, ?2)",
        )?;
        let mut out: HashMap<String, (Spent, u64)> = HashMap::new();
        let rows = stmt.query_map(params![day, hour], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, i64>(4)?,
            ))
        })?;
        for row in rows {
            let (key, window, tokens, cost, calls) = row?;
            let entry = out.entry(key).or_default();
            if window == day {
                entry.0 = Spent {
                    tokens: tokens.max(0) as u64,
                    cost_micro: cost,
                };
            } else {
                entry.1 = calls.max(0) as u64;
            }
        }
        Ok(out)
    }

    /// Forgets a chat's spending; how many records went.
    pub fn reset_spending(&self, key: &str) -> Result<usize, StoreError> {
        Ok(self
            .lock()
            .prepare_cached("DELETE FROM budget_spend WHERE key = ?1")?
            .execute(params![key])?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spending_adds_up_and_flags_are_set_once() {
        let s = Store::open_in_memory().unwrap();
        let (b, a) = s.add_spent("telegram:1", "day:2026-12-07", 100, 5).unwrap();
        assert_eq!((b.tokens, a.tokens, a.cost_micro), (0, 100, 5));
        let (_, a) = s.add_spent("telegram:1", "day:2026-12-07", 50, 5).unwrap();
        assert_eq!(a.tokens, 150);
        assert_eq!(s.spent("telegram:1", "day:2026-12-07").unwrap().tokens, 150);
        assert_eq!(s.spent("telegram:1", "day:2026-12-08").unwrap().tokens, 0);
        assert!(s.mark_budget_flag("telegram:1", "day:2026-12-07", "stopped").unwrap());
        assert!(!s.mark_budget_flag("telegram:1", "day:2026-12-07", "stopped").unwrap());
        assert!(s.mark_budget_flag("telegram:1", "day:2026-12-07", "warned").unwrap());
        assert!(s.count_tool_call("telegram:1", "hour:x", 2).unwrap());
        assert!(s.count_tool_call("telegram:1", "hour:x", 2).unwrap());
        assert!(!s.count_tool_call("telegram:1", "hour:x", 2).unwrap());
        let all = s.spending("day:2026-12-07", "hour:x").unwrap();
        assert_eq!(all["telegram:1"].0.tokens, 150);
        assert_eq!(all["telegram:1"].1, 2);
        assert_eq!(s.reset_spending("telegram:1").unwrap(), 2);
        assert_eq!(s.spent("telegram:1", "day:2026-12-07").unwrap().tokens, 0);
    }

    #[test]
    fn learned_patterns_are_kept_once() {
        let s = Store::open_in_memory().unwrap();
        s.add_approval_pattern("git status", "alice").unwrap();
        s.add_approval_pattern("git status", "alice").unwrap();
        assert_eq!(s.approval_patterns().unwrap(), vec!["git status".to_string()]);
        assert!(s.remove_approval_pattern("git status").unwrap());
        assert!(s.approval_patterns().unwrap().is_empty());
    }
}
