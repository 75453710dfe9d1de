//! Scheduled jobs: the schedule (`schedule`), the jobs themselves (`jobs`),
//! and the scheduler that runs them (`scheduler`); the model's `cron` tool
//! is `tools/cron.rs`. Nothing is re-exported here, so that what uses the
//! jobs does not reach the scheduler (which starts turns).
//!
//! Exactly once: a run is claimed in the database before it starts (the
//! claim moves the job's next run on, guarded by the due time read, so no
//! second claimer gets it), and its answer is queued in the outbox under
//! the run's id in the same transaction that closes the run. A broker
//! killed during a run finds the run open on start and runs it again;
//! whatever the earlier attempt got to, at most one message is queued.

pub mod jobs;
pub mod schedule;
pub mod scheduler;

#[cfg(test)]
mod tests;
