//! Ending the jail's processes that nothing may keep: what a finished
//! command or a stopped MCP server left behind. A per-pid kill is a race
//! against a process that keeps forking (a new child is born between the
//! listing and the kill, and takes over), so they are stopped first —
//! a stopped process cannot fork — round after round until a listing finds
//! none of them still running, and only then killed.

use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// One process of the jail, from its `/proc/PID/stat`.
pub struct Proc {
    pub pid: i32,
    /// None when its `stat` could not be read whole (it is ending, or
    /// something the parser did not expect): no sweep spares it.
    pub session: Option<i32>,
    /// Every thread of it stopped (`T`), traced (`t`) or gone (`Z`, `X`):
    /// it forks no more.
    still: bool,
}

/// Every process of the jail. The command name in `stat` is whatever the
/// process chose (`PR_SET_NAME`, its file's name): not text, and read as
/// bytes; only what follows its last `)` is parsed.
pub fn processes() -> Vec<Proc> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .map(|pid| {
            let (state, session) = stat(&format!("/proc/{pid}/stat")).unwrap_or((b'?', None));
            // A thread group whose leader is a zombie may still run other
            // threads: it is still only when all of them are.
            // Stopped, traced, or waiting in the kernel (`D`: a vfork
            // parent, which SIGSTOP reaches only once it is back): none of
            // them forks now.
            let still = match state {
                b'T' | b't' | b'D' => true,
                b'Z' | b'X' => threads_still(pid),
                _ => false,
            };
            Proc { pid, session, still }
        })
        .collect()
}

/// The state letter and the session of a `stat` file.
fn stat(path: &str) -> Option<(u8, Option<i32>)> {
    let bytes = std::fs::read(path).ok()?;
    let end = bytes.iter().rposition(|b| *b == b')')?;
    let rest = std::str::from_utf8(&bytes[end + 1..]).ok()?;
    // state, ppid, pgrp, session.
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.bytes().next()?;
    Some((state, fields.nth(2).and_then(|s| s.parse().ok())))
}

/// Whether every thread of `pid` is stopped, traced or gone.
fn threads_still(pid: i32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return true;
    };
    tasks.flatten().all(|task| {
        let path = format!("/proc/{pid}/task/{}/stat", task.file_name().to_string_lossy());
        matches!(stat(&path), None | Some((b'T' | b't' | b'Z' | b'X', _)))
    })
}

/// How many rounds of stopping before the kill goes out anyway.
const MAX_ROUNDS: usize = 200;

/// Stops, then kills, every process `doomed` picks (never pid 1, toold);
/// returns their pids (the caller reaps those that are its to reap).
pub fn freeze_and_kill(doomed: impl Fn(&Proc) -> bool) -> Vec<i32> {
    let doomed = |p: &Proc| p.pid != 1 && doomed(p);
    for _ in 0..MAX_ROUNDS {
        let running: Vec<i32> = processes()
            .iter()
            .filter(|p| doomed(p) && !p.still)
            .map(|p| p.pid)
            .collect();
        if running.is_empty() {
            break;
        }
        for pid in running {
            let _ = kill(Pid::from_raw(pid), Signal::SIGSTOP);
        }
    }
    let all: Vec<i32> = processes().iter().filter(|p| doomed(p)).map(|p| p.pid).collect();
    for pid in &all {
        let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
    }
    all
}

/// Reaps these processes (those of them that are toold's children: the
/// orphans it inherited), waiting up to a second.
pub fn reap(pids: &[i32]) {
    let mut waiting: Vec<i32> = pids.to_vec();
    for _ in 0..200 {
        waiting.retain(|pid| {
            matches!(
                nix::sys::wait::waitpid(Pid::from_raw(*pid), Some(nix::sys::wait::WaitPidFlag::WNOHANG)),
                Ok(nix::sys::wait::WaitStatus::StillAlive)
            )
        });
        if waiting.is_empty() {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Kills and reaps the processes of the jail that belong to no running
/// command and no running MCP server: what a server left behind in a
/// session of its own (`setsid`) when it ended. Commands' strays go too,
/// as they would when the last command ends.
pub fn kill_strays() {
    if !crate::jail::is_jailed() {
        return;
    }
    let running = crate::running::lock();
    let strays = freeze_and_kill(|p| !running.keeps(p.session));
    drop(running);
    reap(&strays);
}

/// The sweeper: one thread, started with the jail, that does the waiting
/// work of sweeps and repairs off the (single) runtime thread. Its own,
/// not tokio's blocking pool: that pool starts threads on demand, and a
/// full process limit — the moment a sweep is needed most — makes tokio
/// panic ("OS can't spawn worker thread").
type Job = Box<dyn FnOnce() + Send>;

static SWEEPER: std::sync::OnceLock<std::sync::Mutex<std::sync::mpsc::Sender<Job>>> = std::sync::OnceLock::new();

/// Starts the sweeper thread (once, before the first request is read).
pub fn start_sweeper() -> std::io::Result<()> {
    let (tx, rx) = std::sync::mpsc::channel::<Job>();
    std::thread::Builder::new().name("sweeper".into()).spawn(move || {
        for job in rx {
            job();
        }
    })?;
    let _ = SWEEPER.set(std::sync::Mutex::new(tx));
    Ok(())
}

/// Runs `job` on the sweeper and waits for it without blocking the
/// runtime; inline where there is no sweeper (tests, no jail).
pub async fn off_thread<T: Send + 'static>(job: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    let Some(sweeper) = SWEEPER.get() else {
        return Some(job());
    };
    let (done, result) = tokio::sync::oneshot::channel();
    let sent = sweeper
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .send(Box::new(move || {
            let _ = done.send(job());
        }));
    if sent.is_err() {
        return None;
    }
    result.await.ok()
}
