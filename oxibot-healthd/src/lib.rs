//! oxibot-healthd: serves `/healthz`, `/readyz` and `/metrics` on the port
//! the broker bound and handed over, so that the HTTP a local stranger
//! sends is parsed outside the process that holds every secret. Started by
//! the broker only, with two descriptors: its link to the broker (3) and
//! the listening socket (4).
//!
//! What it gives up, in order:
//! 1. everything but those two descriptors, checked before use;
//! 2. files (Landlock: not one path), new sockets, exec, signals to
//!    others, privileges (no_new_privs, seccomp: only accept, read, write
//!    and the event loop's calls);
//! 3. the link: if the broker goes away, it exits and is restarted.

mod http;
mod sandbox;

use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::process::ExitCode;

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "oxibot-healthd",
    version,
    about = "OxiBot health endpoint daemon (started by the broker)"
)]
struct Args {
    /// The inherited broker connection.
    #[arg(long)]
    broker_fd: RawFd,
    /// The inherited listening TCP socket.
    #[arg(long)]
    listener_fd: RawFd,
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
            eprintln!("oxibot-healthd: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Why the daemon could not start or stopped serving.
#[derive(Debug, thiserror::Error)]
enum Fatal {
    #[error("the broker connection (descriptor {fd}) is not usable: {source}")]
    BrokerLink { fd: RawFd, source: std::io::Error },
    #[error("descriptor {fd} is not the health endpoint's listening socket: {why}")]
    NotTheListener { fd: RawFd, why: NotListening },
    #[error("cannot clear the dumpable flag: {0}")]
    Dumpable(nix::Error),
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error(transparent)]
    Sandbox(#[from] oxibot_sandbox::seccomp::SandboxError),
    #[error("the inherited sockets cannot join the event loop: {0}")]
    EventLoop(#[from] std::io::Error),
    #[error(transparent)]
    Serve(#[from] http::Stop),
}

#[derive(Debug, thiserror::Error)]
enum NotListening {
    #[error("not open ({0})")]
    NotOpen(nix::Error),
    #[error("not a listening TCP socket")]
    Kind,
    #[error("cannot mark it close-on-exec ({0})")]
    Cloexec(nix::Error),
}

fn run(args: &Args) -> Result<(), Fatal> {
    // Step 1: the two descriptors, each checked for what it must be.
    let link = oxibot_runtime::inherit::take_broker_socket(args.broker_fd).map_err(|source| Fatal::BrokerLink {
        fd: args.broker_fd,
        source,
    })?;
    let listener = take_listener(args.listener_fd).map_err(|why| Fatal::NotTheListener {
        fd: args.listener_fd,
        why,
    })?;
    nix::sys::prctl::set_dumpable(false).map_err(Fatal::Dumpable)?;

    // The event loop, on this one thread; its driver makes the descriptors
    // it needs (epoll, an eventfd, the signal pipe) here, before the
    // sandbox forbids making any.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Fatal::Runtime)?;

    // Step 2: the sandbox, before the first byte of HTTP.
    let landlock = sandbox::install()?;
    tracing::debug!(landlock, "sandbox installed");

    // Step 3: serve until the broker goes away.
    runtime.block_on(async {
        link.set_nonblocking(true)?;
        listener.set_nonblocking(true)?;
        let link = tokio::net::UnixStream::from_std(link)?;
        let listener = tokio::net::TcpListener::from_std(listener)?;
        Ok(http::serve(link, listener).await?)
    })
}

/// Takes over `fd` as the listening socket, after checking that it is a
/// listening TCP socket (IPv4 or IPv6), and marks it close-on-exec.
fn take_listener(fd: RawFd) -> Result<std::net::TcpListener, NotListening> {
    use nix::sys::socket::{getsockname, getsockopt, sockopt, AddressFamily, SockType, SockaddrLike, SockaddrStorage};
    nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFD).map_err(NotListening::NotOpen)?;
    // SAFETY: F_GETFD succeeded, so fd is open; the borrow ends here.
    let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    let family = getsockname::<SockaddrStorage>(fd).ok().and_then(|a| a.family());
    let kind = getsockopt(&borrowed, sockopt::SockType);
    let listening = getsockopt(&borrowed, sockopt::AcceptConn);
    match (family, kind, listening) {
        (Some(AddressFamily::Inet | AddressFamily::Inet6), Ok(SockType::Stream), Ok(true)) => {}
        _ => return Err(NotListening::Kind),
    }
    nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC))
        .map_err(NotListening::Cloexec)?;
    // SAFETY: the descriptor is open and a listening socket, and this
    // process hands it to nobody else: we are its only owner from here on.
    Ok(std::net::TcpListener::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::IntoRawFd;

    #[test]
    fn only_a_listening_tcp_socket_is_taken() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let taken = take_listener(listener.into_raw_fd()).unwrap();
        assert_eq!(taken.local_addr().unwrap(), address);

        let connected = std::net::TcpStream::connect(address).unwrap().into_raw_fd();
        assert!(matches!(take_listener(connected), Err(NotListening::Kind)));
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap().into_raw_fd();
        assert!(take_listener(udp).is_err());
        let (unix, _) = std::os::unix::net::UnixStream::pair().unwrap();
        assert!(take_listener(unix.into_raw_fd()).is_err());
        assert!(matches!(take_listener(987), Err(NotListening::NotOpen(_))));
    }
}
