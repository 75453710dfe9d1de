//! The egress door, toold's two halves of it.
//!
//! In the jail (pid 1): each connection a command makes to the proxy port
//! is accepted, attributed to the exec whose processes hold the client's
//! socket, and sent out through the socketpair tagged with that exec's
//! key. No command ever sees a key: a key in a command's environment could
//! be read by any other process of the jail's user (`/proc/PID/environ`),
//! a process left behind by another chat's command included.
//!
//! Attribution: every exec runs in a session of its own (`setsid`; a
//! process can leave its session for a new one, never join another). The
//! client's socket is found in the jail's `/proc/net/tcp{,6}` by its port,
//! and its holders among the processes of running execs' sessions by
//! their descriptors in `/proc/PID/fd`; the connection is the exec's when
//! its processes, and no other running exec's, hold it. Anything else —
//! no running exec's process holds it, two execs' do, the scan would read
//! too many descriptors — goes out with no key, and the egress daemon
//! refuses it.
//!
//! Outside (the half that waits for the jail): each connection from the
//! jail is passed on to the egress daemon's socket, reached relative to
//! its directory (the host's paths are gone once the jail pivoted), with
//! a fresh connection after the daemon restarted.

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::Mutex;

use crate::jail::net::{JailEnd, OutsideEnd, PROXY_PORT};
use crate::sockdiag::SockDiag;

/// The running execs' keys, by session id (the exec's shell's pid).
static KEYS: Mutex<Option<HashMap<i32, String>>> = Mutex::new(None);

/// While an exec runs: its session's connections carry `key`.
pub fn open_for(session: i32, key: String) {
    lock().get_or_insert_with(HashMap::new).insert(session, key);
}

/// The exec ended.
pub fn close_for(session: i32) {
    if let Some(keys) = lock().as_mut() {
        keys.remove(&session);
    }
}

fn key_of(session: i32) -> Option<String> {
    lock().as_ref().and_then(|keys| keys.get(&session).cloned())
}

fn lock() -> std::sync::MutexGuard<'static, Option<HashMap<i32, String>>> {
    KEYS.lock().unwrap_or_else(|p| p.into_inner())
}

/// Connections accepted and waiting for the door's thread; more are
/// closed at once (the command sees its proxy refuse).
const WAITING: usize = 64;

/// The jail's half: accepts on the proxy port until toold exits. The
/// attribution (reading /proc) and the hand-over run on one thread of
/// their own, started here, before any command runs: a command that uses
/// up the tool user's process limit cannot stop the door by leaving the
/// runtime no thread to start.
pub async fn serve_jail_end(end: JailEnd) {
    let JailEnd { listener, out, diag } = end;
    let listener = match listener
        .set_nonblocking(true)
        .and_then(|_| tokio::net::TcpListener::from_std(listener))
    {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("the egress door's port cannot join the event loop: {e}; commands get no network");
            return;
        }
    };
    let (waiting, accepted) = std::sync::mpsc::sync_channel::<(std::net::TcpStream, u16)>(WAITING);
    if let Err(e) = std::thread::Builder::new()
        .name("door".into())
        .spawn(move || hand_out(accepted, out, diag))
    {
        tracing::error!("cannot start the egress door's thread: {e}; commands get no network");
        return;
    }
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of descriptors: wait for connections to end.
                tracing::warn!("accepting on the egress door's port failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(stream) = stream.into_std() else { continue };
        // Full: wait, accepting nothing meanwhile. The kernel's backlog
        // holds the next connections (and, once it is full, their clients
        // try again): a flood delays the others' connections instead of
        // having them closed.
        let mut item = (stream, peer.port());
        let mut told = false;
        loop {
            match waiting.try_send(item) {
                Ok(()) => break,
                Err(std::sync::mpsc::TrySendError::Full(back)) => {
                    item = back;
                    if !told {
                        tracing::debug!("{WAITING} connections wait at the egress door; accepting waits");
                        told = true;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                }
                Err(std::sync::mpsc::TrySendError::Disconnected(_)) => {
                    tracing::error!("the egress door's thread is gone; commands get no network");
                    return;
                }
            }
        }
    }
}

/// The door's thread: each accepted connection attributed and handed out,
/// in turn. Blocking, so that a busy daemon slows the door down.
fn hand_out(accepted: std::sync::mpsc::Receiver<(std::net::TcpStream, u16)>, out: UnixStream, diag: Option<SockDiag>) {
    let _ = out.set_nonblocking(false);
    while let Ok((stream, port)) = accepted.recv() {
        let session = owner_session(port, diag.as_ref());
        let key = session.and_then(key_of).unwrap_or_default();
        if key.is_empty() {
            // The daemon refuses it and the audit says so; this says why.
            tracing::debug!(port, ?session, "a connection to the door from no running exec");
        }
        let fd = OwnedFd::from(stream);
        if let Err(e) = oxibot_egress::pass::send(out.as_raw_fd(), &fd, key.as_bytes()) {
            tracing::warn!("cannot hand a connection out of the jail: {e}");
        }
    }
}

/// The most descriptors one attribution reads of one exec's processes: an
/// exec that holds more is not read further (its own connections fail),
/// and the others' are still found, as fast as before.
const MAX_DESCRIPTORS_READ: usize = 5_000;

/// The session of the running exec whose processes hold the client socket
/// whose local port is `port`, if exactly one running exec's do.
///
/// Only the processes of running execs' sessions are read: a process of
/// no running exec cannot make a running exec's process hold its socket
/// (a descriptor is passed only to a process that takes it), so what
/// those hold decides. The cost is bounded per exec
/// ([`MAX_DESCRIPTORS_READ`]); an exec over its bound is left out, which
/// cannot make another exec's connection its own (a socket reaches another
/// exec's process only if that process takes it).
fn owner_session(port: u16, diag: Option<&SockDiag>) -> Option<i32> {
    let running = running_sessions();
    if running.is_empty() {
        return None;
    }
    let inode = match diag {
        Some(diag) => diag.inode(
            SocketAddrV4::new(Ipv4Addr::LOCALHOST, port),
            SocketAddrV4::new(Ipv4Addr::LOCALHOST, PROXY_PORT),
        )?,
        None => socket_inode(port)?,
    };
    let wanted = format!("socket:[{inode}]");
    let mut budgets: HashMap<i32, usize> = running.iter().map(|s| (*s, MAX_DESCRIPTORS_READ)).collect();
    let mut session = None;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        // pid 1 is toold (it holds only the accepted end); a process that
        // is gone or in no running exec's session is not read further.
        let Some(before) = stat_of(pid).filter(|(s, _)| pid != 1 && running.contains(s)) else {
            continue;
        };
        // Not readable (a process between toold's fork and its exec is not
        // dumpable yet): it holds nothing we can see.
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        let Some(budget) = budgets.get_mut(&before.0) else {
            continue;
        };
        let mut holds = false;
        for fd in fds.flatten() {
            let Some(left) = budget.checked_sub(1) else {
                // Over its bound: this exec is not read further.
                budgets.remove(&before.0);
                break;
            };
            *budget = left;
            if std::fs::read_link(fd.path()).is_ok_and(|target| target.as_os_str() == wanted.as_str()) {
                holds = true;
                break;
            }
        }
        // The same process before and after (not a new one with a reused
        // pid): its start time is unchanged.
        if !holds || stat_of(pid) != Some(before) || !budgets.contains_key(&before.0) {
            continue;
        }
        if session.is_some_and(|s| s != before.0) {
            return None;
        }
        session = Some(before.0);
    }
    session
}

fn running_sessions() -> Vec<i32> {
    lock()
        .as_ref()
        .map(|keys| keys.keys().copied().collect())
        .unwrap_or_default()
}

/// The inode of the client socket connected from `port` to the proxy
/// port, in this network namespace's socket tables (read whole: where the
/// kernel has no sock_diag).
fn socket_inode(port: u16) -> Option<u64> {
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
            let (Some(local), Some(remote), Some(inode)) = (fields.get(1), fields.get(2), fields.get(9)) else {
                continue;
            };
            // A closed connection that used the same port lingers with
            // inode 0 (TIME_WAIT): the live one is further on.
            if port_of(local) == Some(port) && port_of(remote) == Some(PROXY_PORT) {
                if let Some(inode) = inode.parse().ok().filter(|i| *i != 0) {
                    return Some(inode);
                }
            }
        }
    }
    None
}

fn port_of(address: &str) -> Option<u16> {
    u16::from_str_radix(address.rsplit_once(':')?.1, 16).ok()
}

/// The session id and start time in `/proc/PID/stat` (fields 6 and 22;
/// the second, the command name in parentheses, may hold spaces and
/// parentheses).
fn stat_of(pid: i32) -> Option<(i32, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut after_name = stat[stat.rfind(')')? + 1..].split_whitespace();
    // state ppid pgrp session … starttime (the 20th after the name)
    let session = after_name.nth(3)?.parse().ok()?;
    let start = after_name.nth(15)?.parse().ok()?;
    Some((session, start))
}

/// The outside half: passes each connection from the jail on to the
/// egress daemon, until the jail goes away. A connection that cannot be
/// passed (the daemon is not running) is closed: the command sees its
/// proxy refuse. Returns when the jail's end closes (its pid 1 is gone).
pub fn relay(end: OutsideEnd) {
    let mut daemon: Option<UnixStream> = None;
    loop {
        let (connection, key) = match oxibot_egress::pass::receive(end.from_jail.as_raw_fd()) {
            Ok(passed) => passed,
            Err(oxibot_egress::pass::PassError::Closed) => return,
            Err(e) => {
                tracing::warn!("a message from the jail's door was refused: {e}");
                continue;
            }
        };
        for attempt in 0..2 {
            if daemon.is_none() {
                daemon = connect(&end)
                    .map_err(|e| tracing::warn!("the egress daemon is not reachable: {e}"))
                    .ok();
            }
            let Some(link) = &daemon else { break };
            match oxibot_egress::pass::send(link.as_raw_fd(), &connection, &key) {
                Ok(()) => break,
                // The daemon restarted: once more on a fresh connection.
                Err(e) => {
                    daemon = None;
                    if attempt == 1 {
                        tracing::warn!("cannot pass a connection to the egress daemon: {e}");
                    }
                }
            }
        }
    }
}

/// Connects to the daemon's socket by its name in the door's directory.
fn connect(end: &OutsideEnd) -> io::Result<UnixStream> {
    nix::unistd::fchdir(end.dir.as_raw_fd())?;
    UnixStream::connect(&end.name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stat_line_gives_its_session_whatever_the_name() {
        let me = std::process::id() as i32;
        let (session, start) = stat_of(me).unwrap();
        assert_eq!(session, nix::unistd::getsid(None).unwrap().as_raw());
        assert!(start > 0);
        assert_eq!(stat_of(me), Some((session, start)));
        assert_eq!(port_of("0100007F:0C38"), Some(3128));
        assert_eq!(port_of("00000000000000000000000001000000:1F90"), Some(8080));
        assert_eq!(port_of("garbage"), None);
    }

    #[test]
    fn keys_follow_their_sessions() {
        open_for(-7, "k".into());
        assert_eq!(key_of(-7).as_deref(), Some("k"));
        close_for(-7);
        assert_eq!(key_of(-7), None);
    }
}
