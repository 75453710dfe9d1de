//! The jobs themselves: adding one (checked against the interval floor and
//! the per-chat cap), describing them, and the one-time import of an old OxiBot's jobs. Running them is the
//! scheduler's (`cron/mod.rs`); this file never starts a turn.

use crate::cron::schedule::{self, Schedule, ScheduleError};
use crate::services::Services;
use crate::store::{CronJob, NewJob, StoreError};
use crate::turn::ChatRef;
use oxibot_proto::messages::CronJobInfo;
use oxibot_runtime::clock::unix_now;

/// Adds a job for `chat`; the reply says when it first runs.
pub fn add_job(
    svc: &Services,
    name: &str,
    chat: &ChatRef,
    schedule: &Schedule,
    message: &str,
) -> Result<String, JobRefused> {
    add_job_from(svc, name, chat, schedule, message, None).map(|(_, text)| text)
}

/// Why a job was not scheduled: told to whoever asked (the model, the
/// admin, an import's audit line).
#[derive(Debug, thiserror::Error)]
pub enum JobRefused {
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
    #[error("{0} is in the past; nothing was scheduled")]
    Past(String),
    #[error("{described} would run every {every} s; the shortest interval allowed is {min} s (cron.minIntervalSecs)")]
    TooOften { described: String, every: i64, min: i64 },
    #[error(transparent)]
    ChatFull(#[from] crate::store::ChatFull),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// As `add_job`, remembering an import source.
fn add_job_from(
    svc: &Services,
    name: &str,
    chat: &ChatRef,
    schedule: &Schedule,
    message: &str,
    source: Option<&str>,
) -> Result<(i64, String), JobRefused> {
    let now = unix_now();
    let next = schedule
        .next_after(now, now)
        .ok_or_else(|| JobRefused::Past(schedule.describe()))?;
    let min = svc.config().cron.min_interval_secs as i64;
    if let Some(after) = schedule.next_after(next, now) {
        if after - next < min {
            return Err(JobRefused::TooOften {
                described: schedule.describe(),
                every: after - next,
                min,
            });
        }
    }
    let job = NewJob {
        name,
        channel: &chat.channel,
        chat_id: &chat.chat_id,
        schedule: &schedule.to_json(),
        message,
        anchor: now,
        next_run_at: Some(next),
        source,
    };
    // An import brings what the old store held, whatever the cap.
    let max = match source {
        Some(_) => u32::MAX,
        None => svc.config().cron.max_jobs_per_chat,
    };
    let id = svc.store.cron_add(&job, max)??;
    svc.audit.about(
        "cron_job_added",
        Some(&chat.channel),
        None,
        &format!("job #{id} for {}: {}", chat.session(), schedule.describe()),
    );
    let text = format!(
        "Scheduled job #{id} \"{name}\": {}; first run at {}.",
        schedule.describe(),
        schedule::rfc3339(next)
    );
    Ok((id, text))
}

/// Adds the jobs `oxibotctl config import` converted (cron.importFile),
/// each once: an old job's id is remembered, so a second start (or a
/// second import) adds nothing twice. Returns how many were added.
pub fn import_jobs(svc: &Services) -> usize {
    let config = svc.config();
    let Some(path) = config.cron.import_file.clone() else {
        return 0;
    };
    let jobs: Vec<crate::cron_import::ImportedJob> = match std::fs::read_to_string(&path)
        .map_err(|e| e.to_string())
        .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))
    {
        Ok(jobs) => jobs,
        Err(e) => {
            let e = format!(
                "cannot import scheduled jobs from {} (cron.importFile): {e}",
                path.display()
            );
            tracing::warn!("{e}");
            svc.audit.record_error(&e);
            return 0;
        }
    };
    let mut added = 0;
    for job in jobs {
        let source = format!("oxibot:{}", job.source_id);
        match svc.store.cron_has_source(&source) {
            Ok(false) => {}
            Ok(true) => continue,
            Err(e) => {
                tracing::error!("cannot read the schedule: {e}");
                return added;
            }
        }
        let chat = ChatRef {
            channel: job.channel.clone(),
            chat_id: job.chat_id.clone(),
        };
        let result = Schedule::parse(&job.schedule, job.tz.as_deref(), &config.cron.timezone)
            .map_err(JobRefused::from)
            .and_then(|s| add_job_from(svc, &job.name, &chat, &s, &job.message, Some(&source)));
        match result {
            Ok((id, _)) => {
                added += 1;
                if !job.enabled {
                    let _ = svc.store.cron_set_enabled(id, false, None);
                }
            }
            Err(e) => svc.audit.log(
                "cron_import_skipped",
                &format!("job {} (\"{}\") from {}: {e}", job.source_id, job.name, path.display()),
            ),
        }
    }
    if added > 0 {
        svc.audit.log(
            "cron_imported",
            &format!("{added} scheduled job(s) imported from {}", path.display()),
        );
    }
    added
}

pub fn describe_job(job: &CronJob) -> String {
    let schedule = Schedule::from_json(&job.schedule)
        .map(|s| s.describe())
        .unwrap_or_else(|e| e.to_string());
    let next = match (job.enabled, job.next_run_at) {
        (false, _) => "paused".to_string(),
        (true, Some(t)) => format!("next {}", schedule::rfc3339(t)),
        (true, None) => "done".to_string(),
    };
    format!("#{} \"{}\": {schedule}, {next}: {}", job.id, job.name, job.message)
}

pub fn info(job: CronJob) -> CronJobInfo {
    CronJobInfo {
        id: job.id as u64,
        schedule: Schedule::from_json(&job.schedule)
            .map(|s| s.describe())
            .unwrap_or_else(|e| e.to_string()),
        name: job.name,
        channel: job.channel,
        chat_id: job.chat_id,
        message: job.message,
        enabled: job.enabled,
        next_run_at: job.next_run_at,
        last_run_at: job.last_run_at,
        last_status: job.last_status,
    }
}
