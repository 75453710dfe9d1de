//! Scheduled jobs: the scheduler, a job's run, the agent's `cron` tool and
//! `oxibotctl cron`.
//!
//! Exactly once: a run is claimed in the database before it starts (the
//! claim moves the job's next run on, guarded by the due time read, so no
//! second claimer gets it), and its answer is queued in the outbox under
//! the run's id in the same transaction that closes the run. A broker
//! killed during a run finds the run open on start and runs it again;
//! whatever the earlier attempt got to, at most one message is queued.

pub mod schedule;

use std::sync::Arc;
use std::time::Duration;

use oxibot_proto::messages::{CronJobInfo, CtlReply, CtlRequest};
use serde::Deserialize;

use crate::abilities::CatchUp;
use crate::agent::{ChatRef, Turn, TurnKind};
use crate::broker::Broker;
use crate::store::{Claim, CronJob, NewJob, Store, StoreError};
pub use schedule::Schedule;

/// A due time further back than this was missed (OxiBot was down, or the
/// machine slept), and the catch-up policy decides.
pub const MISSED_AFTER_SECS: i64 = 90;
/// How often the scheduler looks for due jobs.
const TICK: Duration = Duration::from_secs(1);

pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

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

/// Claims one due job: Some(run id) when it runs now.
fn claim_one(
    store: &Store,
    job: &CronJob,
    due: i64,
    now: i64,
    catch_up: CatchUp,
    min_interval: i64,
) -> Result<Option<i64>, String> {
    let schedule = Schedule::from_json(&job.schedule)?;
    let not_before = now.max(due.saturating_add(min_interval.max(1) - 1));
    let next = schedule.next_after(not_before, job.anchor);
    if let Some(next) = next {
        next_is_later(due, next, min_interval)?;
    } else if !matches!(schedule, Schedule::At { .. }) {
        // Only a one-time job runs out of runs; a repeating one that has
        // none left is out of range.
        return Err(format!(
            "{} has no next run after {}",
            schedule.describe(),
            schedule::rfc3339(due)
        ));
    }
    let missed = now.saturating_sub(due) > MISSED_AFTER_SECS;
    let run = !(missed && catch_up == CatchUp::Skip);
    match store
        .cron_claim(job.id, due, next, run)
        .map_err(|e| format!("claiming its run failed: {e}"))?
    {
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
pub fn next_is_later(due: i64, next: i64, min_interval: i64) -> Result<(), String> {
    if next <= due {
        return Err(format!(
            "its next run ({}) is not after the run due at {}",
            schedule::rfc3339(next),
            schedule::rfc3339(due)
        ));
    }
    if next.saturating_sub(due) < min_interval {
        return Err(format!(
            "its next run is {} s after the last, under cron.minIntervalSecs ({min_interval} s)",
            next.saturating_sub(due)
        ));
    }
    Ok(())
}

/// The scheduler: first the runs a previous broker left open, then every
/// tick the due ones.
pub async fn run_scheduler(broker: Arc<Broker>) {
    import_jobs(&broker);
    match broker.store.cron_unfinished() {
        Ok(open) => {
            for (run_id, job) in open {
                tracing::info!(
                    job = job.id,
                    run = run_id,
                    "resuming a scheduled run the broker was stopped during"
                );
                tokio::spawn(execute(broker.clone(), run_id, job));
            }
        }
        Err(e) => tracing::error!("cannot read unfinished scheduled runs: {e}"),
    }
    loop {
        let (catch_up, min_interval) = {
            let config = broker.config();
            (config.cron.catch_up, config.cron.min_interval_secs as i64)
        };
        match claim_due(&broker.store, unix_now(), catch_up, min_interval) {
            Ok(runs) => {
                for (run_id, job) in runs {
                    tokio::spawn(execute(broker.clone(), run_id, job));
                }
            }
            Err(e) => tracing::error!("cannot claim scheduled runs: {e}"),
        }
        tokio::time::sleep(TICK).await;
    }
}

/// Runs one claimed run: a turn in the job's own session, speaking for the
/// job's chat; its answer (or why it failed) goes to that chat once.
async fn execute(broker: Arc<Broker>, run_id: i64, job: CronJob) {
    // Removed or paused since the claim (a run resumed after a restart):
    // closed without a model call.
    match broker.store.cron_job(job.id) {
        Ok(Some(current)) if current.enabled => {}
        Ok(_) => {
            let _ = broker
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
    };
    let described = Schedule::from_json(&job.schedule)
        .map(|s| s.describe())
        .unwrap_or_default();
    let prompt = format!(
        "[Scheduled job #{} \"{}\", {described}]\n{}\n\n(Your answer is sent to the chat as this job's result.)",
        job.id, job.name, job.message
    );
    let (text, status) = match broker.agent.run_turn(&broker, &turn, &prompt, Vec::new()).await {
        Ok(answer) if answer.trim().is_empty() => (None, "ok".to_string()),
        Ok(answer) => (Some(answer), "ok".to_string()),
        Err(e) => {
            let message = e.to_string();
            broker.record_error(&message);
            (
                Some(format!("Scheduled job \"{}\" could not run: {message}", job.name)),
                format!("failed: {}", crate::providers::shorten(&message, 200)),
            )
        }
    };
    match broker.store.cron_finish(run_id, &job, text.as_deref(), &status) {
        Ok(Some(outbox_id)) => {
            crate::metrics::cron_run(status == "ok");
            if let Some(text) = text {
                let msg = crate::channels::fresh_send(outbox_id, chat.chat_id.clone(), text, None);
                crate::channels::deliver(&broker, &chat.channel, msg).await;
            }
        }
        Ok(None) => crate::metrics::cron_run(status == "ok"),
        Err(e) => tracing::error!(job = job.id, run = run_id, "cannot record the scheduled run: {e}"),
    }
}

/// Adds a job for `chat`; the reply says when it first runs.
fn add_job(broker: &Broker, name: &str, chat: &ChatRef, schedule: &Schedule, message: &str) -> Result<String, String> {
    add_job_from(broker, name, chat, schedule, message, None).map(|(_, text)| text)
}

/// As `add_job`, remembering an import source.
fn add_job_from(
    broker: &Broker,
    name: &str,
    chat: &ChatRef,
    schedule: &Schedule,
    message: &str,
    source: Option<&str>,
) -> Result<(i64, String), String> {
    let now = unix_now();
    let next = schedule
        .next_after(now, now)
        .ok_or_else(|| format!("{} is in the past; nothing was scheduled", schedule.describe()))?;
    let min = broker.config().cron.min_interval_secs as i64;
    if let Some(after) = schedule.next_after(next, now) {
        if after - next < min {
            return Err(format!(
                "{} would run every {} s; the shortest interval allowed is {min} s (cron.minIntervalSecs)",
                schedule.describe(),
                after - next
            ));
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
        None => broker.config().cron.max_jobs_per_chat,
    };
    let id = broker.store.cron_add(&job, max).map_err(|e| e.to_string())??;
    broker.store.audit_about(
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
pub fn import_jobs(broker: &Broker) -> usize {
    let config = broker.config();
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
            broker.record_error(&e);
            return 0;
        }
    };
    let mut added = 0;
    for job in jobs {
        let source = format!("oxibot:{}", job.source_id);
        match broker.store.cron_has_source(&source) {
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
            .and_then(|s| add_job_from(broker, &job.name, &chat, &s, &job.message, Some(&source)));
        match result {
            Ok((id, _)) => {
                added += 1;
                if !job.enabled {
                    let _ = broker.store.cron_set_enabled(id, false, None);
                }
            }
            Err(e) => broker.store.audit(
                "cron_import_skipped",
                &format!("job {} (\"{}\") from {}: {e}", job.source_id, job.name, path.display()),
            ),
        }
    }
    if added > 0 {
        broker.store.audit(
            "cron_imported",
            &format!("{added} scheduled job(s) imported from {}", path.display()),
        );
    }
    added
}

fn describe_job(job: &CronJob) -> String {
    let schedule = Schedule::from_json(&job.schedule)
        .map(|s| s.describe())
        .unwrap_or_else(|e| e);
    let next = match (job.enabled, job.next_run_at) {
        (false, _) => "paused".to_string(),
        (true, Some(t)) => format!("next {}", schedule::rfc3339(t)),
        (true, None) => "done".to_string(),
    };
    format!("#{} \"{}\": {schedule}, {next}: {}", job.id, job.name, job.message)
}

/// The `cron` tool's arguments (nanobot's names).
#[derive(Debug, Deserialize)]
pub struct ToolArgs {
    action: String,
    message: Option<String>,
    name: Option<String>,
    every_seconds: Option<u64>,
    cron_expr: Option<String>,
    tz: Option<String>,
    at: Option<String>,
    job_id: Option<i64>,
}

/// The agent's `cron` tool: add, list and remove, only in the chat that
/// asks.
pub fn tool(broker: &Broker, turn: &Turn, args: ToolArgs) -> Result<String, String> {
    let chat = turn.origin.as_ref().ok_or(
        "scheduled jobs belong to a chat, and this conversation has none (it runs from oxibotctl); \
         use oxibotctl cron add",
    )?;
    let scope = Some((chat.channel.as_str(), chat.chat_id.as_str()));
    match args.action.as_str() {
        "add" => {
            let message = args
                .message
                .filter(|m| !m.trim().is_empty())
                .ok_or("add needs a message: what to do when the job runs")?;
            let default_tz = broker.config().cron.timezone.clone();
            let schedule = match (args.every_seconds, args.cron_expr, args.at) {
                (Some(secs), None, None) => Schedule::parse(&format!("every {secs} s"), None, &default_tz)?,
                (None, Some(expr), None) => Schedule::cron(&expr, args.tz.as_deref().unwrap_or(&default_tz))?,
                (None, None, Some(at)) => Schedule::parse(&format!("at {at}"), args.tz.as_deref(), &default_tz)?,
                _ => return Err("give exactly one of every_seconds, cron_expr or at".into()),
            };
            let name = args.name.unwrap_or_else(|| message.chars().take(40).collect());
            add_job(broker, &name, chat, &schedule, &message)
        }
        "list" => {
            let jobs = broker.store.cron_jobs(scope).map_err(|e| e.to_string())?;
            if jobs.is_empty() {
                return Ok("No scheduled jobs in this chat.".into());
            }
            Ok(jobs.iter().map(describe_job).collect::<Vec<_>>().join("\n"))
        }
        "remove" => {
            let id = args.job_id.ok_or("remove needs job_id (see action list)")?;
            if broker.store.cron_remove(id, scope).map_err(|e| e.to_string())? {
                broker.store.audit_about(
                    "cron_job_removed",
                    Some(&chat.channel),
                    None,
                    &format!("job #{id} removed by the agent in {}", chat.session()),
                );
                Ok(format!("Removed job #{id}."))
            } else {
                Err(format!("this chat has no job #{id} (see action list)"))
            }
        }
        other => Err(format!("unknown action \"{other}\"; use add, list or remove")),
    }
}

fn info(job: CronJob) -> CronJobInfo {
    CronJobInfo {
        id: job.id as u64,
        schedule: Schedule::from_json(&job.schedule)
            .map(|s| s.describe())
            .unwrap_or_else(|e| e),
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

/// `oxibotctl cron …`.
pub fn admin(broker: &Arc<Broker>, request: CtlRequest) -> CtlReply {
    let error = |message: String| CtlReply::Error { message };
    let done = |message: String| CtlReply::Done { message };
    match request {
        CtlRequest::CronList => match broker.store.cron_jobs(None) {
            Ok(jobs) => CtlReply::CronJobs(jobs.into_iter().map(info).collect()),
            Err(e) => error(e.to_string()),
        },
        CtlRequest::CronAdd(spec) => {
            if !broker.config().channels.contains_key(&spec.channel) {
                return error(format!("no channel {} in the configuration", spec.channel));
            }
            if spec.message.trim().is_empty() {
                return error("the job needs a message (--message): what to do when it runs".into());
            }
            let default_tz = broker.config().cron.timezone.clone();
            let schedule = match Schedule::parse(&spec.schedule, spec.tz.as_deref(), &default_tz) {
                Ok(s) => s,
                Err(e) => return error(e),
            };
            let chat = ChatRef {
                channel: spec.channel,
                chat_id: spec.chat_id,
            };
            match add_job(broker, &spec.name, &chat, &schedule, &spec.message) {
                Ok(text) => done(text),
                Err(e) => error(e),
            }
        }
        CtlRequest::CronRemove { id } => match broker.store.cron_remove(id as i64, None) {
            Ok(true) => {
                broker
                    .store
                    .audit("cron_job_removed", &format!("job #{id} removed with oxibotctl"));
                done(format!("removed job #{id}"))
            }
            Ok(false) => error(format!("no job #{id}; see `oxibotctl cron list`")),
            Err(e) => error(e.to_string()),
        },
        CtlRequest::CronEnable { id, enabled } => {
            let job = match broker.store.cron_job(id as i64) {
                Ok(Some(job)) => job,
                Ok(None) => return error(format!("no job #{id}; see `oxibotctl cron list`")),
                Err(e) => return error(e.to_string()),
            };
            // Resumed from now: the paused time is not caught up.
            let now = unix_now();
            let next = Schedule::from_json(&job.schedule)
                .ok()
                .and_then(|s| s.next_after(now, job.anchor));
            match broker.store.cron_set_enabled(job.id, enabled, next) {
                Ok(_) => {
                    let verb = if enabled { "enabled" } else { "disabled" };
                    broker
                        .store
                        .audit("cron_job_changed", &format!("job #{id} {verb} with oxibotctl"));
                    done(format!("job #{id} {verb}"))
                }
                Err(e) => error(e.to_string()),
            }
        }
        CtlRequest::CronRun { id } => match broker.store.cron_claim_now(id as i64, unix_now()) {
            Ok(Some(run_id)) => match broker.store.cron_job(id as i64) {
                Ok(Some(job)) => {
                    let to = format!("{}:{}", job.channel, job.chat_id);
                    tokio::spawn(execute(broker.clone(), run_id, job));
                    done(format!("job #{id} is running (run {run_id}); its result goes to {to}"))
                }
                _ => error(format!("job #{id} vanished")),
            },
            Ok(None) => error(format!(
                "no job #{id}, or it was started this very second; see `oxibotctl cron list`"
            )),
            Err(e) => error(e.to_string()),
        },
        _ => error("not a cron request".into()),
    }
}

#[cfg(test)]
mod tests;
