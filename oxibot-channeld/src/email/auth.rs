//! Who sent a mail, as the receiving server established it (RFC 8601).
//!
//! Anyone can write a From header, and anyone can write an
//! `Authentication-Results` header too — with any authserv-id, including
//! ours. What a sender cannot do is place a header *above* the one their
//! receiving server prepends on arrival. So only the topmost header that
//! carries the configured authserv-id counts, and the properties are read
//! as tokens: `header.from` (dmarc) or `header.d` (dkim) must *equal* the
//! From address's domain, case-insensitively — `example.com.evil.example`
//! is not `example.com`. A dmarc result decides when there is one; dkim=pass
//! only when there is none.

/// Whether `headers` (all `Authentication-Results` values, top to bottom)
/// show that `authserv_id`'s own check passed for `from`'s domain.
pub fn verified(headers: &[String], authserv_id: &str, from: &str) -> bool {
    let Some(domain) = from.rsplit_once('@').map(|(_, d)| d.trim().to_ascii_lowercase()) else {
        return false;
    };
    if domain.is_empty() || authserv_id.trim().is_empty() {
        return false;
    }
    let Some(ours) = headers
        .iter()
        .map(|h| parse(h))
        .find(|r| r.authserv_id.eq_ignore_ascii_case(authserv_id.trim()))
    else {
        return false;
    };
    let passed_for = |method: &str, property: &str| {
        ours.results.iter().any(|r| {
            r.method == method
                && r.result == "pass"
                && r.properties
                    .iter()
                    .any(|(k, v)| k == property && v.eq_ignore_ascii_case(&domain))
        })
    };
    if ours.results.iter().any(|r| r.method == "dmarc") {
        return passed_for("dmarc", "header.from");
    }
    passed_for("dkim", "header.d")
}

/// One parsed `Authentication-Results` header.
#[derive(Debug, Default, PartialEq)]
struct Results {
    authserv_id: String,
    results: Vec<MethodResult>,
}

/// `method=result` with its `ptype.property=value` pairs (lower-cased
/// names; values as written, quotes removed).
#[derive(Debug, Default, PartialEq)]
struct MethodResult {
    method: String,
    result: String,
    properties: Vec<(String, String)>,
}

fn parse(header: &str) -> Results {
    let text = without_comments(header);
    let mut statements = split_outside_quotes(&text, ';').into_iter();
    let authserv_id = statements
        .next()
        .and_then(|first| first.split_whitespace().next().map(str::to_string))
        .unwrap_or_default();
    let results = statements
        .filter_map(|statement| {
            let mut tokens = split_outside_quotes(&statement, ' ')
                .into_iter()
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty());
            let (method, result) = tokens.next()?.split_once('=').map(|(m, r)| {
                // "dkim/1=pass": the method's version is not part of its name.
                let method = m.split('/').next().unwrap_or(m).trim().to_ascii_lowercase();
                (method, r.trim().to_ascii_lowercase())
            })?;
            let properties = tokens
                .filter_map(|t| {
                    let (k, v) = t.split_once('=')?;
                    Some((k.trim().to_ascii_lowercase(), unquote(v.trim())))
                })
                .collect();
            Some(MethodResult {
                method,
                result,
                properties,
            })
        })
        .collect();
    Results { authserv_id, results }
}

/// Removes RFC 5322 comments, `(…)`, nested or not, outside quoted strings.
fn without_comments(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let (mut depth, mut quoted, mut escaped) = (0usize, false, false);
    for c in s.chars() {
        if escaped {
            if depth == 0 {
                out.push(c);
            }
            escaped = false;
            continue;
        }
        match c {
            '\\' => {
                escaped = true;
                if depth == 0 {
                    out.push(c);
                }
            }
            '"' if depth == 0 => {
                quoted = !quoted;
                out.push(c);
            }
            '(' if !quoted => depth += 1,
            ')' if !quoted && depth > 0 => {
                depth -= 1;
                out.push(' ');
            }
            c if depth == 0 => out.push(if c.is_whitespace() { ' ' } else { c }),
            _ => {}
        }
    }
    out
}

fn split_outside_quotes(s: &str, sep: char) -> Vec<String> {
    let mut parts = vec![String::new()];
    let (mut quoted, mut escaped) = (false, false);
    for c in s.chars() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == '"' {
            quoted = !quoted;
        } else if c == sep && !quoted {
            parts.push(String::new());
            continue;
        }
        if let Some(last) = parts.last_mut() {
            last.push(c);
        }
    }
    parts
}

fn unquote(v: &str) -> String {
    let v = v.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(v);
    v.replace("\\\"", "\"").replace("\\\\", "\\")
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "mx.example.net";

    fn h(lines: &[&str]) -> Vec<String> {
        lines.iter().map(|l| l.to_string()).collect()
    }

    #[test]
    fn the_servers_own_aligned_pass_verifies() {
        let dkim =
            h(&["mx.example.net; dkim=pass header.d=example.com header.s=s1; spf=pass smtp.mailfrom=example.com"]);
        assert!(verified(&dkim, ID, "alice@example.com"));
        assert!(
            verified(&dkim, "MX.Example.NET", "Alice@EXAMPLE.com"),
            "ids and domains are case-insensitive"
        );
        let dmarc = h(&["mx.example.net 1; dmarc=pass (p=none dis=none) header.from=example.com"]);
        assert!(verified(&dmarc, ID, "alice@example.com"));
        let quoted = h(&["mx.example.net; dkim=pass (good signature) header.d=\"example.com\""]);
        assert!(verified(&quoted, ID, "alice@example.com"));
    }

    #[test]
    fn a_pass_for_another_or_a_look_alike_domain_does_not() {
        for header in [
            "mx.example.net; dkim=pass header.d=evil.test",
            "mx.example.net; dkim=pass header.d=example.com.evil.example",
            "mx.example.net; dkim=pass header.d=ample.com",
            "mx.example.net; dkim=pass header.i=@example.com",
            "mx.example.net; dkim=fail header.d=example.com",
            "mx.example.net; dkim=pass (header.d=example.com) header.d=evil.test",
            "mx.example.net; spf=pass smtp.mailfrom=example.com",
            "mx.example.net; none",
        ] {
            assert!(!verified(&h(&[header]), ID, "alice@example.com"), "{header}");
        }
    }

    #[test]
    fn dmarc_decides_when_present() {
        let h1 = h(&["mx.example.net; dkim=pass header.d=example.com; dmarc=fail header.from=example.com"]);
        assert!(!verified(&h1, ID, "alice@example.com"));
    }

    #[test]
    fn only_the_topmost_header_with_our_id_counts() {
        // What the sender wrote sits below what our server prepended.
        let forged_below = h(&[
            "mx.example.net; dkim=none",
            "mx.example.net; dkim=pass header.d=example.com; dmarc=pass header.from=example.com",
        ]);
        assert!(!verified(&forged_below, ID, "alice@example.com"));
        // Another server's verdict is not ours, whatever it says.
        let other = h(&[
            "mx.evil.example; dkim=pass header.d=example.com",
            "mx.example.net; dkim=none",
        ]);
        assert!(!verified(&other, ID, "alice@example.com"));
        let only_other = h(&["mx.evil.example; dkim=pass header.d=example.com"]);
        assert!(!verified(&only_other, ID, "alice@example.com"));
        // An id that merely starts like ours is not ours.
        let prefix = h(&["mx.example.net.evil; dkim=pass header.d=example.com"]);
        assert!(!verified(&prefix, ID, "alice@example.com"));
    }

    #[test]
    fn no_id_or_no_domain_verifies_nobody() {
        let ok = h(&["mx.example.net; dkim=pass header.d=example.com"]);
        assert!(!verified(&ok, "", "alice@example.com"));
        assert!(!verified(&ok, ID, "alice"));
        assert!(!verified(&[], ID, "alice@example.com"));
    }
}
