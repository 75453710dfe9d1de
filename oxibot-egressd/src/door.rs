//! The door's intake: toold connects here and hands over, one message
//! each, the connections its jail accepted, tagged with the key of the
//! exec whose processes opened them. Only toold's uid (or root, which
//! starts it, or this daemon's own uid when everything runs as one user)
//! may connect; a connection is served only as a TCP socket, and at most
//! [`MAX_CONNECTIONS`] at once, [`PER_EXEC`] of one exec and [`KEYLESS`]
//! of no running exec (more are closed unanswered, and counted in the
//! audit): a process left behind cannot take the door from the exec
//! that runs.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use oxibot_egress::pass::{self, PassError};
use oxibot_egress::proxy::{self, Record};
use oxibot_egress::SystemLookup;
use oxibot_proto::messages::{ConnectionRecord, MAX_ID};
use tokio::io::Interest;
use tokio::net::{UnixListener, UnixStream};

use crate::link::Door;

/// Connections relayed at once, all execs together.
pub const MAX_CONNECTIONS: usize = 256;
/// … of one exec.
pub const PER_EXEC: usize = 64;
/// … of no running exec (each is refused within a second).
pub const KEYLESS: usize = 16;

/// Who may hand connections over.
pub struct Peers {
    uids: Vec<u32>,
}

impl Peers {
    /// Root (a root-started toold builds its jail as root, and its outside
    /// half stays root), our own uid (everything under one user), and the
    /// tool user, when it exists.
    pub fn of(tool_user: &str) -> Peers {
        let mut uids = vec![0, nix::unistd::geteuid().as_raw()];
        if let Ok(Some(user)) = nix::unistd::User::from_name(tool_user) {
            uids.push(user.uid.as_raw());
        }
        Peers { uids }
    }

    fn admits(&self, uid: u32) -> bool {
        self.uids.contains(&uid)
    }
}

pub async fn accept(door: UnixListener, peers: Peers, state: Arc<Door>) {
    let slots = Arc::new(Slots::default());
    loop {
        let stream = match door.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // EMFILE and friends: wait for connections to end.
                tracing::warn!("accepting on the door failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        match stream.peer_cred() {
            Ok(cred) if peers.admits(cred.uid()) => {
                tokio::spawn(intake(stream, slots.clone(), state.clone()));
            }
            Ok(cred) => tracing::warn!(
                uid = cred.uid(),
                "a process that is not the tool daemon connected to the door; closed"
            ),
            Err(e) => tracing::warn!("the door's peer cannot be identified ({e}); closed"),
        }
    }
}

/// One toold's handed-over connections, until it goes away.
async fn intake(stream: UnixStream, slots: Arc<Slots>, state: Arc<Door>) {
    loop {
        let received = stream
            .async_io(Interest::READABLE, || match pass::receive(stream.as_raw_fd()) {
                Err(PassError::Io(nix::errno::Errno::EAGAIN)) => Err(std::io::ErrorKind::WouldBlock.into()),
                other => Ok(other),
            })
            .await;
        let (fd, key) = match received {
            Ok(Ok(passed)) => passed,
            Ok(Err(PassError::Closed)) => return,
            Ok(Err(PassError::Io(e))) => {
                tracing::warn!("the tool daemon's door link failed: {e}");
                return;
            }
            // One bad message: it is dropped, the next may be good.
            Ok(Err(e)) => {
                tracing::warn!("a message on the door was refused: {e}");
                continue;
            }
            Err(e) => {
                tracing::warn!("the tool daemon's door link failed: {e}");
                return;
            }
        };
        // A key no longer in force counts as none.
        let bucket = if state.in_force(&key) { key.clone() } else { Vec::new() };
        let Some(slot) = slots.take(&bucket) else {
            state.held_back(&key);
            continue;
        };
        let Some(client) = tcp(fd) else {
            tracing::warn!("the door was handed something that is not a TCP connection; closed");
            continue;
        };
        let state = state.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let policy = state.policy();
            let record = proxy::serve(client, &key, &policy, &SystemLookup).await;
            state.report(to_record(record)).await;
        });
    }
}

/// Connections open, by key (the empty key: of no running exec).
#[derive(Default)]
struct Slots {
    open: Mutex<HashMap<Vec<u8>, usize>>,
}

/// One open connection's place; given back when dropped.
struct Slot {
    slots: Arc<Slots>,
    key: Vec<u8>,
}

impl Slots {
    fn take(self: &Arc<Self>, key: &[u8]) -> Option<Slot> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let total: usize = open.values().sum();
        let cap = if key.is_empty() { KEYLESS } else { PER_EXEC };
        if total >= MAX_CONNECTIONS || open.get(key).copied().unwrap_or(0) >= cap {
            return None;
        }
        *open.entry(key.to_vec()).or_insert(0) += 1;
        Some(Slot {
            slots: self.clone(),
            key: key.to_vec(),
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.slots.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.key);
            }
        }
    }
}

/// `fd` as a TCP connection, if that is what it is.
fn tcp(fd: OwnedFd) -> Option<tokio::net::TcpStream> {
    use nix::sys::socket::{getsockname, getsockopt, sockopt, AddressFamily, SockType, SockaddrLike, SockaddrStorage};
    let family = getsockname::<SockaddrStorage>(fd.as_raw_fd()).ok()?.family()?;
    let kind = getsockopt(&fd, sockopt::SockType).ok()?;
    if !matches!(family, AddressFamily::Inet | AddressFamily::Inet6) || kind != SockType::Stream {
        return None;
    }
    let stream = std::net::TcpStream::from(fd);
    stream.set_nonblocking(true).ok()?;
    tokio::net::TcpStream::from_std(stream).ok()
}

/// The record for the broker, each field within its bound (a host is
/// whatever a command wrote).
fn to_record(record: Record) -> ConnectionRecord {
    let allowed = matches!(record.decision, proxy::Decision::Allowed);
    let outcome = match (&record.end, allowed) {
        (Some(end), true) => format!("allowed; {end}"),
        _ => record.decision.to_string(),
    };
    let (session, call) = match record.grant {
        Some(g) => (Some(g.session), Some(g.call)),
        None => (None, None),
    };
    ConnectionRecord {
        session: session.map(|s| cut(s, MAX_ID)),
        call: call.map(|c| cut(c, MAX_ID)),
        host: record.host.map(|h| cut(h, MAX_ID)),
        port: record.port,
        allowed,
        outcome: cut(outcome, MAX_OUTCOME),
        injected: record.injected.map(|i| cut(i, MAX_ID)),
        bytes_up: record.bytes_up,
        bytes_down: record.bytes_down,
        millis: u64::try_from(record.duration.as_millis()).unwrap_or(u64::MAX),
    }
}

/// The most of an outcome an audit row carries (it may quote a host).
const MAX_OUTCOME: usize = 512;

/// `text` cut to at most `max` bytes, on a character boundary.
fn cut(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut at = max;
        while !text.is_char_boundary(at) {
            at -= 1;
        }
        text.truncate(at);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use oxibot_proto::messages::EgressEvent;

    #[test]
    fn a_record_fits_its_bounds_whatever_the_command_wrote() {
        let record = Record {
            host: Some("é".repeat(MAX_ID)),
            port: Some(443),
            grant: None,
            injected: None,
            decision: proxy::Decision::NoGrant,
            bytes_up: 0,
            bytes_down: 0,
            duration: Duration::from_millis(3),
            end: None,
        };
        let r = to_record(record);
        assert!(r.host.as_ref().unwrap().len() <= MAX_ID);
        assert!(!r.allowed);
        assert!(r.outcome.contains("no running command"), "{}", r.outcome);
        assert!(oxibot_proto::encode(&EgressEvent::Connection(r)).is_ok());
    }

    #[test]
    fn one_exec_or_the_keyless_cannot_take_every_slot() {
        let slots = Arc::new(Slots::default());
        let keyless: Vec<Slot> = std::iter::from_fn(|| slots.take(b"")).take(1000).collect();
        assert_eq!(keyless.len(), KEYLESS);
        let a: Vec<Slot> = std::iter::from_fn(|| slots.take(b"a")).take(1000).collect();
        assert_eq!(a.len(), PER_EXEC);
        // Another exec still gets its own.
        assert!(slots.take(b"b").is_some());
        drop(keyless);
        assert!(slots.take(b"").is_some(), "given back when closed");
        // And all together stay under the total.
        let many: Vec<Slot> = (0..100u8)
            .flat_map(|k| {
                std::iter::from_fn(|| slots.take(&[k, 1]))
                    .take(PER_EXEC)
                    .collect::<Vec<_>>()
            })
            .collect();
        assert!(many.len() + a.len() <= MAX_CONNECTIONS);
    }

    #[tokio::test]
    async fn only_a_tcp_connection_is_served() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        assert!(tcp(OwnedFd::from(a)).is_none());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let _client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        assert!(tcp(OwnedFd::from(accepted)).is_some());
    }
}
