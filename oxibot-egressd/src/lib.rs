//! oxibot-egressd: the door between the jail's commands and the network.
//! The jail's end of the door (toold's pid 1) accepts each connection a
//! command makes to its proxy port and hands the socket out, tagged with
//! the key of the exec whose processes opened it; this daemon reads the
//! request, decides it against `tools.exec.allowedHosts` and the SSRF
//! guard, dials the one checked address, relays, and tells the broker
//! what became of it. The HTTP a hostile command writes is parsed here:
//! not in the broker, which holds every secret, and not in the jail,
//! which the command controls.
//!
//! Started by the broker only, with two descriptors: its link to the
//! broker (3) and the door's listening Unix socket (4), where toold
//! connects to hand connections over. What it gives up, in order:
//! 1. everything but those two descriptors, checked before use;
//! 2. files (Landlock: only what name lookups read), listening on TCP,
//!    exec, signals to others, privileges (no_new_privs; seccomp: the
//!    event loop, outgoing IPv4/IPv6 sockets, the routing table's netlink
//!    socket, and accepting on the door);
//! 3. the link: if the broker goes away, it exits and is restarted.

mod door;
mod link;
mod sandbox;

use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::process::ExitCode;

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "oxibot-egressd",
    version,
    about = "OxiBot egress daemon: the jail's door to the network (started by the broker)"
)]
struct Args {
    /// The inherited broker connection.
    #[arg(long)]
    broker_fd: RawFd,
    /// The inherited listening Unix socket the tool daemon connects to.
    #[arg(long)]
    listener_fd: RawFd,
    /// The tool daemon's user: besides root and this daemon's own uid, the
    /// only peer that may hand connections over.
    #[arg(long, default_value = "oxibot-tool")]
    tool_user: String,
}

/// The daemon, from its arguments to its exit.
pub fn main() -> ExitCode {
    if let Some(status) = oxibot_runtime::man::printed_if_asked::<Args>() {
        return status;
    }
    let args = Args::parse();
    oxibot_runtime::logging::init();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("oxibot-egressd: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Why the daemon could not start or stopped serving.
#[derive(Debug, thiserror::Error)]
enum Fatal {
    #[error("the broker connection (descriptor {fd}) is not usable: {source}")]
    BrokerLink { fd: RawFd, source: std::io::Error },
    #[error("descriptor {fd} is not the door's listening socket: {why}")]
    NotTheDoor { fd: RawFd, why: NotListening },
    #[error("cannot clear the dumpable flag: {0}")]
    Dumpable(nix::Error),
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error(transparent)]
    Sandbox(#[from] oxibot_sandbox::seccomp::SandboxError),
    #[error("the inherited sockets cannot join the event loop: {0}")]
    EventLoop(#[from] std::io::Error),
    #[error(transparent)]
    Link(#[from] link::Stop),
}

#[derive(Debug, thiserror::Error)]
enum NotListening {
    #[error("not open ({0})")]
    NotOpen(nix::Error),
    #[error("not a listening Unix stream socket")]
    Kind,
    #[error("cannot mark it close-on-exec ({0})")]
    Cloexec(nix::Error),
}

fn run(args: &Args) -> Result<(), Fatal> {
    // Step 1: the two descriptors, each checked for what it must be, and
    // who may hand connections over (read now: /etc/passwd is out of
    // reach once the sandbox is in place).
    let link = oxibot_runtime::inherit::take_broker_socket(args.broker_fd).map_err(|source| Fatal::BrokerLink {
        fd: args.broker_fd,
        source,
    })?;
    let door = take_listener(args.listener_fd).map_err(|why| Fatal::NotTheDoor {
        fd: args.listener_fd,
        why,
    })?;
    let peers = door::Peers::of(&args.tool_user);
    nix::sys::prctl::set_dumpable(false).map_err(Fatal::Dumpable)?;

    // Step 2: the sandbox, before the runtime starts its threads (they
    // inherit it) and before the first byte from the jail.
    let landlock = sandbox::install()?;

    // Step 3: serve until the broker goes away. Two workers: a name lookup
    // or a slow routing question must not stall every relay.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(8)
        .enable_all()
        .build()
        .map_err(Fatal::Runtime)?;
    tracing::debug!(landlock, "sandbox installed");
    runtime.block_on(async {
        link.set_nonblocking(true)?;
        door.set_nonblocking(true)?;
        let link = tokio::net::UnixStream::from_std(link)?;
        let door = tokio::net::UnixListener::from_std(door)?;
        Ok(link::serve(link, door, peers).await?)
    })
}

/// Takes over `fd` as the door's listening socket, after checking that it
/// is a listening Unix stream socket, and marks it close-on-exec.
fn take_listener(fd: RawFd) -> Result<std::os::unix::net::UnixListener, NotListening> {
    use nix::sys::socket::{getsockname, getsockopt, sockopt, AddressFamily, SockType, SockaddrLike, SockaddrStorage};
    nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFD).map_err(NotListening::NotOpen)?;
    // SAFETY: F_GETFD succeeded, so fd is open; the borrow ends here.
    let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    let family = getsockname::<SockaddrStorage>(fd).ok().and_then(|a| a.family());
    let kind = getsockopt(&borrowed, sockopt::SockType);
    let listening = getsockopt(&borrowed, sockopt::AcceptConn);
    match (family, kind, listening) {
        (Some(AddressFamily::Unix), Ok(SockType::Stream), Ok(true)) => {}
        _ => return Err(NotListening::Kind),
    }
    nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC))
        .map_err(NotListening::Cloexec)?;
    // SAFETY: the descriptor is open and a listening socket, and this
    // process hands it to nobody else: we are its only owner from here on.
    Ok(std::os::unix::net::UnixListener::from(unsafe {
        OwnedFd::from_raw_fd(fd)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::IntoRawFd;

    #[test]
    fn only_a_listening_unix_socket_is_the_door() {
        let dir = std::env::temp_dir().join(format!("egressd-door-{}", std::process::id()));
        let _ = std::fs::remove_file(&dir);
        let listener = std::os::unix::net::UnixListener::bind(&dir).unwrap();
        assert!(take_listener(listener.into_raw_fd()).is_ok());
        let _ = std::fs::remove_file(&dir);
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap().into_raw_fd();
        assert!(matches!(take_listener(tcp), Err(NotListening::Kind)));
        let (unix, _) = std::os::unix::net::UnixStream::pair().unwrap();
        assert!(matches!(take_listener(unix.into_raw_fd()), Err(NotListening::Kind)));
        assert!(matches!(take_listener(987), Err(NotListening::NotOpen(_))));
    }
}
