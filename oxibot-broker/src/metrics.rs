//! Counters for `/metrics` (Prometheus text format). Process-wide, because
//! what they count happens deep in the agent and the providers; everything
//! about channels and processes comes from the status report instead, so
//! there is one source for each figure.
//!
//! Label values are either ours (provider names from the registry, tool
//! names we define, channel names from the config) or folded into
//! "other", and every label is escaped: a model that invents tool names
//! can neither add series nor break the format.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use oxibot_proto::messages::StatusReport;

/// Upper bounds (seconds) of the provider latency histogram.
const LATENCY_BUCKETS: [f64; 10] = [0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0];

#[derive(Default)]
struct Latency {
    buckets: [u64; LATENCY_BUCKETS.len()],
    count: u64,
    sum_secs: f64,
}

#[derive(Default)]
struct Counters {
    /// (tool, "ok" | "error") → calls
    tool_calls: BTreeMap<(String, &'static str), u64>,
    /// (ability: "cron", "heartbeat", "subagent", outcome) → runs
    background_runs: BTreeMap<(&'static str, &'static str), u64>,
    /// (provider, "ok" | "error") → requests
    provider_requests: BTreeMap<(String, &'static str), u64>,
    provider_latency: BTreeMap<String, Latency>,
    /// peer ("toold", "channel:telegram") → links established
    links: BTreeMap<String, u64>,
}

static COUNTERS: LazyLock<Mutex<Counters>> = LazyLock::new(Mutex::default);

fn with<R>(f: impl FnOnce(&mut Counters) -> R) -> R {
    f(&mut COUNTERS.lock().unwrap_or_else(|p| p.into_inner()))
}

/// A tool name as a label: one of ours, or "other" for whatever name the
/// model made up (which would otherwise add a series per invention). The
/// caller knows the tool table; the counters do not.
fn tool_label(name: &str, ours: bool) -> String {
    if ours {
        name.to_string()
    } else {
        "other".to_string()
    }
}

fn outcome(ok: bool) -> &'static str {
    if ok {
        "ok"
    } else {
        "error"
    }
}

/// One run of a scheduled job.
pub fn cron_run(ok: bool) {
    background_run("cron", ok);
}

/// One run of something the assistant does on its own.
pub fn background_run(ability: &'static str, ok: bool) {
    with(|c| *c.background_runs.entry((ability, outcome(ok))).or_default() += 1);
}

pub fn tool_call(name: &str, ours: bool, ok: bool) {
    with(|c| *c.tool_calls.entry((tool_label(name, ours), outcome(ok))).or_default() += 1);
}

/// One HTTP request to a provider (each retry counts), with its latency.
pub fn provider_request(provider: &str, ok: bool, took: Duration) {
    with(|c| {
        *c.provider_requests
            .entry((provider.to_string(), outcome(ok)))
            .or_default() += 1;
        let l = c.provider_latency.entry(provider.to_string()).or_default();
        let secs = took.as_secs_f64();
        for (i, bound) in LATENCY_BUCKETS.iter().enumerate() {
            if secs <= *bound {
                l.buckets[i] += 1;
            }
        }
        l.count += 1;
        l.sum_secs += secs;
    });
}

/// A daemon's link came up; more than one per daemon means it restarted
/// or reconnected.
pub fn link_established(peer: &str) {
    with(|c| *c.links.entry(peer.to_string()).or_default() += 1);
}

/// A label value, escaped as the text format requires.
fn label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for ch in v.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

type CounterOf = fn(&oxibot_proto::messages::ChannelCounters) -> u64;

/// Everything, in the Prometheus text exposition format (version 0.0.4).
pub fn render(status: &StatusReport) -> String {
    let mut out = String::new();
    header(&mut out, "oxibot_up", "gauge", "1 while the broker answers.");
    let _ = writeln!(out, "oxibot_up 1");
    header(
        &mut out,
        "oxibot_uptime_seconds",
        "gauge",
        "Seconds since the broker started.",
    );
    let _ = writeln!(out, "oxibot_uptime_seconds {}", status.uptime_secs);
    header(
        &mut out,
        "oxibot_ready",
        "gauge",
        "1 when toold and every enabled channel are connected.",
    );
    let _ = writeln!(out, "oxibot_ready {}", u8::from(status.problems().is_empty()));
    header(
        &mut out,
        "oxibot_tool_daemon_connected",
        "gauge",
        "1 while toold is connected.",
    );
    let _ = writeln!(out, "oxibot_tool_daemon_connected {}", u8::from(status.tool_connected));

    let per_channel: [(&str, &str, CounterOf); 5] = [
        (
            "oxibot_messages_received_total",
            "Messages admitted and committed.",
            |c| c.received,
        ),
        (
            "oxibot_messages_refused_total",
            "Messages refused by access control.",
            |c| c.refused,
        ),
        ("oxibot_messages_sent_total", "Replies the platform accepted.", |c| {
            c.sent
        }),
        (
            "oxibot_send_failures_total",
            "Reply attempts the platform did not take.",
            |c| c.send_failures,
        ),
        (
            "oxibot_platform_disconnects_total",
            "Times a daemon lost its platform.",
            |c| c.disconnects,
        ),
    ];
    header(
        &mut out,
        "oxibot_channel_connected",
        "gauge",
        "1 while the channel's daemon is connected.",
    );
    for ch in &status.channels {
        let _ = writeln!(
            out,
            "oxibot_channel_connected{{channel=\"{}\"}} {}",
            label(&ch.name),
            u8::from(ch.connected)
        );
    }
    for (name, help, get) in per_channel {
        header(&mut out, name, "counter", help);
        for ch in &status.channels {
            let _ = writeln!(out, "{name}{{channel=\"{}\"}} {}", label(&ch.name), get(&ch.counters));
        }
    }
    header(&mut out, "oxibot_queue_depth", "gauge", "Messages waiting, by queue.");
    let _ = writeln!(
        out,
        "oxibot_queue_depth{{queue=\"inbound\"}} {}",
        status.queues.inbound_pending
    );
    let _ = writeln!(
        out,
        "oxibot_queue_depth{{queue=\"outbox\"}} {}",
        status.queues.outbox_pending
    );
    header(
        &mut out,
        "oxibot_process_restarts_total",
        "counter",
        "Restarts of supervised daemons (supervise mode).",
    );
    for p in &status.processes {
        let _ = writeln!(
            out,
            "oxibot_process_restarts_total{{process=\"{}\"}} {}",
            label(&p.name),
            p.restarts
        );
    }

    with(|c| {
        header(
            &mut out,
            "oxibot_links_established_total",
            "counter",
            "Daemon links established (above 1: restarts or reconnects).",
        );
        for (peer, n) in &c.links {
            let _ = writeln!(out, "oxibot_links_established_total{{peer=\"{}\"}} {n}", label(peer));
        }
        header(
            &mut out,
            "oxibot_tool_calls_total",
            "counter",
            "Tool calls, by tool and outcome.",
        );
        for ((tool, result), n) in &c.tool_calls {
            let _ = writeln!(
                out,
                "oxibot_tool_calls_total{{tool=\"{}\",outcome=\"{result}\"}} {n}",
                label(tool)
            );
        }
        header(
            &mut out,
            "oxibot_background_runs_total",
            "counter",
            "Scheduled jobs, heartbeats and subagents run, by ability and outcome.",
        );
        for ((ability, result), n) in &c.background_runs {
            let _ = writeln!(
                out,
                "oxibot_background_runs_total{{ability=\"{ability}\",outcome=\"{result}\"}} {n}"
            );
        }
        header(
            &mut out,
            "oxibot_provider_requests_total",
            "counter",
            "HTTP requests to LLM providers (each retry counts).",
        );
        for ((provider, result), n) in &c.provider_requests {
            let _ = writeln!(
                out,
                "oxibot_provider_requests_total{{provider=\"{}\",outcome=\"{result}\"}} {n}",
                label(provider)
            );
        }
        header(
            &mut out,
            "oxibot_provider_latency_seconds",
            "histogram",
            "Time to a provider's complete answer.",
        );
        for (provider, l) in &c.provider_latency {
            let p = label(provider);
            for (bound, n) in LATENCY_BUCKETS.iter().zip(l.buckets) {
                let _ = writeln!(
                    out,
                    "oxibot_provider_latency_seconds_bucket{{provider=\"{p}\",le=\"{bound}\"}} {n}"
                );
            }
            let _ = writeln!(
                out,
                "oxibot_provider_latency_seconds_bucket{{provider=\"{p}\",le=\"+Inf\"}} {}",
                l.count
            );
            let _ = writeln!(
                out,
                "oxibot_provider_latency_seconds_sum{{provider=\"{p}\"}} {}",
                l.sum_secs
            );
            let _ = writeln!(
                out,
                "oxibot_provider_latency_seconds_count{{provider=\"{p}\"}} {}",
                l.count
            );
        }
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_escaped_and_invented_tool_names_are_folded() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        assert_eq!(tool_label("read_file", true), "read_file");
        assert_eq!(tool_label("x\"} 1\nevil_total 99", false), "other");
        assert_eq!(
            tool_label("made_up_tool_name", false),
            "other",
            "only our tools get a series"
        );
    }

    #[test]
    fn the_histogram_is_cumulative() {
        provider_request("test-provider-hist", true, Duration::from_millis(300));
        provider_request("test-provider-hist", false, Duration::from_secs(200));
        let status = StatusReport {
            broker_pid: 1,
            uptime_secs: 1,
            processes: Vec::new(),
            channels: Vec::new(),
            queues: oxibot_proto::messages::QueueDepths {
                inbound_pending: 0,
                outbox_pending: 0,
            },
            providers: Vec::new(),
            tool_connected: false,
            last_error: None,
            notes: Vec::new(),
        };
        let text = render(&status);
        let line = |needle: &str| {
            text.lines()
                .find(|l| l.starts_with(needle))
                .unwrap_or_else(|| panic!("{needle} missing in\n{text}"))
                .to_string()
        };
        assert!(
            line("oxibot_provider_latency_seconds_bucket{provider=\"test-provider-hist\",le=\"0.25\"}").ends_with(" 0")
        );
        assert!(
            line("oxibot_provider_latency_seconds_bucket{provider=\"test-provider-hist\",le=\"0.5\"}").ends_with(" 1")
        );
        assert!(
            line("oxibot_provider_latency_seconds_bucket{provider=\"test-provider-hist\",le=\"120\"}").ends_with(" 1")
        );
        assert!(
            line("oxibot_provider_latency_seconds_bucket{provider=\"test-provider-hist\",le=\"+Inf\"}").ends_with(" 2")
        );
        assert!(
            line("oxibot_provider_requests_total{provider=\"test-provider-hist\",outcome=\"error\"}").ends_with(" 1")
        );
        assert_eq!(line("oxibot_ready"), "oxibot_ready 0");
    }
}
