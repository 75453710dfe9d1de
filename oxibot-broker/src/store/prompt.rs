//! The accepted version of each prompt file (bootstrap files, memory,
//! HEARTBEAT.md, the workspace's skills), and the changed version the
//! workspace holds while it waits for the owner. The workspace is the
//! jail's: any turn can write it, so the prompt uses only what is here.

use rusqlite::{params, OptionalExtension};

use super::{now, Store, StoreError};

/// Set on a new database: the first read of the workspace accepts what
/// the admin put there.
pub const FIRST_START_FLAG: &str = "prompt_first_start";

/// One prompt file as the store knows it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PromptRow {
    pub path: String,
    /// None: accepted as absent (never accepted, or its removal was).
    pub accepted_text: Option<String>,
    pub accepted_sha: Option<String>,
    pub accepted_at: Option<i64>,
    /// The workspace's version waiting for the owner; `pending_sha` is
    /// [`ABSENT`] when the waiting change is the file's removal.
    pub pending_text: Option<String>,
    pub pending_sha: Option<String>,
    pub pending_at: Option<i64>,
    /// The pending version the owner was last told about.
    pub notified_sha: Option<String>,
}

/// The pending "version" of a removed file.
pub const ABSENT: &str = "absent";

/// What one read of the workspace changes.
#[derive(Debug, Clone, PartialEq)]
pub enum PromptChange {
    /// The workspace differs from the accepted version: this one waits
    /// (None text: removed).
    Pending {
        path: String,
        text: Option<String>,
        sha: String,
    },
    /// The workspace is back at the accepted version.
    Settled { path: String },
    /// Accepted without asking: the first start, or text the broker wrote
    /// itself (consolidated memory).
    Accept { path: String, text: String, sha: String },
}

impl Store {
    /// Every prompt file the store knows, by path.
    pub fn prompt_rows(&self) -> Result<Vec<PromptRow>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT path, accepted_text, accepted_sha, accepted_at, pending_text, pending_sha, pending_at, notified_sha
             FROM prompt_files ORDER BY path",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(PromptRow {
                path: r.get(0)?,
                accepted_text: r.get(1)?,
                accepted_sha: r.get(2)?,
                accepted_at: r.get(3)?,
                pending_text: r.get(4)?,
                pending_sha: r.get(5)?,
                pending_at: r.get(6)?,
                notified_sha: r.get(7)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Applies what a read found, in one transaction.
    pub fn prompt_apply(&self, changes: &[PromptChange]) -> Result<(), StoreError> {
        if changes.is_empty() {
            return Ok(());
        }
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        for change in changes {
            match change {
                PromptChange::Pending { path, text, sha } => {
                    tx.prepare_cached(
                        "INSERT INTO prompt_files (path, pending_text, pending_sha, pending_at) VALUES (?1, ?2, ?3, ?4)
                         ON CONFLICT(path) DO UPDATE SET pending_text = ?2, pending_sha = ?3, pending_at = ?4",
                    )?
                    .execute(params![path, text, sha, now()])?;
                }
                PromptChange::Settled { path } => {
                    tx.prepare_cached(
                        "UPDATE prompt_files SET pending_text = NULL, pending_sha = NULL, pending_at = NULL WHERE path = ?1",
                    )?
                    .execute(params![path])?;
                }
                PromptChange::Accept { path, text, sha } => {
                    tx.prepare_cached(
                        "INSERT INTO prompt_files (path, accepted_text, accepted_sha, accepted_at) VALUES (?1, ?2, ?3, ?4)
                         ON CONFLICT(path) DO UPDATE SET accepted_text = ?2, accepted_sha = ?3, accepted_at = ?4,
                             pending_text = NULL, pending_sha = NULL, pending_at = NULL",
                    )?
                    .execute(params![path, text, sha, now()])?;
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Takes the owner's word for the pending version of `path` (all
    /// pending files when None). With `sha`, only the pending version with
    /// exactly that digest (the whole of it: a prefix can be matched by a
    /// second version made to collide with it): what `prompt diff` showed,
    /// not what a turn wrote since. Returns the paths accepted.
    pub fn prompt_accept(&self, path: Option<&str>, sha: Option<&str>) -> Result<Vec<String>, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let pending: Vec<(String, String)> = {
            let mut stmt = tx.prepare_cached(
                "SELECT path, pending_sha FROM prompt_files
                 WHERE pending_sha IS NOT NULL AND (?1 IS NULL OR path = ?1) ORDER BY path",
            )?;
            let rows = stmt.query_map(params![path], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect::<Result<_, _>>()?
        };
        let mut accepted = Vec::new();
        for (p, pending_sha) in pending {
            if sha.is_some_and(|want| !want.eq_ignore_ascii_case(&pending_sha)) {
                continue;
            }
            // A removal accepted: the file is accepted as absent.
            tx.prepare_cached(
                "UPDATE prompt_files SET
                    accepted_text = pending_text,
                    accepted_sha = CASE WHEN pending_sha = ?2 THEN NULL ELSE pending_sha END,
                    accepted_at = ?3,
                    pending_text = NULL, pending_sha = NULL, pending_at = NULL
                 WHERE path = ?1",
            )?
            .execute(params![p, ABSENT, now()])?;
            accepted.push(p);
        }
        tx.commit()?;
        Ok(accepted)
    }

    /// Records that the owner was told about this pending version.
    pub fn prompt_notified(&self, path: &str, sha: &str) -> Result<(), StoreError> {
        self.lock()
            .prepare_cached("UPDATE prompt_files SET notified_sha = ?2 WHERE path = ?1")?
            .execute(params![path, sha])?;
        Ok(())
    }

    /// True once: on the first read of a new install's workspace.
    pub fn prompt_take_first_start(&self) -> Result<bool, StoreError> {
        let n = self
            .lock()
            .prepare_cached("DELETE FROM broker_flags WHERE name = ?1")?
            .execute(params![FIRST_START_FLAG])?;
        Ok(n > 0)
    }

    /// Whether the first-start acceptance is still to come.
    pub fn prompt_first_start_due(&self) -> Result<bool, StoreError> {
        Ok(self
            .lock()
            .prepare_cached("SELECT 1 FROM broker_flags WHERE name = ?1")?
            .query_row(params![FIRST_START_FLAG], |_| Ok(()))
            .optional()?
            .is_some())
    }
}
