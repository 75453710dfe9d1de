//! The From address, read by RFC 5322's own grammar for one mailbox.
//!
//! The receiving server authenticates the address a standard parser reads
//! in From, and the e-mail channel believes its verdict only for that
//! address. A parser that reads another address from the same header lets
//! any mailbox at an allowed domain pass as any allowed user there. A
//! general-purpose parser (mailparse's) disagreed with RFC 5322 on quoted
//! strings after a word, nested comments and encoded words, so this reads
//! exactly one `mailbox` (RFC 5322 3.4):
//!
//! ```text
//! mailbox      = name-addr / addr-spec
//! name-addr    = [phrase] [CFWS] "<" addr-spec ">" [CFWS]
//! phrase       = 1*(atom / quoted-string / ".")      (with CFWS between)
//! addr-spec    = local-part "@" domain
//! local-part   = dot-atom-text / quoted-string
//! domain       = dot-atom-text / "[" dtext "]"
//! CFWS         = whitespace and (nested, \-escaping) comments
//! ```
//!
//! Anything else — a second mailbox, a group, text after the address, an
//! unclosed quote or comment — is an error, and the mail is not believed.
//! The display name is skipped: it identifies nobody (encoded words in it
//! are never decoded here).

/// Why a From header is not read as one mailbox (the mail is not believed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotOneMailbox {
    #[error("a control character in the header")]
    ControlCharacter,
    #[error("an encoded word runs on past its quote, comment or word")]
    EncodedWordRunsOn,
    #[error("the header ends too early")]
    EndsEarly,
    #[error("unexpected {0:?} after the address")]
    AfterTheAddress(char),
    #[error("a comment is not closed")]
    CommentOpen,
    #[error("a quoted string is not closed")]
    QuoteOpen,
    #[error("{0:?} is not a dot-atom")]
    NotDotAtom(String),
    #[error("no @ in the address")]
    NoAt,
    #[error("a domain literal with \\ or [")]
    DomainLiteral,
    #[error("not a name and an address in <>")]
    NotNameAddr,
    #[error("the address in <> is not closed")]
    AngleOpen,
}

/// The address of the one mailbox in a From header's unfolded value, as
/// written (a quoted local part keeps its quotes).
pub fn single_mailbox(value: &str) -> Result<String, NotOneMailbox> {
    // A bare CR or another control character ends a quoted string or a
    // comment for some parsers and not for others: no reading is safe.
    if value.chars().any(|c| c.is_control() && c != '\t') {
        return Err(NotOneMailbox::ControlCharacter);
    }
    let chars: Vec<char> = value.chars().collect();
    let mut with_name = Reader { chars: &chars, at: 0 };
    if let Ok(address) = with_name.name_addr() {
        return Ok(address);
    }
    let mut bare = Reader { chars: &chars, at: 0 };
    bare.cfws()?;
    let address = bare.addr_spec()?;
    bare.cfws()?;
    bare.end()?;
    Ok(address)
}

/// Every RFC 2047 encoded word (`=?...?=`) begun in a token (an atom, a
/// quoted string, a comment) ends in it. A decoding parser reads a word
/// that runs on across a quote or a parenthesis as one piece of text, and
/// so sees a different structure — and perhaps another address — than
/// RFC 5322 does.
fn words_closed_in(token: &str) -> Result<(), NotOneMailbox> {
    let mut rest = token;
    while let Some(open) = rest.find("=?") {
        match rest[open + 2..].find("?=") {
            Some(close) => rest = &rest[open + 2 + close + 2..],
            None => return Err(NotOneMailbox::EncodedWordRunsOn),
        }
    }
    Ok(())
}

struct Reader<'a> {
    chars: &'a [char],
    at: usize,
}

/// RFC 5322 atext, and any non-ASCII character (RFC 6532).
fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || !c.is_ascii()
}

impl Reader<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.at).copied()
    }

    fn next(&mut self) -> Result<char, NotOneMailbox> {
        let c = self.peek().ok_or(NotOneMailbox::EndsEarly)?;
        self.at += 1;
        Ok(c)
    }

    fn end(&self) -> Result<(), NotOneMailbox> {
        match self.peek() {
            None => Ok(()),
            Some(c) => Err(NotOneMailbox::AfterTheAddress(c)),
        }
    }

    /// Whitespace and comments; comments nest and may escape with `\`.
    fn cfws(&mut self) -> Result<(), NotOneMailbox> {
        loop {
            match self.peek() {
                Some(' ' | '\t' | '\r' | '\n') => self.at += 1,
                Some('(') => {
                    let start = self.at;
                    self.at += 1;
                    let mut depth = 1;
                    while depth > 0 {
                        match self.next().map_err(|_| NotOneMailbox::CommentOpen)? {
                            '\\' => {
                                self.next()?;
                            }
                            '(' => depth += 1,
                            ')' => depth -= 1,
                            _ => {}
                        }
                    }
                    self.words_closed(start)?;
                }
                _ => return Ok(()),
            }
        }
    }

    /// A quoted string, its quotes kept.
    fn quoted_string(&mut self) -> Result<String, NotOneMailbox> {
        let mut out = String::from(self.next()?);
        loop {
            match self.next().map_err(|_| NotOneMailbox::QuoteOpen)? {
                '\\' => {
                    out.push('\\');
                    out.push(self.next()?);
                }
                '"' => {
                    out.push('"');
                    words_closed_in(&out)?;
                    return Ok(out);
                }
                c => out.push(c),
            }
        }
    }

    /// See `words_closed_in`, for the token from `start` to here.
    fn words_closed(&self, start: usize) -> Result<(), NotOneMailbox> {
        words_closed_in(&self.chars[start..self.at].iter().collect::<String>())
    }

    fn dot_atom_text(&mut self) -> Result<String, NotOneMailbox> {
        let start = self.at;
        while self.peek().is_some_and(|c| is_atext(c) || c == '.') {
            self.at += 1;
        }
        let text: String = self.chars[start..self.at].iter().collect();
        if text.is_empty() || text.starts_with('.') || text.ends_with('.') || text.contains("..") {
            return Err(NotOneMailbox::NotDotAtom(text));
        }
        Ok(text)
    }

    fn addr_spec(&mut self) -> Result<String, NotOneMailbox> {
        let local = match self.peek() {
            Some('"') => self.quoted_string()?,
            _ => self.dot_atom_text()?,
        };
        if self.next()? != '@' {
            return Err(NotOneMailbox::NoAt);
        }
        let domain = match self.peek() {
            Some('[') => {
                let start = self.at;
                self.at += 1;
                loop {
                    match self.next()? {
                        ']' => break,
                        // RFC 5322 dtext has no escapes and no brackets.
                        '\\' | '[' => return Err(NotOneMailbox::DomainLiteral),
                        _ => {}
                    }
                }
                self.chars[start..self.at].iter().collect()
            }
            _ => self.dot_atom_text()?,
        };
        Ok(format!("{local}@{domain}"))
    }

    /// `[phrase] <addr-spec>`, and nothing after it but CFWS.
    fn name_addr(&mut self) -> Result<String, NotOneMailbox> {
        loop {
            self.cfws()?;
            match self.peek() {
                Some('<') => break,
                Some('"') => {
                    self.quoted_string()?;
                }
                Some(c) if is_atext(c) || c == '.' => {
                    let start = self.at;
                    while self.peek().is_some_and(|c| is_atext(c) || c == '.') {
                        self.at += 1;
                    }
                    self.words_closed(start)?;
                }
                _ => return Err(NotOneMailbox::NotNameAddr),
            }
        }
        self.at += 1;
        let address = self.addr_spec()?;
        if self.next()? != '>' {
            return Err(NotOneMailbox::AngleOpen);
        }
        self.cfws()?;
        self.end()?;
        Ok(address)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each header with the address RFC 5322 reads (checked against
    /// Python's email.headerregistry, which agrees on all but one: it
    /// drops the quotes of "bok"@, a mailbox no allow-list names).
    #[test]
    fn reads_the_address_a_standard_parser_reads() {
        for (header, address) in [
            ("Alice <Alice@Example.com>", "Alice@Example.com"),
            ("boss@example.com", "boss@example.com"),
            ("  boss@example.com (the boss) ", "boss@example.com"),
            ("=?UTF-8?Q?J=C3=B6rg?=  <jorg@example.com>", "jorg@example.com"),
            ("\"Smith, J.\" <j@example.com>", "j@example.com"),
            ("\"a \\\" b\" <j@example.com>", "j@example.com"),
            ("Dr. J. Smith <j@example.com>", "j@example.com"),
            ("<j@[192.0.2.1]>", "j@[192.0.2.1]"),
            ("\"bok\"@example.com", "\"bok\"@example.com"),
            // A word before a quote: the quote still opens a string.
            (
                "x \"<bok@example.com> (\" <mallory@example.com> ()",
                "mallory@example.com",
            ),
            (
                "Bok Smith\"<bok@example.com>(\" <mallory@example.com> (x)",
                "mallory@example.com",
            ),
            // Nested comments after the address.
            (
                "<mallory@example.com> (a (\" <bok@example.com>) \\) b)",
                "mallory@example.com",
            ),
            // An encoded word is a word of the name, never an address.
            (
                "=?utf-8?q?=3Cbok=40example=2Ecom=3E_=28?= <mallory@example.com> (x)",
                "mallory@example.com",
            ),
        ] {
            assert_eq!(single_mailbox(header).as_deref(), Ok(address), "{header}");
        }
    }

    #[test]
    fn anything_but_one_mailbox_is_refused() {
        for header in [
            "",
            "a@example.com, b@example.com",
            "undisclosed-recipients:;",
            "team: a@example.com;",
            "<a@example.com> <b@example.com>",
            "<a@example.com> b@example.com",
            "\"unclosed <a@example.com>",
            "x <a@example.com> (unclosed",
            "mallory@example.com (x (y) <bok@example.com>",
            "<a@example.com",
            "a@@example.com",
            "a..b@example.com",
            "a@example.com.",
            "Name",
            // Encoded words that run on across a quote or a comment.
            "\"=?utf-8?q?a\" <mallory@example.com> (?= \" <bok@example.com> (=?utf-8?q?x)?= )",
            "\"=?utf-8?q?a\" <bok@example.com> (?=x\" <mallory@example.com>)",
            "=?utf-8?q?x \" <bok@example.com> ?=\" <mallory@example.com>",
            // A bare CR ends a quoted string or comment for some parsers.
            "\"\r<mallory@example.com>\" <bok@example.com>",
            "(\r <mallory@example.com> ) <bok@example.com>",
            "x\u{0}y <bok@example.com>",
            // Escapes in a domain literal.
            "<a@[x\\]>",
        ] {
            assert!(
                single_mailbox(header).is_err(),
                "{header:?} read as {:?}",
                single_mailbox(header)
            );
        }
    }
}
