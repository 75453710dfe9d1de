//! The door between what OxiBot runs for the model and the network. It
//! holds the guard that decides which addresses a request may reach
//! (`guard`: reserved ranges, metadata names, and what the kernel's routing
//! table says is this host or on its links, `route`); `web_fetch` asks it
//! at every hop. `proxy` is the door's core, one connection from the jail:
//! the request head read, the destination decided against
//! `tools.exec.allowedHosts` and the same guard, the one checked address
//! dialled, the bytes relayed and counted. For a host with a credential
//! (`inject`), `tls` answers the jail's TLS with the door's own authority
//! and speaks real TLS to the host, so the header is set and the answer
//! scrubbed (`answer` unchunks and inflates it first) outside the jail. `grants` says which running exec a
//! connection comes from (its key, and the credentials it may have), and
//! `pass` hands an accepted connection from the jail's end to the daemon
//! outside (`SCM_RIGHTS`). `oxibot-egressd` runs all this in its own
//! sandbox.

/// The most a head may hold, a request's or an answer's (the first line
/// and the headers): more is refused.
pub const MAX_HEAD: usize = 16 * 1024;

mod answer;
pub mod grants;
pub mod guard;
pub mod inject;
pub mod pass;
pub mod proxy;
pub mod resolve;
pub mod route;
pub mod tls;

pub use guard::{BadAllowEntry, Guard, NotPublic, Refusal};
pub use resolve::{checked_addresses, Lookup, SystemLookup, Unreachable};

/// Whether two spellings of a host name the same host (case, a trailing
/// dot and IPv6 brackets aside).
pub(crate) fn same_host(a: &str, b: &str) -> bool {
    let plain = |h: &str| {
        h.trim_end_matches('.')
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase()
    };
    plain(a) == plain(b)
}
