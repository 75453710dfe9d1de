//! Text a peer or the model wrote, made safe to print on a terminal or into
//! a log: control characters (escape sequences that rewrite the screen or
//! retitle the window, a carriage return that overwrites a log line) and
//! bidirectional overrides (which reorder what the reader sees) are shown
//! escaped, as `\u{1b}`.

/// `text` with every control character but newline and tab escaped.
pub fn printable(text: &str) -> String {
    escape(text, false)
}

/// As [`printable`], for one line: newlines and tabs are escaped too.
pub fn printable_line(text: &str) -> String {
    escape(text, true)
}

fn escape(text: &str, one_line: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' | '\t' if !one_line => out.push(c),
            c if c.is_control() => out.extend(c.escape_default()),
            // Direction overrides, and characters that show nothing
            // (zero-width spaces and joiners, word joiners, the BOM): text
            // hidden in the admin's terminal.
            '\u{061c}'
            | '\u{200b}'..='\u{200f}'
            | '\u{202a}'..='\u{202e}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{2069}'
            | '\u{feff}' => out.extend(c.escape_unicode()),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_terminal_and_bidi_controls() {
        let hostile = "\u{1b}]0;pwned\u{7}ok\u{1b}[2J\r\u{202e}gnp\u{200f}.exe\nnext\tcol";
        assert_eq!(
            printable(hostile),
            "\\u{1b}]0;pwned\\u{7}ok\\u{1b}[2J\\r\\u{202e}gnp\\u{200f}.exe\nnext\tcol"
        );
        assert_eq!(printable_line("a\nb\tc"), "a\\nb\\tc");
        assert_eq!(printable("plain — text, ünïcode"), "plain — text, ünïcode");
        // Invisible characters show: nothing hides in the admin's terminal.
        assert_eq!(
            printable("a\u{200b}b\u{2060}c\u{feff}"),
            "a\\u{200b}b\\u{2060}c\\u{feff}"
        );
    }
}
