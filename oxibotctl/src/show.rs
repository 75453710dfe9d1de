//! Printing: text that a stranger or the model wrote is escaped for the
//! terminal; times are UTC; JSON goes to stdout one document per command
//! (one per line for `audit follow`).

/// Text a peer or the model wrote (a reply, tool output, a platform's
/// error, an audit detail), made safe for the admin's terminal.
pub fn shown(text: &str) -> String {
    oxibot_runtime::printable::printable(text)
}

/// As [`shown`], for a one-line field.
pub fn shown_line(text: &str) -> String {
    oxibot_runtime::printable::printable_line(text)
}

/// JSON as printed: serde_json escapes only the characters below U+0020,
/// so C1 controls (U+009B is a CSI on some terminals), line separators and
/// bidirectional overrides that a stranger wrote are escaped here too, as
/// `\uXXXX` (the same JSON to a parser). Outside strings, serde_json
/// writes ASCII only, so every such character is inside a string.
pub fn json_text(value: &serde_json::Value) -> String {
    let raw = value.to_string();
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        match c {
            '\u{7f}'..='\u{9f}'
            | '\u{061c}'
            | '\u{200e}'
            | '\u{200f}'
            | '\u{2028}'
            | '\u{2029}'
            | '\u{202a}'..='\u{202e}'
            | '\u{2066}'..='\u{2069}' => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// Prints one JSON document (see [`json_text`]).
pub fn print_json(value: &serde_json::Value) {
    println!("{}", json_text(value));
}

/// Prints `value` as JSON, or the text.
pub fn emit(json: bool, value: serde_json::Value, text: impl FnOnce() -> String) {
    if json {
        print_json(&value);
    } else {
        println!("{}", text());
    }
}

/// A length of time as people read it: `45 s`, `9 min 49 s`, `3 h 5 min`,
/// `2 d 4 h`.
pub fn duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3_600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s} s"),
        (0, 0, _) => format!("{m} min {s} s"),
        (0, _, _) => format!("{h} h {m} min"),
        _ => format!("{d} d {h} h"),
    }
}

/// Unix seconds as `2026-11-29 20:33:10Z`.
pub fn utc(secs: i64) -> String {
    oxibot_runtime::clock::utc(secs)
}

pub use oxibot_runtime::clock::unix_now as now;

/// `--since`: `30s`, `15m`, `2h`, `7d` ago, or Unix seconds.
pub fn since(arg: &str) -> Result<i64, String> {
    let arg = arg.trim();
    let bad = || format!("--since {arg}: give an age like 30s, 15m, 2h or 7d, or Unix seconds");
    let unit = match arg.chars().last() {
        Some('s') => 1,
        Some('m') => 60,
        Some('h') => 3600,
        Some('d') => 86_400,
        Some(c) if c.is_ascii_digit() => return arg.parse().map_err(|_| bad()),
        _ => return Err(bad()),
    };
    let n: i64 = arg[..arg.len() - 1].parse().map_err(|_| bad())?;
    Ok(now() - n.checked_mul(unit).ok_or_else(bad)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_people_say_them() {
        assert_eq!(duration(45), "45 s");
        assert_eq!(duration(589), "9 min 49 s");
        assert_eq!(duration(3 * 3600 + 5 * 60 + 7), "3 h 5 min");
        assert_eq!(duration(2 * 86_400 + 4 * 3600), "2 d 4 h");
    }

    #[test]
    fn dates_and_ages() {
        assert_eq!(utc(0), "1970-01-01 00:00:00Z");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00Z");
        assert_eq!(utc(1_795_984_390), "2026-11-29 20:33:10Z");
        let t = since("2h").unwrap();
        assert!((now() - 7200 - t).abs() <= 1);
        assert_eq!(since("1700000000").unwrap(), 1_700_000_000);
        assert!(since("2w").is_err() && since("h").is_err() && since("").is_err());
    }
}

#[cfg(test)]
mod json_tests {
    use super::*;

    #[test]
    fn json_escapes_c1_controls_and_bidi_and_stays_the_same_json() {
        let hostile = "x\u{1b}]0;t\u{7}y\u{9b}2J\u{202e}gnp\u{2028}z";
        let v = serde_json::json!({"path": hostile});
        let text = json_text(&v);
        assert!(
            text.chars()
                .all(|c| !c.is_control() && !('\u{2028}'..='\u{202e}').contains(&c)),
            "{text:?}"
        );
        let back: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back, v);
    }
}
