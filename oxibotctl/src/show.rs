//! Printing: text that a stranger or the model wrote is escaped for the
//! terminal; times are UTC; JSON goes to stdout one document per command
//! (one per line for `audit follow`).

/// Text a peer or the model wrote (a reply, tool output, a platform's
/// error, an audit detail), made safe for the admin's terminal.
pub fn shown(text: &str) -> String {
    oxibot_proto::printable::printable(text)
}

/// As [`shown`], for a one-line field.
pub fn shown_line(text: &str) -> String {
    oxibot_proto::printable::printable_line(text)
}

/// Prints `value` as JSON, or the text.
pub fn emit(json: bool, value: serde_json::Value, text: impl FnOnce() -> String) {
    if json {
        println!("{value}");
    } else {
        println!("{}", text());
    }
}

/// Unix seconds as `2026-11-29 20:33:10Z`.
pub fn utc(secs: i64) -> String {
    oxibot_proto::clock::utc(secs)
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

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
