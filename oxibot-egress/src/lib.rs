//! The door between what OxiBot runs for the model and the network. Today
//! it holds the guard that decides which addresses a request may reach
//! (`guard`: reserved ranges, metadata names, and what the kernel's routing
//! table says is this host or on its links, `route`); `web_fetch` asks it
//! at every hop. The egress daemon that will carry the jail's own
//! connections (`tools.exec.allowedHosts`) asks the same guard: one
//! definition of "public internet" for every path out.

pub mod guard;
pub mod route;

pub use guard::{BadAllowEntry, Guard, NotPublic, Refusal};
