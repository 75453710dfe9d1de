//! OxiBot's (and nanobot's) scheduled jobs, `cron/jobs.json`, converted for
//! `config import`. The converted list is written next to the new config
//! (`cron.importFile`); the broker adds each job once, at its next start,
//! remembering the old job's id, so importing twice schedules nothing twice.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One job, as the broker reads it back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImportedJob {
    /// The job's id in the old store: the broker imports each id once.
    pub source_id: String,
    pub name: String,
    pub channel: String,
    pub chat_id: String,
    /// `every N seconds`, `at <RFC 3339>`, or a cron expression.
    pub schedule: String,
    pub tz: Option<String>,
    pub message: String,
    pub enabled: bool,
}

/// The jobs of a `jobs.json`, and a warning for each one left behind.
pub fn convert(text: &str) -> Result<(Vec<ImportedJob>, Vec<String>), String> {
    let store: Value = serde_json::from_str(text).map_err(|e| format!("cron/jobs.json is not valid JSON: {e}"))?;
    let jobs = store["jobs"].as_array().ok_or("cron/jobs.json has no \"jobs\" list")?;
    let mut out = Vec::new();
    let mut warnings = Vec::new();
    for job in jobs {
        let id = job["id"].as_str().unwrap_or_default().to_string();
        let name = job["name"].as_str().unwrap_or(&id).to_string();
        let payload = &job["payload"];
        let (Some(channel), Some(chat)) = (payload["channel"].as_str(), payload["to"].as_str()) else {
            warnings.push(format!(
                "cron job {id} (\"{name}\") names no channel and chat to deliver to; not imported \
                 (here every job's result goes to a chat)"
            ));
            continue;
        };
        if payload["deliver"] == Value::Bool(false) {
            warnings.push(format!(
                "cron job {id} (\"{name}\"): its results were not delivered there; here they go to {channel}:{chat}"
            ));
        }
        let s = &job["schedule"];
        let schedule = match s["kind"].as_str() {
            Some("every") => match s["everyMs"].as_u64() {
                Some(ms) => format!("every {} seconds", (ms / 1000).max(1)),
                None => {
                    warnings.push(format!(
                        "cron job {id} (\"{name}\"): an interval without everyMs; not imported"
                    ));
                    continue;
                }
            },
            Some("at") => match s["atMs"].as_i64() {
                Some(ms) => format!("at {}", oxibot_runtime::clock::rfc3339_utc(ms.div_euclid(1000))),
                None => {
                    warnings.push(format!(
                        "cron job {id} (\"{name}\"): a one-time job without atMs; not imported"
                    ));
                    continue;
                }
            },
            Some("cron") => match s["expr"].as_str() {
                Some(expr) => expr.to_string(),
                None => {
                    warnings.push(format!(
                        "cron job {id} (\"{name}\"): a cron job without expr; not imported"
                    ));
                    continue;
                }
            },
            other => {
                warnings.push(format!(
                    "cron job {id} (\"{name}\"): unknown schedule kind {other:?}; not imported"
                ));
                continue;
            }
        };
        let tz = s["tz"].as_str().map(str::to_string);
        if s["kind"] == "cron" && tz.is_none() {
            warnings.push(format!(
                "cron job {id} (\"{name}\"): no time zone; it ran in the server's local time there, \
                 here in cron.timezone (UTC unless set)"
            ));
        }
        out.push(ImportedJob {
            source_id: id,
            name,
            channel: channel.to_string(),
            chat_id: chat.to_string(),
            schedule,
            tz,
            message: payload["message"].as_str().unwrap_or_default().to_string(),
            enabled: job["enabled"].as_bool().unwrap_or(true),
        });
    }
    Ok((out, warnings))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_of_every_kind_convert_and_the_rest_are_named() {
        let text = r#"{"version": 1, "jobs": [
          {"id": "a1", "name": "standup", "enabled": true,
           "schedule": {"kind": "cron", "expr": "0 9 * * 1-5", "tz": "Europe/Berlin"},
           "payload": {"kind": "agent_turn", "message": "Summarise my day", "deliver": true, "channel": "telegram", "to": "42"}},
          {"id": "b2", "name": "water", "enabled": false,
           "schedule": {"kind": "every", "everyMs": 1200000},
           "payload": {"kind": "agent_turn", "message": "Drink water", "deliver": true, "channel": "telegram", "to": "42"}},
          {"id": "c3", "name": "once",
           "schedule": {"kind": "at", "atMs": 1798617600000},
           "payload": {"kind": "agent_turn", "message": "Happy new year", "deliver": false, "channel": "slack", "to": "C1"}},
          {"id": "d4", "name": "nowhere",
           "schedule": {"kind": "every", "everyMs": 60000},
           "payload": {"kind": "agent_turn", "message": "x", "deliver": false}},
          {"id": "e5", "name": "local", "schedule": {"kind": "cron", "expr": "0 8 * * *"},
           "payload": {"message": "y", "channel": "telegram", "to": "42"}}
        ]}"#;
        let (jobs, warnings) = convert(text).unwrap();
        assert_eq!(jobs.len(), 4);
        assert_eq!(jobs[0].schedule, "0 9 * * 1-5");
        assert_eq!(jobs[0].tz.as_deref(), Some("Europe/Berlin"));
        assert_eq!(
            (jobs[1].schedule.as_str(), jobs[1].enabled),
            ("every 1200 seconds", false)
        );
        assert_eq!(jobs[2].schedule, "at 2026-12-30T08:00:00+00:00");
        assert_eq!((jobs[2].channel.as_str(), jobs[2].chat_id.as_str()), ("slack", "C1"));
        assert!(
            warnings.iter().any(|w| w.contains("d4") && w.contains("not imported")),
            "{warnings:?}"
        );
        assert!(
            warnings.iter().any(|w| w.contains("c3") && w.contains("not delivered")),
            "{warnings:?}"
        );
        assert!(
            warnings.iter().any(|w| w.contains("e5") && w.contains("no time zone")),
            "{warnings:?}"
        );
        assert!(convert("[]").is_err());
    }
}
