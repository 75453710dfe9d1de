//! `tools.exec.allowedHosts`: where the jail's commands may connect
//! through the egress door. One pattern is a host and an optional port:
//!
//! - `api.github.com`: that name only;
//! - `*.githubusercontent.com`: any name under it (one label or more),
//!   not the name itself;
//! - `127.0.0.1`, `[::1]`: that address;
//! - `:443` after any of them: that port only. Without a port, 80 and 443
//!   (plain and TLS web) — a command that needs another port names it.
//!
//! Names compare as DNS does: case-insensitive, a trailing dot ignored. A
//! pattern that would open too much (`*`, `*.com`, a wildcard inside a name)
//! is refused when the configuration loads, with the reason.

use std::fmt;
use std::net::IpAddr;

use serde::Deserialize;

/// One allowed destination pattern.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct HostPattern {
    host: Host,
    port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Host {
    /// A whole name, normalised.
    Name(String),
    /// `*.` and the suffix, normalised (without the leading dot).
    Under(String),
    Address(IpAddr),
}

/// Why a pattern was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadHostPattern {
    #[error("\"{0}\": empty")]
    Empty(String),
    #[error("\"{0}\": a wildcard stands only for whole leading labels, as in *.example.com")]
    Wildcard(String),
    #[error("\"{0}\": too broad; name at least two labels after *. (*.example.com)")]
    TooBroad(String),
    #[error("\"{0}\": the port must be a number from 1 to 65535")]
    Port(String),
    #[error("\"{0}\": not a host name (letters, digits, '-' and '.')")]
    Name(String),
}

impl HostPattern {
    pub fn parse(text: &str) -> Result<HostPattern, BadHostPattern> {
        let raw = text.trim();
        if raw.is_empty() {
            return Err(BadHostPattern::Empty(text.to_string()));
        }
        let (host, port) = split_port(raw).ok_or_else(|| BadHostPattern::Port(text.to_string()))?;
        let host = if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            Host::Address(IpAddr::V6(
                inner.parse().map_err(|_| BadHostPattern::Name(text.to_string()))?,
            ))
        } else if let Ok(ip) = host.parse::<IpAddr>() {
            Host::Address(ip)
        } else if let Some(suffix) = host.strip_prefix("*.") {
            if suffix.contains('*') {
                return Err(BadHostPattern::Wildcard(text.to_string()));
            }
            let suffix = normal_name(suffix).ok_or_else(|| BadHostPattern::Name(text.to_string()))?;
            if !suffix.contains('.') {
                return Err(BadHostPattern::TooBroad(text.to_string()));
            }
            Host::Under(suffix)
        } else if host.contains('*') {
            return Err(if host == "*" {
                BadHostPattern::TooBroad(text.to_string())
            } else {
                BadHostPattern::Wildcard(text.to_string())
            });
        } else {
            Host::Name(normal_name(host).ok_or_else(|| BadHostPattern::Name(text.to_string()))?)
        };
        Ok(HostPattern { host, port })
    }

    /// Whether a connection to `host` (a name or an address literal, as a
    /// client asked for it) on `port` is one this pattern allows.
    pub fn allows(&self, host: &str, port: u16) -> bool {
        let port_ok = match self.port {
            Some(p) => p == port,
            None => port == 80 || port == 443,
        };
        if !port_ok {
            return false;
        }
        let literal = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
        match (&self.host, literal.parse::<IpAddr>()) {
            (Host::Address(want), Ok(ip)) => want.to_canonical() == ip.to_canonical(),
            (Host::Address(_), Err(_)) | (Host::Name(_) | Host::Under(_), Ok(_)) => false,
            (Host::Name(want), Err(_)) => normal_name(host).is_some_and(|h| h == *want),
            (Host::Under(suffix), Err(_)) => normal_name(host).is_some_and(|h| {
                h.len() > suffix.len() + 1 && h.ends_with(suffix.as_str()) && h[..h.len() - suffix.len()].ends_with('.')
            }),
        }
    }

    /// Whether every destination `other` allows is one this pattern
    /// allows too.
    pub fn covers(&self, other: &HostPattern) -> bool {
        let ports = match (self.port, other.port) {
            (None, None) => true,
            (Some(a), Some(b)) => a == b,
            (None, Some(b)) => b == 80 || b == 443,
            (Some(_), None) => false,
        };
        let under = |suffix: &str, name: &str| {
            name.len() > suffix.len() + 1 && name.ends_with(suffix) && name[..name.len() - suffix.len()].ends_with('.')
        };
        ports
            && match (&self.host, &other.host) {
                (Host::Address(a), Host::Address(b)) => a.to_canonical() == b.to_canonical(),
                (Host::Name(a), Host::Name(b)) => a == b,
                (Host::Under(s), Host::Name(n)) => under(s, n),
                (Host::Under(a), Host::Under(b)) => a == b || under(a, b),
                _ => false,
            }
    }
}

impl TryFrom<String> for HostPattern {
    type Error = BadHostPattern;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        HostPattern::parse(&text)
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            Host::Name(n) => write!(f, "{n}")?,
            Host::Under(s) => write!(f, "*.{s}")?,
            Host::Address(IpAddr::V6(ip)) => write!(f, "[{ip}]")?,
            Host::Address(ip) => write!(f, "{ip}")?,
        }
        match self.port {
            Some(p) => write!(f, ":{p}"),
            None => Ok(()),
        }
    }
}

/// `host[:port]`, where an IPv6 literal's colons are inside brackets.
/// None when a port is given but is not 1..=65535.
fn split_port(raw: &str) -> Option<(&str, Option<u16>)> {
    let port_at = if raw.starts_with('[') {
        raw.find(']').and_then(|end| raw[end..].find(':').map(|c| end + c))
    } else if raw.matches(':').count() == 1 {
        raw.find(':')
    } else {
        // A bare IPv6 address (several colons, no brackets): no port.
        None
    };
    match port_at {
        None => Some((raw, None)),
        Some(at) => {
            let port: u16 = raw[at + 1..].parse().ok().filter(|p| *p != 0)?;
            Some((&raw[..at], Some(port)))
        }
    }
}

/// A DNS name lowercased without its trailing dot, or None when it has
/// anything but letters, digits, '-', '_' (seen in real names) and dots,
/// or an empty label.
fn normal_name(name: &str) -> Option<String> {
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    let fine = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        });
    fine.then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> HostPattern {
        HostPattern::parse(text).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_name_allows_itself_on_the_web_ports_only() {
        let gh = p("api.github.com");
        assert!(gh.allows("api.github.com", 443));
        assert!(gh.allows("API.GitHub.com.", 80));
        assert!(!gh.allows("api.github.com", 22));
        assert!(!gh.allows("github.com", 443));
        assert!(!gh.allows("api.github.com.evil.test", 443));
        assert!(!gh.allows("evilapi.github.com", 443));
    }

    #[test]
    fn a_wildcard_allows_names_under_it_and_not_the_name_itself() {
        let raw = p("*.githubusercontent.com");
        assert!(raw.allows("raw.githubusercontent.com", 443));
        assert!(raw.allows("a.b.githubusercontent.com", 443));
        assert!(!raw.allows("githubusercontent.com", 443));
        assert!(!raw.allows("evilgithubusercontent.com", 443));
        assert!(!raw.allows("githubusercontent.com.evil.test", 443));
    }

    #[test]
    fn a_port_allows_that_port_only() {
        let pypi = p("pypi.org:443");
        assert!(pypi.allows("pypi.org", 443));
        assert!(!pypi.allows("pypi.org", 80));
        let local = p("127.0.0.1:8080");
        assert!(local.allows("127.0.0.1", 8080));
        assert!(!local.allows("127.0.0.1", 8081));
        assert!(!local.allows("localhost", 8080));
        let v6 = p("[::1]:8080");
        assert!(v6.allows("[::1]", 8080));
        assert!(v6.allows("::1", 8080));
        assert_eq!(v6.to_string(), "[::1]:8080");
        // An address pattern is not a name pattern, and the other way round.
        assert!(!p("1.2.3.4").allows("1.2.3.4.nip.io", 443));
        assert!(!p("example.com").allows("93.184.216.34", 443));
    }

    #[test]
    fn patterns_that_open_too_much_or_mean_nothing_are_refused() {
        for (text, want) in [
            ("", BadHostPattern::Empty(String::new())),
            ("*", BadHostPattern::TooBroad("*".into())),
            ("*.com", BadHostPattern::TooBroad("*.com".into())),
            ("api.*.com", BadHostPattern::Wildcard("api.*.com".into())),
            ("*.*.example.com", BadHostPattern::Wildcard("*.*.example.com".into())),
            ("pypi.org:0", BadHostPattern::Port("pypi.org:0".into())),
            ("pypi.org:99999", BadHostPattern::Port("pypi.org:99999".into())),
            ("pypi.org:https", BadHostPattern::Port("pypi.org:https".into())),
            ("exa mple.com", BadHostPattern::Name("exa mple.com".into())),
            ("a..b", BadHostPattern::Name("a..b".into())),
        ] {
            assert_eq!(HostPattern::parse(text), Err(want), "{text:?}");
        }
    }

    #[test]
    fn patterns_read_from_configuration_text() {
        let list: Vec<HostPattern> = serde_json::from_str(r#"["api.github.com", "*.pythonhosted.org:443"]"#).unwrap();
        assert_eq!(list[1].to_string(), "*.pythonhosted.org:443");
        let err = serde_json::from_str::<Vec<HostPattern>>(r#"["*.com"]"#).unwrap_err();
        assert!(err.to_string().contains("too broad"), "{err}");
    }

    #[test]
    fn a_pattern_covers_what_it_allows_and_no_more() {
        let p = |t: &str| HostPattern::parse(t).unwrap();
        assert!(p("api.github.com").covers(&p("api.github.com")));
        assert!(p("api.github.com").covers(&p("api.github.com:443")));
        assert!(!p("api.github.com:443").covers(&p("api.github.com")));
        assert!(!p("api.github.com").covers(&p("api.github.com:8443")));
        assert!(p("*.github.com").covers(&p("api.github.com")));
        assert!(p("*.github.com").covers(&p("*.api.github.com")));
        assert!(!p("*.github.com").covers(&p("github.com")));
        assert!(!p("api.github.com").covers(&p("*.github.com")));
        assert!(p("127.0.0.1:8080").covers(&p("127.0.0.1:8080")));
        assert!(!p("127.0.0.1").covers(&p("localhost")));
    }
}
