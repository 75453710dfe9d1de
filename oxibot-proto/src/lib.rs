//! OxiBot wire protocol.
//!
//! Every OxiBot process talks to the broker over a Unix stream socket carrying
//! length-prefixed postcard frames (see `frame`). The first frame each way is a
//! [`Hello`]; after it, each side may only send the message enum of its role
//! and direction (see `messages`). That enum *is* the dispatch table: a channel
//! daemon cannot even encode a tool request. Anything that does not decode, or
//! that is not allowed in the connection's current state, closes the
//! connection (fail-stop, as OpenSSH's privsep monitor does).

mod conn;
mod frame;
mod hello;
pub mod messages;
mod peer;
pub mod settings;

pub use conn::{accept_handshake, connect_handshake, Checked, Conn, ConnReader, ConnWriter};
pub use frame::{decode, encode, read_frame, write_frame, FrameError, MAX_FRAME};
pub use hello::{Hello, Role, MAGIC, PROTOCOL_MAJOR, PROTOCOL_MINOR};
pub use peer::{check_peer, PeerCred, PeerError, PeerPolicy, ADMIN_GROUP};

#[cfg(test)]
mod tests;
