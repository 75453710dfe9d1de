//! The door between what OxiBot runs for the model and the network. Today
//! it holds the guard that decides which addresses a request may reach
//! (`guard`: reserved ranges, metadata names, and what the kernel's routing
//! table says is this host or on its links, `route`); `web_fetch` asks it
//! at every hop. `proxy` is the door's core, one connection from the jail:
//! the request head read, the destination decided against
//! `tools.exec.allowedHosts` and the same guard, the one checked address
//! dialled, the bytes relayed and counted. `grants` says which running exec
//! a connection comes from (a per-exec token in the proxy URL), and `pass`
//! hands an accepted connection from the jail's end to the daemon outside
//! (`SCM_RIGHTS`). The daemon that will run these for the jail (its own
//! user and sandbox, the broker link, the audit) is not built yet.

/// The most a head may hold, a request's or an answer's (the first line
/// and the headers): more is refused.
pub const MAX_HEAD: usize = 16 * 1024;

pub mod grants;
pub mod guard;
pub mod inject;
pub mod pass;
pub mod proxy;
pub mod resolve;
pub mod route;

pub use guard::{BadAllowEntry, Guard, NotPublic, Refusal};
pub use resolve::{checked_addresses, Lookup, SystemLookup, Unreachable};
