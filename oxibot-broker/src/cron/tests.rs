//! The scheduler's claims, driven by a clock the test moves (no waiting).

use super::*;
use crate::store::Store;

fn job(store: &Store, schedule: &Schedule, anchor: i64) -> i64 {
    let next = schedule.next_after(anchor, anchor);
    store
        .cron_add(
            &NewJob {
                name: "test",
                channel: "telegram",
                chat_id: "42",
                schedule: &schedule.to_json(),
                message: "do it",
                anchor,
                next_run_at: next,
                source: None,
            },
            100,
        )
        .unwrap()
        .unwrap()
}

/// Ticks the scheduler every `step` seconds from `from` to `to`, each run
/// ending at once; returns the due time of every run it claimed.
fn tick(store: &Store, from: i64, to: i64, step: i64, catch_up: CatchUp) -> Vec<i64> {
    let mut claimed = Vec::new();
    let mut now = from;
    while now < to {
        for (run_id, job) in claim_due(store, now, catch_up, 0).unwrap() {
            claimed.push(job.next_run_at.unwrap());
            store.cron_finish(run_id, &job, None, "ok").unwrap();
        }
        now += step;
    }
    claimed
}

fn berlin(local: &str) -> i64 {
    let naive = jiff::civil::DateTime::strptime("%Y-%m-%d %H:%M", local).unwrap();
    schedule::local_to_unix(&schedule::zone("Europe/Berlin").unwrap(), naive).unwrap()
}

#[test]
fn a_berlin_0230_job_fires_once_on_each_dst_change_day() {
    let store = Store::open_in_memory().unwrap();
    let s = Schedule::cron("30 2 * * *", "Europe/Berlin").unwrap();
    // Spring forward (2026-03-29): the clock ticks every 30 s through the day.
    let start = berlin("2026-03-28 12:00");
    job(&store, &s, start);
    let runs = tick(&store, start, berlin("2026-03-30 12:00"), 30, CatchUp::Once);
    let shown: Vec<String> = runs.iter().map(|t| schedule::rfc3339(*t)).collect();
    assert_eq!(shown, ["2026-03-29T01:00:00+00:00", "2026-03-30T00:30:00+00:00"]);

    // Fall back (2026-10-25): 02:30 happens twice, the job runs once.
    let store = Store::open_in_memory().unwrap();
    let start = berlin("2026-10-24 12:00");
    job(&store, &s, start);
    let runs = tick(&store, start, berlin("2026-10-26 12:00"), 30, CatchUp::Once);
    let shown: Vec<String> = runs.iter().map(|t| schedule::rfc3339(*t)).collect();
    assert_eq!(shown, ["2026-10-25T00:30:00+00:00", "2026-10-26T01:30:00+00:00"]);
}

#[test]
fn a_run_is_claimed_once_however_many_claimers() {
    let store = Store::open_in_memory().unwrap();
    let s = Schedule::Every { secs: 60 };
    let id = job(&store, &s, 1_000);
    // Two claimers at the same moment (a restart racing a tick): one run.
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let store = store.clone();
            std::thread::spawn(move || claim_due(&store, 1_060, CatchUp::Once, 0).unwrap().len())
        })
        .collect();
    let total: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(total, 1);
    assert_eq!(store.cron_run_count(id).unwrap(), 1);
    assert!(claim_due(&store, 1_060, CatchUp::Once, 0).unwrap().is_empty());
    assert_eq!(store.cron_job(id).unwrap().unwrap().next_run_at, Some(1_120));
}

#[test]
fn missed_runs_become_one_run_or_none() {
    // Down for three days with an hourly job.
    let s = Schedule::Every { secs: 3600 };
    let store = Store::open_in_memory().unwrap();
    let id = job(&store, &s, 0);
    let back = 3 * 86_400 + 1_800;
    assert_eq!(claim_due(&store, back, CatchUp::Once, 0).unwrap().len(), 1);
    assert!(claim_due(&store, back + 1, CatchUp::Once, 0).unwrap().is_empty());
    assert_eq!(store.cron_run_count(id).unwrap(), 1);
    // The next run is the next slot after now, counted from the anchor.
    assert_eq!(
        store.cron_job(id).unwrap().unwrap().next_run_at,
        Some(3 * 86_400 + 3_600)
    );

    let store = Store::open_in_memory().unwrap();
    let id = job(&store, &s, 0);
    assert!(claim_due(&store, back, CatchUp::Skip, 0).unwrap().is_empty());
    assert_eq!(store.cron_run_count(id).unwrap(), 0);
    assert_eq!(
        store.cron_job(id).unwrap().unwrap().next_run_at,
        Some(3 * 86_400 + 3_600)
    );
    // A run a second late is not "missed": skip only drops what was due
    // while OxiBot was down.
    assert_eq!(
        claim_due(&store, 3 * 86_400 + 3_601, CatchUp::Skip, 0).unwrap().len(),
        1
    );
}

#[test]
fn a_one_time_job_runs_once_and_a_finished_run_is_not_resumed() {
    let store = Store::open_in_memory().unwrap();
    let s = Schedule::At { at: 5_000 };
    let id = job(&store, &s, 1_000);
    assert!(claim_due(&store, 4_999, CatchUp::Once, 0).unwrap().is_empty());
    let runs = claim_due(&store, 5_000, CatchUp::Once, 0).unwrap();
    assert_eq!(runs.len(), 1);
    assert!(tick(&store, 5_001, 9_000, 100, CatchUp::Once).is_empty());
    // Open until finished: a restart would run it again…
    assert_eq!(store.cron_unfinished().unwrap().len(), 1);
    let (run_id, job) = &runs[0];
    let first = store.cron_finish(*run_id, job, Some("done"), "ok").unwrap();
    assert!(first.is_some());
    // …and finished, it is not; finishing twice queues nothing more.
    assert!(store.cron_unfinished().unwrap().is_empty());
    assert_eq!(store.cron_finish(*run_id, job, Some("done"), "ok").unwrap(), None);
    assert_eq!(store.cron_job(id).unwrap().unwrap().last_status.as_deref(), Some("ok"));
}

#[test]
fn a_slow_run_is_not_overtaken_by_the_next() {
    let store = Store::open_in_memory().unwrap();
    let s = Schedule::Every { secs: 10 };
    let id = job(&store, &s, 0);
    let first = claim_due(&store, 10, CatchUp::Once, 0).unwrap();
    assert_eq!(first.len(), 1);
    // The run takes a minute: no tick in that minute claims another.
    for now in 11..70 {
        assert!(
            claim_due(&store, now, CatchUp::Once, 0).unwrap().is_empty(),
            "claimed at {now}"
        );
    }
    let (run_id, job) = &first[0];
    store.cron_finish(*run_id, job, Some("done"), "ok").unwrap();
    // Then the overdue slots become one run.
    assert_eq!(claim_due(&store, 70, CatchUp::Once, 0).unwrap().len(), 1);
    assert_eq!(store.cron_run_count(id).unwrap(), 2);
}

#[test]
fn runs_keep_the_minimum_interval_whatever_the_expression() {
    // 59 runs every other minute, one a second: the floor spaces them.
    let store = Store::open_in_memory().unwrap();
    let s = Schedule::cron("0-58 0-58/2 * * * *", "UTC").unwrap();
    job(&store, &s, 0);
    let mut runs = Vec::new();
    for now in 0..1200 {
        for (run_id, job) in claim_due(&store, now, CatchUp::Once, 60).unwrap() {
            runs.push(job.next_run_at.unwrap());
            store.cron_finish(run_id, &job, None, "ok").unwrap();
        }
    }
    assert!(runs.windows(2).all(|w| w[1] - w[0] >= 60), "{runs:?}");
    assert!((9..=11).contains(&runs.len()), "{}", runs.len());
}
