//! Chat commands, the same on every channel and in `oxibotctl chat`:
//! /new (or /reset), /help, /status, /model, /stop.

use crate::services::Services;
use crate::turn::ChatRef;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    New,
    Help,
    Status,
    /// Which model answers, and how to change it.
    Model,
    Stop,
    /// `/approve CODE [always]`: the owner answers an approval request.
    Approve,
    /// `/deny CODE`.
    Deny,
}

/// "/new", "/reset", "/help", "/status", "/stop", also as "/stop@MyBot"
/// (Telegram's group form). Anything else is a message for the model.
pub fn parse(text: &str) -> Option<Command> {
    let word = text.split_whitespace().next()?;
    let word = word.strip_prefix('/')?;
    let name = word.split('@').next()?.to_ascii_lowercase();
    Some(match name.as_str() {
        "new" | "reset" => Command::New,
        "help" | "start" => Command::Help,
        "status" => Command::Status,
        "model" => Command::Model,
        "stop" => Command::Stop,
        "approve" => Command::Approve,
        "deny" => Command::Deny,
        _ => return None,
    })
}

pub const HELP: &str = "I'm OxiBot, your assistant. Just write to me. Commands:\n\
/new (or /reset) – start a new conversation\n\
/stop – stop what I'm doing\n\
/status – am I working?\n\
/model – which model answers\n\
/approve CODE (or /approve CODE always), /deny CODE – answer a request to run something\n\
/help – this text";

/// Runs a command from `sender` in `chat`. None of them waits for the
/// chat's running turn: `/stop` and `/approve` are meant for it.
pub fn run(svc: &Services, chat: &ChatRef, sender: &str, text: &str, cmd: Command) -> String {
    let session = &chat.session();
    match cmd {
        Command::Approve => crate::approval::answer_from_chat(svc, chat, sender, text, true),
        Command::Deny => crate::approval::answer_from_chat(svc, chat, sender, text, false),
        Command::New => match svc.store.clear_session(session) {
            Ok(()) => "Started a new conversation.".into(),
            Err(e) => format!("Sorry, I could not reset the conversation: {e}"),
        },
        Command::Help => HELP.into(),
        Command::Model => {
            let models = models(svc, true);
            let (first, rest) = models.split_first().map_or(("none", &[][..]), |(f, r)| (f.as_str(), r));
            let fallbacks = match rest {
                [] => String::new(),
                rest => format!(", then {} if it fails", rest.join(", ")),
            };
            format!(
                "Model: {first}{fallbacks}. The admin sets it (agents.defaults.model in config.json, then oxibotctl reload)."
            )
        }
        Command::Status => {
            let models = models(svc, false);
            format!(
                "Running for {} s. Model: {}. Tools: {}.",
                svc.started.elapsed().as_secs(),
                models.join(", "),
                if svc.tools.is_connected() {
                    "ready"
                } else {
                    "not available right now"
                }
            )
        }
        Command::Stop => {
            let turn = svc.sessions.stop(session);
            let tasks = crate::subagents::cancel_chat(svc, session);
            match (turn, tasks) {
                (false, 0) => "Nothing is running.".into(),
                (true, 0) => "Stopping the current request.".into(),
                (false, n) => format!("Cancelled {n} background task(s)."),
                (true, n) => format!("Stopping the current request and {n} background task(s)."),
            }
        }
    }
}

/// The models in force, the primary first (with their providers).
fn models(svc: &Services, with_provider: bool) -> Vec<String> {
    svc.live
        .settings()
        .llm()
        .describe()
        .into_iter()
        .map(|(provider, _, model, _)| match with_provider {
            true => format!("{model} ({provider})"),
            false => model,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_commands_and_leaves_the_rest() {
        assert_eq!(parse("/new"), Some(Command::New));
        assert_eq!(parse("/model"), Some(Command::Model));
        assert_eq!(parse("  /RESET please"), Some(Command::New));
        assert_eq!(parse("/stop@oxibot_bot"), Some(Command::Stop));
        assert_eq!(parse("/unknown"), None);
        assert_eq!(parse("/approve AB12CD always"), Some(Command::Approve));
        assert_eq!(parse("/deny@oxibot_bot AB12CD"), Some(Command::Deny));
        assert_eq!(parse("what is /new?"), None);
        assert_eq!(parse(""), None);
    }
}
