//! Markdown from the model → each platform's format, and splitting at the
//! platform's length limit — never inside a code block's fence pair and
//! never inside a character. The converter is a single pass with no regex
//! to compile (the first OxiBot spent 60 % of its CPU recompiling ten).

/// Splits `text` into chunks of at most `max` characters. Code fences stay
/// balanced: a block cut in two is closed at the end of one chunk and
/// reopened (with its language) at the start of the next.
pub fn split(text: &str, max: usize) -> Vec<String> {
    let max = max.max(16);
    let mut chunks = Vec::new();
    let mut current = String::new();
    let mut current_len = 0;
    let mut fence: Option<String> = None; // the opening line of an open block
    for line in text.split('\n') {
        let opens_or_closes = line.trim_start().starts_with("```");
        let reserve = if fence.is_some() || opens_or_closes { 4 } else { 0 };
        for piece in hard_wrap(line, max.saturating_sub(8)) {
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
        }
        if opens_or_closes {
            fence = match fence {
                Some(_) => None,
                None => Some(line.trim_start().to_string()),
            };
        }
    }
    let last = current.trim_end_matches('\n');
    if !last.is_empty() || chunks.is_empty() {
        chunks.push(last.to_string());
    }
    chunks
}

/// A line longer than `max` characters, cut at spaces where possible and at
/// character boundaries otherwise.
fn hard_wrap(line: &str, max: usize) -> Vec<String> {
    if line.chars().count() <= max || max == 0 {
        return vec![line.to_string()];
    }
    let mut out = Vec::new();
    let mut rest: Vec<char> = line.chars().collect();
    while rest.len() > max {
        let cut = rest[..max]
            .iter()
            .rposition(|c| *c == ' ')
            .filter(|p| *p > max / 2)
            .map(|p| p + 1)
            .unwrap_or(max);
        out.push(rest[..cut].iter().collect());
        rest = rest[cut..].to_vec();
    }
    out.push(rest.into_iter().collect());
    out
}

fn escape_html(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
}

/// Markdown (as LLMs write it) → Telegram's HTML: fenced and inline code,
/// **bold**, *italic* / _italic_, ~~strike~~, [links](url). Everything
/// else is escaped text.
pub fn markdown_to_telegram_html(md: &str) -> String {
    let mut out = String::with_capacity(md.len() + 16);
    let mut in_block = false;
    for (i, line) in md.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let t = line.trim_start();
        if let Some(lang) = t.strip_prefix("```") {
            if in_block {
                out.push_str("</code></pre>");
            } else if lang.trim().is_empty() {
                out.push_str("<pre><code>");
            } else {
                out.push_str("<pre><code class=\"language-");
                escape_html(lang.trim(), &mut out);
                out.push_str("\">");
            }
            in_block = !in_block;
            continue;
        }
        if in_block {
            escape_html(line, &mut out);
        } else {
            inline(line, &mut out);
        }
    }
    if in_block {
        out.push_str("</code></pre>");
    }
    out
}

fn inline(line: &str, out: &mut String) {
    let chars: Vec<char> = line.chars().collect();
    let mut i = 0;
    let find = |from: usize, pat: &[char]| -> Option<usize> {
        (from..chars.len().saturating_sub(pat.len() - 1)).find(|&j| chars[j..j + pat.len()] == *pat)
    };
    let text = |a: usize, b: usize| chars[a..b].iter().collect::<String>();
    while i < chars.len() {
        let c = chars[i];
        let pair = |p: [char; 2]| i + 1 < chars.len() && chars[i] == p[0] && chars[i + 1] == p[1];
        if c == '`' {
            if let Some(end) = find(i + 1, &['`']) {
                out.push_str("<code>");
                escape_html(&text(i + 1, end), out);
                out.push_str("</code>");
                i = end + 1;
                continue;
            }
        } else if pair(['*', '*']) || pair(['_', '_']) || pair(['~', '~']) {
            let mark = [c, c];
            if let Some(end) = find(i + 2, &mark).filter(|e| *e > i + 2) {
                let tag = if c == '~' { "s" } else { "b" };
                out.push_str(&format!("<{tag}>"));
                inline(&text(i + 2, end), out);
                out.push_str(&format!("</{tag}>"));
                i = end + 2;
                continue;
            }
        } else if (c == '*' || c == '_') && chars.get(i + 1).is_some_and(|n| !n.is_whitespace()) {
            if let Some(end) = find(i + 1, &[c]).filter(|e| *e > i + 1 && !chars[*e - 1].is_whitespace()) {
                out.push_str("<i>");
                inline(&text(i + 1, end), out);
                out.push_str("</i>");
                i = end + 1;
                continue;
            }
        } else if c == '[' {
            if let Some(close) = find(i + 1, &[']']) {
                if chars.get(close + 1) == Some(&'(') {
                    if let Some(end) = find(close + 2, &[')']) {
                        out.push_str("<a href=\"");
                        escape_html(&text(close + 2, end), out);
                        out.push_str("\">");
                        escape_html(&text(i + 1, close), out);
                        out.push_str("</a>");
                        i = end + 1;
                        continue;
                    }
                }
            }
        }
        escape_html(&c.to_string(), out);
        i += 1;
    }
}

/// Markdown → WhatsApp: *bold*, _italic_, ~strike~, ```code``` and
/// `code` as they are; links as "text (url)".
pub fn markdown_to_whatsapp(md: &str) -> String {
    convert_outside_code(md, |text, url| format!("{text} ({url})"), convert_emphasis)
}

/// Markdown → Slack mrkdwn: *bold*, _italic_, ~strike~, <url|text>; code
/// as is.
pub fn markdown_to_slack(md: &str) -> String {
    convert_outside_code(md, |text, url| format!("<{url}|{text}>"), slack_emphasis)
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
    fn converts_the_usual_markdown() {
        assert_eq!(
            markdown_to_telegram_html("**Hi** *there* `a<b` [x](https://e.x/?a=1&b=2) 1 < 2"),
            "<b>Hi</b> <i>there</i> <code>a&lt;b</code> <a href=\"https://e.x/?a=1&amp;b=2\">x</a> 1 &lt; 2"
        );
        assert_eq!(
            markdown_to_telegram_html("```rust\nfn main() { 1 < 2 }\n```"),
            "<pre><code class=\"language-rust\">\nfn main() { 1 &lt; 2 }\n</code></pre>"
        );
        assert_eq!(markdown_to_telegram_html("a * b * c"), "a * b * c");
    }

    #[test]
    fn converts_to_slack() {
        assert_eq!(
            markdown_to_slack("**bold** *it* [docs](https://d.x)"),
            "*bold* _it_ <https://d.x|docs>"
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
