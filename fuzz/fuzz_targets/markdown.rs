//! The model's Markdown → Telegram HTML, Slack mrkdwn and WhatsApp, and the
//! splitter. Properties: no panic; every part within the limit (in
//! characters); a code block cut by the splitter is closed in its part (all
//! parts but the last hold whole fence pairs); Telegram's HTML holds only
//! the tags Telegram accepts.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oxibot_channeld::fuzzing::{
    is_closing_fence, markdown_to_slack, markdown_to_telegram_html, markdown_to_whatsapp, split, split_for_telegram,
};

const TELEGRAM_TAGS: [&str; 7] = ["b", "i", "s", "code", "pre", "a", "blockquote"];

/// Whether a code block is still open at the end of `part`, reading fences
/// as CommonMark does: ``` with anything opens, backticks alone close.
fn leaves_block_open(part: &str) -> bool {
    let mut open = false;
    for line in part.split('\n') {
        if open {
            open = !is_closing_fence(line);
        } else {
            open = line.trim_start().starts_with("```");
        }
    }
    open
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let max = 16 + usize::from(first) * 8;
    let parts = split(text, max);
    assert!(!parts.is_empty());
    for (i, part) in parts.iter().enumerate() {
        assert!(part.chars().count() <= max, "part {i} has {} > {max} chars", part.chars().count());
        if i + 1 < parts.len() {
            assert!(!leaves_block_open(part), "part {i} leaves a code block open: {part:?}");
        }
    }
    for part in split_for_telegram(text, max) {
        assert!(part.chars().count() <= max);
    }
    let html = markdown_to_telegram_html(text);
    for tag in html.split('<').skip(1) {
        let name: String = tag
            .trim_start_matches('/')
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect();
        assert!(TELEGRAM_TAGS.contains(&name.as_str()), "<{name}> in {html:?}");
    }
    let _ = markdown_to_slack(text);
    let _ = markdown_to_whatsapp(text);
});
