//! What the chat shows while a turn runs: a thinking indicator until the
//! first token, the answer as it streams, a line per tool call, and at
//! the end the answer rendered as Markdown (on a terminal, unless raw).
//!
//! Everything the model or a tool wrote passes through
//! [`crate::show::shown`] first: it must not move the cursor, set the
//! window title or write to the clipboard of the admin's terminal.

use std::io::Write;

use crate::show::{shown, shown_line};

/// Dim text, for the indicator and tool lines.
const DIM: &str = "\x1b[2m";
const RESET: &str = "\x1b[0m";

pub struct Screen {
    /// Colours, the indicator, redrawing: stdout is a terminal.
    pub terminal: bool,
    /// Answers as plain text, not rendered.
    pub raw: bool,
    /// The indicator is on the current line.
    thinking: bool,
    /// The answer's text shown since the last tool line (as received).
    streamed: String,
    /// The current line is not empty.
    mid_line: bool,
    spinner: usize,
}

impl Screen {
    pub fn new(terminal: bool, raw: bool) -> Screen {
        Screen {
            terminal,
            raw,
            thinking: false,
            streamed: String::new(),
            mid_line: false,
            spinner: 0,
        }
    }

    /// A turn starts: the indicator, until something comes.
    pub fn start(&mut self) {
        self.streamed.clear();
        self.mid_line = false;
        self.think();
    }

    /// Called a few times a second while nothing comes.
    pub fn tick(&mut self) {
        if self.thinking {
            self.think();
        }
    }

    fn think(&mut self) {
        if !self.terminal {
            return;
        }
        const FRAMES: [&str; 4] = ["·  ", "·· ", "···", " ··"];
        self.spinner = (self.spinner + 1) % FRAMES.len();
        print!("\r{DIM}{} thinking…{RESET}", FRAMES[self.spinner]);
        self.thinking = true;
        flush();
    }

    fn unthink(&mut self) {
        if self.thinking {
            print!("\r\x1b[2K");
            self.thinking = false;
        }
    }

    /// The next piece of the answer.
    pub fn text(&mut self, delta: &str) {
        self.unthink();
        if self.streamed.is_empty() {
            print!("oxibot> ");
        }
        self.streamed.push_str(delta);
        print!("{}", shown(delta));
        self.mid_line = !delta.ends_with('\n');
        flush();
    }

    /// The model's answer broke off and is asked again.
    pub fn retry(&mut self) {
        self.end_line();
        self.note("(the answer broke off; asking again)");
        self.streamed.clear();
        self.think();
    }

    /// A tool starts.
    pub fn tool(&mut self, name: &str, summary: &str) {
        self.unthink();
        self.end_line();
        let line = format!("  ⚙ {} {}", shown_line(name), shown_line(summary));
        if self.terminal {
            println!("{DIM}{}{RESET}", line.trim_end());
        } else {
            println!("{}", line.trim_end());
        }
        self.streamed.clear();
        self.think();
    }

    /// The final answer: what was not streamed of it, or all of it
    /// rendered again as Markdown.
    pub fn answer(&mut self, text: &str) {
        self.unthink();
        let streamed = std::mem::take(&mut self.streamed);
        let rest = match streamed.is_empty() {
            true => None,
            false => text.strip_prefix(streamed.as_str()),
        };
        let rendered = self.terminal && !self.raw && looks_like_markdown(text);
        match rest {
            Some(_) if rendered && self.erase(&streamed) => self.render(text),
            Some(rest) => {
                print!("{}", shown(rest));
                self.mid_line = !text.ends_with('\n');
                self.end_line();
            }
            None if rendered => {
                self.end_line();
                self.render(text);
            }
            None => {
                self.end_line();
                println!("oxibot> {}", shown(text));
            }
        }
        flush();
    }

    /// The turn was stopped.
    pub fn cancelled(&mut self) {
        self.unthink();
        self.end_line();
        self.note("(stopped)");
        self.streamed.clear();
    }

    /// A line from the client itself (a notice, a command's answer).
    pub fn note(&mut self, text: &str) {
        self.unthink();
        self.end_line();
        if self.terminal {
            println!("{DIM}{}{RESET}", shown(text));
        } else {
            println!("{}", shown(text));
        }
        flush();
    }

    fn end_line(&mut self) {
        if self.mid_line {
            println!();
            self.mid_line = false;
        }
    }

    /// Moves back over the streamed text and clears it, when all of it is
    /// still on the screen; false (nothing done) otherwise.
    fn erase(&mut self, streamed: &str) -> bool {
        let (columns, rows) = terminal_size();
        let columns = usize::from(columns.max(1));
        // Display columns, not characters: counted high, the erase would
        // reach above the answer (the tool lines, the admin's own line).
        // Wide characters at a row's end can only make it count low.
        let shown_rows: usize = format!("oxibot> {}", shown(streamed))
            .split('\n')
            .map(|line| unicode_width::UnicodeWidthStr::width(line).max(1).div_ceil(columns))
            .sum();
        if shown_rows + 1 >= usize::from(rows) {
            return false;
        }
        // To the first column of the answer's first row, and clear below.
        print!("\r");
        if shown_rows > 1 {
            print!("\x1b[{}A", shown_rows - 1);
        }
        print!("\x1b[J");
        self.mid_line = false;
        true
    }

    fn render(&mut self, text: &str) {
        println!("oxibot>");
        print!("{}", super::markdown::render(&shown(text)));
        self.mid_line = false;
    }
}

/// Markdown worth rendering: emphasis, code, headings, lists, tables.
fn looks_like_markdown(text: &str) -> bool {
    text.contains("**")
        || text.contains('`')
        || text.contains("](")
        || text.lines().any(|l| {
            let l = l.trim_start();
            l.starts_with('#')
                || l.starts_with("- ")
                || l.starts_with("* ")
                || l.starts_with('|')
                || l.starts_with("> ")
        })
}

/// (columns, rows) of the terminal on stdout; (80, 0) when unknown (no
/// rows: nothing is erased).
fn terminal_size() -> (u16, u16) {
    match rustix::termios::tcgetwinsize(std::io::stdout()) {
        Ok(size) if size.ws_col > 0 => (size.ws_col, size.ws_row),
        _ => (80, 0),
    }
}

fn flush() {
    let _ = std::io::stdout().flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_is_recognised_and_plain_text_is_not() {
        assert!(looks_like_markdown("use `ls -la`"));
        assert!(looks_like_markdown("# Plan\nfirst"));
        assert!(looks_like_markdown("- one\n- two"));
        assert!(!looks_like_markdown("Hello there. It is 5 pm."));
    }
}
