//! Supervise mode: the broker starts toold and one channel daemon per
//! enabled channel, restarts a child that fails with exponential backoff and
//! a restart-rate throttle, and stops them all on shutdown.
//!
//! Each child gets its end of a fresh `socketpair` as descriptor 3: that
//! descriptor *is* its identity (the broker knows which child it handed it
//! to), so no listening socket exists that another process could connect to
//! and claim to be a daemon. Children get a cleared environment (no
//! `OXIBOT_…` override can carry a key into them), no secret on their
//! command line, and a session of their own (no controlling terminal to
//! write to or inject into). When the broker runs as root, each child runs
//! as its role's user.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use oxibot_proto::messages::ProcessStatus;
use oxibot_runtime::inherit::BROKER_FD;
use tokio::process::Command;
use tokio::sync::{mpsc, watch};

/// Which link a child's socketpair carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChildLink {
    Tool,
    Channel(String),
    /// The health endpoint's daemon.
    Health,
    /// The egress door's daemon.
    Egress,
}

/// What to run for one supervised daemon.
#[derive(Debug, Clone)]
pub struct ChildSpec {
    pub name: String,
    pub program: PathBuf,
    pub args: Vec<String>,
    /// (uid, gid) to run as when the broker is root; None for a child that
    /// must start as root and drops privileges itself (toold builds its jail
    /// first), or when the broker is not root.
    pub run_as: Option<(u32, u32)>,
    pub link: ChildLink,
    /// A listening socket the child inherits at [`PASSED_FD`] besides its
    /// link (the health daemon's port, which the broker bound).
    pub pass: Option<Arc<PassedListener>>,
}

/// A listening socket the broker binds and a child serves: a TCP port (the
/// health endpoint's) or a Unix socket (the egress door's). The broker
/// keeps its copy, so the port is never free for another local user to
/// take; if the child tore a TCP port down (`shutdown` on a shared socket
/// reaches every copy), the next start binds it again.
#[derive(Debug)]
pub struct PassedListener {
    /// None for a Unix socket, which is never bound again.
    address: Option<std::net::SocketAddr>,
    socket: Mutex<OwnedFd>,
}

impl PassedListener {
    pub fn bind(address: std::net::SocketAddr) -> std::io::Result<PassedListener> {
        let socket = Mutex::new(OwnedFd::from(std::net::TcpListener::bind(address)?));
        Ok(PassedListener {
            address: Some(address),
            socket,
        })
    }

    pub fn unix(listener: std::os::unix::net::UnixListener) -> PassedListener {
        PassedListener {
            address: None,
            socket: Mutex::new(OwnedFd::from(listener)),
        }
    }

    /// The socket to hand to the next start: the same one while it still
    /// listens, else a fresh one on the same address.
    pub fn current(&self) -> std::io::Result<RawFd> {
        let mut socket = self.socket.lock().unwrap_or_else(|p| p.into_inner());
        let listening = nix::sys::socket::getsockopt(&*socket, nix::sys::socket::sockopt::AcceptConn).unwrap_or(false);
        if let (false, Some(address)) = (listening, self.address) {
            tracing::warn!(%address, "the passed listening socket was torn down; binding it again");
            // Closed first: the address is ours again only once it is.
            *socket = OwnedFd::from(std::net::TcpListener::bind(address)?);
        }
        Ok(socket.as_raw_fd())
    }
}

/// Where a child finds the descriptor of [`ChildSpec::pass`].
pub const PASSED_FD: RawFd = BROKER_FD + 1;

/// The broker's end of a freshly started child's socketpair.
pub struct Handoff {
    pub link: ChildLink,
    pub pid: u32,
    pub stream: tokio::net::UnixStream,
}

#[derive(Debug, Default, Clone)]
struct ChildState {
    pid: Option<u32>,
    started: Option<Instant>,
    restarts: u32,
    last_exit: Option<String>,
}

/// Shared, read by `oxibotctl status`.
#[derive(Default)]
pub struct Supervisor {
    children: Mutex<Vec<(String, ChildState)>>,
}

const BACKOFF_START: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A child that ran this long is considered healthy; its backoff resets.
const HEALTHY_AFTER: Duration = Duration::from_secs(30);
/// More than this many restarts inside the window pauses restarts.
const THROTTLE_RESTARTS: usize = 10;
const THROTTLE_WINDOW: Duration = Duration::from_secs(60);
const STOP_GRACE: Duration = Duration::from_secs(5);
/// A daemon that exits with EX_CONFIG (78) would fail the same way again.
const EX_CONFIG: i32 = 78;

impl Supervisor {
    pub fn status(&self) -> Vec<ProcessStatus> {
        let children = self.children.lock().unwrap_or_else(|p| p.into_inner());
        children
            .iter()
            .map(|(name, s)| ProcessStatus {
                name: name.clone(),
                pid: s.pid,
                uptime_secs: s.started.map(|t| t.elapsed().as_secs()),
                restarts: s.restarts,
                last_exit: s.last_exit.clone(),
            })
            .collect()
    }

    fn update(&self, name: &str, f: impl FnOnce(&mut ChildState)) {
        let mut children = self.children.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, s)) = children.iter_mut().find(|(n, _)| n == name) {
            f(s);
        } else {
            let mut s = ChildState::default();
            f(&mut s);
            children.push((name.to_string(), s));
        }
    }

    /// Runs `spec` until `shutdown` turns true, restarting it on failure.
    /// Each start hands the broker's end of the child's socketpair to
    /// `handoffs`.
    pub async fn run(
        self: Arc<Self>,
        spec: ChildSpec,
        mut shutdown: watch::Receiver<bool>,
        handoffs: mpsc::Sender<Handoff>,
    ) {
        let mut backoff = BACKOFF_START;
        let mut recent: Vec<Instant> = Vec::new();
        self.update(&spec.name, |_| {});
        loop {
            if *shutdown.borrow() {
                return;
            }
            let passed = match &spec.pass {
                Some(listener) => listener.current().map(Some),
                None => Ok(None),
            };
            let started_child = passed.and_then(|passed| {
                let (ours, theirs) = std::os::unix::net::UnixStream::pair()?;
                let child = command(&spec, theirs.as_raw_fd(), passed).spawn()?;
                // Only the child holds its end now: its death is our EOF.
                drop(theirs);
                ours.set_nonblocking(true)?;
                Ok((child, tokio::net::UnixStream::from_std(ours)?))
            });
            let mut child = match started_child {
                Ok((mut child, ours)) => {
                    if let Some(stderr) = child.stderr.take() {
                        tokio::spawn(relay_log(stderr, spec.name.clone()));
                    }
                    let handoff = Handoff {
                        link: spec.link.clone(),
                        pid: child.id().unwrap_or(0),
                        stream: ours,
                    };
                    if handoffs.send(handoff).await.is_err() {
                        // The broker is shutting down.
                        let mut child = child;
                        stop(&mut child, &spec.name).await;
                        return;
                    }
                    child
                }
                Err(e) => {
                    let msg = format!("cannot start {}: {e}", spec.program.display());
                    tracing::error!(child = %spec.name, "{msg}");
                    self.update(&spec.name, |s| s.last_exit = Some(msg));
                    if wait_or_shutdown(&mut shutdown, BACKOFF_MAX).await {
                        return;
                    }
                    continue;
                }
            };
            let pid = child.id();
            let started = Instant::now();
            tracing::info!(child = %spec.name, pid, "started");
            self.update(&spec.name, |s| {
                s.pid = pid;
                s.started = Some(started);
            });

            let status = tokio::select! {
                status = child.wait() => status,
                _ = shutdown_requested(&mut shutdown) => {
                    stop(&mut child, &spec.name).await;
                    self.update(&spec.name, |s| { s.pid = None; s.started = None; s.last_exit = Some("stopped".into()); });
                    return;
                }
            };
            let description = match &status {
                Ok(s) => s.to_string(),
                Err(e) => format!("wait failed: {e}"),
            };
            self.update(&spec.name, |s| {
                s.pid = None;
                s.started = None;
                s.last_exit = Some(description.clone());
            });
            if matches!(&status, Ok(s) if s.success()) {
                tracing::info!(child = %spec.name, "exited cleanly; not restarting");
                return;
            }
            if matches!(&status, Ok(s) if s.code() == Some(EX_CONFIG)) {
                tracing::error!(child = %spec.name, "stopped on a configuration error; fix it and restart the broker");
                self.update(&spec.name, |s| {
                    s.last_exit = Some("configuration error (exit 78); not restarted".into())
                });
                return;
            }
            tracing::warn!(child = %spec.name, status = %description, "exited; restarting");

            if started.elapsed() >= HEALTHY_AFTER {
                backoff = BACKOFF_START;
            }
            let now = Instant::now();
            recent.retain(|t| now.duration_since(*t) < THROTTLE_WINDOW);
            recent.push(now);
            let delay = if recent.len() > THROTTLE_RESTARTS {
                tracing::error!(child = %spec.name, "restarted {} times in {:?}; pausing restarts", recent.len(), THROTTLE_WINDOW);
                THROTTLE_WINDOW
            } else {
                backoff
            };
            backoff = (backoff * 2).min(BACKOFF_MAX);
            if wait_or_shutdown(&mut shutdown, delay).await {
                return;
            }
            self.update(&spec.name, |s| s.restarts += 1);
        }
    }
}

/// Resolves once shutdown is requested (or the sender is gone).
async fn shutdown_requested(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}

/// Sleeps, returning true early if shutdown was requested.
async fn wait_or_shutdown(shutdown: &mut watch::Receiver<bool>, d: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = shutdown_requested(shutdown) => true,
    }
}

fn command(spec: &ChildSpec, link_fd: RawFd, passed_fd: Option<RawFd>) -> Command {
    let mut cmd = Command::new(&spec.program);
    cmd.args(&spec.args)
        .arg("--broker-fd")
        .arg(BROKER_FD.to_string())
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .stdin(Stdio::null())
        // Nothing of ours to write to: our stdout may be the journal or the
        // admin's terminal. Its log comes to us line by line (relay_log),
        // not straight into ours: a compromised daemon cannot write lines
        // that pass for the broker's.
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for var in ["RUST_LOG", "OXIBOT_LOG", "LANG"] {
        if let Some(v) = std::env::var_os(var) {
            cmd.env(var, v);
        }
    }
    if let Some((uid, gid)) = spec.run_as {
        // std clears supplementary groups (setgroups(0)) when it drops uid as root.
        cmd.uid(uid).gid(gid);
    }
    // SAFETY: the closure runs in the child between fork and exec, and only
    // makes async-signal-safe syscalls (setsid, fcntl, dup2) on values
    // copied into it; it allocates nothing and takes no lock.
    unsafe {
        cmd.pre_exec(move || child_setup(link_fd, passed_fd));
    }
    cmd
}

/// In the child, before exec: a session of its own (no controlling
/// terminal: it can neither write to nor inject into the admin's), death
/// with the broker, and its end of the socketpair at [`BROKER_FD`], the one
/// descriptor it inherits beside stdio (and, for a child given one, the
/// passed descriptor at [`PASSED_FD`]).
fn child_setup(link_fd: RawFd, passed_fd: Option<RawFd>) -> std::io::Result<()> {
    nix::unistd::setsid()?;
    // If the broker dies (even by SIGKILL), so does the daemon: none may go
    // on working with its credential and no broker. (Set here, after std
    // has changed the ids, which would clear it.)
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)?;
    // A passed descriptor that sits where the link goes is moved away
    // first (F_DUPFD: the lowest free number from 10 up).
    let passed_fd = match passed_fd {
        Some(fd) if fd == BROKER_FD => Some(nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_DUPFD(10))?),
        other => other,
    };
    place(link_fd, BROKER_FD)?;
    let mut last = BROKER_FD;
    if let Some(fd) = passed_fd {
        place(fd, PASSED_FD)?;
        last = PASSED_FD;
    }
    // Nothing else crosses exec: whatever the broker itself was started
    // with (a wrapper's descriptors, a file a shell left open) stays here.
    oxibot_runtime::inherit::cloexec_from(last + 1)
}

/// Puts `fd` at `at`, inheritable.
fn place(fd: RawFd, at: RawFd) -> std::io::Result<()> {
    if fd == at {
        // Already in place; dup2 would leave close-on-exec set.
        nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()))?;
    } else {
        nix::unistd::dup2(fd, at)?;
    }
    Ok(())
}

/// The longest child log line relayed whole; the rest of a longer one is cut.
const MAX_LOG_LINE: u64 = 16 * 1024;

/// Relays a child's log lines into the broker's log, each marked with the
/// child's name and with control characters escaped.
async fn relay_log(stderr: tokio::process::ChildStderr, name: String) {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
    let mut reader = BufReader::new(stderr);
    let mut line = Vec::new();
    let mut throttle = LogThrottle::default();
    loop {
        line.clear();
        match (&mut reader).take(MAX_LOG_LINE).read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => match throttle.admit(Instant::now()) {
                Admit::Line => {
                    let text = String::from_utf8_lossy(&line);
                    let text = oxibot_runtime::printable::printable_line(text.trim_end_matches('\n'));
                    tracing::info!(target: "child", child = %name, "{text}");
                }
                Admit::Dropped(n) => {
                    tracing::warn!(target: "child", child = %name, "{n} lines of its log dropped (more than {MAX_LOG_RATE} a second)");
                    let text = String::from_utf8_lossy(&line);
                    let text = oxibot_runtime::printable::printable_line(text.trim_end_matches('\n'));
                    tracing::info!(target: "child", child = %name, "{text}");
                }
                Admit::Nothing => {}
            },
        }
    }
}

/// The most log lines a child gets into ours each second: a daemon that
/// floods its stderr (a compromised one, or a bug) must not drown the
/// broker's own lines in the journal, nor take its CPU.
const MAX_LOG_RATE: u32 = 200;

#[derive(Default)]
struct LogThrottle {
    window: Option<Instant>,
    lines: u32,
    dropped: u64,
}

#[derive(Debug, PartialEq, Eq)]
enum Admit {
    Line,
    /// This many lines were dropped since the last report: say so, then
    /// log this line.
    Dropped(u64),
    Nothing,
}

impl LogThrottle {
    fn admit(&mut self, now: Instant) -> Admit {
        let fresh = self
            .window
            .is_none_or(|w| now.duration_since(w) >= Duration::from_secs(1));
        if fresh {
            self.window = Some(now);
            self.lines = 0;
        }
        if self.lines < MAX_LOG_RATE {
            self.lines += 1;
            if self.dropped > 0 && fresh {
                // The first line of a new second reports the last one's drops.
                return Admit::Dropped(std::mem::take(&mut self.dropped));
            }
            return Admit::Line;
        }
        self.dropped += 1;
        Admit::Nothing
    }
}

/// SIGTERM, then SIGKILL after a grace period.
async fn stop(child: &mut tokio::process::Child, name: &str) {
    if let Some(pid) = child.id() {
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
    }
    if tokio::time::timeout(STOP_GRACE, child.wait()).await.is_err() {
        tracing::warn!(child = name, "did not stop within {:?}; killing", STOP_GRACE);
        let _ = child.kill().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_passed_port_torn_down_by_its_child_is_bound_again() {
        let free = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let listener = PassedListener::bind(free).unwrap();
        let fd = listener.current().unwrap();
        // SAFETY (both): the listener's descriptors, open for the test's length.
        let port = |fd| {
            let owned = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }
                .try_clone_to_owned()
                .unwrap();
            std::net::TcpListener::from(owned).local_addr().unwrap().port()
        };
        let before = port(fd);
        assert_eq!(listener.current().unwrap(), fd, "still listening: the same socket");
        // What a compromised child can do to the socket it shares with us.
        nix::sys::socket::shutdown(fd, nix::sys::socket::Shutdown::Read).unwrap();
        let again = listener.current().unwrap();
        let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(again) };
        assert!(nix::sys::socket::getsockopt(&borrowed, nix::sys::socket::sockopt::AcceptConn).unwrap());
        assert_eq!(port(again), before, "the same address");
        assert!(std::net::TcpStream::connect(("127.0.0.1", before)).is_ok());
    }

    #[test]
    fn a_flood_is_cut_to_the_rate_and_the_cut_is_told() {
        let mut t = LogThrottle::default();
        let start = Instant::now();
        let admitted = (0..10_000).filter(|_| t.admit(start) == Admit::Line).count();
        assert_eq!(admitted, MAX_LOG_RATE as usize);
        assert_eq!(
            t.admit(start + Duration::from_secs(1)),
            Admit::Dropped(10_000 - MAX_LOG_RATE as u64)
        );
        assert_eq!(t.admit(start + Duration::from_millis(1100)), Admit::Line);
    }
}
