//! When a job runs: a cron expression in an IANA time zone, a fixed
//! interval, or one moment. Times are Unix seconds.
//!
//! Cron expressions are evaluated by `croner` in the job's zone, so
//! daylight saving time follows the zone's rules: a time that a
//! spring-forward skips runs once, at the first instant after the gap; a
//! time that a fall-back repeats runs once, at its first occurrence.

use jiff::tz::{AmbiguousOffset, TimeZone};
use jiff::{civil, Timestamp};
use serde::{Deserialize, Serialize};

/// Shortest interval: a job cannot hammer the model.
pub const MIN_EVERY_SECS: u64 = 1;
/// Longest interval: one year. Anything longer is a mistake (or an
/// attempt to wrap the arithmetic: 2^64 − 3600 seconds once became −3600).
pub const MAX_EVERY_SECS: u64 = 366 * 86_400;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Schedule {
    Cron { expr: String, tz: String },
    Every { secs: u64 },
    At { at: i64 },
}

/// Why a schedule was not taken (shown to whoever wrote it: the model,
/// the admin, an import) or a stored one cannot run.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error(
        "\"{expr}\" has {fields} fields; a cron expression has 5 (minute hour day month weekday) or 6 (seconds first)"
    )]
    FieldCount { expr: String, fields: usize },
    #[error("\"{expr}\" is not a valid cron expression: {why}")]
    Cron { expr: String, why: String },
    #[error("\"{0}\" is not an IANA time zone (examples: UTC, Europe/Berlin, America/New_York)")]
    Zone(String),
    #[error("\"every {0}\": give a number and a unit, e.g. every 10 minutes")]
    IntervalNumber(String),
    #[error("\"every {0}\": the unit must be seconds, minutes, hours or days")]
    IntervalUnit(String),
    #[error("\"every {0}\": the interval must be between {MIN_EVERY_SECS} s and one year ({MAX_EVERY_SECS} s)")]
    IntervalRange(String),
    #[error("\"{0}\" is not a time; write 2026-12-24T18:00 (in the job's zone) or 2026-12-24T18:00:00+01:00")]
    Moment(String),
    #[error("\"{text}\" does not exist in {tz}")]
    NoSuchMoment { text: String, tz: String },
    #[error("stored schedule is unreadable: {0}")]
    Stored(serde_json::Error),
    #[error("stored interval of {0} s is outside {MIN_EVERY_SECS} s .. one year")]
    StoredInterval(u64),
}

impl Schedule {
    /// Reads `every 10 minutes` (also `every 30s`, `every 2 h`), `at
    /// <time>` (RFC 3339, or a local `YYYY-MM-DDTHH:MM[:SS]` in `tz`), or a
    /// 5- or 6-field cron expression (6: seconds first). `tz` applies to cron
    /// expressions and local `at` times; `default_tz` when it is None.
    pub fn parse(text: &str, tz: Option<&str>, default_tz: &str) -> Result<Schedule, ScheduleError> {
        let text = text.trim();
        let lower = text.to_ascii_lowercase();
        let zone = tz.unwrap_or(default_tz);
        if let Some(rest) = lower.strip_prefix("every ") {
            return Ok(Schedule::Every {
                secs: parse_interval(rest)?,
            });
        }
        if let Some(rest) = text.strip_prefix("at ").or_else(|| text.strip_prefix("AT ")) {
            return Ok(Schedule::At {
                at: parse_moment(rest.trim(), zone)?,
            });
        }
        Schedule::cron(text, zone)
    }

    /// A cron expression in `tz`, checked.
    pub fn cron(expr: &str, tz: &str) -> Result<Schedule, ScheduleError> {
        zone(tz)?;
        let fields = expr.split_whitespace().count();
        if fields != 5 && fields != 6 {
            return Err(ScheduleError::FieldCount {
                expr: expr.to_string(),
                fields,
            });
        }
        parser().parse(expr).map_err(|e| ScheduleError::Cron {
            expr: expr.to_string(),
            why: e.to_string(),
        })?;
        Ok(Schedule::Cron {
            expr: expr.split_whitespace().collect::<Vec<_>>().join(" "),
            tz: tz.to_string(),
        })
    }

    /// The first run strictly after `after`. `anchor` is when an interval
    /// job started counting, so runs do not drift with late ticks.
    /// None when there is none, or the schedule is out of range (an
    /// interval stored before the cap): checked arithmetic, never a wrap.
    pub fn next_after(&self, after: i64, anchor: i64) -> Option<i64> {
        match self {
            Schedule::Every { secs } => {
                if !(MIN_EVERY_SECS..=MAX_EVERY_SECS).contains(secs) {
                    return None;
                }
                let secs = i64::try_from(*secs).ok()?;
                if after < anchor {
                    return Some(anchor);
                }
                let steps = after.checked_sub(anchor)? / secs + 1;
                anchor.checked_add(steps.checked_mul(secs)?)
            }
            Schedule::At { at } => (*at > after).then_some(*at),
            Schedule::Cron { expr, tz } => {
                let zone = zone(tz).ok()?;
                let cron = parser().parse(expr).ok()?;
                let start = Timestamp::from_second(after).ok()?.to_zoned(zone);
                cron.find_next_occurrence(&start, false)
                    .ok()
                    .map(|t| t.timestamp().as_second())
            }
        }
    }

    /// For people: "cron 0 9 * * * (Europe/Berlin)", "every 600 s", "at …".
    pub fn describe(&self) -> String {
        match self {
            Schedule::Cron { expr, tz } => format!("cron {expr} ({tz})"),
            Schedule::Every { secs } => format!("every {secs} s"),
            Schedule::At { at } => format!("at {}", rfc3339(*at)),
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn from_json(text: &str) -> Result<Schedule, ScheduleError> {
        let schedule: Schedule = serde_json::from_str(text).map_err(ScheduleError::Stored)?;
        match schedule {
            Schedule::Every { secs } if !(MIN_EVERY_SECS..=MAX_EVERY_SECS).contains(&secs) => {
                Err(ScheduleError::StoredInterval(secs))
            }
            s => Ok(s),
        }
    }
}

fn parser() -> croner::parser::CronParser {
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Optional)
        .year(croner::parser::Year::Disallowed)
        .build()
}

/// An IANA zone, or an error that says what one looks like.
pub fn zone(name: &str) -> Result<TimeZone, ScheduleError> {
    TimeZone::get(name).map_err(|_| ScheduleError::Zone(name.to_string()))
}

/// A local date-time in `zone` as an instant: one that a DST change skips
/// is taken as the first instant after the gap, one it repeats as its
/// first occurrence.
pub fn local_to_unix(zone: &TimeZone, local: civil::DateTime) -> Option<i64> {
    let mut probe = local;
    for _ in 0..=180 {
        let ambiguous = zone.to_ambiguous_zoned(probe);
        match ambiguous.offset() {
            AmbiguousOffset::Gap { .. } => probe = probe.checked_add(jiff::SignedDuration::from_mins(1)).ok()?,
            _ => return ambiguous.earlier().ok().map(|z| z.timestamp().as_second()),
        }
    }
    None
}

fn parse_interval(text: &str) -> Result<u64, ScheduleError> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| ScheduleError::IntervalNumber(text.to_string()))?;
    let unit = unit.trim();
    let factor = match unit {
        "s" | "sec" | "secs" | "second" | "seconds" => 1,
        "m" | "min" | "mins" | "minute" | "minutes" => 60,
        "h" | "hour" | "hours" => 3600,
        "d" | "day" | "days" => 86_400,
        _ => return Err(ScheduleError::IntervalUnit(text.to_string())),
    };
    match n.checked_mul(factor) {
        Some(secs) if (MIN_EVERY_SECS..=MAX_EVERY_SECS).contains(&secs) => Ok(secs),
        _ => Err(ScheduleError::IntervalRange(text.to_string())),
    }
}

/// RFC 3339 with an offset, or a local date-time in `tz`. A local time
/// that a DST change skips is taken as the instant after the gap; one it
/// repeats, as its first occurrence.
fn parse_moment(text: &str, tz: &str) -> Result<i64, ScheduleError> {
    if let Ok(t) = text.parse::<Timestamp>() {
        return Ok(t.as_second());
    }
    let zone = zone(tz)?;
    let naive = [
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
    ]
    .iter()
    .find_map(|f| civil::DateTime::strptime(f, text).ok())
    .ok_or_else(|| ScheduleError::Moment(text.to_string()))?;
    local_to_unix(&zone, naive).ok_or_else(|| ScheduleError::NoSuchMoment {
        text: text.to_string(),
        tz: tz.to_string(),
    })
}

pub fn rfc3339(t: i64) -> String {
    oxibot_runtime::clock::rfc3339_utc(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(tz: &str, local: &str) -> i64 {
        let naive = civil::DateTime::strptime("%Y-%m-%d %H:%M", local).unwrap();
        local_to_unix(&zone(tz).unwrap(), naive).unwrap()
    }

    /// Every run of `s` in [from, to), walking with next_after as the
    /// scheduler does (a clock the test drives, not a wait).
    fn runs(s: &Schedule, from: i64, to: i64) -> Vec<i64> {
        let mut out = Vec::new();
        let mut t = from;
        while let Some(next) = s.next_after(t, from) {
            if next >= to {
                break;
            }
            out.push(next);
            t = next;
        }
        out
    }

    #[test]
    fn a_0230_job_runs_once_on_the_spring_forward_day() {
        // Europe/Berlin, 2026-03-29: 02:00 → 03:00; 02:30 does not exist.
        let s = Schedule::cron("30 2 * * *", "Europe/Berlin").unwrap();
        let day = runs(
            &s,
            at("Europe/Berlin", "2026-03-29 00:00"),
            at("Europe/Berlin", "2026-03-30 00:00"),
        );
        assert_eq!(
            day.len(),
            1,
            "{:?}",
            day.iter().map(|t| rfc3339(*t)).collect::<Vec<_>>()
        );
        // The first real instant after the gap: 03:00 CEST = 01:00 UTC.
        assert_eq!(rfc3339(day[0]), "2026-03-29T01:00:00+00:00");
        // The days around it are ordinary.
        let before = runs(
            &s,
            at("Europe/Berlin", "2026-03-28 00:00"),
            at("Europe/Berlin", "2026-03-29 00:00"),
        );
        assert_eq!(
            before.iter().map(|t| rfc3339(*t)).collect::<Vec<_>>(),
            ["2026-03-28T01:30:00+00:00"]
        );
    }

    #[test]
    fn a_0230_job_runs_once_on_the_fall_back_day() {
        // Europe/Berlin, 2026-10-25: 03:00 → 02:00; 02:30 happens twice.
        let s = Schedule::cron("30 2 * * *", "Europe/Berlin").unwrap();
        let day = runs(
            &s,
            at("Europe/Berlin", "2026-10-25 00:00"),
            at("Europe/Berlin", "2026-10-26 00:00"),
        );
        assert_eq!(
            day.iter().map(|t| rfc3339(*t)).collect::<Vec<_>>(),
            ["2026-10-25T00:30:00+00:00"]
        );
    }

    #[test]
    fn the_zone_moves_the_run_across_both_changes() {
        // 09:00 New York is 14:00 UTC in winter and 13:00 UTC in summer.
        let s = Schedule::cron("0 9 * * *", "America/New_York").unwrap();
        let spring = runs(
            &s,
            at("America/New_York", "2026-03-07 12:00"),
            at("America/New_York", "2026-03-09 12:00"),
        );
        assert_eq!(
            spring.iter().map(|t| rfc3339(*t)).collect::<Vec<_>>(),
            ["2026-03-08T13:00:00+00:00", "2026-03-09T13:00:00+00:00"]
        );
        let fall = runs(
            &s,
            at("America/New_York", "2026-10-31 12:00"),
            at("America/New_York", "2026-11-02 12:00"),
        );
        assert_eq!(
            fall.iter().map(|t| rfc3339(*t)).collect::<Vec<_>>(),
            ["2026-11-01T14:00:00+00:00", "2026-11-02T14:00:00+00:00"]
        );
        // UTC itself never shifts.
        let utc = Schedule::cron("0 9 * * *", "UTC").unwrap();
        assert_eq!(
            rfc3339(utc.next_after(at("UTC", "2026-03-08 08:00"), 0).unwrap()),
            "2026-03-08T09:00:00+00:00"
        );
    }

    #[test]
    fn an_hourly_job_runs_every_real_hour_across_the_changes() {
        let s = Schedule::cron("0 * * * *", "Europe/Berlin").unwrap();
        let spring = runs(
            &s,
            at("Europe/Berlin", "2026-03-29 00:00"),
            at("Europe/Berlin", "2026-03-30 00:00"),
        );
        // 01:00, then 03:00 to 23:00 (00:00 is the start, not after it).
        assert_eq!(spring.len(), 22);
        let fall = runs(
            &s,
            at("Europe/Berlin", "2026-10-25 00:00"),
            at("Europe/Berlin", "2026-10-26 00:00"),
        );
        // 25 real hours; each is one run, the repeated 02:00 included.
        assert!(fall.windows(2).all(|w| w[1] - w[0] == 3600), "{fall:?}");
        // 01:00, 02:00 twice (both are real hours), then 03:00 to 23:00.
        assert_eq!(fall.len(), 24);
    }

    #[test]
    fn six_fields_mean_seconds_and_bad_input_says_why() {
        let s = Schedule::parse("*/15 * * * * *", None, "UTC").unwrap();
        assert_eq!(s.next_after(1_000, 0), Some(1_005));
        assert!(Schedule::parse("* * * *", None, "UTC")
            .unwrap_err()
            .to_string()
            .contains("4 fields"));
        assert!(Schedule::parse("61 * * * *", None, "UTC")
            .unwrap_err()
            .to_string()
            .contains("not a valid cron"));
        assert!(Schedule::parse("0 9 * * *", Some("Mars/Olympus"), "UTC")
            .unwrap_err()
            .to_string()
            .contains("IANA"));
        assert!(Schedule::parse("every 0 minutes", None, "UTC").is_err());
        assert!(Schedule::parse("every ten minutes", None, "UTC").is_err());
    }

    #[test]
    fn intervals_and_moments() {
        let s = Schedule::parse("every 10 minutes", None, "UTC").unwrap();
        assert_eq!(s, Schedule::Every { secs: 600 });
        // Counted from the anchor: a late tick does not shift later runs.
        assert_eq!(s.next_after(1_000 + 605, 1_000), Some(2_200));
        assert_eq!(
            Schedule::parse("every 30s", None, "UTC").unwrap(),
            Schedule::Every { secs: 30 }
        );
        let once = Schedule::parse("at 2026-12-24T18:00", Some("Europe/Berlin"), "UTC").unwrap();
        assert_eq!(
            once,
            Schedule::At {
                at: at("Europe/Berlin", "2026-12-24 18:00")
            }
        );
        let Schedule::At { at: t } = once else { unreachable!() };
        assert_eq!(once.next_after(t - 1, 0), Some(t));
        assert_eq!(once.next_after(t, 0), None);
        assert_eq!(
            Schedule::parse("at 2026-12-24T18:00:00+01:00", None, "UTC").unwrap(),
            Schedule::At { at: t }
        );
        // A local time inside the spring gap: the instant after it.
        let gap = Schedule::parse("at 2026-03-29T02:30", Some("Europe/Berlin"), "UTC").unwrap();
        assert_eq!(
            gap,
            Schedule::At {
                at: at("Europe/Berlin", "2026-03-29 03:00")
            }
        );
        let json = s.to_json();
        assert_eq!(Schedule::from_json(&json).unwrap(), s);
    }
}
