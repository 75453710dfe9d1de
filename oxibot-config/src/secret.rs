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

/// Redacts every configured secret (and its base64, hex and URL
/// encodings: see [`oxibot_runtime::redact`]).
#[derive(Clone, Default)]
pub struct Scrubber {
    redactor: oxibot_runtime::redact::Redactor,
}

pub use oxibot_runtime::redact::REDACTED;

impl Scrubber {
    pub fn new<'a>(secrets: impl IntoIterator<Item = &'a Secret>) -> Self {
        Scrubber {
            redactor: oxibot_runtime::redact::Redactor::new(secrets.into_iter().map(Secret::expose)),
        }
    }

    /// Returns the scrubbed text and how many secrets were redacted.
    pub fn scrub(&self, text: &str) -> (String, usize) {
        self.redactor.redact(text)
    }

    /// Where to cut a streamed text (see `Redactor::stream_cut`).
    pub fn stream_cut(&self, text: &str) -> usize {
        self.redactor.stream_cut(text)
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
