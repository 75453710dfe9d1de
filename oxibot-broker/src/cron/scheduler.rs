//! The scheduler: claiming due runs, running each as a turn, and
//! `oxibotctl cron`. The only part of `cron` that starts turns.

use std::sync::Arc;
use std::time::Duration;

use oxibot_proto::messages::{CronRequest, CtlReply};

use super::jobs::{add_job, import_jobs, info};
use super::schedule::{self, Schedule, ScheduleError};
use crate::abilities::CatchUp;
use crate::services::Services;
use crate::store::{Claim, CronJob, Store, StoreError};
use crate::turn::{ChatRef, Turn, TurnKind};

/// A due time further back than this was missed (OxiBot was down, or the
/// machine slept), and the catch-up policy decides.
pub const MISSED_AFTER_SECS: i64 = 90;
/// How often the scheduler looks for due jobs.
const TICK: Duration = Duration::from_secs(1);

use oxibot_runtime::clock::unix_now;

/// Claims every run due at `now`. A job's next run is computed strictly
/// after `now`, so any number of missed occurrences become one run (or,
/// with catch-up `skip`, none). Returns the claimed (run id, job) pairs.
/// Runs of one job are at least `min_interval` seconds apart, whatever its
/// expression says (a list of seconds, say).
///
/// One job never stops the others: a job whose next run cannot be
/// computed, is not later than its due time, or whose claim fails is
/// paused and audited, and the tick goes on with the rest.
pub fn claim_due(
    store: &Store,
    now: i64,
    catch_up: CatchUp,
    min_interval: i64,
) -> Result<Vec<(i64, CronJob)>, StoreError> {
    let mut claimed = Vec::new();
    for job in store.cron_due(now)? {
        let Some(due) = job.next_run_at else { continue };
        match claim_one(store, &job, due, now, catch_up, min_interval) {
            Ok(Some(run_id)) => claimed.push((run_id, job)),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(job = job.id, "scheduled job paused: {e}");
                if let Err(pause) = store.cron_set_enabled(job.id, false, None) {
                    tracing::error!(job = job.id, "cannot pause a failing scheduled job: {pause}");
                }
                store.audit(
                    "cron_job_paused",
                    &format!(
                        "job #{}: {e}; paused (oxibotctl cron enable {} after fixing it)",
                        job.id, job.id
                    ),
                );
            }
        }
    }
    Ok(claimed)
}

/// Why a due job cannot be claimed: it is paused and audited.
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
    #[error("its next run ({next}) is not after the run due at {due}")]
    NotAfter { next: String, due: String },
    #[error("its next run is {gap} s after the last, under cron.minIntervalSecs ({min} s)")]
    TooSoon { gap: i64, min: i64 },
    #[error("{described} has no next run after {due}")]
    NoNext { described: String, due: String },
    #[error("claiming its run failed: {0}")]
    Store(StoreError),
}

/// Claims one due job: Some(run id) when it runs now.
fn claim_one(
    store: &Store,
    job: &CronJob,
    due: i64,
    now: i64,
    catch_up: CatchUp,
    min_interval: i64,
) -> Result<Option<i64>, ClaimError> {
    let schedule = Schedule::from_json(&job.schedule)?;
    let not_before = now.max(due.saturating_add(min_interval.max(1) - 1));
    let next = schedule.next_after(not_before, job.anchor);
    if let Some(next) = next {
        next_is_later(due, next, min_interval)?;
    } else if !matches!(schedule, Schedule::At { .. }) {
        // Only a one-time job runs out of runs; a repeating one that has
        // none left is out of range.
        return Err(ClaimError::NoNext {
            described: schedule.describe(),
            due: schedule::rfc3339(due),
        });
    }
    let missed = now.saturating_sub(due) > MISSED_AFTER_SECS;
    let run = !(missed && catch_up == CatchUp::Skip);
    match store.cron_claim(job.id, due, next, run).map_err(ClaimError::Store)? {
        Claim::Run(run_id) => {
            if missed {
                store.audit(
                    "cron_catch_up",
                    &format!(
                        "job #{} was due at {} while OxiBot was down; running it once now",
                        job.id,
                        schedule::rfc3339(due)
                    ),
                );
            }
            Ok(Some(run_id))
        }
        Claim::Skipped => {
            store.audit(
                "cron_catch_up",
                &format!(
                    "job #{} was due at {} while OxiBot was down; skipped (cron.catchUp is skip)",
                    job.id,
                    schedule::rfc3339(due)
                ),
            );
            Ok(None)
        }
        Claim::Lost => Ok(None),
    }
}

/// What every claim checks on its result, not only on where the search
/// started: the next run is later than the one being claimed, and at
/// least `min_interval` after it.
pub fn next_is_later(due: i64, next: i64, min_interval: i64) -> Result<(), ClaimError> {
    if next <= due {
        return Err(ClaimError::NotAfter {
            next: schedule::rfc3339(next),
            due: schedule::rfc3339(due),
        });
    }
    if next.saturating_sub(due) < min_interval {
        return Err(ClaimError::TooSoon {
            gap: next.saturating_sub(due),
            min: min_interval,
        });
    }
    Ok(())
}

/// The scheduler: first the runs a previous broker left open, then every
/// tick the due ones.
pub async fn run_scheduler(svc: Arc<Services>) {
    import_jobs(&svc);
    match svc.store.cron_unfinished() {
        Ok(open) => {
            for (run_id, job) in open {
                tracing::info!(
                    job = job.id,
                    run = run_id,
                    "resuming a scheduled run the broker was stopped during"
                );
                tokio::spawn(execute(svc.clone(), run_id, job));
            }
        }
        Err(e) => tracing::error!("cannot read unfinished scheduled runs: {e}"),
    }
    loop {
        let (catch_up, min_interval) = {
            let config = svc.config();
            (config.cron.catch_up, config.cron.min_interval_secs as i64)
        };
        match claim_due(&svc.store, unix_now(), catch_up, min_interval) {
            Ok(runs) => {
                for (run_id, job) in runs {
                    tokio::spawn(execute(svc.clone(), run_id, job));
                }
            }
            Err(e) => tracing::error!("cannot claim scheduled runs: {e}"),
        }
        tokio::time::sleep(TICK).await;
    }
}

/// Runs one claimed run: a turn in the job's own session, speaking for the
/// job's chat; its answer (or why it failed) goes to that chat once.
async fn execute(svc: Arc<Services>, run_id: i64, job: CronJob) {
    // Removed or paused since the claim (a run resumed after a restart):
    // closed without a model call.
    match svc.store.cron_job(job.id) {
        Ok(Some(current)) if current.enabled => {}
        Ok(_) => {
            let _ = svc
                .store
                .cron_finish(run_id, &job, None, "abandoned (the job was removed or paused)");
            return;
        }
        Err(e) => tracing::warn!(job = job.id, "cannot re-read the job before its run: {e}"),
    }
    let chat = ChatRef {
        channel: job.channel.clone(),
        chat_id: job.chat_id.clone(),
    };
    let turn = Turn {
        session: format!("cron:{}", job.id),
        origin: Some(chat.clone()),
        kind: TurnKind::Scheduled,
        max_iterations: None,
        by_admin: false,
        watcher: None,
    };
    let described = Schedule::from_json(&job.schedule)
        .map(|s| s.describe())
        .unwrap_or_default();
    let prompt = format!(
        "[Scheduled job #{} \"{}\", {described}]\n{}\n\n(Your answer is sent to the chat as this job's result.)",
        job.id, job.name, job.message
    );
    let (text, status) = match crate::agent::run_turn(&svc, &turn, &prompt, Vec::new()).await {
        Ok(answer) if answer.trim().is_empty() => (None, "ok".to_string()),
        Ok(answer) => (Some(answer), "ok".to_string()),
        Err(e) => {
            let message = e.to_string();
            svc.audit.record_error(&message);
            (
                Some(format!("Scheduled job \"{}\" could not run: {message}", job.name)),
                format!("failed: {}", crate::providers::shorten(&message, 200)),
            )
        }
    };
    match svc.store.cron_finish(run_id, &job, text.as_deref(), &status) {
        Ok(Some(outbox_id)) => {
            crate::metrics::cron_run(status == "ok");
            if let Some(text) = text {
                let msg = crate::hub::fresh_send(outbox_id, chat.chat_id.clone(), text, None);
                svc.hub.deliver(&chat.channel, msg).await;
            }
        }
        Ok(None) => crate::metrics::cron_run(status == "ok"),
        Err(e) => tracing::error!(job = job.id, run = run_id, "cannot record the scheduled run: {e}"),
    }
}

/// `oxibotctl cron …`.
pub fn admin(svc: &Arc<Services>, request: CronRequest) -> CtlReply {
    let error = |message: String| CtlReply::Error { message };
    let done = |message: String| CtlReply::Done { message };
    match request {
        CronRequest::List => match svc.store.cron_jobs(None) {
            Ok(jobs) => CtlReply::CronJobs(jobs.into_iter().map(info).collect()),
            Err(e) => error(e.to_string()),
        },
        CronRequest::Add(spec) => {
            // The console's chats are there without configuration: their
            // messages wait for `oxibotctl chat`.
            if !svc.config().channels.contains_key(&spec.channel) && spec.channel != crate::turn::CONSOLE {
                return error(format!(
                    "no channel {} in the configuration (or \"console\", for oxibotctl chat)",
                    spec.channel
                ));
            }
            if spec.message.trim().is_empty() {
                return error("the job needs a message (--message): what to do when it runs".into());
            }
            let default_tz = svc.config().cron.timezone.clone();
            let schedule = match Schedule::parse(&spec.schedule, spec.tz.as_deref(), &default_tz) {
                Ok(s) => s,
                Err(e) => return error(e.to_string()),
            };
            let chat = ChatRef {
                channel: spec.channel,
                chat_id: spec.chat_id,
            };
            match add_job(svc, &spec.name, &chat, &schedule, &spec.message) {
                Ok(text) => done(text),
                Err(e) => error(e.to_string()),
            }
        }
        CronRequest::Remove { id } => match svc.store.cron_remove(id as i64, None) {
            Ok(true) => {
                svc.audit
                    .log("cron_job_removed", &format!("job #{id} removed with oxibotctl"));
                done(format!("removed job #{id}"))
            }
            Ok(false) => error(format!("no job #{id}; see `oxibotctl cron list`")),
            Err(e) => error(e.to_string()),
        },
        CronRequest::Enable { id, enabled } => {
            let job = match svc.store.cron_job(id as i64) {
                Ok(Some(job)) => job,
                Ok(None) => return error(format!("no job #{id}; see `oxibotctl cron list`")),
                Err(e) => return error(e.to_string()),
            };
            // Resumed from now: the paused time is not caught up.
            let now = unix_now();
            let next = Schedule::from_json(&job.schedule)
                .ok()
                .and_then(|s| s.next_after(now, job.anchor));
            match svc.store.cron_set_enabled(job.id, enabled, next) {
                Ok(_) => {
                    let verb = if enabled { "enabled" } else { "disabled" };
                    svc.audit
                        .log("cron_job_changed", &format!("job #{id} {verb} with oxibotctl"));
                    done(format!("job #{id} {verb}"))
                }
                Err(e) => error(e.to_string()),
            }
        }
        CronRequest::Run { id } => match svc.store.cron_claim_now(id as i64, unix_now()) {
            Ok(Some(run_id)) => match svc.store.cron_job(id as i64) {
                Ok(Some(job)) => {
                    let to = format!("{}:{}", job.channel, job.chat_id);
                    tokio::spawn(execute(svc.clone(), run_id, job));
                    done(format!("job #{id} is running (run {run_id}); its result goes to {to}"))
                }
                _ => error(format!("job #{id} vanished")),
            },
            Ok(None) => error(format!(
                "no job #{id}, or it was started this very second; see `oxibotctl cron list`"
            )),
            Err(e) => error(e.to_string()),
        },
    }
}
