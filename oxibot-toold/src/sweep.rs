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
    pub session: i32,
    /// Stopped (`T`), traced (`t`) or a zombie (`Z`): it forks no more.
    still: bool,
}

/// Every process of the jail.
pub fn processes() -> Vec<Proc> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // After the command name, which may hold anything, in parentheses:
            // state, ppid, pgrp, session.
            let mut fields = stat[stat.rfind(')')? + 1..].split_whitespace();
            let state = fields.next()?;
            let session = fields.nth(2)?.parse().ok()?;
            Some(Proc {
                pid,
                session,
                still: matches!(state, "T" | "t" | "Z" | "X"),
            })
        })
        .collect()
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
