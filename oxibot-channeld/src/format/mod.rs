//! Markdown from the model → each platform's format, and splitting at the
//! platform's length limit — never inside a code block's fence pair and
//! never inside a character. The converters are single passes with no regex
//! to compile (the first OxiBot spent 60 % of its CPU recompiling ten).
//!
//! The model's text is a stranger's text: it must not ping a whole Slack
//! workspace (`<!channel>`), smuggle markup into Telegram's HTML, or turn a
//! "link" into a mention. Each converter escapes what its platform treats
//! as commands.

mod telegram;

pub use telegram::markdown_to_html as markdown_to_telegram_html;
#[cfg(test)]
pub use telegram::visible_len as telegram_visible_len;

/// Splits `text` into chunks of at most `max` characters. Code fences stay
/// balanced: a block cut in two is closed at the end of one chunk and
/// reopened (with its language) at the start of the next.
pub fn split(text: &str, max: usize) -> Vec<String> {
    let max = max.max(16);
    let mut chunks = Vec::new();
    let mut current = String::new();
    let mut current_len = 0;
    let mut fence: Option<String> = None; // the opening line of an open block
    for raw_line in text.split('\n') {
        // An opening fence is written (and repeated in later parts) with a
        // short language word at most.
        let opening = fence.is_none() && raw_line.trim_start().starts_with("```");
        let line = if opening {
            fence_opening(raw_line, max)
        } else {
            raw_line.to_string()
        };
        // Inside a block, a piece may begin the next part after the
        // repeated opening line and must leave room for the closing fence.
        let room = |fence: &Option<String>| match fence {
            Some(open) => max - open.chars().count() - 6,
            None => max - 8,
        };
        let mut pieces: std::collections::VecDeque<String> = hard_wrap(&line, room(&fence)).into();
        while let Some(piece) = pieces.pop_front() {
            // A piece cut for the state at the start of the line, when a
            // block opened or closed within it (a run of backticks longer
            // than a piece), is cut again for the state it goes out in.
            if piece.chars().count() > room(&fence) {
                for smaller in hard_wrap(&piece, room(&fence)).into_iter().rev() {
                    pieces.push_front(smaller);
                }
                continue;
            }
            // The block state follows the lines as they go out (a wrapped
            // piece is a line of its own), read as CommonMark reads fences:
            // ``` with anything opens a block, backticks alone close it.
            let toggles = match fence {
                None => piece.trim_start().starts_with("```"),
                Some(_) => is_closing_fence(&piece),
            };
            let reserve = if fence.is_some() || toggles { 4 } else { 0 };
            let piece_len = piece.chars().count() + 1;
            if current_len + piece_len + reserve > max && !current.is_empty() {
                if fence.is_some() {
                    current.push_str("```");
                }
                chunks.push(std::mem::take(&mut current).trim_end_matches('\n').to_string());
                current_len = 0;
                if let Some(open) = &fence {
                    current.push_str(open);
                    current.push('\n');
                    current_len = open.chars().count() + 1;
                }
            }
            current.push_str(&piece);
            current.push('\n');
            current_len += piece_len;
            if toggles {
                fence = match fence {
                    Some(_) => None,
                    None => Some(fence_opening(&piece, max)),
                };
            }
        }
    }
    let last = current.trim_end_matches('\n');
    if !last.is_empty() || chunks.is_empty() {
        chunks.push(last.to_string());
    }
    chunks
}

/// A fence's opening line as written and repeated: three backticks and the
/// language when it is a short word. A long or odd info string is dropped —
/// it is only a rendering hint, and repeated at the top of every part it
/// could make each part longer than the limit — and so is any language
/// when the limit is so small that it would leave a code line less than
/// 8 characters.
fn fence_opening(line: &str, max: usize) -> String {
    let info = line.trim_start().trim_start_matches('`').trim();
    let word = !info.is_empty()
        && info.len() <= 20
        && 3 + info.len() + 14 <= max
        && info.chars().all(|c| c.is_ascii_alphanumeric() || "+#._-".contains(c));
    if word {
        format!("```{info}")
    } else {
        "```".to_string()
    }
}

/// Parts for Telegram: as [`split`], and then each part that renders to
/// more than `max` visible characters (a numbered list that Markdown
/// renumbers, say) is split again, finer.
pub fn split_for_telegram(text: &str, max: usize) -> Vec<String> {
    fn fit(part: String, limit: usize, size: usize, out: &mut Vec<String>) {
        if size <= 64 || telegram::visible_len(&markdown_to_telegram_html(&part)) <= limit {
            out.push(part);
            return;
        }
        for smaller in split(&part, size / 2) {
            fit(smaller, limit, size / 2, out);
        }
    }
    let mut out = Vec::new();
    for part in split(text, max) {
        fit(part, max, max, &mut out);
    }
    out
}

/// A line longer than `max` characters, cut at spaces where possible and at
/// character boundaries otherwise.
///
/// A piece becomes a line of its own, and one that began with ``` would
/// open or close a code block the text never had (found by the fuzzer): the
/// cut moves back to the last other character before the blanks and
/// backticks; when only blanks come before them, it moves into the run, so
/// that the next piece starts with two backticks. Only a run of backticks
/// longer than a piece can hold still makes such a line (the splitter then
/// follows it as a fence). Linear in the line: every lookup is a table made
/// in one pass (a stranger's mail or the model's reply can be one long line).
fn hard_wrap(line: &str, max: usize) -> Vec<String> {
    let chars: Vec<char> = line.chars().collect();
    let n = chars.len();
    if n <= max || max == 0 {
        return vec![line.to_string()];
    }
    // next_solid[i]: the first non-blank at or after i (n if none);
    // prev_solid[i]: 1 + the last non-blank before i (0 if none);
    // run_start[i]: where the run of backticks holding i begins;
    // run_end[i]: where the run of backticks starting at or holding i ends.
    let mut next_solid = vec![n; n + 1];
    let mut run_end = vec![0; n + 1];
    run_end[n] = n;
    for i in (0..n).rev() {
        next_solid[i] = if chars[i].is_whitespace() { next_solid[i + 1] } else { i };
        run_end[i] = if chars[i] == '`' { run_end[i + 1] } else { i };
    }
    let (mut prev_solid, mut run_start) = (vec![0; n + 1], vec![0; n]);
    for i in 0..n {
        prev_solid[i + 1] = if chars[i].is_whitespace() { prev_solid[i] } else { i + 1 };
        run_start[i] = if i > 0 && chars[i] == '`' && chars[i - 1] == '`' {
            run_start[i - 1]
        } else {
            i
        };
    }
    let fence_at = |i: usize| {
        let j = next_solid[i];
        j + 3 <= n && chars[j..j + 3].iter().all(|c| *c == '`')
    };
    let mut out = Vec::new();
    let mut start = 0;
    while n - start > max {
        let mut cut = start
            + chars[start..start + max]
                .iter()
                .rposition(|c| *c == ' ')
                .filter(|p| *p > max / 2)
                .map_or(max, |p| p + 1);
        if fence_at(cut) {
            let run = run_start[next_solid[cut]];
            let before = prev_solid[run];
            if before > start + 1 {
                // Up to and without the last other character: the next
                // piece starts with it.
                cut = before - 1;
            } else if run_end[run] - 2 > start && run_end[run] - 2 - start <= max {
                cut = run_end[run] - 2;
            }
        }
        out.push(chars[start..cut].iter().collect());
        start = cut;
    }
    out.push(chars[start..].iter().collect());
    out
}

/// A line that closes an open code block: three or more backticks alone.
pub fn is_closing_fence(line: &str) -> bool {
    let line = line.trim();
    line.len() >= 3 && line.bytes().all(|b| b == b'`')
}

/// Markdown → WhatsApp: *bold*, _italic_, ~strike~, ```code``` and
/// `code` as they are; links as "text (url)".
pub fn markdown_to_whatsapp(md: &str) -> String {
    convert_outside_code(md, |text, url| format!("{text} ({url})"), convert_emphasis)
}

/// Markdown → Slack mrkdwn: *bold*, _italic_, ~strike~, <url|text>; code
/// as is. `&`, `<` and `>` are escaped everywhere first (Slack's own rule),
/// so `<!channel>`, `<!here>`, `<!everyone>` and `<@U…>` written by the model
/// are shown, not acted on; and a link becomes `<url|text>` only for an
/// http(s) or mailto URL (`[x](!here)` would be a ping).
pub fn markdown_to_slack(md: &str) -> String {
    convert_outside_code(&escape_slack(md), slack_link, slack_emphasis)
}

pub fn escape_slack(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

fn slack_link(text: &str, url: &str) -> String {
    let lower = url.trim().to_ascii_lowercase();
    if ["http://", "https://", "mailto:"].iter().any(|s| lower.starts_with(s)) && !url.contains('|') {
        format!("<{}|{}>", url.trim(), text.replace('|', "¦"))
    } else {
        format!("{text} ({url})")
    }
}

/// Rewrites links and emphasis line by line, leaving fenced code alone.
fn convert_outside_code(md: &str, link: fn(&str, &str) -> String, emphasis: fn(&str) -> String) -> String {
    let mut out = String::with_capacity(md.len());
    let mut in_block = false;
    for (i, line) in md.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        if line.trim_start().starts_with("```") {
            in_block = !in_block;
            out.push_str("```");
            continue;
        }
        if in_block {
            out.push_str(line);
            continue;
        }
        let mut rest = line;
        while let Some(start) = rest.find('[') {
            let Some(mid) = rest[start..].find("](").map(|m| start + m) else {
                break;
            };
            let Some(end) = rest[mid..].find(')').map(|e| mid + e) else {
                break;
            };
            out.push_str(&emphasis(&rest[..start]));
            out.push_str(&link(&rest[start + 1..mid], &rest[mid + 2..end]));
            rest = &rest[end + 1..];
        }
        out.push_str(&emphasis(rest));
    }
    out
}

/// **b** → *b*, *i* → _i_ (single stars first, through a placeholder).
fn slack_emphasis(s: &str) -> String {
    let bold = s.replace("**", "\u{1}");
    let mut out = String::with_capacity(s.len());
    let mut open = false;
    for (i, c) in bold.char_indices() {
        if c == '*' {
            let next = bold[i + 1..].chars().next();
            if open || next.is_some_and(|n| !n.is_whitespace()) {
                out.push('_');
                open = !open;
                continue;
            }
        }
        out.push(c);
    }
    out.replace('\u{1}', "*").replace("~~", "~")
}

fn convert_emphasis(s: &str) -> String {
    s.replace("**", "*").replace("__", "_").replace("~~", "~")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_to_slack() {
        assert_eq!(
            markdown_to_slack("**bold** *it* [docs](https://d.x/?a=1&b=2)"),
            "*bold* _it_ <https://d.x/?a=1&amp;b=2|docs>"
        );
    }

    #[test]
    fn slack_commands_from_the_model_are_shown_not_run() {
        assert_eq!(
            markdown_to_slack("hey <!channel> and <!here> <!everyone> <@U123> a&b"),
            "hey &lt;!channel&gt; and &lt;!here&gt; &lt;!everyone&gt; &lt;@U123&gt; a&amp;b"
        );
        assert_eq!(markdown_to_slack("```\n<!channel>\n```"), "```\n&lt;!channel&gt;\n```");
        assert_eq!(markdown_to_slack("[all](!channel)"), "all (!channel)");
        assert_eq!(
            markdown_to_slack("[x](https://e.x|<!here>)"),
            "x (https://e.x|&lt;!here&gt;)"
        );
    }

    #[test]
    fn converts_to_whatsapp() {
        assert_eq!(
            markdown_to_whatsapp("**bold** and [docs](https://d.x)"),
            "*bold* and docs (https://d.x)"
        );
        assert_eq!(
            markdown_to_whatsapp("```rust\nlet **x** = 1;\n```"),
            "```\nlet **x** = 1;\n```"
        );
    }

    #[test]
    fn a_huge_fence_line_does_not_swell_every_part() {
        // A model's (or an attacker's) fence with a 4,200-character "language".
        let text = format!("```{}\n{}", "a".repeat(4200), "x\n".repeat(2500));
        for max in [2000, 4096] {
            let parts = split(&text, max);
            assert!(parts.len() <= 4, "{} parts at {max}", parts.len());
            for p in &parts {
                assert!(p.chars().count() <= max, "{} chars > {max}", p.chars().count());
            }
        }
        assert_eq!(fence_opening("```rust", 4096), "```rust");
        assert_eq!(fence_opening("```python {title=x}", 4096), "```");
    }

    #[test]
    fn telegram_parts_fit_after_rendering() {
        // Markdown renumbers a list from its first number: 3,513 characters
        // of Markdown would be 9,812 visible ones in one part.
        let text = format!("999999999. x\n{}", "1. x\n".repeat(700));
        let parts = split_for_telegram(&text, 4096);
        assert!(parts.len() > 1);
        for p in &parts {
            let visible = telegram_visible_len(&markdown_to_telegram_html(p));
            assert!(visible <= 4096, "{visible} visible characters");
        }
    }

    /// Found by the `markdown` fuzz target: a code line wrapped inside a
    /// block, in a part that starts with the repeated "```python", made that
    /// part 38 characters long for a limit of 32.
    #[test]
    fn a_wrapped_code_line_after_a_repeated_opening_stays_within_the_limit() {
        let text = format!(
            "```python\nprint(1)\nprint(2)\np{}rint(3)\nprint(4)\n```\nafter",
            "\0".repeat(71)
        );
        for max in [16, 17, 24, 32, 40, 64] {
            let parts = split(&text, max);
            for (i, part) in parts.iter().enumerate() {
                assert!(part.chars().count() <= max.max(16), "max {max}, part {i}: {part:?}");
                if i + 1 < parts.len() {
                    assert_eq!(part.matches("```").count() % 2, 0, "max {max}, part {i} open: {part:?}");
                }
            }
        }
    }

    /// Whether a piece would read as a code fence.
    fn starts_with_fence(piece: &str) -> bool {
        piece.trim_start().starts_with("```")
    }

    /// Also found by the fuzzer: wrapping "\x01\0\0\0\0\0\0\x02```" at 8
    /// made a piece "```" — a fence line the text never had.
    #[test]
    fn wrapping_never_makes_a_fence_line() {
        let lines = [
            "\u{1}\0\0\0\0\0\0\u{2}```",
            "x          ```````````` tail",
            "ab      ```",
            "a```",
            "```` starts as a fence and goes on ````` and on",
            "lead   ```x   ```` y ````",
        ];
        for line in lines {
            // Blanks and backticks in a row: a stretch longer than a piece
            // can hold must be cut, and may leave a fence-like piece.
            let longest_run = line
                .split(|c: char| c != '`' && !c.is_whitespace())
                .map(str::len)
                .max()
                .unwrap_or(0);
            for max in 3..40 {
                let pieces = hard_wrap(line, max);
                assert_eq!(pieces.concat(), line, "nothing lost or added");
                for (i, piece) in pieces.iter().enumerate() {
                    assert!(piece.chars().count() <= max, "{line:?} at {max}: piece {i} {piece:?}");
                    if i > 0 && longest_run + 2 < max {
                        assert!(!starts_with_fence(piece), "{line:?} at {max}: piece {i} {piece:?}");
                    }
                }
            }
        }
    }

    /// Found by the fuzzer after the fence fixes: a run of backticks longer
    /// than a piece opens a block in the middle of a line; the pieces after
    /// it, cut for outside a block, made a part of 34 for a limit of 32.
    #[test]
    fn a_block_opened_inside_a_line_keeps_the_parts_within_the_limit() {
        let text = format!(
            "| ---|--{}aspe cript: a long tail of words after it\nmore",
            "`".repeat(40)
        );
        for max in [16, 24, 32, 48] {
            for part in split(&text, max) {
                assert!(part.chars().count() <= max, "max {max}: {part:?}");
            }
        }
    }

    /// The attack review's mail: one line of "a" and 20,000 backticks (or
    /// 11,000 blanks and then backticks) once took memory and time in the
    /// square of its length. Now one pass.
    #[test]
    fn a_huge_line_of_backticks_is_wrapped_in_one_pass() {
        for line in [
            format!("a{}", "`".repeat(100_000)),
            format!("a{}{}", " ".repeat(11_000), "`".repeat(5_000)),
            format!("{}x", "`` ".repeat(40_000)),
        ] {
            for max in [8, 1992, 11_992] {
                let pieces = hard_wrap(&line, max);
                assert_eq!(pieces.concat(), line);
                assert!(pieces.iter().all(|p| p.chars().count() <= max));
            }
            let parts = split(&line, 2000);
            assert!(parts.iter().all(|p| p.chars().count() <= 2000));
        }
    }

    #[test]
    fn splits_at_the_limit_keeping_fences_and_characters_whole() {
        let text = format!(
            "intro\n```python\n{}```\nend {}",
            "print('é')\n".repeat(50),
            "ü".repeat(300)
        );
        let chunks = split(&text, 120);
        assert!(chunks.len() > 3);
        for c in &chunks {
            assert!(c.chars().count() <= 120, "{} chars: {c}", c.chars().count());
            assert_eq!(c.matches("```").count() % 2, 0, "unbalanced fence in: {c}");
        }
        let joined: String = chunks.concat();
        assert_eq!(joined.matches("print('é')").count(), 50);
        assert_eq!(joined.matches('ü').count(), 300);
        assert_eq!(split("short", 4096), ["short"]);
    }
}
