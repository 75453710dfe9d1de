//! Peer credential checks (SO_PEERCRED), done before a single byte is read.

use nix::unistd::{Gid, Group, Uid, User};
use tokio::net::UnixStream;

/// Members of this group (and root) may use the control socket.
pub const ADMIN_GROUP: &str = "oxibot-admin";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerCred {
    pub uid: u32,
    pub gid: u32,
    pub pid: Option<i32>,
}

/// Who may connect to a socket.
#[derive(Debug, Clone)]
pub enum PeerPolicy {
    /// Exactly these uids.
    Uids(Vec<u32>),
    /// Root, or a user whose primary or supplementary group is `oxibot-admin`.
    Admin,
}

#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("cannot read the peer's credentials: {0}")]
    Unreadable(std::io::Error),
    #[error("peer uid {uid} (pid {pid:?}) is not allowed on this socket (allowed uids: {allowed:?})")]
    WrongUid {
        uid: u32,
        pid: Option<i32>,
        allowed: Vec<u32>,
    },
    #[error("peer uid {uid} (pid {pid:?}) is neither root nor a member of group {ADMIN_GROUP}")]
    NotAdmin { uid: u32, pid: Option<i32> },
}

pub fn check_peer(stream: &UnixStream, policy: &PeerPolicy) -> Result<PeerCred, PeerError> {
    let cred = stream.peer_cred().map_err(PeerError::Unreadable)?;
    let peer = PeerCred {
        uid: cred.uid(),
        gid: cred.gid(),
        pid: cred.pid(),
    };
    match policy {
        PeerPolicy::Uids(allowed) if allowed.contains(&peer.uid) => Ok(peer),
        PeerPolicy::Uids(allowed) => Err(PeerError::WrongUid {
            uid: peer.uid,
            pid: peer.pid,
            allowed: allowed.clone(),
        }),
        PeerPolicy::Admin if is_admin(peer.uid, peer.gid) => Ok(peer),
        PeerPolicy::Admin => Err(PeerError::NotAdmin {
            uid: peer.uid,
            pid: peer.pid,
        }),
    }
}

/// Root, or member of [`ADMIN_GROUP`] by primary gid or by the group's
/// member list. A lookup failure denies.
fn is_admin(uid: u32, gid: u32) -> bool {
    if uid == 0 {
        return true;
    }
    let Ok(Some(group)) = Group::from_name(ADMIN_GROUP) else {
        return false;
    };
    if group.gid == Gid::from_raw(gid) {
        return true;
    }
    match User::from_uid(Uid::from_raw(uid)) {
        Ok(Some(user)) => user.gid == group.gid || group.mem.contains(&user.name),
        _ => false,
    }
}
