//! oxibot-toold: the only OxiBot process that runs shell commands and
//! touches files. This library is the daemon; `main.rs` only calls
//! [`main`]. It holds nothing secret, and it builds its jail before it
//! reads a single request.
//!
//! What it gives up, in order:
//! 1. everything but the broker connection, which it opens first (or
//!    inherits from a supervising broker, as descriptor 3);
//! 2. the host: its filesystem, network, processes, hostname, privileges
//!    and most syscalls (see `jail`);
//! 3. the connection: if it drops, toold exits and is restarted.

mod beneath;
mod door;
mod exec;
mod files;
mod jail;
mod mcp;
mod patch;
mod probe;
mod running;
mod search;
mod server;
mod sockdiag;
mod sweep;
mod text;
mod texts;
mod trust;

/// What the fuzz targets drive: apply_patch's pure half, exactly as the
/// daemon runs it. Not an API.
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::patch::diff::{apply, parse, split_files};
}

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, ValueEnum};

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Sandbox {
    On,
    Off,
}

#[derive(Parser)]
#[command(name = "oxibot-toold", version, about = "OxiBot tool daemon")]
struct Args {
    /// The broker's tool socket.
    #[arg(long, default_value = "/run/oxibot/tool.sock")]
    socket: PathBuf,
    /// Use this inherited descriptor as the broker connection instead of
    /// connecting to --socket (supervise mode hands over a socketpair).
    #[arg(long)]
    broker_fd: Option<i32>,
    /// Debugging only: the seccomp filter logs refused syscalls (see the
    /// kernel log) instead of refusing them. Warned about on every start.
    #[arg(long)]
    seccomp_log: bool,
    /// The directory the tools may use.
    #[arg(long)]
    workspace: PathBuf,
    /// `off` runs commands without the jail: for development only.
    #[arg(long, value_enum, default_value = "on")]
    sandbox: Sandbox,
    /// Upper bound for any exec timeout, in seconds.
    #[arg(long, default_value_t = 600)]
    max_exec_timeout: u32,
    /// Bytes of exec output kept (half from the start, half from the end).
    #[arg(long, default_value_t = 64 * 1024)]
    max_output: usize,
    /// The user to become when started as root.
    #[arg(long, default_value = "oxibot-tool")]
    user: String,
    /// Processes the tool user may have at once (all commands together).
    #[arg(long, default_value_t = 256)]
    max_processes: u64,
    /// Address space per command, MiB.
    #[arg(long, default_value_t = 2048)]
    max_memory_mb: u64,
    /// Largest file a command may write, MiB.
    #[arg(long, default_value_t = 256)]
    max_file_size_mb: u64,
    /// The egress daemon's socket. With it, the jail gets a proxy port
    /// through which the commands the broker allows may reach the hosts
    /// `tools.exec.allowedHosts` lists; without it, no network at all.
    #[arg(long)]
    egress_door: Option<PathBuf>,
}

/// The daemon, from its arguments to its exit.
pub fn main() -> ExitCode {
    if let Some(status) = oxibot_runtime::man::printed_if_asked::<Args>() {
        return status;
    }
    let args = Args::parse();
    oxibot_runtime::logging::init();

    // Step 1: the broker connection, before anything else.
    let stream = match args.broker_fd {
        Some(fd) => oxibot_runtime::inherit::take_broker_socket(fd).map_err(|e| {
            format!("the broker connection (descriptor {fd}) is not usable: {e}; start toold from the broker or with --socket")
        }),
        None => std::os::unix::net::UnixStream::connect(&args.socket).map_err(|e| {
            format!("cannot connect to {}: {e}; is the broker running?", args.socket.display())
        }),
    };
    let stream = match stream {
        Ok(s) => s,
        Err(e) => {
            eprintln!("oxibot-toold: {e}");
            return ExitCode::FAILURE;
        }
    };
    if args.seccomp_log {
        tracing::warn!(
            "--seccomp-log: the jail's seccomp filter LOGS refused syscalls instead of refusing them. \
             For debugging a missing syscall only (see the kernel log); never run like this in production"
        );
    }

    let workspace = match args.workspace.canonicalize() {
        Ok(w) => w,
        Err(e) => {
            eprintln!(
                "oxibot-toold: workspace {} is not usable: {e}",
                args.workspace.display()
            );
            return ExitCode::FAILURE;
        }
    };
    let jail_limits = jail::ResourceLimits {
        max_processes: args.max_processes.max(8),
        max_memory: args.max_memory_mb.max(64) << 20,
        max_file_size: args.max_file_size_mb.max(1) << 20,
        max_cpu_secs: u64::from(args.max_exec_timeout.clamp(1, 600)) + 5,
        ..jail::ResourceLimits::default()
    };

    // Step 2: the jail. No sandbox, no start.
    let (workspace, jailed_door) = match args.sandbox {
        Sandbox::On => {
            let spec = jail::JailSpec {
                workspace_as_given: std::path::absolute(&args.workspace).unwrap_or_else(|_| args.workspace.clone()),
                workspace,
                tool_user: args.user.clone(),
                limits: jail_limits,
                seccomp_log: args.seccomp_log,
                egress_door: args.egress_door.clone(),
            };
            match jail::enter(&spec) {
                Ok(jail::Side::Outside(child, door)) => {
                    // Only the jail talks to the broker. Not dumpable, like
                    // every OxiBot process (the jail clears it inside; here
                    // it had to wait until the user namespace was mapped,
                    // which a non-dumpable process cannot do).
                    drop(stream);
                    if let Err(e) = nix::sys::prctl::set_dumpable(false) {
                        eprintln!("oxibot-toold: cannot clear the dumpable flag: {e}");
                        return ExitCode::FAILURE;
                    }
                    // The door's connections until the jail's pid 1 ends
                    // (its end of the pair closes with it); no thread: a
                    // process that unshared a pid namespace cannot start one.
                    if let Some(door) = door {
                        door::relay(door);
                    }
                    let code = jail::wait_for_jail(child);
                    return ExitCode::from(u8::try_from(code).unwrap_or(1));
                }
                Ok(jail::Side::Inside(report, door, domains)) => {
                    // Each command, and each MCP server, enters one of
                    // these between fork and exec.
                    if let Some(domain) = domains.exec {
                        exec::set_exec_domain(domain);
                    }
                    mcp::set_domains(domains.mcp);
                    tracing::info!(
                        root_started = report.root_started,
                        uid = report.uid,
                        landlock = %report.landlock,
                        egress = door.is_some(),
                        "jail built"
                    );
                    (PathBuf::from(jail::JAIL_WORKSPACE), door)
                }
                Err(e) => {
                    eprintln!(
                        "oxibot-toold: refusing to start: {e}. To run commands WITHOUT any isolation \
                         (development only), set \"tools\": {{\"sandbox\": \"off\"}}"
                    );
                    return ExitCode::FAILURE;
                }
            }
        }
        Sandbox::Off => {
            if let Err(e) = nix::sys::prctl::set_dumpable(false) {
                eprintln!("oxibot-toold: cannot clear the dumpable flag: {e}");
                return ExitCode::FAILURE;
            }
            tracing::warn!(
                "SANDBOX IS OFF: shell commands and file tools run with this process's full rights ({}). \
                 Never use this with a model or chat users you do not fully trust",
                whoami()
            );
            (workspace, None)
        }
    };
    let jailed = matches!(args.sandbox, Sandbox::On);

    // Step 3: serve until the broker goes away. One thread: requests are
    // short, or wait on a child asynchronously; the long file walks run on
    // tokio's blocking pool.
    let limits = exec::Limits {
        max_timeout_secs: args.max_exec_timeout.clamp(1, 600),
        max_output: args.max_output.max(1024),
        jailed: jailed.then_some(jail_limits),
    };
    // The sweeper thread, now: a thread started later may find the
    // process limit full.
    if let Err(e) = sweep::start_sweeper() {
        eprintln!("oxibot-toold: cannot start the sweeper thread: {e}");
        return ExitCode::FAILURE;
    }
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("oxibot-toold: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Large files and outputs pass through here: their memory goes back
    // to the system once they are answered.
    runtime.spawn(oxibot_runtime::heap::trim_periodically());
    if let Some(door) = jailed_door {
        runtime.spawn(door::serve_jail_end(door));
    }
    match runtime.block_on(server::serve(stream, workspace, limits)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("oxibot-toold: {e}");
            ExitCode::FAILURE
        }
    }
}

fn whoami() -> String {
    let uid = nix::unistd::geteuid();
    let name = nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_default();
    format!("uid {uid} {name}")
}
