//! `oxibotctl status`: what runs, what is connected, and whether anything
//! the configuration asks for is down (exit status 3).

use oxibot_proto::messages::StatusReport;
use serde_json::json;

use crate::show::shown_line;

/// Prints the report; returns what is down.
pub fn print(s: &StatusReport, json: bool) -> Vec<String> {
    let problems = s.problems();
    if json {
        crate::show::print_json(&to_json(s, &problems));
    } else {
        print_text(s, &problems);
    }
    problems
}

fn to_json(s: &StatusReport, problems: &[String]) -> serde_json::Value {
    let processes: Vec<_> = s
        .processes
        .iter()
        .map(|p| json!({"name": p.name, "pid": p.pid, "uptimeSecs": p.uptime_secs, "restarts": p.restarts, "lastExit": p.last_exit}))
        .collect();
    let providers: Vec<_> = s
        .providers
        .iter()
        .map(|p| json!({"name": p.name, "apiBase": p.api_base, "hasKey": p.has_key, "models": p.models}))
        .collect();
    json!({
        "ok": problems.is_empty(), "problems": problems,
        "brokerPid": s.broker_pid, "uptimeSecs": s.uptime_secs, "processes": processes,
        "channels": channels_json(s), "toolConnected": s.tool_connected,
        "queues": {"inboundPending": s.queues.inbound_pending, "outboxPending": s.queues.outbox_pending},
        "providers": providers, "lastError": s.last_error, "notes": s.notes,
    })
}

pub fn channels_json(s: &StatusReport) -> Vec<serde_json::Value> {
    s.channels
        .iter()
        .map(|c| {
            let n = &c.counters;
            json!({"name": c.name, "connected": c.connected, "lastError": c.last_error,
                   "counters": {"received": n.received, "refused": n.refused, "sent": n.sent,
                                "sendFailures": n.send_failures, "disconnects": n.disconnects}})
        })
        .collect()
}

pub fn print_channels(s: &StatusReport) {
    for c in &s.channels {
        let err = c
            .last_error
            .as_deref()
            .map(|e| format!(" ({})", shown_line(e)))
            .unwrap_or_default();
        let n = &c.counters;
        println!(
            "  {:<12} {}{err}\n  {:<12} received {}, refused {}, sent {}, send failures {}, disconnects {}",
            c.name,
            if c.connected { "connected" } else { "DISCONNECTED" },
            "",
            n.received,
            n.refused,
            n.sent,
            n.send_failures,
            n.disconnects
        );
    }
}

fn print_text(s: &StatusReport, problems: &[String]) {
    println!(
        "broker pid {} up {}",
        s.broker_pid,
        crate::show::duration(s.uptime_secs)
    );
    println!("processes:");
    for p in &s.processes {
        let pid = p.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into());
        let up = p.uptime_secs.map(crate::show::duration).unwrap_or_else(|| "-".into());
        let exit = p
            .last_exit
            .as_deref()
            .map(|e| format!(", last exit: {}", shown_line(e)))
            .unwrap_or_default();
        println!("  {:<20} pid {pid:<8} up {up:<8} restarts {}{exit}", p.name, p.restarts);
    }
    println!(
        "tool daemon: {}",
        if s.tool_connected { "connected" } else { "NOT connected" }
    );
    println!("channels:");
    print_channels(s);
    println!(
        "queues: {} inbound pending, {} outbound pending",
        s.queues.inbound_pending, s.queues.outbox_pending
    );
    println!("providers:");
    for p in &s.providers {
        println!(
            "  {:<12} {} key: {} models: {}",
            p.name,
            p.api_base,
            if p.has_key { "yes" } else { "no" },
            p.models.join(", ")
        );
    }
    if let Some(e) = &s.last_error {
        println!("last error: {}", shown_line(e));
    }
    for note in &s.notes {
        // Notes can name workspace paths (prompt files a turn created):
        // stranger-written, so shown escaped.
        println!("note: {}", crate::show::shown_line(note));
    }
    if problems.is_empty() {
        println!("state: ok");
    } else {
        println!("state: DEGRADED");
        for p in problems {
            println!("  {p}");
        }
    }
}
