//! Redaction of known secrets from text that leaves a process: replies,
//! prompts, tool output, status and log lines. Shared by the broker (every
//! configured secret) and each channel daemon (its own credential, which
//! platform errors may quote — Telegram's API URL holds the bot token).
//!
//! A secret is also found when it was encoded on the way: base64 (standard
//! and URL-safe, at each of the three byte alignments inside a longer
//! base64 text), hex (either case) and URL percent-encoding. Other
//! encodings (rot13, reversed, split across lines) are not caught; the
//! separation of the processes is the real defence, this is the net below.

use std::io::Write;
use std::sync::RwLock;

use zeroize::Zeroizing;

pub const REDACTED: &str = "[REDACTED]";

/// Replaces each known secret, and its encodings, with [`REDACTED`].
#[derive(Clone, Default)]
pub struct Redactor {
    /// Every form to look for, longest first, so that a secret containing
    /// another is redacted whole.
    forms: Vec<Zeroizing<String>>,
}

impl Redactor {
    /// Secrets shorter than this are skipped: redacting "abc" everywhere
    /// would mangle ordinary text while protecting nothing.
    pub const MIN_LEN: usize = 6;

    pub fn new<'a>(secrets: impl IntoIterator<Item = &'a str>) -> Self {
        let mut forms: Vec<Zeroizing<String>> = Vec::new();
        for secret in secrets {
            if secret.len() < Self::MIN_LEN {
                continue;
            }
            forms.extend(encodings(secret.as_bytes()).into_iter().map(Zeroizing::new));
            forms.push(Zeroizing::new(secret.to_string()));
        }
        forms.retain(|f| f.len() >= Self::MIN_LEN);
        forms.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.as_str().cmp(b.as_str())));
        forms.dedup();
        Redactor { forms }
    }

    pub fn is_empty(&self) -> bool {
        self.forms.is_empty()
    }

    /// Where the text's unfinished end begins: the first byte of the
    /// longest tail that is the start of a secret (or of one of its
    /// forms), at a character boundary; `text.len()` when there is none.
    /// A stream holds that tail back until the next piece shows whether
    /// the secret follows.
    pub fn unfinished(&self, text: &str) -> usize {
        let bytes = text.as_bytes();
        let mut from = text.len();
        for form in &self.forms {
            let form = form.as_bytes();
            let longest = form.len().saturating_sub(1).min(bytes.len());
            for k in (1..=longest).rev() {
                if text.len() - k >= from {
                    break;
                }
                if bytes.ends_with(&form[..k]) {
                    from = text.len() - k;
                    break;
                }
            }
        }
        while !text.is_char_boundary(from) {
            from -= 1;
        }
        from
    }

    /// Where to cut a streamed text: what is before the cut can be
    /// redacted and shown now, what is after waits for the next piece.
    /// The cut is at the unfinished end (see [`Redactor::unfinished`]),
    /// moved back before any whole secret that reaches over it, so that no
    /// secret is ever shown in two halves, and a short secret inside an
    /// unfinished longer one does not break the longer one.
    pub fn stream_cut(&self, text: &str) -> usize {
        let mut cut = self.unfinished(text);
        loop {
            let mut moved = false;
            for form in &self.forms {
                let mut from = 0;
                while let Some(at) = text[from..].find(form.as_str()) {
                    let start = from + at;
                    if start < cut && start + form.len() > cut {
                        cut = start;
                        moved = true;
                    }
                    from = start + text[start..].chars().next().map_or(1, char::len_utf8);
                    if start >= cut {
                        break;
                    }
                }
            }
            if !moved {
                return cut;
            }
        }
    }

    /// Returns the redacted text and how many occurrences were replaced.
    pub fn redact(&self, text: &str) -> (String, usize) {
        let mut out: Option<String> = None;
        let mut hits = 0;
        for form in &self.forms {
            let current = out.as_deref().unwrap_or(text);
            let n = current.matches(form.as_str()).count();
            if n > 0 {
                hits += n;
                out = Some(current.replace(form.as_str(), REDACTED));
            }
        }
        (out.unwrap_or_else(|| text.to_string()), hits)
    }
}

/// What every log line of this process is redacted with (see
/// [`RedactedStderr`]); empty until the secrets are known.
static LOG_REDACTOR: RwLock<Option<Redactor>> = RwLock::new(None);

/// Sets (or, on reload, replaces) the secrets redacted from log lines.
pub fn set_log_redactor(redactor: Redactor) {
    *LOG_REDACTOR.write().unwrap_or_else(|p| p.into_inner()) = Some(redactor);
}

/// Standard error with every known secret redacted: the log writer of every
/// OxiBot process (`tracing_subscriber::fmt().with_writer(|| RedactedStderr)`).
/// The formatter hands over each event whole, so a secret is never split
/// between two writes.
pub struct RedactedStderr;

impl Write for RedactedStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let guard = LOG_REDACTOR.read().unwrap_or_else(|p| p.into_inner());
        match guard.as_ref().filter(|r| !r.is_empty()) {
            Some(r) => {
                let (clean, _) = r.redact(&String::from_utf8_lossy(buf));
                std::io::stderr().write_all(clean.as_bytes())?;
            }
            None => std::io::stderr().write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// The encoded forms of `secret` to look for, besides the plain text.
fn encodings(secret: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    for alphabet in [STANDARD, URL_SAFE] {
        for offset in 0..3 {
            out.push(base64_core(secret, offset, alphabet));
        }
    }
    let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    out.push(hex.to_ascii_uppercase());
    out.push(hex);
    let percent = percent_encode(secret);
    if percent.as_bytes() != secret {
        out.push(percent.to_ascii_lowercase());
        out.push(percent);
    }
    // Every byte escaped, as some encoders (and evaders) write it.
    let every: String = secret.iter().map(|b| format!("%{b:02X}")).collect();
    out.push(every.to_ascii_lowercase());
    out.push(every);
    // As an error message quotes a string value: Rust's Debug escaping
    // (serde's "invalid type: string \"…\"") and JSON's.
    if let Ok(text) = std::str::from_utf8(secret) {
        out.push(text.escape_debug().to_string());
        out.push(json_escaped(text));
    }
    out
}

fn json_escaped(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

const STANDARD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const URL_SAFE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// The base64 characters that depend on `secret` alone when it starts
/// `offset` bytes into a longer encoded text: the characters whose six
/// bits lie wholly inside the secret's bits.
fn base64_core(secret: &[u8], offset: usize, alphabet: &[u8; 64]) -> String {
    let bit = |i: usize| -> u8 {
        let byte = i / 8;
        if byte < offset {
            return 0;
        }
        (secret[byte - offset] >> (7 - i % 8)) & 1
    };
    let start_bit = offset * 8;
    let end_bit = (offset + secret.len()) * 8;
    let first = start_bit.div_ceil(6);
    let last = end_bit / 6;
    (first..last)
        .map(|c| {
            let v = (0..6).fold(0u8, |acc, k| (acc << 1) | bit(c * 6 + k));
            alphabet[v as usize] as char
        })
        .collect()
}

fn percent_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 3);
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_holds_back_what_may_become_a_secret() {
        let r = Redactor::new(["sk-live-123456"]);
        assert_eq!(r.unfinished("the key is sk-li"), "the key is ".len());
        assert_eq!(r.unfinished("the key is s"), "the key is ".len());
        assert_eq!(r.unfinished("nothing here"), "nothing here".len());
        // A whole secret is the redactor's; only a start is held.
        assert_eq!(r.unfinished("sk-live-123456 done"), "sk-live-123456 done".len());
        assert_eq!(r.unfinished("ünï sk"), "ünï ".len());
    }

    /// Any way a text is cut into pieces, showing each piece's ready part
    /// redacted shows what redacting the whole shows.
    #[test]
    fn a_stream_shows_what_the_whole_text_shows() {
        let r = Redactor::new([
            "hunter2hunter2",
            "postgres://app:hunter2hunter2@db/prod",
            "abcdef",
            "defghi",
        ]);
        for text in [
            "url postgres://app:hunter2hunter2@db/prod end",
            "xxabcdefghi yy",
            "pw hunter2hunter2 and abcdefabcdef",
        ] {
            let whole = r.redact(text).0;
            for step in 1..=7 {
                let (mut shown, mut pending) = (String::new(), String::new());
                let chars: Vec<char> = text.chars().collect();
                for piece in chars.chunks(step) {
                    pending.extend(piece);
                    let cut = r.stream_cut(&pending);
                    shown.push_str(&r.redact(&pending[..cut]).0);
                    pending = pending[cut..].to_string();
                }
                shown.push_str(&r.redact(&pending).0);
                assert_eq!(shown, whole, "pieces of {step}: {text}");
            }
        }
    }

    #[test]
    fn a_secret_quoted_with_escapes_is_still_found() {
        let secret = "Zq9\"pass\\word-Secret77";
        let r = Redactor::new([secret]);
        // serde's error quotes it Debug-style; a JSON document escapes it.
        let debug = format!("invalid type: string {secret:?}, expected a map");
        let (clean, hits) = r.redact(&debug);
        assert_eq!(hits, 1, "{clean}");
        assert!(!clean.contains("pass") && !clean.contains("Secret77"), "{clean}");
        let json = format!("{{\"apiKey\": {}}}", json_quote(secret));
        let (clean, hits) = r.redact(&json);
        assert_eq!(hits, 1, "{clean}");
        assert!(!clean.contains("Secret77"), "{clean}");
    }

    fn json_quote(s: &str) -> String {
        format!("\"{}\"", json_escaped(s))
    }

    /// A reference base64 encoder (standard alphabet, padded), to check the
    /// aligned cores against whole encodings.
    fn b64(data: &[u8]) -> String {
        let mut out = String::new();
        for chunk in data.chunks(3) {
            let n = chunk.len();
            let v = (u32::from(chunk[0]) << 16)
                | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
                | u32::from(*chunk.get(2).unwrap_or(&0));
            for i in 0..4 {
                if i <= n {
                    out.push(STANDARD[((v >> (18 - 6 * i)) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    #[test]
    fn plain_secrets_are_redacted_longest_first() {
        let r = Redactor::new(["sk-abcdef", "sk-abcdef-123456", "abc"]);
        let (out, n) = r.redact("key sk-abcdef-123456 and sk-abcdef, abc stays");
        assert_eq!(out, "key [REDACTED] and [REDACTED], abc stays");
        assert_eq!(n, 2);
    }

    #[test]
    fn base64_at_every_alignment_is_redacted() {
        let secret = "sk-live-0123456789abcdef";
        let r = Redactor::new([secret]);
        for prefix in ["", "a", "ab", "abc", "Authorization: Bearer "] {
            let encoded = b64(format!("{prefix}{secret}:and-then-more").as_bytes());
            let (out, n) = r.redact(&format!("here: {encoded}"));
            assert!(n >= 1, "prefix {prefix:?}: {encoded} not caught");
            assert!(out.contains(REDACTED), "{out}");
        }
        // URL-safe alphabet too.
        let urlsafe = b64(format!("x{secret}?").as_bytes())
            .replace('+', "-")
            .replace('/', "_");
        assert!(r.redact(&urlsafe).1 >= 1, "{urlsafe}");
    }

    #[test]
    fn hex_and_percent_encodings_are_redacted() {
        let secret = "tok/en+with spaces&=";
        let r = Redactor::new([secret]);
        let hex: String = secret.bytes().map(|b| format!("{b:02x}")).collect();
        assert_eq!(r.redact(&format!("0x{hex}!")).0, format!("0x{REDACTED}!"));
        assert_eq!(r.redact(&hex.to_uppercase()).1, 1);
        assert_eq!(
            r.redact("q=tok%2Fen%2Bwith%20spaces%26%3D&x=1").0,
            format!("q={REDACTED}&x=1")
        );
        assert_eq!(r.redact("tok%2fen%2bwith%20spaces%26%3d").1, 1);
        let every: String = secret.bytes().map(|b| format!("%{b:02x}")).collect();
        assert_eq!(r.redact(&every).1, 1);
    }

    #[test]
    fn ordinary_text_is_left_alone() {
        let r = Redactor::new(["sk-live-0123456789abcdef"]);
        let text = "The quick brown fox jumps over the lazy dog. 0123 abcdef";
        assert_eq!(r.redact(text), (text.to_string(), 0));
        assert!(Redactor::new(["short"]).is_empty());
    }
}
