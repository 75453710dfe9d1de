//! `time`: the time now, in UTC and in a zone. The prompt says the time
//! when a turn starts; a long turn or a background task asks again.

use serde::Deserialize;
use serde_json::json;

use super::{parse, Runs, Tool};
use crate::cron::schedule::{rfc3339, zone};

pub const TOOL: Tool = Tool {
    name: "time",
    description: "The current date and time, in UTC and in a time zone (the schedules' default zone unless you \
                  name another).",
    parameters: || {
        json!({
            "type": "object",
            "properties": {"tz": {"type": "string", "description": "IANA zone, e.g. Europe/Berlin"}}
        })
    },
    offered: |_, _| true,
    runs: Runs::Broker(|svc, _, args| {
        Box::pin(async move {
            let a: TimeArgs = parse("time", args)?;
            let tz = a.tz.unwrap_or_else(|| svc.config().cron.timezone.clone());
            now_in(oxibot_runtime::clock::unix_now(), &tz)
        })
    }),
};

#[derive(Deserialize)]
struct TimeArgs {
    tz: Option<String>,
}

/// `now` in UTC and in `tz`; an unknown zone is the model's to correct.
fn now_in(now: i64, tz: &str) -> Result<String, String> {
    let local = jiff::Timestamp::from_second(now)
        .map_err(|e| format!("the clock reads an impossible time: {e}"))?
        .to_zoned(zone(tz).map_err(|e| e.to_string())?)
        .strftime("%Y-%m-%d %H:%M:%S %a")
        .to_string();
    Ok(format!("{} ({local} in {tz})", rfc3339(now)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_and_the_zone_asked_for() {
        // 2026-12-24T17:00:00Z
        let t = 1_798_131_600;
        assert_eq!(
            now_in(t, "Europe/Berlin").unwrap(),
            "2026-12-24T17:00:00+00:00 (2026-12-24 18:00:00 Thu in Europe/Berlin)"
        );
        assert!(now_in(t, "Mars/Olympus").unwrap_err().contains("not an IANA time zone"));
    }
}
