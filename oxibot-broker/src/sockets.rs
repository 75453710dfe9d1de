//! The broker's listening sockets, bound in the runtime directory or
//! received from systemd (`LISTEN_FDS`), and who may connect to each.
//!
//! In supervise mode only `ctl.sock` exists: the daemons the broker starts
//! reach it over the socketpair they were handed, so there is nothing a
//! stray process could connect to and claim to be one of them. Without
//! supervise mode (systemd starts the daemons), `channel.sock`,
//! `tool.sock` and `egress.sock` exist too, and the peer's uid decides who
//! it is.

use std::collections::HashMap;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::unistd::{Group, User};
use oxibot_proto::{PeerPolicy, ADMIN_GROUP};
use tokio::net::UnixListener;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SocketRole {
    Channel,
    Tool,
    Ctl,
    /// The egress daemon's link (`oxibot-egressd.service`).
    Egress,
}

impl SocketRole {
    pub const ALL: [SocketRole; 4] = [
        SocketRole::Channel,
        SocketRole::Tool,
        SocketRole::Ctl,
        SocketRole::Egress,
    ];

    pub fn name(self) -> &'static str {
        match self {
            SocketRole::Channel => "channel",
            SocketRole::Tool => "tool",
            SocketRole::Ctl => "ctl",
            SocketRole::Egress => "egress",
        }
    }

    pub fn file_name(self) -> String {
        format!("{}.sock", self.name())
    }

    /// The group that owns the socket file (0660), when it exists. Channel
    /// daemons each have their own user, so `channel.sock` is group
    /// `oxibot-chan` (the package puts every channel user in it).
    fn group(self, users: &crate::config::Users) -> String {
        match self {
            SocketRole::Channel => CHANNEL_GROUP.to_string(),
            SocketRole::Tool => users.tool.clone(),
            SocketRole::Ctl => ADMIN_GROUP.to_string(),
            SocketRole::Egress => users.egress.clone(),
        }
    }
}

/// The group of every channel daemon's user, owner of `channel.sock`.
pub const CHANNEL_GROUP: &str = "oxibot-chan";

/// Who may connect. The broker's own uid is not admitted on the daemon
/// sockets: nothing else runs as it that should speak for a daemon.
/// `channel_uids` are the uids of the enabled channels' users.
pub fn policy(role: SocketRole, users: &crate::config::Users, channel_uids: &[u32]) -> PeerPolicy {
    match role {
        SocketRole::Ctl => PeerPolicy::Admin,
        // Root starts toold (it builds the jail as root, then drops).
        SocketRole::Tool => {
            let mut uids = vec![0];
            uids.extend(User::from_name(&users.tool).ok().flatten().map(|u| u.uid.as_raw()));
            PeerPolicy::Uids(uids)
        }
        SocketRole::Channel => PeerPolicy::Uids(channel_uids.to_vec()),
        // Its own user only (nobody, if that user does not exist).
        SocketRole::Egress => PeerPolicy::Uids(
            User::from_name(&users.egress)
                .ok()
                .flatten()
                .map(|u| u.uid.as_raw())
                .into_iter()
                .filter(|uid| *uid != 0)
                .collect(),
        ),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("cannot create the runtime directory {path}: {source}")]
    Dir { path: PathBuf, source: std::io::Error },
    #[error("cannot bind {path}: {source} (is another broker running?)")]
    Bind { path: PathBuf, source: std::io::Error },
    #[error("systemd passed socket \"{name}\" (fd {fd}) that is not usable: {source}")]
    Inherited {
        name: String,
        fd: RawFd,
        source: std::io::Error,
    },
}

pub struct Listeners {
    pub by_role: HashMap<SocketRole, UnixListener>,
    /// The roles whose socket files we made (and remove at exit); the rest
    /// came from systemd, which keeps them.
    pub bound: Vec<SocketRole>,
}

/// Takes sockets from systemd where it passed them, binds the rest of
/// `roles`. A socket systemd passed for a role not in `roles` is closed.
pub fn open(runtime_dir: &Path, roles: &[SocketRole], users: &crate::config::Users) -> Result<Listeners, SocketError> {
    let mut inherited = from_systemd_env()?;
    let made = !runtime_dir.exists();
    std::fs::create_dir_all(runtime_dir).map_err(|source| SocketError::Dir {
        path: runtime_dir.into(),
        source,
    })?;
    if made {
        // The daemons' users pass through it to their sockets, which carry
        // the real protection (0660, a group per role); the broker's umask
        // (0077) would close it.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(runtime_dir, std::fs::Permissions::from_mode(0o755)).map_err(|source| {
            SocketError::Dir {
                path: runtime_dir.into(),
                source,
            }
        })?;
    }
    trusted_dir(runtime_dir)?;
    let mut by_role = HashMap::new();
    let mut bound = Vec::new();
    for &role in roles {
        let listener = match inherited.remove(role.name()) {
            Some(l) => l,
            None => {
                bound.push(role);
                bind(&runtime_dir.join(role.file_name()), &role.group(users))?
            }
        };
        by_role.insert(role, listener);
    }
    Ok(Listeners { by_role, bound })
}

/// The runtime directory is where the broker binds, chmods and chowns its
/// sockets by name, as root in a root-started broker. Someone else who can
/// write there — or in any directory above it, where they could swap the
/// whole directory for one of theirs — could put a link where a socket was
/// and have the broker re-own a file of their choice: so it must be a real
/// directory (not a link), owned by the broker's user or root, writable by
/// nobody else, and so must every directory above it (sticky ones such as
/// /tmp excepted: nobody can rename another's entry there).
fn trusted_dir(dir: &Path) -> Result<(), SocketError> {
    use std::os::unix::fs::MetadataExt;
    let refuse = |why: String| SocketError::Dir {
        path: dir.into(),
        source: std::io::Error::new(std::io::ErrorKind::PermissionDenied, why),
    };
    let m = std::fs::symlink_metadata(dir).map_err(|source| SocketError::Dir {
        path: dir.into(),
        source,
    })?;
    if !m.file_type().is_dir() {
        return Err(refuse(
            "it is not a directory (a link?); give runtimeDir a directory of the broker's own".into(),
        ));
    }
    let me = nix::unistd::geteuid().as_raw();
    if m.uid() != me && m.uid() != 0 {
        return Err(refuse(format!(
            "it belongs to uid {}, not to the broker (uid {me}) or root; give runtimeDir a directory of the broker's own",
            m.uid()
        )));
    }
    if m.mode() & 0o022 != 0 {
        return Err(refuse(format!(
            "others may write in it (mode {:o}); chmod go-w it, or give runtimeDir a directory of the broker's own",
            m.mode() & 0o7777
        )));
    }
    // The same check `oxibotctl secrets set` makes, for every directory on
    // the way (links on the way and their owners included).
    if let Some(why) = oxibot_config::paths::untrusted_directory(&dir.join(SocketRole::Ctl.file_name()), Some(me)) {
        return Err(refuse(format!(
            "{why}; give runtimeDir a directory only root and the broker can change"
        )));
    }
    Ok(())
}

fn bind(path: &Path, group: &str) -> Result<UnixListener, SocketError> {
    let err = |source| SocketError::Bind {
        path: path.into(),
        source,
    };
    // A stale socket from a killed broker would make bind fail with EADDRINUSE.
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                "a live broker answers on it",
            )));
        }
        std::fs::remove_file(path).map_err(err)?;
    }
    let listener = UnixListener::bind(path).map_err(err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660)).map_err(err)?;
    if let Ok(Some(g)) = Group::from_name(group) {
        // Only root may give a file away; otherwise the group stays ours.
        // Never through a link (the directory is trusted; this is a belt).
        if let Err(e) = nix::unistd::fchownat(None, path, None, Some(g.gid), nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW) {
            tracing::debug!("cannot chgrp {} to {group}: {e}", path.display());
        }
    }
    Ok(listener)
}

/// Reads `LISTEN_PID`/`LISTEN_FDS`/`LISTEN_FDNAMES` (sd_listen_fds(3)).
fn from_systemd_env() -> Result<HashMap<String, UnixListener>, SocketError> {
    let pid = std::env::var("LISTEN_PID").ok();
    let fds = std::env::var("LISTEN_FDS").ok();
    let names = std::env::var("LISTEN_FDNAMES").unwrap_or_default();
    let ours = pid.as_deref().and_then(|p| p.parse::<u32>().ok()) == Some(std::process::id());
    let count = fds
        .as_deref()
        .and_then(|n| n.parse::<RawFd>().ok())
        .filter(|_| ours)
        .unwrap_or(0);
    take_listeners(SD_LISTEN_FDS_START, count, &names)
}

const SD_LISTEN_FDS_START: RawFd = 3;

/// Adopts `count` listening sockets starting at fd `first`, named by the
/// colon-separated `names` (systemd's `FileDescriptorName=`).
fn take_listeners(first: RawFd, count: RawFd, names: &str) -> Result<HashMap<String, UnixListener>, SocketError> {
    let names: Vec<&str> = names.split(':').collect();
    let mut out = HashMap::new();
    for i in 0..count {
        let fd = first + i;
        let name = names.get(i as usize).copied().unwrap_or("unknown").to_string();
        let owned = adopt_fd(fd).map_err(|source| SocketError::Inherited {
            name: name.clone(),
            fd,
            source,
        })?;
        let std_listener = std::os::unix::net::UnixListener::from(owned);
        let listener = std_listener
            .set_nonblocking(true)
            .and_then(|_| UnixListener::from_std(std_listener))
            .map_err(|source| SocketError::Inherited {
                name: name.clone(),
                fd,
                source,
            })?;
        out.insert(name, listener);
    }
    Ok(out)
}

/// Takes ownership of an inherited fd after checking that it is an open
/// Unix stream socket in listening state, and marks it close-on-exec so
/// the daemons we spawn do not inherit it.
fn adopt_fd(fd: RawFd) -> std::io::Result<OwnedFd> {
    use nix::sys::socket::{getsockopt, sockopt};
    use std::os::fd::BorrowedFd;
    // SAFETY: fcntl(F_GETFD) succeeds only on an open descriptor, so the
    // borrow below refers to a live fd; it does not outlive this function.
    nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFD).map_err(std::io::Error::from)?;
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    let ty = getsockopt(&borrowed, sockopt::SockType).map_err(std::io::Error::from)?;
    let listening = getsockopt(&borrowed, sockopt::AcceptConn).map_err(std::io::Error::from)?;
    if ty != nix::sys::socket::SockType::Stream || !listening {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a listening stream socket",
        ));
    }
    nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC))
        .map_err(std::io::Error::from)?;
    // SAFETY: systemd hands these fds to us and nothing else in this process
    // owns them; we checked above that the fd is open.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::IntoRawFd;

    #[tokio::test]
    async fn adopts_inherited_listeners_and_refuses_other_fds() {
        let d = tempfile::tempdir().unwrap();
        let a = std::os::unix::net::UnixListener::bind(d.path().join("a.sock")).unwrap();
        let b = std::os::unix::net::UnixListener::bind(d.path().join("b.sock")).unwrap();
        // Place them at fixed, consecutive fds as systemd would.
        let (fa, fb) = (a.into_raw_fd(), b.into_raw_fd());
        nix::unistd::dup2(fa, 900).unwrap();
        nix::unistd::dup2(fb, 901).unwrap();
        nix::unistd::close(fa).unwrap();
        nix::unistd::close(fb).unwrap();
        let got = take_listeners(900, 2, "tool:ctl").unwrap();
        assert!(got.contains_key("tool") && got.contains_key("ctl"));
        let client = tokio::net::UnixStream::connect(d.path().join("a.sock"));
        let (accepted, connected) = tokio::join!(got["tool"].accept(), client);
        assert!(accepted.is_ok() && connected.is_ok());

        // A regular file is not a socket: refused, with the name in the error.
        let f = std::fs::File::create(d.path().join("f")).unwrap().into_raw_fd();
        nix::unistd::dup2(f, 905).unwrap();
        let err = take_listeners(905, 1, "channel").expect_err("must refuse a file");
        assert!(err.to_string().contains("\"channel\" (fd 905)"), "{err}");
        // A closed fd is refused too.
        assert!(take_listeners(950, 1, "x").is_err());
    }

    /// The review's case: a runtimeDir others can write (or a link) is
    /// refused before anything is bound, chmodded or chowned in it.
    #[tokio::test]
    async fn a_runtime_dir_others_can_write_or_a_link_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let users = crate::config::Users::default();
        let open_dir = d.path().join("open");
        std::fs::create_dir(&open_dir).unwrap();
        std::fs::set_permissions(&open_dir, std::fs::Permissions::from_mode(0o1777)).unwrap();
        let e = open(&open_dir, &[SocketRole::Ctl], &users).err().expect("refused");
        assert!(e.to_string().contains("others may write in it"), "{e}");
        assert!(!open_dir.join(SocketRole::Ctl.file_name()).exists());

        let real = d.path().join("real");
        std::fs::create_dir(&real).unwrap();
        std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o755)).unwrap();
        let link = d.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let e = open(&link, &[SocketRole::Ctl], &users).err().expect("refused");
        assert!(e.to_string().contains("not a directory"), "{e}");

        // A directory above it that someone else owns: they could swap
        // the runtime directory itself (the second review won this race).
        if nix::unistd::geteuid().is_root() {
            let theirs = d.path().join("theirs");
            std::fs::create_dir(&theirs).unwrap();
            let run = theirs.join("run");
            std::fs::create_dir(&run).unwrap();
            std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o755)).unwrap();
            nix::unistd::chown(&theirs, Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
            let e = open(&run, &[SocketRole::Ctl], &users).err().expect("refused");
            assert!(
                e.to_string().contains("can be changed by someone other than root"),
                "{e}"
            );
        } else {
            assert!(std::env::var_os("CI").is_none(), "CI runs as root: this case must run");
        }

        // The legitimate path: the broker's own directory.
        let ok = open(&real, &[SocketRole::Ctl], &users);
        assert!(ok.is_ok(), "{:?}", ok.err());
        assert!(real.join(SocketRole::Ctl.file_name()).exists());
    }
}
