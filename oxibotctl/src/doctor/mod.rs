//! `oxibotctl doctor`: checks the installation from outside (files,
//! users, sockets, sandbox support, units, settings — `host`) and the jail
//! from inside (`jail`), and says the fix for each finding. It exits 3 when
//! it found anything, so that it can run from monitoring or CI.
//!
//! The host checks need only config.json and what any admin may look at;
//! the jail checks and the broker's own notes need the broker.

mod access;
mod host;
mod jail;
mod system;
mod workspace;

use std::path::Path;

use oxibot_proto::messages::CtlReply;
use oxibot_proto::messages::CtlRequest;
use serde_json::json;

use crate::client::{self, CtlConn};
use crate::show::shown_line;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Ok,
    /// Works, but weaker or riskier than it should be.
    Warn,
    /// Broken, or open to attack.
    Fail,
    /// Not applicable here (e.g. the unit checks under supervise mode).
    Skip,
}

impl Level {
    fn word(self) -> &'static str {
        match self {
            Level::Ok => "ok",
            Level::Warn => "warn",
            Level::Fail => "fail",
            Level::Skip => "skip",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Finding {
    pub area: &'static str,
    pub check: String,
    pub level: Level,
    /// What was seen (a mode, a value, an error).
    pub seen: String,
    /// What to do about it; empty when nothing needs doing.
    pub fix: String,
}

impl Finding {
    pub fn new(area: &'static str, check: impl Into<String>, level: Level, seen: impl Into<String>) -> Finding {
        Finding {
            area,
            check: check.into(),
            level,
            seen: seen.into(),
            fix: String::new(),
        }
    }

    pub fn fix(mut self, fix: impl Into<String>) -> Finding {
        self.fix = fix.into();
        self
    }
}

/// Runs every check; returns how many findings need attention.
pub fn run(config: &Path, socket: &Path, json: bool) -> Result<usize, String> {
    let online: Result<FromBroker, String> = client::block_on(async {
        Ok(match client::connect(socket).await {
            Ok(mut conn) => Ok(from_broker(&mut conn).await),
            Err(e) => Err(e),
        })
    })?;
    let (broker_uid, mut findings, notes) = match online {
        Ok(o) => (o.broker_uid, o.findings, o.notes),
        Err(e) => (
            None,
            vec![
                Finding::new("broker", "the broker answers on its control socket", Level::Fail, e)
                    .fix("start it (systemctl start oxibot.target); the jail checks need it"),
            ],
            Vec::new(),
        ),
    };
    let mut all = host::checks(config, broker_uid);
    all.append(&mut findings);
    let attention = all
        .iter()
        .filter(|f| matches!(f.level, Level::Warn | Level::Fail))
        .count();
    if json {
        let list: Vec<_> = all
            .iter()
            .map(|f| json!({"area": f.area, "check": f.check, "level": f.level.word(), "seen": f.seen, "fix": f.fix}))
            .collect();
        let failed = all.iter().filter(|f| f.level == Level::Fail).count();
        crate::show::print_json(
            &json!({"findings": list, "failed": failed, "warnings": attention - failed, "notes": notes}),
        );
    } else {
        for f in &all {
            let mark = match f.level {
                Level::Ok => "ok  ",
                Level::Warn => "WARN",
                Level::Fail => "FAIL",
                Level::Skip => "skip",
            };
            println!("{mark} {:<8} {:<52} {}", f.area, f.check, shown_line(&f.seen));
            if !f.fix.is_empty() && matches!(f.level, Level::Warn | Level::Fail) {
                println!("     fix: {}", f.fix);
            }
        }
        for note in &notes {
            // The broker's notes may name workspace paths a turn made.
            println!("note {}", shown_line(note));
        }
        println!(
            "{}",
            if attention == 0 {
                "nothing to fix".to_string()
            } else {
                format!("{attention} finding(s) to look at")
            }
        );
    }
    Ok(attention)
}

struct FromBroker {
    broker_uid: Option<u32>,
    findings: Vec<Finding>,
    notes: Vec<String>,
}

/// What only the broker can tell: its state, its user, and the jail as
/// seen from inside.
async fn from_broker(conn: &mut CtlConn) -> FromBroker {
    let mut findings = Vec::new();
    let mut notes = Vec::new();
    let mut broker_uid = None;
    match client::ask(conn, CtlRequest::Status).await {
        Ok(CtlReply::Status(s)) => {
            notes = s.notes.clone();
            for p in s.problems() {
                findings.push(
                    Finding::new("broker", "everything configured is connected", Level::Warn, p)
                        .fix("see oxibotctl status and journalctl -u 'oxibot-*'"),
                );
            }
            broker_uid = host::uid_of(s.broker_pid);
            findings.push(host::broker_user(broker_uid));
            findings.extend(health_as_running(&s.notes));
        }
        Ok(other) => findings.push(Finding::new(
            "broker",
            "status",
            Level::Fail,
            client::unexpected(&other),
        )),
        Err(e) => findings.push(Finding::new("broker", "status", Level::Fail, e)),
    }
    let args = json!({"command": jail::SCRIPT}).to_string();
    let request = CtlRequest::RunTool {
        name: "exec".into(),
        arguments_json: args,
    };
    match client::ask(conn, request).await {
        Ok(CtlReply::ToolResult { ok: true, output }) => {
            for c in jail::judge(&output) {
                let level = if c.ok { Level::Ok } else { Level::Fail };
                findings.push(
                    Finding::new("jail", c.name, level, c.seen).fix(
                        "is tools.sandbox \"off\"? otherwise see the tool daemon's log (journalctl -u oxibot-toold)",
                    ),
                );
            }
        }
        Ok(CtlReply::ToolResult { ok: false, output }) | Err(output) => findings.push(
            Finding::new("jail", "the checks run in the tool daemon", Level::Fail, output)
                .fix("is the tool daemon connected? see oxibotctl status"),
        ),
        Ok(other) => findings.push(Finding::new(
            "jail",
            "the checks run",
            Level::Fail,
            client::unexpected(&other),
        )),
    }
    FromBroker {
        broker_uid,
        findings,
        notes,
    }
}

/// Where the running broker's health endpoint really listens (the
/// configuration may have changed since it started).
fn health_as_running(notes: &[String]) -> Option<Finding> {
    use oxibot_proto::messages::HEALTH_LISTENING_NOTE;
    let check = "the running health endpoint is on loopback only";
    if let Some(address) = notes.iter().find_map(|n| n.strip_prefix(HEALTH_LISTENING_NOTE)) {
        let loopback = address
            .parse::<std::net::SocketAddr>()
            .is_ok_and(|a| a.ip().is_loopback());
        return Some(if loopback {
            Finding::new("broker", check, Level::Ok, address)
        } else {
            Finding::new("broker", check, Level::Fail, address)
                .fix("set health.host to 127.0.0.1, then restart the broker (a reload does not move it)")
        });
    }
    notes
        .iter()
        .find(|n| n.contains("health endpoint is NOT listening"))
        .map(|n| {
            Finding::new("broker", "the health endpoint listens", Level::Warn, n.clone())
                .fix("free the port or set health.port, then restart the broker")
        })
}
