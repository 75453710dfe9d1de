//! The line editor, on a thread of its own (rustyline blocks): editing,
//! history kept across runs, paste of any length and lines (bracketed
//! paste), a trailing `\` to continue on the next line, and tab
//! completion of the slash commands.

use std::path::PathBuf;

use rustyline::completion::Completer;
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::history::FileHistory;
use rustyline::validate::{ValidationContext, ValidationResult, Validator};
use rustyline::{Cmd, Context, Editor, ExternalPrinter, Helper, KeyCode, KeyEvent, Modifiers};
use tokio::sync::mpsc;

/// The commands the client knows, for completion and `/help`.
pub const COMMANDS: [(&str, &str); 9] = [
    ("/help", "this list"),
    ("/new", "start a new conversation (the assistant forgets this one)"),
    ("/status", "is the assistant working, which model, are the tools up"),
    ("/model", "which model answers"),
    ("/stop", "stop the running answer and background tasks"),
    ("/approve", "CODE [always]: allow what an approval request asks"),
    ("/deny", "CODE: refuse it"),
    ("/raw", "show answers as plain text, or rendered again"),
    ("/quit", "leave (Ctrl-D too)"),
];

/// What the person typed.
pub enum Input {
    Line(String),
    /// Ctrl-C at the prompt.
    Interrupted,
    /// Ctrl-D on an empty line, or the end of the input.
    Eof,
    Failed(String),
}

/// The editor's side of the conversation: the client asks for a line with
/// a prompt, the editor answers with [`Input`].
pub struct LineEditor {
    ask: std::sync::mpsc::Sender<String>,
    pub inputs: mpsc::UnboundedReceiver<Input>,
    /// Prints above the prompt while the editor reads (a terminal only).
    pub printer: Option<Box<dyn ExternalPrinter + Send>>,
}

impl LineEditor {
    pub fn start() -> Result<LineEditor, String> {
        let (ask, asks) = std::sync::mpsc::channel::<String>();
        let (tx, inputs) = mpsc::unbounded_channel();
        let (printer_tx, printer_rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("line-editor".into())
            .spawn(move || editor_thread(asks, tx, printer_tx))
            .map_err(|e| format!("cannot start the line editor: {e}"))?;
        let printer = printer_rx
            .recv()
            .map_err(|_| "the line editor did not start".to_string())?;
        Ok(LineEditor { ask, inputs, printer })
    }

    /// Asks for the next line (the answer comes through `inputs`).
    pub fn read(&self, prompt: &str) {
        let _ = self.ask.send(prompt.to_string());
    }
}

type Printer = Option<Box<dyn ExternalPrinter + Send>>;

fn editor_thread(
    asks: std::sync::mpsc::Receiver<String>,
    tx: mpsc::UnboundedSender<Input>,
    printer: std::sync::mpsc::Sender<Printer>,
) {
    let config = rustyline::Config::builder()
        .auto_add_history(false)
        .max_history_size(1000)
        .and_then(|c| Ok(c.history_ignore_dups(true)?.history_ignore_space(true)))
        .map(|c| c.build())
        .unwrap_or_default();
    let mut editor: Editor<Commands, FileHistory> = match Editor::with_config(config) {
        Ok(e) => e,
        Err(e) => {
            let _ = printer.send(None);
            let _ = tx.send(Input::Failed(format!("cannot use the terminal: {e}")));
            return;
        }
    };
    editor.set_helper(Some(Commands));
    // Enter sends, wherever the cursor is (after a paste of several
    // lines it is not at the end); a trailing `\` still continues.
    for enter in [KeyEvent(KeyCode::Enter, Modifiers::NONE), KeyEvent::ctrl('J')] {
        editor.bind_sequence(
            enter,
            Cmd::AcceptOrInsertLine {
                accept_in_the_middle: true,
            },
        );
    }
    let history = history_file();
    if let Some(path) = &history {
        // A first run has none yet.
        let _ = editor.load_history(path);
    }
    let _ = printer.send(
        editor
            .create_external_printer()
            .ok()
            .map(|p| Box::new(p) as Box<dyn ExternalPrinter + Send>),
    );
    while let Ok(prompt) = asks.recv() {
        let input = match editor.readline(&prompt) {
            Ok(line) => {
                // A `\` at a line's end asked for the next line.
                let line = line.replace("\\\n", "\n");
                if !line.trim().is_empty() {
                    let _ = editor.add_history_entry(line.as_str());
                    if let Some(path) = &history {
                        save(&mut editor, path);
                    }
                }
                Input::Line(line)
            }
            Err(ReadlineError::Interrupted) => Input::Interrupted,
            Err(ReadlineError::Eof) => Input::Eof,
            Err(e) => Input::Failed(e.to_string()),
        };
        if tx.send(input).is_err() {
            return;
        }
    }
}

/// `$XDG_STATE_HOME/oxibot/chat-history` (`~/.local/state/…`): the
/// person's own messages, so private to them.
fn history_file() -> Option<PathBuf> {
    let state = std::env::var_os("XDG_STATE_HOME")
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))?;
    let dir = state.join("oxibot");
    std::fs::create_dir_all(&dir).ok()?;
    Some(dir.join("chat-history"))
}

fn save(editor: &mut Editor<Commands, FileHistory>, path: &std::path::Path) {
    use std::os::unix::fs::OpenOptionsExt;
    // Made private before anything is written to it.
    let _ = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path);
    let _ = editor.append_history(path);
}

/// Completion of the slash commands, and the trailing `\`.
struct Commands;

impl Completer for Commands {
    type Candidate = String;

    fn complete(&self, line: &str, pos: usize, _ctx: &Context<'_>) -> rustyline::Result<(usize, Vec<String>)> {
        let typed = &line[..pos];
        if !typed.starts_with('/') || typed.contains(char::is_whitespace) {
            return Ok((0, Vec::new()));
        }
        let found = COMMANDS
            .iter()
            .map(|(name, _)| *name)
            .filter(|name| name.starts_with(typed))
            .map(|name| format!("{name} "))
            .collect();
        Ok((0, found))
    }
}

impl Hinter for Commands {
    type Hint = String;
}

impl Highlighter for Commands {}

impl Validator for Commands {
    fn validate(&self, ctx: &mut ValidationContext<'_>) -> rustyline::Result<ValidationResult> {
        Ok(if ctx.input().ends_with('\\') {
            ValidationResult::Incomplete
        } else {
            ValidationResult::Valid(None)
        })
    }
}

impl Helper for Commands {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slash_commands_complete_and_words_do_not() {
        let history = rustyline::history::DefaultHistory::new();
        let ctx = Context::new(&history);
        let (_, found) = Commands.complete("/st", 3, &ctx).unwrap();
        assert_eq!(found, ["/status ", "/stop "]);
        let (_, found) = Commands.complete("/new x", 6, &ctx).unwrap();
        assert!(found.is_empty());
        let (_, found) = Commands.complete("hello", 5, &ctx).unwrap();
        assert!(found.is_empty());
    }
}
