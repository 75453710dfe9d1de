//! Markdown for the terminal, with the Markdown parser the channel daemons
//! use (pulldown-cmark): bold and italic as the terminal shows them,
//! headings bold and underlined, code in colour, code blocks indented,
//! lists with bullets, links with their address. The text comes in
//! escaped already (`crate::show::shown`): the only escape sequences in
//! the output are the ones written here.

use pulldown_cmark::{Event, HeadingLevel, Parser, Tag, TagEnd};

const BOLD: &str = "\x1b[1m";
const NOT_BOLD: &str = "\x1b[22m";
const ITALIC: &str = "\x1b[3m";
const NOT_ITALIC: &str = "\x1b[23m";
const UNDERLINE: &str = "\x1b[4m";
const NOT_UNDERLINE: &str = "\x1b[24m";
const CODE: &str = "\x1b[36m";
const DIM: &str = "\x1b[2m";
const PLAIN: &str = "\x1b[0m";

pub fn render(text: &str) -> String {
    let mut out = String::new();
    // Ordered lists' next numbers, one per open list (None: bullets).
    let mut lists: Vec<Option<u64>> = Vec::new();
    let mut quote = 0usize;
    let mut in_code_block = false;
    let mut link: Vec<String> = Vec::new();
    let line_start = |out: &mut String, quote: usize| {
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        for _ in 0..quote {
            out.push_str(DIM);
            out.push_str("│ ");
            out.push_str(PLAIN);
        }
    };
    for event in Parser::new(text) {
        match event {
            Event::Start(Tag::Heading { level, .. }) => {
                line_start(&mut out, quote);
                out.push_str(BOLD);
                if level == HeadingLevel::H1 {
                    out.push_str(UNDERLINE);
                }
            }
            Event::End(TagEnd::Heading(_)) => {
                out.push_str(NOT_UNDERLINE);
                out.push_str(NOT_BOLD);
                out.push_str("\n\n");
            }
            Event::Start(Tag::Paragraph) if lists.is_empty() => line_start(&mut out, quote),
            Event::End(TagEnd::Paragraph) => {
                out.push('\n');
                if lists.is_empty() {
                    out.push('\n');
                }
            }
            Event::Start(Tag::BlockQuote(_)) => quote += 1,
            Event::End(TagEnd::BlockQuote(_)) => quote = quote.saturating_sub(1),
            Event::Start(Tag::CodeBlock(_)) => {
                in_code_block = true;
                line_start(&mut out, quote);
            }
            Event::End(TagEnd::CodeBlock) => {
                in_code_block = false;
                out.push('\n');
            }
            Event::Start(Tag::List(first)) => lists.push(first),
            Event::End(TagEnd::List(_)) => {
                lists.pop();
                if lists.is_empty() {
                    out.push('\n');
                }
            }
            Event::Start(Tag::Item) => {
                line_start(&mut out, quote);
                out.push_str(&"  ".repeat(lists.len().saturating_sub(1)));
                match lists.last_mut() {
                    Some(Some(n)) => {
                        out.push_str(&format!("{n}. "));
                        *n += 1;
                    }
                    _ => out.push_str("• "),
                }
            }
            Event::End(TagEnd::Item) => {}
            Event::Start(Tag::Strong) => out.push_str(BOLD),
            Event::End(TagEnd::Strong) => out.push_str(NOT_BOLD),
            Event::Start(Tag::Emphasis) => out.push_str(ITALIC),
            Event::End(TagEnd::Emphasis) => out.push_str(NOT_ITALIC),
            Event::Start(Tag::Link { dest_url, .. }) => link.push(dest_url.to_string()),
            Event::End(TagEnd::Link) => {
                if let Some(url) = link.pop() {
                    out.push_str(&format!(" {DIM}({url}){PLAIN}"));
                }
            }
            Event::Text(t) if in_code_block => {
                for line in t.lines() {
                    out.push_str(&format!("    {DIM}{line}{PLAIN}\n"));
                }
            }
            Event::Text(t) => out.push_str(&t),
            Event::Code(c) => out.push_str(&format!("{CODE}{c}{PLAIN}")),
            Event::SoftBreak | Event::HardBreak => line_start(&mut out, quote),
            Event::Rule => {
                line_start(&mut out, quote);
                out.push_str(&format!("{DIM}────────{PLAIN}\n\n"));
            }
            // HTML the model wrote is shown as it was written.
            Event::Html(h) | Event::InlineHtml(h) => out.push_str(&h),
            _ => {}
        }
    }
    let trimmed = out.trim_end().len();
    out.truncate(trimmed);
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_becomes_what_a_terminal_shows() {
        let out = render(
            "# Plan\n\nUse **bold**, *it*, `ls -la` and [docs](https://d.x).\n\n- one\n- two\n\n```\nfn x()\n```",
        );
        assert!(out.contains("\x1b[1m\x1b[4mPlan"), "{out:?}");
        assert!(
            out.contains("\x1b[1mbold\x1b[22m") && out.contains("\x1b[3mit\x1b[23m"),
            "{out:?}"
        );
        assert!(out.contains("\x1b[36mls -la\x1b[0m"), "{out:?}");
        assert!(out.contains("docs \x1b[2m(https://d.x)"), "{out:?}");
        assert!(out.contains("• one\n• two"), "{out:?}");
        assert!(out.contains("    \x1b[2mfn x()"), "{out:?}");
    }

    #[test]
    fn escaped_text_stays_escaped() {
        let out = render(&crate::show::shown("**a\u{1b}[2J**"));
        assert!(!out.contains("\u{1b}[2J"), "{out:?}");
        assert!(out.contains("\\u{1b}[2J"), "{out:?}");
    }
}
