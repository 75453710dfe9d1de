//! Markdown (as models write it) → Telegram's HTML, with a real CommonMark
//! parser (pulldown-cmark): `my_file_name` stays as written, headings,
//! lists, quotes and code render, and anything else — raw HTML included —
//! arrives as escaped text. Telegram accepts only b, i, s, code, pre, a and
//! blockquote; nothing else is ever emitted, and links only for http(s)
//! and mailto URLs.

use pulldown_cmark::{CodeBlockKind, Event, HeadingLevel, Options, Parser, Tag, TagEnd};

pub fn markdown_to_html(md: &str) -> String {
    let mut out = String::with_capacity(md.len() + md.len() / 8);
    // The number of the next item of each open list (None: bullets).
    let mut lists: Vec<Option<u64>> = Vec::new();
    // Links we opened (a link with a refused URL is written as text).
    let mut links: Vec<bool> = Vec::new();
    for event in Parser::new_ext(md, Options::ENABLE_STRIKETHROUGH) {
        match event {
            Event::Start(tag) => match tag {
                Tag::Paragraph => {}
                Tag::Heading { .. } => out.push_str("<b>"),
                Tag::BlockQuote(_) => out.push_str("<blockquote>"),
                Tag::CodeBlock(kind) => match kind {
                    CodeBlockKind::Fenced(lang) if !lang.trim().is_empty() => {
                        out.push_str("<pre><code class=\"language-");
                        escape(lang.split_whitespace().next().unwrap_or_default(), &mut out);
                        out.push_str("\">");
                    }
                    _ => out.push_str("<pre><code>"),
                },
                Tag::List(start) => {
                    if !lists.is_empty() && !out.ends_with('\n') {
                        out.push('\n');
                    }
                    lists.push(start);
                }
                Tag::Item => {
                    let depth = lists.len().saturating_sub(1);
                    out.push_str(&"  ".repeat(depth));
                    match lists.last_mut() {
                        Some(Some(n)) => {
                            out.push_str(&format!("{n}. "));
                            *n += 1;
                        }
                        _ => out.push_str("• "),
                    }
                }
                Tag::Emphasis => out.push_str("<i>"),
                Tag::Strong => out.push_str("<b>"),
                Tag::Strikethrough => out.push_str("<s>"),
                Tag::Link { dest_url, .. } => {
                    let safe = is_safe_url(&dest_url);
                    if safe {
                        out.push_str("<a href=\"");
                        escape(&dest_url, &mut out);
                        out.push_str("\">");
                    }
                    links.push(safe);
                }
                // An image cannot be shown inline: its alt text stands in.
                Tag::Image { .. } => {}
                _ => {}
            },
            Event::End(tag) => match tag {
                TagEnd::Paragraph => out.push_str("\n\n"),
                TagEnd::Heading(level) => {
                    out.push_str("</b>");
                    out.push_str(if level == HeadingLevel::H1 { "\n\n" } else { "\n" });
                }
                TagEnd::BlockQuote(_) => {
                    trim_newlines(&mut out);
                    out.push_str("</blockquote>\n");
                }
                TagEnd::CodeBlock => {
                    if out.ends_with('\n') {
                        out.pop();
                    }
                    out.push_str("</code></pre>\n");
                }
                TagEnd::List(_) => {
                    lists.pop();
                    if lists.is_empty() {
                        out.push('\n');
                    }
                }
                TagEnd::Item => {
                    trim_newlines(&mut out);
                    out.push('\n');
                }
                TagEnd::Emphasis => out.push_str("</i>"),
                TagEnd::Strong => out.push_str("</b>"),
                TagEnd::Strikethrough => out.push_str("</s>"),
                TagEnd::Link => out.push_str(if links.pop().unwrap_or(false) { "</a>" } else { "" }),
                _ => {}
            },
            Event::Text(text) => escape(&text, &mut out),
            Event::Code(code) => {
                out.push_str("<code>");
                escape(&code, &mut out);
                out.push_str("</code>");
            }
            // Raw HTML from the model is text, never markup.
            Event::Html(html) | Event::InlineHtml(html) => escape(&html, &mut out),
            Event::SoftBreak | Event::HardBreak => out.push('\n'),
            Event::Rule => out.push_str("———\n"),
            Event::TaskListMarker(done) => out.push_str(if done { "☑ " } else { "☐ " }),
            Event::FootnoteReference(r) => escape(&format!("[{r}]"), &mut out),
            Event::InlineMath(m) | Event::DisplayMath(m) => escape(&m, &mut out),
        }
    }
    trim_newlines(&mut out);
    out
}

/// The characters Telegram counts toward its limit: the text without our
/// tags, each entity (`&lt;`) one character. Our renderer writes only
/// well-formed tags and escaped text, so this simple reading is exact.
pub fn visible_len(html: &str) -> usize {
    let (mut n, mut in_tag, mut in_entity) = (0, false, false);
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => in_tag = false,
            _ if in_tag => {}
            '&' => {
                in_entity = true;
                n += 1;
            }
            ';' if in_entity => in_entity = false,
            _ if in_entity => {}
            _ => n += 1,
        }
    }
    n
}

fn trim_newlines(out: &mut String) {
    while out.ends_with('\n') {
        out.pop();
    }
}

fn is_safe_url(url: &str) -> bool {
    let lower = url.trim().to_ascii_lowercase();
    // Not tg://: tg://user?id= pings a user, tg://proxy offers a proxy.
    ["http://", "https://", "mailto:"]
        .iter()
        .any(|scheme| lower.starts_with(scheme))
}

fn escape(s: &str, out: &mut String) {
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

#[cfg(test)]
mod tests {
    use super::markdown_to_html as html;

    #[test]
    fn inline_markup_and_escaping() {
        assert_eq!(
            html("**Hi** *there* `a<b` [x](https://e.x/?a=1&b=2) 1 < 2"),
            "<b>Hi</b> <i>there</i> <code>a&lt;b</code> <a href=\"https://e.x/?a=1&amp;b=2\">x</a> 1 &lt; 2"
        );
        assert_eq!(html("a * b * c"), "a * b * c");
        assert_eq!(html("~~gone~~"), "<s>gone</s>");
    }

    #[test]
    fn names_with_underscores_stay_as_written() {
        assert_eq!(html("open my_file_name and a_b_c.py"), "open my_file_name and a_b_c.py");
        assert_eq!(
            html("snake_case_here, _real italics_"),
            "snake_case_here, <i>real italics</i>"
        );
    }

    #[test]
    fn headings_lists_quotes_and_code_render() {
        let out = html(
            "# Plan\n\nSteps:\n\n1. first\n2. second\n   - nested\n\n> quoted\n\n```rust\nfn main() { 1 < 2 }\n```\n",
        );
        assert_eq!(
            out,
            "<b>Plan</b>\n\nSteps:\n\n1. first\n2. second\n  • nested\n\n<blockquote>quoted</blockquote>\n<pre><code class=\"language-rust\">fn main() { 1 &lt; 2 }</code></pre>"
        );
    }

    #[test]
    fn html_and_unsafe_links_are_text() {
        assert_eq!(
            html("<b onclick=x>hi</b> <script>alert(1)</script>"),
            "&lt;b onclick=x&gt;hi&lt;/b&gt; &lt;script&gt;alert(1)&lt;/script&gt;"
        );
        assert_eq!(html("[click](javascript:alert(1))"), "click");
        assert_eq!(html("[boss](tg://user?id=5002)"), "boss", "a mention by id would ping");
        assert_eq!(html("![cat](https://e.x/cat.png)"), "cat");
        assert_eq!(html("<div>\nblock\n</div>"), "&lt;div&gt;\nblock\n&lt;/div&gt;");
    }
}
