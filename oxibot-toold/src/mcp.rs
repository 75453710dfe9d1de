//! Stdio MCP servers (`tools.mcpServers.<name>.command`), run in the jail
//! like a command, and kept running between tool calls. The broker speaks
//! MCP; toold only starts a server, relays its standard input and output
//! as frames, and ends it.
//!
//! Each server is set apart from the commands and from the other servers
//! by the kernel, not by trust:
//! - its own session (`setsid`): the egress door knows its connections by
//!   it, and gives them the server's own key (its own `allowedHosts`);
//!   stopping the server kills the session;
//! - its own Landlock domain (made with the jail, one per slot): no
//!   command and no other server may read its memory or environment
//!   (`/proc/PID/environ`, `mem`, ptrace), signal it, or read its state
//!   directory; it writes only that directory;
//! - its own state directory (`/mcp/<slot>`, its `HOME` and `TMPDIR`), on
//!   a tmpfs of the jail: kept while toold runs, gone with it.
//!
//! A server's program is chosen by the admin in the configuration, which
//! the broker checked is out of the commands' reach (not under /workspace
//! or /tmp); `/usr` and `/opt` are read-only to the whole jail.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::process::Stdio;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use oxibot_proto::messages::{McpLaunch, ToolReply, MAX_MCP_SERVERS};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{ChildStdin, Command};
use tokio::sync::mpsc;

use crate::exec::Limits;

/// How long a server may take to read what is written to it.
const INPUT_TIMEOUT: Duration = Duration::from_secs(10);
/// What a server's standard error leaves for the broker when it ends.
const STDERR_TAIL: usize = 2048;
/// How much of a server's output goes in one frame.
const OUTPUT_PIECE: usize = 16 * 1024;

/// One Landlock ruleset per slot (see `jail::landlock::mcp_domains`).
static DOMAINS: OnceLock<Vec<OwnedFd>> = OnceLock::new();

pub fn set_domains(domains: Vec<OwnedFd>) {
    let _ = DOMAINS.set(domains);
}

#[derive(Default)]
struct Servers {
    /// Slots by server name: a name keeps its slot (and its state) while
    /// toold runs; a slot is never given to another name.
    slots: HashMap<String, usize>,
    running: HashMap<String, Running>,
}

struct Running {
    session: i32,
    generation: u64,
    stdin: Arc<tokio::sync::Mutex<ChildStdin>>,
}

static SERVERS: Mutex<Option<Servers>> = Mutex::new(None);
static GENERATION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

fn with<T>(f: impl FnOnce(&mut Servers) -> T) -> T {
    let mut guard = SERVERS.lock().unwrap_or_else(|p| p.into_inner());
    f(guard.get_or_insert_with(Servers::default))
}

/// Starts `launch` (stopping a server of that name first). Its output
/// goes to `replies` as `McpOutput`, its end as `McpEnded`.
pub async fn start(launch: McpLaunch, replies: mpsc::Sender<ToolReply>, limits: Limits) -> Result<String, String> {
    stop(&launch.server);
    let jailed = limits.jailed.is_some() && crate::jail::is_jailed();
    // In the jail, only with a domain of its own: without Landlock every
    // command could read the server's environment (its secrets).
    let (home, domain) = if jailed {
        let domains = DOMAINS.get().map(Vec::as_slice).unwrap_or_default();
        if domains.is_empty() {
            return Err(
                "MCP servers need Landlock (Linux 5.13 or later, with landlock in the lsm= list): \
                 without it nothing keeps a server's environment and state from the jail's commands"
                    .into(),
            );
        }
        let slot = with(|s| {
            if let Some(slot) = s.slots.get(&launch.server) {
                return Ok(*slot);
            }
            let slot = s.slots.len();
            if slot >= domains.len() {
                return Err(format!(
                    "no state directory left for MCP server {:?}: toold runs at most {} different servers \
                     between restarts; restart toold",
                    launch.server,
                    domains.len().min(MAX_MCP_SERVERS)
                ));
            }
            s.slots.insert(launch.server.clone(), slot);
            Ok(slot)
        })?;
        let home = crate::jail::mcp_state_dir(slot);
        (home, domains.get(slot).map(AsRawFd::as_raw_fd))
    } else {
        // Sandbox off (development only): no isolation at all, as for
        // commands.
        (std::env::temp_dir().display().to_string(), None)
    };
    let tmp = format!("{home}/tmp");
    if jailed {
        // Commands run as the same user: Landlock keeps them from reading
        // or writing a server's state, but not from changing its modes
        // (a `chmod 000`). The server gets them back when it starts, and
        // before each message (see `input`).
        let dir = home.clone();
        crate::sweep::off_thread(move || repair_modes(std::path::Path::new(&dir), 0, &mut { u32::MAX })).await;
    }
    let _ = std::fs::create_dir_all(&tmp);

    let mut cmd = Command::new(&launch.command);
    cmd.args(&launch.args)
        .env_clear()
        .env("PATH", crate::exec::PATH)
        .env("LANG", "C.UTF-8")
        .env("TERM", "dumb")
        .envs(launch.env.iter().map(|(k, v)| (k, v)))
        // Ours win over the configuration's: where it may write, and how it
        // reaches the network.
        .env("HOME", &home)
        .env("TMPDIR", &tmp)
        .current_dir(&home)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let egress = launch.egress.filter(|_| jailed);
    if let Some(egress) = &egress {
        crate::exec::through_the_door(&mut cmd, egress);
    }
    // SAFETY: the closure runs between fork and exec and calls only
    // setsid, landlock_restrict_self and setrlimit, which are
    // async-signal-safe; it allocates nothing and takes no lock.
    let memory = limits.jailed.map(|j| j.max_memory);
    unsafe {
        cmd.pre_exec(move || enter(domain, memory));
    }

    let (mut child, session) = {
        // Under the lock every sweep takes: none may kill a server it does
        // not know yet (see `crate::running`).
        let mut running = crate::running::lock();
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {:?}: {e}", launch.command))?;
        let session = child.id().map(|p| p as i32).unwrap_or(-1);
        running.servers.push(session);
        drop(running);
        let stdin = child.stdin.take().ok_or("the server's standard input is missing")?;
        let generation = GENERATION.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        with(|s| {
            s.running.insert(
                launch.server.clone(),
                Running {
                    session,
                    generation,
                    stdin: Arc::new(tokio::sync::Mutex::new(stdin)),
                },
            )
        });
        (child, (session, generation))
    };
    if let Some(egress) = egress {
        crate::door::open_for(session.0, egress.key);
    }
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let name = launch.server.clone();
    let out_replies = replies.clone();
    let relay = tokio::spawn(async move {
        let Some(mut stdout) = stdout else { return };
        let mut buf = vec![0u8; OUTPUT_PIECE];
        loop {
            match stdout.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let reply = ToolReply::McpOutput {
                        server: name.clone(),
                        data: buf[..n].to_vec(),
                    };
                    if out_replies.send(reply).await.is_err() {
                        break;
                    }
                }
            }
        }
    });
    let errors = tokio::spawn(async move {
        let mut tail = Vec::new();
        let Some(mut stderr) = stderr else { return tail };
        let mut buf = vec![0u8; 4096];
        while let Ok(n) = stderr.read(&mut buf).await {
            if n == 0 {
                break;
            }
            tail.extend_from_slice(&buf[..n]);
            if tail.len() > STDERR_TAIL {
                tail.drain(..tail.len() - STDERR_TAIL);
            }
        }
        tail
    });
    let name = launch.server.clone();
    tokio::spawn(async move {
        let status = child.wait().await;
        let (session, generation) = session;
        crate::door::close_for(session);
        // Its own session first, then what left it; the server is no
        // longer running for either (its task reaped it). Reaping waits a
        // little: off the (single) runtime thread.
        with(|s| {
            if s.running.get(&name).is_some_and(|r| r.generation == generation) {
                s.running.remove(&name);
            }
        });
        crate::running::Running::forget(&mut crate::running::lock().servers, session);
        crate::sweep::off_thread(move || {
            end_session(session);
            crate::sweep::kill_strays();
        })
        .await;
        // What it wrote last is passed on; a descendant that still held
        // its output was killed above, and is not waited for past a second.
        let mut relay = relay;
        if tokio::time::timeout(Duration::from_secs(1), &mut relay).await.is_err() {
            relay.abort();
        }
        let tail = tokio::time::timeout(Duration::from_secs(1), errors)
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        let how = match status {
            Ok(s) => match s.code() {
                Some(code) => format!("exited with code {code}"),
                None => format!("was killed ({s})"),
            },
            Err(e) => format!("could not be waited for: {e}"),
        };
        let tail = String::from_utf8_lossy(&tail);
        let tail = tail.trim();
        let message = if tail.is_empty() {
            how
        } else {
            format!("{how}; the end of its standard error: {tail}")
        };
        let _ = replies.send(ToolReply::McpEnded { server: name, message }).await;
    });
    Ok(format!("started in session {}", session.0))
}

/// Between fork and exec: the server's own session, its own Landlock
/// domain, the commands' memory limit.
fn enter(domain: Option<RawFd>, memory: Option<u64>) -> std::io::Result<()> {
    nix::unistd::setsid().map_err(std::io::Error::from)?;
    if let Some(domain) = domain {
        crate::exec::enter_domain(domain)?;
    }
    if let Some(memory) = memory {
        crate::exec::set_limit(libc::RLIMIT_AS, memory)?;
    }
    Ok(())
}

/// How many entries of a server's state are looked at before each message
/// (all of them when it starts).
const REPAIR_BUDGET: u32 = 2048;

/// Gives a server's state back the modes a command may have taken away:
/// owner read and write (and search, for directories), what else it had.
/// Links are not followed; a tree deeper than 32, or past `budget`
/// entries, is left.
fn repair_modes(path: &std::path::Path, depth: u32, budget: &mut u32) {
    use std::os::unix::fs::PermissionsExt;
    if *budget == 0 || depth > 32 {
        return;
    }
    *budget -= 1;
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return;
    };
    if meta.file_type().is_symlink() {
        return;
    }
    let own = if meta.is_dir() { 0o700 } else { 0o600 };
    let mode = meta.permissions().mode() & 0o7777;
    if mode & own != own {
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode | own));
    }
    if meta.is_dir() {
        // Not one entry past the budget is read (a directory may hold
        // millions).
        for entry in std::fs::read_dir(path).into_iter().flatten().flatten() {
            if *budget == 0 {
                break;
            }
            repair_modes(&entry.path(), depth + 1, budget);
        }
    }
}

/// Writes to a running server's standard input.
pub async fn input(server: &str, data: &[u8]) -> Result<String, String> {
    let (stdin, slot) = with(|s| {
        s.running
            .get(server)
            .map(|r| (r.stdin.clone(), s.slots.get(server).copied()))
    })
    .ok_or_else(|| format!("MCP server {server:?} is not running"))?;
    if let Some(slot) = slot.filter(|_| crate::jail::is_jailed()) {
        let dir = crate::jail::mcp_state_dir(slot);
        crate::sweep::off_thread(move || repair_modes(std::path::Path::new(&dir), 0, &mut { REPAIR_BUDGET })).await;
    }
    let mut stdin = stdin.lock().await;
    match tokio::time::timeout(INPUT_TIMEOUT, async {
        stdin.write_all(data).await?;
        stdin.flush().await
    })
    .await
    {
        Ok(Ok(())) => Ok(String::new()),
        Ok(Err(e)) => Err(format!("cannot write to MCP server {server:?}: {e}")),
        Err(_) => {
            stop(server);
            Err(format!(
                "MCP server {server:?} read nothing for {} s; it was stopped",
                INPUT_TIMEOUT.as_secs()
            ))
        }
    }
}

/// Ends a server and every process of its session. Its end is still
/// reported (`McpEnded`).
pub fn stop(server: &str) -> String {
    match with(|s| s.running.get(server).map(|r| r.session)) {
        Some(session) => {
            end_session(session);
            format!("MCP server {server:?} stopped")
        }
        None => format!("MCP server {server:?} was not running"),
    }
}

/// Kills every process of `session` (a process may leave its process
/// group, never its session for another that exists).
fn end_session(session: i32) {
    if session <= 1 {
        return;
    }
    let killed = crate::sweep::freeze_and_kill(|p| p.session == Some(session));
    // The server itself is waited for by its own task.
    let left: Vec<i32> = killed.into_iter().filter(|pid| *pid != session).collect();
    crate::sweep::reap(&left);
}
