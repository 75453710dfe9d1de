//! Bounded fields: each message field that carries a length, a count or a
//! number names its bound where it is declared (`#[serde(with =
//! "limit::id")]`), and the bound is enforced by the field's own encoder
//! and decoder. A frame whose field is over its bound does not decode, so
//! no handler ever holds one; a sender cannot encode one, so it learns of
//! the violation while it can still tell its caller.
//!
//! postcard keeps no text for a serde error, so the refusal itself is
//! written to a per-thread slot that [`crate::decode`] and [`crate::encode`]
//! read back: the error says which kind of field, how big and the limit.
//! Decoding is synchronous, so the slot cannot be seen by another message.
//!
//! The trusted receiver (toold, reading its broker) decodes *leniently*: a
//! field over its bound is kept and the first refusal is reported beside
//! the message, so it can answer that one request instead of closing.

use std::cell::Cell;
use std::fmt;

/// Why a message was refused: one field over its bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub struct Refused {
    /// Which kind of field (`path`, `text`, `attachments`, …).
    pub what: &'static str,
    pub size: u64,
    pub max: u64,
    pub unit: Unit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Bytes,
    Items,
    /// A number compared with its largest allowed value.
    Value,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Refused { what, size, max, unit } = self;
        match unit {
            Unit::Bytes => write!(f, "{what} is {size} bytes, the limit is {max}"),
            Unit::Items => write!(f, "{size} {what}, the limit is {max}"),
            Unit::Value => write!(f, "{what} {size} is over {max}"),
        }
    }
}

/// Whether a refused field fails the decode (every untrusted direction) or
/// is only recorded (the trusted broker's requests to toold).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Strict,
    Lenient,
}

thread_local! {
    static MODE: Cell<Mode> = const { Cell::new(Mode::Strict) };
    static FIRST_REFUSAL: Cell<Option<Refused>> = const { Cell::new(None) };
}

/// Runs an encode or decode and returns, beside its result, the first
/// field it refused.
pub(crate) fn judged<T>(lenient: bool, f: impl FnOnce() -> T) -> (T, Option<Refused>) {
    /// Puts the thread's mode back even if `f` unwinds: a worker thread
    /// left lenient would decode every later untrusted frame leniently.
    struct Restore(Mode);
    impl Drop for Restore {
        fn drop(&mut self) {
            MODE.with(|m| m.set(self.0));
        }
    }
    let mode = if lenient { Mode::Lenient } else { Mode::Strict };
    let _restore = Restore(MODE.with(|m| m.replace(mode)));
    FIRST_REFUSAL.with(|r| r.set(None));
    let out = f();
    (out, FIRST_REFUSAL.with(|r| r.take()))
}

fn record(refused: Refused) {
    FIRST_REFUSAL.with(|r| {
        if r.get().is_none() {
            r.set(Some(refused));
        }
    });
}

/// The check behind every bound. Encoding always fails on a violation;
/// decoding fails unless it runs leniently.
fn check(refused: Option<Refused>, encoding: bool) -> Result<(), Refused> {
    let Some(refused) = refused else { return Ok(()) };
    record(refused);
    if encoding || MODE.with(|m| m.get()) == Mode::Strict {
        return Err(refused);
    }
    Ok(())
}

/// What a bound measures: a text's or a byte string's length, a number's
/// value; an absent optional field measures 0.
pub trait Measure {
    const UNIT: Unit;
    fn measure(&self) -> u64;
}

impl Measure for String {
    const UNIT: Unit = Unit::Bytes;
    fn measure(&self) -> u64 {
        self.len() as u64
    }
}

impl Measure for Vec<u8> {
    const UNIT: Unit = Unit::Bytes;
    fn measure(&self) -> u64 {
        self.len() as u64
    }
}

impl Measure for u8 {
    const UNIT: Unit = Unit::Value;
    fn measure(&self) -> u64 {
        u64::from(*self)
    }
}

impl Measure for u32 {
    const UNIT: Unit = Unit::Value;
    fn measure(&self) -> u64 {
        u64::from(*self)
    }
}

impl Measure for u64 {
    const UNIT: Unit = Unit::Value;
    fn measure(&self) -> u64 {
        *self
    }
}

impl<T: Measure> Measure for Option<T> {
    const UNIT: Unit = T::UNIT;
    fn measure(&self) -> u64 {
        self.as_ref().map_or(0, Measure::measure)
    }
}

impl Measure for (String, String) {
    const UNIT: Unit = Unit::Bytes;
    fn measure(&self) -> u64 {
        self.0.measure().max(self.1.measure())
    }
}

/// The refusal for a single value, if it is over `max`.
pub(crate) fn over<T: Measure>(what: &'static str, value: &T, max: u64) -> Option<Refused> {
    let size = value.measure();
    (size > max).then_some(Refused {
        what,
        size,
        max,
        unit: T::UNIT,
    })
}

/// The refusal for a list: too many items, or one item over `item_max`.
pub(crate) fn over_list<T: Measure>(
    what: &'static str,
    list: &[T],
    count_max: u64,
    item: &'static str,
    item_max: u64,
) -> Option<Refused> {
    if list.len() as u64 > count_max {
        return Some(Refused {
            what,
            size: list.len() as u64,
            max: count_max,
            unit: Unit::Items,
        });
    }
    list.iter().find_map(|v| over(item, v, item_max))
}

/// The refusal for a list counted only (its items carry their own bounds).
pub(crate) fn over_count<T>(what: &'static str, list: &[T], count_max: u64) -> Option<Refused> {
    (list.len() as u64 > count_max).then_some(Refused {
        what,
        size: list.len() as u64,
        max: count_max,
        unit: Unit::Items,
    })
}

/// One bound as a serde `with` module: the encoder refuses a value over
/// it, the decoder refuses (or, leniently, records) one.
macro_rules! bound {
    ($(#[$doc:meta])* $module:ident, $what:literal, $max:expr) => {
        $(#[$doc])*
        pub(crate) mod $module {
            use serde::{Deserialize, Deserializer, Serialize, Serializer};

            #[allow(unused_imports)]
            use crate::messages::*;

            use super::{check, over, Measure};

            pub fn serialize<T: Measure + Serialize, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
                check(over($what, v, $max as u64), true).map_err(serde::ser::Error::custom)?;
                v.serialize(s)
            }

            pub fn deserialize<'de, T: Measure + Deserialize<'de>, D: Deserializer<'de>>(d: D) -> Result<T, D::Error> {
                let v = T::deserialize(d)?;
                check(over($what, &v, $max as u64), false).map_err(serde::de::Error::custom)?;
                Ok(v)
            }
        }
    };
}

/// A list bound as a serde `with` module: at most `$count` items, each
/// within `$item_max` (or, without an item bound, items that bound
/// themselves).
macro_rules! list_bound {
    ($(#[$doc:meta])* $module:ident, $what:literal, $count:expr, $item:literal, $item_max:expr) => {
        $(#[$doc])*
        pub(crate) mod $module {
            use serde::{Deserialize, Deserializer, Serialize, Serializer};

            #[allow(unused_imports)]
            use crate::messages::*;

            use super::{check, over_list, Measure};

            pub fn serialize<T: Measure + Serialize, S: Serializer>(v: &[T], s: S) -> Result<S::Ok, S::Error> {
                check(over_list($what, v, $count as u64, $item, $item_max as u64), true)
                    .map_err(serde::ser::Error::custom)?;
                v.serialize(s)
            }

            pub fn deserialize<'de, T: Measure + Deserialize<'de>, D: Deserializer<'de>>(
                d: D,
            ) -> Result<Vec<T>, D::Error> {
                let v = Vec::<T>::deserialize(d)?;
                check(over_list($what, &v, $count as u64, $item, $item_max as u64), false)
                    .map_err(serde::de::Error::custom)?;
                Ok(v)
            }
        }
    };
    ($(#[$doc:meta])* $module:ident, $what:literal, $count:expr) => {
        $(#[$doc])*
        pub(crate) mod $module {
            use serde::{Deserialize, Deserializer, Serialize, Serializer};

            #[allow(unused_imports)]
            use crate::messages::*;

            use super::{check, over_count};

            pub fn serialize<T: Serialize, S: Serializer>(v: &[T], s: S) -> Result<S::Ok, S::Error> {
                check(over_count($what, v, $count as u64), true).map_err(serde::ser::Error::custom)?;
                v.serialize(s)
            }

            pub fn deserialize<'de, T: Deserialize<'de>, D: Deserializer<'de>>(d: D) -> Result<Vec<T>, D::Error> {
                let v = Vec::<T>::deserialize(d)?;
                check(over_count($what, &v, $count as u64), false).map_err(serde::de::Error::custom)?;
                Ok(v)
            }
        }
    };
}

bound!(
    /// Names and ids: channels, chats, senders, platform ids, sessions.
    id, "name or id", MAX_ID
);
bound!(path, "path", MAX_PATH);
bound!(
    /// Message text, file contents, commands, outputs.
    text, "text", MAX_TEXT
);
bound!(
    /// One piece of file data.
    part, "file piece", MAX_PART
);
bound!(
    /// A number of bytes asked for at once.
    part_size, "byte count", MAX_PART
);
bound!(
    /// Where in a file a piece goes.
    file_offset, "offset", MAX_FILE_BYTES
);
bound!(
    /// Which of a message's attachments a piece belongs to.
    attachment_index, "attachment index", MAX_ATTACHMENTS - 1
);
bound!(
    /// A SHA-256 digest in hex, or a prefix of one.
    sha, "digest", 64
);
bound!(
    /// How many entries an answer may list.
    listed, "limit", MAX_LISTED
);
list_bound!(attachments, "attachments", MAX_ATTACHMENTS);
list_bound!(buttons, "buttons", MAX_BUTTONS);
list_bound!(text_files, "files", MAX_TEXT_FILES);
list_bound!(resume_chats, "resume chats", MAX_RESUME_CHATS, "resume entry", MAX_ID);
list_bound!(patterns, "patterns", MAX_TEXT_FILES, "pattern", MAX_PATH);
list_bound!(probe_names, "names", MAX_PROBE_NAMES, "name", MAX_ID);
/// An optional list of host patterns (an MCP server's own).
pub(crate) mod host_patterns_opt {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::{check, over_list};
    use crate::messages::{MAX_HOST_PATTERNS, MAX_ID};

    fn refused(v: &Option<Vec<String>>) -> Option<super::Refused> {
        v.as_ref().and_then(|v| {
            over_list(
                "host patterns",
                v,
                MAX_HOST_PATTERNS as u64,
                "host pattern",
                MAX_ID as u64,
            )
        })
    }

    pub fn serialize<S: Serializer>(v: &Option<Vec<String>>, s: S) -> Result<S::Ok, S::Error> {
        check(refused(v), true).map_err(serde::ser::Error::custom)?;
        v.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
        let v = Option::<Vec<String>>::deserialize(d)?;
        check(refused(&v), false).map_err(serde::de::Error::custom)?;
        Ok(v)
    }
}
list_bound!(mcp_args, "arguments", MAX_MCP_ARGS, "argument", MAX_PATH);
list_bound!(mcp_env, "environment variables", MAX_MCP_ARGS, "variable", MAX_PATH);
list_bound!(audit_kinds, "kinds", 32, "kind", MAX_ID);
list_bound!(
    host_patterns,
    "host patterns",
    MAX_HOST_PATTERNS,
    "host pattern",
    MAX_ID
);
list_bound!(credentials, "credentials", MAX_CREDENTIALS);
list_bound!(
    credential_names,
    "credential names",
    MAX_CREDENTIALS,
    "credential name",
    MAX_ID
);
list_bound!(
    not_ready,
    "reasons for not being ready",
    MAX_NOT_READY,
    "reason",
    MAX_PATH
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lenient_decode_that_unwinds_leaves_the_thread_strict() {
        let unwound = std::panic::catch_unwind(|| judged(true, || panic!("a decoder bug")));
        assert!(unwound.is_err());
        assert!(MODE.with(|m| m.get()) == Mode::Strict);
        // And a strict check refuses again.
        assert!(check(over("path", &"x".repeat(5), 4), false).is_err());
    }
}
