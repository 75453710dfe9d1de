//! oxibot-egressd: the door between the jail's commands and the network.
//! The jail's end of the door (toold's pid 1) accepts each connection a
//! command makes to its proxy port and hands the socket out, tagged with
//! the key of the exec whose processes opened it; this daemon reads the
//! request, decides it against `tools.exec.allowedHosts` and the SSRF
//! guard, dials the one checked address, relays, and tells the broker
//! what became of it. The HTTP and TLS a hostile command writes are
//! parsed here: not in the broker, which holds every secret, and not in
//! the jail, which the command controls. It holds only the secrets of
//! `tools.exec.credentials` (handed over by the broker, audited), and the
//! key of the authority it answers TLS with for their hosts, made at start
//! and never written anywhere.
//!
//! Started by the broker in supervise mode, with two descriptors: its link
//! to the broker (3) and the door's listening Unix socket (4), where toold
//! connects to hand connections over. Under systemd, its unit hands it the
//! door (`oxibot-egress-door.socket`, descriptor 3) and it connects to the
//! broker's `egress.sock`, where the broker knows it by its uid. What it
//! gives up, in order:
//! 1. everything but those two descriptors, checked before use (the
//!    authority is made and the system's trust anchors read now);
//! 2. files (Landlock: only what name lookups read), listening on TCP,
//!    exec, signals to others, privileges (no_new_privs; seccomp: the
//!    event loop, outgoing IPv4/IPv6 sockets, the routing table's netlink
//!    socket, and accepting on the door);
//! 3. the link: if the broker goes away, it exits and is restarted.

mod door;
mod link;
mod sandbox;

use std::os::fd::RawFd;
use std::process::ExitCode;

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "oxibot-egressd",
    version,
    about = "OxiBot egress daemon: the jail's door to the network"
)]
struct Args {
    /// The broker's egress socket (under systemd).
    #[arg(long, default_value = "/run/oxibot/egress.sock")]
    socket: std::path::PathBuf,
    /// Use this inherited descriptor as the broker connection instead of
    /// connecting to --socket (supervise mode hands over a socketpair).
    #[arg(long)]
    broker_fd: Option<RawFd>,
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
    #[error("cannot connect to {path}: {source}; is the broker running?")]
    BrokerSocket {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("descriptor {fd} is not the door's listening socket: {why}")]
    NotTheDoor {
        fd: RawFd,
        why: oxibot_runtime::inherit::NotListening,
    },
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
    #[error("{0}")]
    Authority(oxibot_egress::tls::TlsError),
}

fn run(args: &Args) -> Result<(), Fatal> {
    // Step 1: the two descriptors, each checked for what it must be, and
    // who may hand connections over (read now: /etc/passwd is out of
    // reach once the sandbox is in place).
    let link = match args.broker_fd {
        Some(fd) => {
            oxibot_runtime::inherit::take_broker_socket(fd).map_err(|source| Fatal::BrokerLink { fd, source })?
        }
        None => std::os::unix::net::UnixStream::connect(&args.socket).map_err(|source| Fatal::BrokerSocket {
            path: args.socket.clone(),
            source,
        })?,
    };
    let door = oxibot_runtime::inherit::take_listener(args.listener_fd, oxibot_runtime::inherit::Listening::Unix)
        .map(std::os::unix::net::UnixListener::from)
        .map_err(|why| Fatal::NotTheDoor {
            fd: args.listener_fd,
            why,
        })?;
    let peers = door::Peers::of(&args.tool_user);
    nix::sys::prctl::set_dumpable(false).map_err(Fatal::Dumpable)?;
    // The authority the door answers TLS with, made now and held only in
    // this process's memory; and the system's trust anchors, which the
    // sandbox will not let it read later.
    let made = link::Made {
        authority: std::sync::Arc::new(oxibot_egress::tls::Authority::generate().map_err(Fatal::Authority)?),
        system_roots: oxibot_egress::tls::system_roots(),
    };

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
        Ok(link::serve(link, door, peers, made).await?)
    })
}
