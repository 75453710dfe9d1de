//! Secret values: zeroized on drop, never printed, and the scrubber that
//! redacts every configured secret from text that leaves the broker.

use std::fmt;

use serde::{Deserialize, Deserializer};
use zeroize::Zeroizing;

/// A credential. `Debug` and `Display` print `[redacted]`; there is no
/// `Serialize`, so a secret cannot be written anywhere by accident.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    pub fn new(value: String) -> Self {
        Secret(Zeroizing::new(value))
    }
    /// The raw value, for the one place that needs it (an HTTP header, a
    /// channel's Setup frame). Never format it into a message.
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Secret::new(String::deserialize(d)?))
    }
}

/// Replaces each known secret with a marker. Secrets shorter than
/// [`Scrubber::MIN_LEN`] are skipped: redacting "abc" everywhere would
/// mangle ordinary text while protecting nothing.
#[derive(Clone, Default)]
pub struct Scrubber {
    secrets: Vec<Secret>,
}

pub const REDACTED: &str = "[REDACTED]";

impl Scrubber {
    pub const MIN_LEN: usize = 6;

    pub fn new<'a>(secrets: impl IntoIterator<Item = &'a Secret>) -> Self {
        let mut secrets: Vec<Secret> = secrets
            .into_iter()
            .filter(|s| s.expose().len() >= Self::MIN_LEN)
            .cloned()
            .collect();
        // Longest first, so a secret that contains another is redacted whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.expose().len()));
        secrets.dedup();
        Scrubber { secrets }
    }

    /// Returns the scrubbed text and how many secrets were redacted.
    pub fn scrub(&self, text: &str) -> (String, usize) {
        let mut out = text.to_string();
        let mut hits = 0;
        for s in &self.secrets {
            let n = out.matches(s.expose()).count();
            if n > 0 {
                hits += n;
                out = out.replace(s.expose(), REDACTED);
            }
        }
        (out, hits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let s = Secret::new("sk-very-secret".into());
        assert_eq!(format!("{s:?}"), "[redacted]");
    }

    #[test]
    fn scrubs_every_occurrence_longest_first() {
        let a = Secret::new("sk-abcdef".into());
        let b = Secret::new("sk-abcdef-123456".into());
        let short = Secret::new("abc".into());
        let s = Scrubber::new([&a, &b, &short]);
        let (out, n) = s.scrub("key sk-abcdef-123456 and sk-abcdef, abc stays");
        assert_eq!(out, "key [REDACTED] and [REDACTED], abc stays");
        assert_eq!(n, 2);
    }
}
