//! The audit room: the redactor that every text leaving the broker passes
//! (to a channel, the model, a status answer), the audit log's writes, and
//! the last error shown in `oxibotctl status`. One owner, so that a
//! redaction is always audited and no module scrubs by a path of its own.

use std::sync::{Arc, Mutex, RwLock};

use crate::secret::Scrubber;
use crate::store::Store;

pub struct Audit {
    store: Store,
    scrubber: RwLock<Arc<Scrubber>>,
    last_error: Mutex<Option<String>>,
}

impl Audit {
    pub fn new(store: Store, scrubber: Scrubber) -> Audit {
        Audit {
            store,
            scrubber: RwLock::new(Arc::new(scrubber)),
            last_error: Mutex::default(),
        }
    }

    /// Scrubs secrets from text leaving the broker, auditing each redaction.
    pub fn scrub(&self, text: &str, what: &str) -> String {
        let scrubber = self.scrubber.read().unwrap_or_else(|p| p.into_inner()).clone();
        let (clean, hits) = scrubber.scrub(text);
        if hits > 0 {
            self.log(
                "secret_redacted",
                &format!("{hits} secret occurrence(s) redacted from {what}"),
            );
        }
        clean
    }

    /// A text that arrives in pieces (a streamed answer), scrubbed piece by
    /// piece: `pending` keeps what is not shown yet, as it came; the part
    /// that may be (or reach into) a secret stays there until the next
    /// piece says. Returns what may be shown now, scrubbed. What is left
    /// at the end is shown through [`Audit::scrub`].
    pub fn scrub_piece(&self, pending: &mut String, piece: &str, what: &str) -> String {
        pending.push_str(piece);
        let scrubber = self.scrubber.read().unwrap_or_else(|p| p.into_inner()).clone();
        let cut = scrubber.stream_cut(pending);
        let shown = self.scrub(&pending[..cut], what);
        pending.drain(..cut);
        shown
    }

    /// The secrets of a reloaded configuration.
    pub fn replace_scrubber(&self, scrubber: Scrubber) {
        *self.scrubber.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(scrubber);
    }

    /// An audit entry about the broker as a whole.
    pub fn log(&self, kind: &str, detail: &str) {
        self.store.audit(kind, detail);
    }

    /// An audit entry filed under a channel (and a user), so that
    /// `oxibotctl audit --channel` finds it.
    pub fn about(&self, kind: &str, channel: Option<&str>, user: Option<&str>, detail: &str) {
        self.store.audit_about(kind, channel, user, detail);
    }

    /// Keeps an error for `oxibotctl status` (scrubbed, shortened).
    pub fn record_error(&self, e: &str) {
        let e = self.scrub(e, "an error shown in status");
        let e = crate::providers::shorten(&e, 2048);
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
    }

    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}
