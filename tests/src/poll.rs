//! Waiting with a deadline: the one polling loop the tests share.
//!
//! [`wait_for`] is the usual wait (it panics naming what it waited for);
//! [`until`] is the loop itself, for a wait that must not fail (it gives up
//! with None) or whose panic message needs what was seen last (the caller
//! builds it: the last status, the broker log).

use std::time::{Duration, Instant};

/// The pause between two probes of something cheap: a fake's memory, a
/// file, `/proc`, `try_wait`.
pub const POLL: Duration = Duration::from_millis(20);

/// The pause between two probes that each cost a process or a connection
/// (`oxibotctl status`, the audit database, an IMAP login, `nsenter`), for
/// the [`until`] loops that make them: every [`POLL`] would load the
/// machine under test. Short enough still to see a state that lasts a
/// supervisor's first backoff (200 ms), such as a channel being down.
pub const POLL_COSTLY: Duration = Duration::from_millis(50);

/// Calls `probe` every `every` until it yields, or returns None once
/// `timeout` has passed (`probe` runs at least once).
pub fn until<T>(timeout: Duration, every: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = probe() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(every);
    }
}

/// Polls `probe` every [`POLL`] until it yields, or panics after `timeout`
/// naming `what`.
pub fn wait_for<T>(what: &str, timeout: Duration, probe: impl FnMut() -> Option<T>) -> T {
    until(timeout, POLL, probe).unwrap_or_else(|| panic!("timed out waiting for {what}"))
}

/// Stops `pid` with SIGSTOP and waits until every one of its threads is
/// stopped: `kill` returns before a busy process is off its CPUs, and a
/// test that acts "while it is stopped" must not race its last steps.
pub fn stop_process(pid: i32) {
    use nix::sys::signal::{kill, Signal};
    kill(nix::unistd::Pid::from_raw(pid), Signal::SIGSTOP).unwrap_or_else(|e| panic!("SIGSTOP {pid}: {e}"));
    let all_stopped = || {
        let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
        for task in tasks.flatten() {
            let stat = std::fs::read_to_string(task.path().join("stat")).ok()?;
            // The state follows the command name's closing parenthesis.
            let state = stat.rsplit_once(") ")?.1.chars().next()?;
            if state != 'T' && state != 't' {
                return None;
            }
        }
        Some(())
    };
    wait_for(
        &format!("process {pid} to stop"),
        std::time::Duration::from_secs(10),
        all_stopped,
    );
}
