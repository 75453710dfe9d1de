//! `approval-check`: what the approval gate decides about command lines,
//! for attack reviews. Each line of standard input is one command (a JSON
//! string when it starts with `"`, so that it may hold newlines); the
//! answer is one JSON line: the verdict, the parts read, what was not read.
//!
//! approval-check [--mode off|on-miss|always] [--allow PATTERN]… [--deny PATTERN]…

use std::io::BufRead;

use oxibot_broker::approval::{policy, shell};
use oxibot_config::owner::{ApprovalMode, ApprovalSettings};

fn main() {
    let mut settings = ApprovalSettings {
        mode: ApprovalMode::OnMiss,
        ..Default::default()
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let value = args.next().unwrap_or_default();
        match a.as_str() {
            "--mode" => {
                settings.mode =
                    serde_json::from_value(serde_json::Value::String(value)).expect("mode: off|on-miss|always")
            }
            "--allow" => settings.allow.push(value),
            "--deny" => settings.deny.push(value),
            other => panic!("unknown option {other}"),
        }
    }
    for line in std::io::stdin().lock().lines() {
        let line = line.expect("stdin");
        let command: String = if line.starts_with('"') {
            serde_json::from_str(&line).expect("a JSON string")
        } else {
            line
        };
        let analysis = shell::analyze(&command);
        let verdict = policy::judge(&settings, &[], &analysis, None);
        let parts: Vec<String> = analysis.parts.iter().map(policy::render_part).collect();
        println!(
            "{}",
            serde_json::json!({"command": command, "verdict": format!("{verdict:?}"), "parts": parts,
                               "unresolved": analysis.unresolved})
        );
    }
}
