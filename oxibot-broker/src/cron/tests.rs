//! The scheduler's claims, driven by a clock the test moves (no waiting).

use super::schedule::{self, Schedule};
use super::scheduler::*;
use crate::abilities::CatchUp;
use crate::store::{NewJob, Store};

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

/// The attack as seen: `every_seconds = 2^64 − 3600` became −3600 s, the
/// first run an hour in the past, and the job then blocked every other
/// job's claim with a UNIQUE violation each tick.
#[test]
fn an_interval_that_would_wrap_is_refused_from_the_tool_ctl_and_import() {
    let huge = 18_446_744_073_709_548_016_u64;
    let e = Schedule::parse(&format!("every {huge} s"), None, "UTC").unwrap_err();
    assert!(e.to_string().contains("between 1 s and one year"), "{e}");
    assert!(Schedule::parse("every 367 days", None, "UTC").is_err());
    assert!(Schedule::parse("every 366 days", None, "UTC").is_ok());
    // next_after never wraps, even for an interval that slipped in.
    assert_eq!(Schedule::Every { secs: huge }.next_after(1_000, 1_000), None);
    assert_eq!(Schedule::Every { secs: 60 }.next_after(i64::MAX - 10, i64::MIN), None);
    assert_eq!(
        Schedule::Every { secs: 3600 }.next_after(i64::MAX - 10, i64::MAX - 20),
        None
    );
}

/// A job stored before the cap (or any job whose next run is not later
/// than its due time) is paused and audited; the other jobs still run.
#[test]
fn one_bad_job_is_paused_and_the_others_still_run() {
    let store = Store::open_in_memory().unwrap();
    let bad = store
        .cron_add(
            &NewJob {
                name: "wrapped",
                channel: "telegram",
                chat_id: "1",
                schedule: r#"{"kind":"every","secs":18446744073709548016}"#,
                message: "x",
                anchor: 1_000,
                next_run_at: Some(1_000 - 3600),
                source: None,
            },
            100,
        )
        .unwrap()
        .unwrap();
    let good = job(&store, &Schedule::Every { secs: 120 }, 1_000);
    let runs = tick(&store, 1_000, 1_400, 10, CatchUp::Once);
    assert_eq!(runs, [1_120, 1_240, 1_360], "the good job ran on time");
    let bad_job = store.cron_job(bad).unwrap().unwrap();
    assert!(!bad_job.enabled, "the bad job is paused");
    assert!(store.cron_job(good).unwrap().unwrap().enabled);
    let audit = store
        .audit_entries(&oxibot_proto::messages::AuditQuery {
            limit: 50,
            kinds: vec!["cron_job_paused".into()],
            ..Default::default()
        })
        .unwrap();
    assert!(
        audit
            .iter()
            .any(|a| a.kind == "cron_job_paused" && a.detail.contains(&format!("job #{bad}"))),
        "{audit:?}"
    );
}

#[test]
fn a_next_run_not_after_the_due_one_is_refused() {
    assert!(next_is_later(100, 100, 0).is_err());
    assert!(next_is_later(100, 50, 0).is_err());
    assert!(next_is_later(100, 130, 60).is_err());
    assert!(next_is_later(100, 160, 60).is_ok());
}

mod property {
    use super::*;
    use proptest::prelude::*;

    const ZONES: &[&str] = &[
        "UTC",
        "Europe/Berlin",
        "America/New_York",
        "Australia/Lord_Howe",
        "Asia/Kathmandu",
    ];

    fn cron_field(max: u32) -> impl Strategy<Value = String> {
        prop_oneof![
            Just("*".to_string()),
            (0..max).prop_map(|n| n.to_string()),
            (1..max.max(2)).prop_map(|n| format!("*/{n}")),
            (0..max, 0..max).prop_map(|(a, b)| format!("{}-{}", a.min(b), a.max(b))),
        ]
    }

    fn any_schedule() -> impl Strategy<Value = Schedule> {
        prop_oneof![
            any::<u64>().prop_map(|secs| Schedule::Every { secs }),
            (1..=schedule::MAX_EVERY_SECS).prop_map(|secs| Schedule::Every { secs }),
            (
                cron_field(60),
                cron_field(24),
                cron_field(28),
                cron_field(12),
                cron_field(7),
                0..ZONES.len()
            )
                .prop_map(|(m, h, d, mo, w, z)| {
                    let d = if d == "0" { "1".into() } else { d };
                    let mo = if mo == "0" { "1".into() } else { mo };
                    Schedule::Cron {
                        expr: format!("{m} {h} {d} {mo} {w}"),
                        tz: ZONES[z].to_string(),
                    }
                }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]
        /// Whatever the schedule, zone, clock and minimum interval, a claim
        /// either moves the job to a later run (at least the minimum
        /// interval on) or pauses it: never the same or an earlier run.
        #[test]
        fn every_claim_moves_forward_or_pauses(
            schedule in any_schedule(),
            anchor in 1_600_000_000_i64..1_900_000_000,
            late in 0_i64..200_000,
            min_interval in 0_i64..7_200,
        ) {
            let store = Store::open_in_memory().unwrap();
            let due = anchor;
            let id = store
                .cron_add(
                    &NewJob {
                        name: "p",
                        channel: "telegram",
                        chat_id: "1",
                        schedule: &schedule.to_json(),
                        message: "x",
                        anchor,
                        next_run_at: Some(due),
                        source: None,
                    },
                    100,
                )
                .unwrap()
                .unwrap();
            let claimed = claim_due(&store, due + late, CatchUp::Once, min_interval).unwrap();
            let job = store.cron_job(id).unwrap().unwrap();
            if job.enabled {
                prop_assert_eq!(claimed.len(), 1);
                let next = job.next_run_at.expect("a repeating job keeps a next run");
                prop_assert!(next > due, "next {} due {}", next, due);
                prop_assert!(next >= due + min_interval);
                prop_assert!(next > due + late, "the next run is in the future");
            } else {
                prop_assert!(claimed.is_empty());
            }
        }
    }
}
