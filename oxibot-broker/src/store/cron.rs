//! Scheduled jobs. A run is claimed in one transaction that also moves the
//! job's next run forward, guarded by the due time it read: two claimers
//! (a restart racing a tick, a manual run) can never both take the same
//! run. The run's answer and its outbox message are written together under
//! the run's id, so one run is one message even across a crash.

use rusqlite::{params, OptionalExtension};

use super::{now, Store, StoreError};

/// A job as stored.
#[derive(Debug, Clone)]
pub struct CronJob {
    pub id: i64,
    pub name: String,
    pub channel: String,
    pub chat_id: String,
    /// `crate::cron::schedule::Schedule` as JSON.
    pub schedule: String,
    pub message: String,
    pub enabled: bool,
    /// When an interval job started counting.
    pub anchor: i64,
    pub next_run_at: Option<i64>,
    pub last_run_at: Option<i64>,
    pub last_status: Option<String>,
}

/// What claiming a due run got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// The job no longer has that due time: another claimer took it, or
    /// it was changed or removed.
    Lost,
    /// This run (its id) is ours to run.
    Run(i64),
    /// Moved past without running (catch-up `skip`).
    Skipped,
}

/// A job to add.
pub struct NewJob<'a> {
    pub name: &'a str,
    pub channel: &'a str,
    pub chat_id: &'a str,
    pub schedule: &'a str,
    pub message: &'a str,
    pub anchor: i64,
    pub next_run_at: Option<i64>,
    /// Where an imported job came from ("oxibot:<id>"); imported once.
    pub source: Option<&'a str>,
}

/// Ended runs kept per job.
const KEPT_RUNS: i64 = 50;

const COLUMNS: &str =
    "id, name, channel, chat_id, schedule, message, enabled, anchor, next_run_at, last_run_at, last_status";

fn job_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<CronJob> {
    Ok(CronJob {
        id: r.get(0)?,
        name: r.get(1)?,
        channel: r.get(2)?,
        chat_id: r.get(3)?,
        schedule: r.get(4)?,
        message: r.get(5)?,
        enabled: r.get::<_, i64>(6)? != 0,
        anchor: r.get(7)?,
        next_run_at: r.get(8)?,
        last_run_at: r.get(9)?,
        last_status: r.get(10)?,
    })
}

/// A chat holds as many scheduled jobs as it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("this chat already has {0} scheduled jobs (cron.maxJobsPerChat); remove one first")]
pub struct ChatFull(pub i64);

impl Store {
    /// Adds a job unless its chat already holds `max_per_chat`.
    pub fn cron_add(&self, job: &NewJob<'_>, max_per_chat: u32) -> Result<Result<i64, ChatFull>, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let held: i64 = tx.query_row(
            // Finished one-time jobs stay listed but do not count.
            "SELECT COUNT(*) FROM cron_jobs WHERE channel = ?1 AND chat_id = ?2 AND next_run_at IS NOT NULL",
            params![job.channel, job.chat_id],
            |r| r.get(0),
        )?;
        if held >= i64::from(max_per_chat) {
            return Ok(Err(ChatFull(held)));
        }
        tx.execute(
            "INSERT INTO cron_jobs (name, channel, chat_id, schedule, message, anchor, next_run_at, created_at, source)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                job.name,
                job.channel,
                job.chat_id,
                job.schedule,
                job.message,
                job.anchor,
                job.next_run_at,
                now(),
                job.source
            ],
        )?;
        let id = tx.last_insert_rowid();
        tx.commit()?;
        Ok(Ok(id))
    }

    /// Whether a job from this import source exists.
    pub fn cron_has_source(&self, source: &str) -> Result<bool, StoreError> {
        Ok(self
            .lock()
            .query_row("SELECT 1 FROM cron_jobs WHERE source = ?1", params![source], |_| Ok(()))
            .optional()?
            .is_some())
    }

    /// Every job, or only one chat's.
    pub fn cron_jobs(&self, chat: Option<(&str, &str)>) -> Result<Vec<CronJob>, StoreError> {
        let conn = self.lock();
        let rows = match chat {
            Some((channel, chat_id)) => {
                let mut stmt = conn.prepare(&format!(
                    "SELECT {COLUMNS} FROM cron_jobs WHERE channel = ?1 AND chat_id = ?2 ORDER BY id"
                ))?;
                let rows = stmt.query_map(params![channel, chat_id], job_row)?;
                rows.collect::<Result<Vec<_>, _>>()?
            }
            None => {
                let mut stmt = conn.prepare(&format!("SELECT {COLUMNS} FROM cron_jobs ORDER BY id"))?;
                let rows = stmt.query_map([], job_row)?;
                rows.collect::<Result<Vec<_>, _>>()?
            }
        };
        Ok(rows)
    }

    pub fn cron_job(&self, id: i64) -> Result<Option<CronJob>, StoreError> {
        Ok(self
            .lock()
            .query_row(
                &format!("SELECT {COLUMNS} FROM cron_jobs WHERE id = ?1"),
                params![id],
                job_row,
            )
            .optional()?)
    }

    /// Removes a job (only from `chat`, when given). False when there was
    /// no such job there.
    pub fn cron_remove(&self, id: i64, chat: Option<(&str, &str)>) -> Result<bool, StoreError> {
        let conn = self.lock();
        let n = match chat {
            Some((channel, chat_id)) => conn.execute(
                "DELETE FROM cron_jobs WHERE id = ?1 AND channel = ?2 AND chat_id = ?3",
                params![id, channel, chat_id],
            )?,
            None => conn.execute("DELETE FROM cron_jobs WHERE id = ?1", params![id])?,
        };
        if n == 1 {
            conn.execute(
                "DELETE FROM cron_runs WHERE job_id = ?1 AND status != 'running'",
                params![id],
            )?;
        }
        Ok(n == 1)
    }

    /// Pauses or resumes a job; a resumed job's next run is `next_run_at`.
    pub fn cron_set_enabled(&self, id: i64, enabled: bool, next_run_at: Option<i64>) -> Result<bool, StoreError> {
        let n = self.lock().execute(
            "UPDATE cron_jobs SET enabled = ?2, next_run_at = ?3 WHERE id = ?1",
            params![id, enabled as i64, next_run_at],
        )?;
        Ok(n == 1)
    }

    /// Enabled jobs whose next run is at or before `at`, and whose last run
    /// has ended.
    pub fn cron_due(&self, at: i64) -> Result<Vec<CronJob>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare(&format!(
            // A job whose last run is still going is not due again until it
            // ends: runs never overlap or pile up behind a slow one.
            "SELECT {COLUMNS} FROM cron_jobs WHERE enabled = 1 AND next_run_at IS NOT NULL AND next_run_at <= ?1
               AND id NOT IN (SELECT job_id FROM cron_runs WHERE status = 'running')
             ORDER BY next_run_at, id"
        ))?;
        let rows = stmt.query_map(params![at], job_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The earliest next run of any enabled job.
    pub fn cron_next_due(&self) -> Result<Option<i64>, StoreError> {
        Ok(self
            .lock()
            .query_row("SELECT MIN(next_run_at) FROM cron_jobs WHERE enabled = 1", [], |r| {
                r.get(0)
            })?)
    }

    /// Takes the run that was due at `due_at` and moves the job on to
    /// `next` (None: it will not run again). With `run` false the run is
    /// skipped instead (catch-up policy `skip`).
    pub fn cron_claim(&self, job_id: i64, due_at: i64, next: Option<i64>, run: bool) -> Result<Claim, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let moved = tx.execute(
            "UPDATE cron_jobs SET next_run_at = ?3 WHERE id = ?1 AND enabled = 1 AND next_run_at = ?2",
            params![job_id, due_at, next],
        )?;
        if moved == 0 {
            return Ok(Claim::Lost);
        }
        let claim = if run {
            tx.execute(
                "INSERT INTO cron_runs (job_id, due_at, started_at) VALUES (?1, ?2, ?3)",
                params![job_id, due_at, now()],
            )?;
            let id = tx.last_insert_rowid();
            tx.execute(
                "UPDATE cron_jobs SET last_run_at = ?2, last_status = 'running' WHERE id = ?1",
                params![job_id, now()],
            )?;
            Claim::Run(id)
        } else {
            tx.execute(
                "UPDATE cron_jobs SET last_status = 'skipped (due while OxiBot was down)' WHERE id = ?1",
                params![job_id],
            )?;
            Claim::Skipped
        };
        tx.commit()?;
        Ok(claim)
    }

    /// A run outside the schedule (`oxibotctl cron run`), at `at`. None
    /// when the job does not exist or a run at that second exists already.
    pub fn cron_claim_now(&self, job_id: i64, at: i64) -> Result<Option<i64>, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let exists = tx
            .query_row("SELECT 1 FROM cron_jobs WHERE id = ?1", params![job_id], |_| Ok(()))
            .optional()?
            .is_some();
        if !exists {
            return Ok(None);
        }
        let n = tx.execute(
            "INSERT OR IGNORE INTO cron_runs (job_id, due_at, started_at) VALUES (?1, ?2, ?3)",
            params![job_id, at, now()],
        )?;
        if n == 0 {
            return Ok(None);
        }
        let id = tx.last_insert_rowid();
        tx.execute(
            "UPDATE cron_jobs SET last_run_at = ?2, last_status = 'running' WHERE id = ?1",
            params![job_id, now()],
        )?;
        tx.commit()?;
        Ok(Some(id))
    }

    /// Runs that were claimed but never finished (the broker stopped during
    /// them), with their jobs, oldest first. Runs of removed jobs are closed.
    pub fn cron_unfinished(&self) -> Result<Vec<(i64, CronJob)>, StoreError> {
        let conn = self.lock();
        conn.execute(
            "UPDATE cron_runs SET status = 'abandoned (job removed)', finished_at = ?1
             WHERE status = 'running' AND job_id NOT IN (SELECT id FROM cron_jobs)",
            params![now()],
        )?;
        let mut stmt = conn.prepare(&format!(
            "SELECT r.id, {} FROM cron_runs r JOIN cron_jobs j ON j.id = r.job_id
             WHERE r.status = 'running' ORDER BY r.id",
            COLUMNS
                .split(", ")
                .map(|c| format!("j.{c}"))
                .collect::<Vec<_>>()
                .join(", ")
        ))?;
        let rows = stmt.query_map([], |r| {
            let run: i64 = r.get(0)?;
            // The job's columns follow the run id.
            let job = CronJob {
                id: r.get(1)?,
                name: r.get(2)?,
                channel: r.get(3)?,
                chat_id: r.get(4)?,
                schedule: r.get(5)?,
                message: r.get(6)?,
                enabled: r.get::<_, i64>(7)? != 0,
                anchor: r.get(8)?,
                next_run_at: r.get(9)?,
                last_run_at: r.get(10)?,
                last_status: r.get(11)?,
            };
            Ok((run, job))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Ends a run: its message (if any) is queued under the run's id, and
    /// the run and its job record the outcome, in one transaction. Returns
    /// the outbox id when a message was newly queued.
    pub fn cron_finish(
        &self,
        run_id: i64,
        job: &CronJob,
        message: Option<&str>,
        status: &str,
    ) -> Result<Option<i64>, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let mut queued = None;
        if let Some(text) = message {
            let n = tx.execute(
                "INSERT OR IGNORE INTO outbox (channel, chat_id, text, created_at, origin) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![job.channel, job.chat_id, text, now(), format!("cron-run:{run_id}")],
            )?;
            if n == 1 {
                queued = Some(tx.last_insert_rowid());
            }
        }
        tx.execute(
            "UPDATE cron_runs SET status = ?2, finished_at = ?3 WHERE id = ?1",
            params![run_id, status, now()],
        )?;
        tx.execute(
            "UPDATE cron_jobs SET last_status = ?2 WHERE id = ?1",
            params![job.id, status],
        )?;
        // The run history stays short: the last runs of each job.
        tx.execute(
            "DELETE FROM cron_runs WHERE job_id = ?1 AND status != 'running'
               AND id NOT IN (SELECT id FROM cron_runs WHERE job_id = ?1 ORDER BY id DESC LIMIT ?2)",
            params![job.id, KEPT_RUNS],
        )?;
        tx.commit()?;
        Ok(queued)
    }

    /// How many runs a job has had (for tests and `cron list`).
    pub fn cron_run_count(&self, job_id: i64) -> Result<u64, StoreError> {
        Ok(self.lock().query_row(
            "SELECT COUNT(*) FROM cron_runs WHERE job_id = ?1",
            params![job_id],
            |r| r.get::<_, i64>(0),
        )? as u64)
    }
}
