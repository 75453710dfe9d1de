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

use std::os::fd::RawFd;
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
    NotTheListener {
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
    Serve(#[from] http::Stop),
}

fn run(args: &Args) -> Result<(), Fatal> {
    // Step 1: the two descriptors, each checked for what it must be.
    let link = oxibot_runtime::inherit::take_broker_socket(args.broker_fd).map_err(|source| Fatal::BrokerLink {
        fd: args.broker_fd,
        source,
    })?;
    let listener = oxibot_runtime::inherit::take_listener(args.listener_fd, oxibot_runtime::inherit::Listening::Tcp)
        .map(std::net::TcpListener::from)
        .map_err(|why| Fatal::NotTheListener {
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
