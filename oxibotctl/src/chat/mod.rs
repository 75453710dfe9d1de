//! `oxibotctl chat`: a conversation in the terminal. Lines are edited
//! and kept across runs; slash commands are handled here or by the
//! broker's chat commands, never by the model; the answer streams as the
//! provider sends it, with a line per tool call; Ctrl-C stops the turn
//! and keeps the client; a broker restart is waited out; messages sent to
//! the console chat later (a background task's result, a job's) show up
//! in the open client, or in the next one.

mod editor;
mod link;
mod markdown;
mod screen;

use std::collections::HashSet;
use std::io::IsTerminal;
use std::path::Path;
use std::time::Duration;

use oxibot_proto::messages::{ChatEvent, CtlReply, CtlRequest};

use editor::{Input, LineEditor, COMMANDS};
use link::{Delivered, Link};
use screen::Screen;

/// The prompt; the answer's lines start with `oxibot> `.
const PROMPT: &str = "you> ";

pub fn run(socket: &Path, session: &str, raw: bool) -> Result<(), String> {
    let terminal = std::io::stdout().is_terminal();
    let mut chat = Chat {
        screen: Screen::new(terminal, raw || !terminal),
        editor: LineEditor::start()?,
        session: session.to_string(),
        shown: HashSet::new(),
        owed: 0,
    };
    crate::client::block_on(async move {
        let (mut link, waiting) = Link::open(socket, session).await?;
        if terminal {
            chat.screen.note(&format!(
                "OxiBot chat ({session}). /help for commands, Ctrl-C stops an answer, Ctrl-D leaves."
            ));
        }
        chat.show_delivered(&mut link, waiting).await;
        chat.conversation(&mut link).await
    })
}

struct Chat {
    screen: Screen,
    editor: LineEditor,
    session: String,
    /// Console messages already shown (one may arrive twice around an
    /// attach).
    shown: HashSet<u64>,
    /// Answers owed to commands sent during a turn (an approval's button):
    /// an error among them is theirs, not the turn's.
    owed: usize,
}

impl Chat {
    async fn conversation(&mut self, link: &mut Link) -> Result<(), String> {
        loop {
            let Some(input) = self.next_line(link).await? else {
                return Ok(());
            };
            let line = input.trim();
            if line.is_empty() {
                continue;
            }
            match local_command(line) {
                Some(Local::Quit) => return Ok(()),
                Some(Local::Help) => self.help(),
                Some(Local::Raw) => {
                    self.screen.raw = !self.screen.raw;
                    let now = if self.screen.raw { "as plain text" } else { "rendered" };
                    self.screen.note(&format!("answers are shown {now}"));
                }
                Some(Local::Unknown(word)) => self.screen.note(&format!(
                    "{word}: no such command; /help lists them (start with // to send a line that begins with /)"
                )),
                Some(Local::Broker) => self.command(link, line).await?,
                None => {
                    let message = line.strip_prefix("//").map(|m| format!("/{m}")).unwrap_or(input);
                    self.turn(link, message).await?;
                }
            }
        }
    }

    /// Waits for the person's next line, showing console messages that
    /// arrive meanwhile. None: they left.
    async fn next_line(&mut self, link: &mut Link) -> Result<Option<String>, String> {
        self.editor.read(PROMPT);
        loop {
            tokio::select! {
                input = self.editor.inputs.recv() => return match input {
                    Some(Input::Line(line)) => Ok(Some(line)),
                    Some(Input::Interrupted) => {
                        self.editor.read(PROMPT);
                        continue;
                    }
                    Some(Input::Eof) | None => Ok(None),
                    Some(Input::Failed(e)) => Err(e),
                },
                frame = link.recv() => match frame {
                    Ok(CtlReply::Chat(ChatEvent::Delivered { outbox_id, text, buttons })) => {
                        let d = Delivered { outbox_id, text, buttons };
                        self.print_above_prompt(link, d).await;
                    }
                    Ok(CtlReply::Error { message }) => self.print_above(&format!("error: {message}")),
                    Ok(_) => {}
                    Err(_) => {
                        self.print_above("(the broker went away; reconnecting…)");
                        let waiting = link.reopen().await?;
                        self.print_above("(reconnected)");
                        for d in waiting {
                            self.print_above_prompt(link, d).await;
                        }
                    }
                },
            }
        }
    }

    /// One turn: sent once, shown as it streams, stopped by Ctrl-C.
    async fn turn(&mut self, link: &mut Link, message: String) -> Result<(), String> {
        self.owed = 0;
        let request = CtlRequest::Chat {
            session: self.session.clone(),
            message,
        };
        let waiting = link.send(&request).await?;
        self.show_delivered(link, waiting).await;
        self.screen.start();
        let mut tick = tokio::time::interval(Duration::from_millis(150));
        let mut cancelling = false;
        loop {
            tokio::select! {
                frame = link.recv() => match frame {
                    Ok(CtlReply::Chat(event)) => match event {
                        ChatEvent::Text { delta } => self.screen.text(&delta),
                        ChatEvent::Retry => self.screen.retry(),
                        ChatEvent::Tool { name, summary } => self.screen.tool(&name, &summary),
                        ChatEvent::Answer { text } => {
                            self.screen.answer(&text);
                            return Ok(());
                        }
                        ChatEvent::Cancelled => {
                            self.screen.cancelled();
                            return Ok(());
                        }
                        ChatEvent::Delivered { outbox_id, text, buttons } => {
                            self.show_delivered(link, vec![Delivered { outbox_id, text, buttons }]).await;
                        }
                    },
                    Ok(CtlReply::Done { message }) => {
                        self.owed = self.owed.saturating_sub(1);
                        self.screen.note(&message);
                    }
                    Ok(CtlReply::Error { message }) => {
                        self.screen.note(&format!("error: {message}"));
                        // An error answers the turn itself, unless a
                        // command sent meanwhile is owed its answer.
                        if self.owed == 0 {
                            return Ok(());
                        }
                        self.owed -= 1;
                    }
                    Ok(other) => return Err(crate::client::unexpected(&other)),
                    Err(_) => {
                        self.screen.note(
                            "(the broker went away during this answer. What it finished is kept in the \
                             conversation; your message is not sent again: press ↑ and Enter to send it again)",
                        );
                        let waiting = link.reopen().await?;
                        self.show_delivered(link, waiting).await;
                        return Ok(());
                    }
                },
                _ = tokio::signal::ctrl_c(), if !cancelling => {
                    cancelling = true;
                    self.screen.note("(stopping…)");
                    link.send(&CtlRequest::ChatCancel).await?;
                }
                _ = tick.tick() => self.screen.tick(),
            }
        }
    }

    /// A command the broker runs, as on every chat platform.
    async fn command(&mut self, link: &mut Link, line: &str) -> Result<(), String> {
        let request = CtlRequest::ChatCommand {
            session: self.session.clone(),
            text: line.to_string(),
        };
        let waiting = link.send(&request).await?;
        self.show_delivered(link, waiting).await;
        loop {
            match link.recv().await {
                Ok(CtlReply::Done { message }) => {
                    self.screen.note(&message);
                    return Ok(());
                }
                Ok(CtlReply::Error { message }) => {
                    self.screen.note(&format!("error: {message}"));
                    return Ok(());
                }
                Ok(CtlReply::Chat(ChatEvent::Delivered {
                    outbox_id,
                    text,
                    buttons,
                })) => {
                    let d = Delivered {
                        outbox_id,
                        text,
                        buttons,
                    };
                    self.show_delivered(link, vec![d]).await;
                }
                Ok(other) => return Err(crate::client::unexpected(&other)),
                Err(_) => {
                    self.screen
                        .note("(the broker went away before it answered; run the command again)");
                    let waiting = link.reopen().await?;
                    self.show_delivered(link, waiting).await;
                    return Ok(());
                }
            }
        }
    }

    fn help(&mut self) {
        let mut text = String::from("Write to the assistant, or:\n");
        for (name, what) in COMMANDS {
            text.push_str(&format!("  {name:<9} {what}\n"));
        }
        text.push_str("End a line with \\ to go on on the next one; a paste is sent whole.");
        self.screen.note(&text);
    }

    /// Console messages, shown between turns' output; approval requests
    /// are answered on the spot.
    async fn show_delivered(&mut self, link: &mut Link, messages: Vec<Delivered>) {
        for d in messages {
            if !self.shown.insert(d.outbox_id) {
                continue;
            }
            self.screen.note(&format!("── message ──\n{}", d.text));
            if !d.buttons.is_empty() {
                self.ask_buttons(link, &d).await;
            }
            let _ = link.send(&CtlRequest::ConsoleAck { outbox_id: d.outbox_id }).await;
        }
    }

    /// Offers a message's buttons as numbered answers and sends the chosen
    /// one as its command (the broker's answer comes as `Done`).
    async fn ask_buttons(&mut self, link: &mut Link, d: &Delivered) {
        let choices: Vec<String> = d
            .buttons
            .iter()
            .enumerate()
            .map(|(i, b)| format!("[{}] {}", i + 1, crate::show::shown_line(&b.label)))
            .collect();
        self.editor
            .read(&format!("{}  (number, Enter to leave it)> ", choices.join("  ")));
        let Some(Input::Line(answer)) = self.editor.inputs.recv().await else {
            return;
        };
        let chosen = answer
            .trim()
            .parse::<usize>()
            .ok()
            .and_then(|n| n.checked_sub(1))
            .and_then(|i| d.buttons.get(i));
        if let Some(button) = chosen {
            let request = CtlRequest::ChatCommand {
                session: self.session.clone(),
                text: button.says.clone(),
            };
            if link.send(&request).await.is_ok() {
                self.owed += 1;
            }
        }
    }

    /// While the editor shows the prompt.
    async fn print_above_prompt(&mut self, link: &mut Link, d: Delivered) {
        if !self.shown.insert(d.outbox_id) {
            return;
        }
        self.print_above(&format!("── message ──\n{}", d.text));
        if !d.buttons.is_empty() {
            self.print_above("(it asks for an answer: type /approve or /deny with its code)");
        }
        let _ = link.send(&CtlRequest::ConsoleAck { outbox_id: d.outbox_id }).await;
    }

    fn print_above(&mut self, text: &str) {
        let text = crate::show::shown(text);
        match self.editor.printer.as_mut() {
            Some(printer) => {
                let _ = printer.print(format!("{text}\n"));
            }
            None => println!("{text}"),
        }
    }
}

enum Local {
    Quit,
    Help,
    Raw,
    /// Run by the broker: /new, /status, /model, /stop, /approve, /deny.
    Broker,
    Unknown(String),
}

/// A line that is a command: `/word …`. `//…` is a message that starts
/// with `/`.
fn local_command(line: &str) -> Option<Local> {
    if !line.starts_with('/') || line.starts_with("//") {
        return None;
    }
    let word = line.split_whitespace().next().unwrap_or(line);
    let known = match word.to_ascii_lowercase().as_str() {
        "/quit" | "/exit" => Local::Quit,
        "/help" | "/?" => Local::Help,
        "/raw" => Local::Raw,
        "/new" | "/reset" | "/status" | "/model" | "/stop" | "/approve" | "/deny" => Local::Broker,
        // A path or a sentence is a message ("/etc/hosts: what is it?").
        _ if word[1..].contains('/') || line.contains(char::is_whitespace) => return None,
        _ => Local::Unknown(word.to_string()),
    };
    Some(known)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_stay_here_and_paths_go_to_the_model() {
        assert!(matches!(local_command("/quit"), Some(Local::Quit)));
        assert!(matches!(local_command("/HELP"), Some(Local::Help)));
        assert!(matches!(local_command("/new"), Some(Local::Broker)));
        assert!(matches!(local_command("/approve AB12CD always"), Some(Local::Broker)));
        assert!(matches!(local_command("/hlep"), Some(Local::Unknown(w)) if w == "/hlep"));
        assert!(local_command("/etc/hosts: what is in it?").is_none());
        assert!(local_command("//new is a word").is_none());
        assert!(local_command("hello /new").is_none());
        assert!(local_command("/tmp is full, why?").is_none());
    }
}
