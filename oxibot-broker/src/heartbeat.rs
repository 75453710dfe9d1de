//! The heartbeat: every `heartbeat.intervalSecs` the assistant reads
//! HEARTBEAT.md (through toold, like every workspace file) and acts on its
//! accepted version: any chat's turn can write the file, and what it says
//! is sent to the owner, so a change waits for the owner like every prompt
//! file's (`prompt_files`).
//! A file with nothing to do (only headings, comments, empty checkboxes)
//! costs no model call. The answer goes to the configured chat unless it is
//! `HEARTBEAT_OK`.

use std::sync::Arc;
use std::time::Duration;

use crate::services::Services;
use crate::turn::{ChatRef, Turn, TurnKind};

pub const FILE: &str = crate::prompt_files::HEARTBEAT_FILE;
pub const OK: &str = "HEARTBEAT_OK";
/// The same cap as every prompt file's read: one version, one digest.
const MAX_FILE: u32 = crate::prompt::MAX_PROMPT_FILE;
const READ_WAIT: Duration = Duration::from_secs(20);

pub async fn run(svc: Arc<Services>) {
    loop {
        let (enabled, interval) = {
            let config = svc.config();
            (config.heartbeat.enabled, config.heartbeat.interval_secs.max(1))
        };
        if !enabled {
            // A reload may turn it on.
            tokio::time::sleep(Duration::from_secs(5)).await;
            continue;
        }
        tokio::time::sleep(Duration::from_secs(interval)).await;
        let outcome = tick(&svc).await;
        tracing::info!(outcome = outcome.as_str(), "heartbeat");
    }
}

/// What one heartbeat did.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    NoFile,
    NothingToDo,
    Ok,
    Sent,
    Failed(String),
}

impl Outcome {
    fn as_str(&self) -> &str {
        match self {
            Outcome::NoFile => "no HEARTBEAT.md",
            Outcome::NothingToDo => "nothing to do",
            Outcome::Ok => "HEARTBEAT_OK",
            Outcome::Sent => "result sent",
            Outcome::Failed(e) => e,
        }
    }
}

pub async fn tick(svc: &Arc<Services>) -> Outcome {
    let config = svc.config();
    let (Some(channel), Some(chat_id)) = (config.heartbeat.channel.clone(), config.heartbeat.chat_id.clone()) else {
        return Outcome::Failed("heartbeat.channel and heartbeat.chatId are not set".into());
    };
    let files = match svc.tools.read_texts(&[FILE], MAX_FILE, READ_WAIT).await {
        Ok(files) => files,
        Err(e) => {
            let e = format!("cannot read {FILE}: {e}");
            svc.audit.record_error(&e);
            return Outcome::Failed(e);
        }
    };
    let accepted = match crate::prompt_files::settle(&svc.store, &files, &[FILE]) {
        Ok(accepted) => accepted,
        Err(e) => {
            let e = format!("cannot read the accepted {FILE}: {e}");
            svc.audit.record_error(&e);
            return Outcome::Failed(e);
        }
    };
    let chat = ChatRef { channel, chat_id };
    crate::prompt::tell_owner(svc, &chat, &accepted.untold).await;
    let Some(file) = accepted.files.into_iter().find(|f| f.path == FILE) else {
        return Outcome::NoFile;
    };
    if nothing_to_do(&file.text) {
        return Outcome::NothingToDo;
    }
    let turn = Turn {
        session: "heartbeat".into(),
        origin: Some(chat.clone()),
        kind: TurnKind::Heartbeat,
        max_iterations: None,
        by_admin: false,
        watcher: None,
    };
    let prompt = format!(
        "[Heartbeat] This is {FILE}, the user's list of things to check on periodically. Do what needs doing \
         now. If nothing needs the user's attention, answer exactly {OK}; otherwise your answer is sent to them.\n\n{}",
        file.text
    );
    match crate::agent::run_turn(svc, &turn, &prompt, Vec::new()).await {
        Ok(answer) if is_ok(&answer) => {
            crate::metrics::background_run("heartbeat", true);
            Outcome::Ok
        }
        Ok(answer) => {
            crate::metrics::background_run("heartbeat", true);
            let origin = format!("heartbeat:{}", oxibot_runtime::clock::unix_now());
            match crate::message::queue_and_deliver(svc, &chat, &answer, Some(&origin)).await {
                Ok(_) => Outcome::Sent,
                Err(e) => Outcome::Failed(format!("cannot queue the heartbeat's result: {e}")),
            }
        }
        Err(e) => {
            crate::metrics::background_run("heartbeat", false);
            let e = format!("the heartbeat's turn failed: {e}");
            svc.audit.record_error(&e);
            Outcome::Failed(e)
        }
    }
}

/// Only headings, HTML comments, blank lines and checkboxes without text.
pub fn nothing_to_do(text: &str) -> bool {
    let mut in_comment = false;
    for line in text.lines() {
        let mut line = line.trim();
        if in_comment {
            match line.find("-->") {
                Some(end) => {
                    in_comment = false;
                    line = line[end + 3..].trim();
                }
                None => continue,
            }
        }
        // Comments that open (and maybe close) on this line.
        while let Some(start) = line.find("<!--") {
            let before = line[..start].trim();
            if !before.is_empty() && !is_blank_item(before) {
                return false;
            }
            match line[start..].find("-->") {
                Some(end) => line = line[start + end + 3..].trim(),
                None => {
                    in_comment = true;
                    line = "";
                }
            }
        }
        if !is_blank_item(line) {
            return false;
        }
    }
    true
}

fn is_blank_item(line: &str) -> bool {
    let line = line.trim();
    line.is_empty()
        || line.starts_with('#')
        || matches!(
            line,
            "- [ ]" | "* [ ]" | "- [x]" | "* [x]" | "- [X]" | "* [X]" | "-" | "*"
        )
}

/// The model's "nothing to report": HEARTBEAT_OK alone, perhaps in
/// markdown emphasis or with a full stop.
pub fn is_ok(answer: &str) -> bool {
    answer
        .trim()
        .trim_matches(|c: char| c == '*' || c == '`' || c == '.' || c.is_whitespace())
        .eq_ignore_ascii_case(OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_of_headings_comments_and_empty_boxes_has_nothing_to_do() {
        assert!(nothing_to_do(""));
        assert!(nothing_to_do(
            "# Heartbeat\n\n<!-- Add tasks below.\n     One per line. -->\n## Tasks\n- [ ]\n* [ ]\n"
        ));
        assert!(nothing_to_do("<!-- one --> <!-- two -->\n# x"));
        assert!(!nothing_to_do("# Tasks\n- [ ] water the plants\n"));
        assert!(!nothing_to_do("<!-- hidden --> check the mail"));
        assert!(!nothing_to_do("Check the backup log"));
        // An unclosed comment hides the rest, as it would in a renderer.
        assert!(nothing_to_do("<!-- draft\n- [ ] not yet\n"));
    }

    #[test]
    fn only_a_bare_ok_is_ok() {
        assert!(is_ok("HEARTBEAT_OK"));
        assert!(is_ok("  **HEARTBEAT_OK**.\n"));
        assert!(is_ok("heartbeat_ok"));
        assert!(!is_ok("HEARTBEAT_OK, but the disk is 95% full"));
        assert!(!is_ok("The backup failed. Otherwise HEARTBEAT_OK"));
    }
}
