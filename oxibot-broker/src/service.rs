//! Running under a service manager: readiness and watchdog notifications
//! (`sd_notify`), and the signals — SIGTERM/SIGINT stop the broker, SIGHUP
//! reloads its configuration and secrets.

use std::path::PathBuf;
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::store::Store;

/// Tells systemd about our state when it started us with `Type=notify`.
pub fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let Ok(sock) = std::os::unix::net::UnixDatagram::unbound() else {
        return;
    };
    // Abstract sockets ("@name") are not supported here; systemd uses a path.
    if let Err(e) = sock.send_to(state.as_bytes(), PathBuf::from(path)) {
        tracing::warn!("sd_notify({state}) failed: {e}");
    }
}

/// The watchdog interval systemd asked for (`WatchdogSec=`), if it is ours.
fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    let for_us = std::env::var("WATCHDOG_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
        .is_none_or(|p| p == std::process::id());
    (for_us && usec > 0).then(|| Duration::from_micros(usec))
}

/// Pings the watchdog at half its interval, but only while the broker can
/// still do its work: the runtime schedules this task, every socket's
/// accept loop still runs, and the state database answers. A broker stuck
/// on any of them is restarted by systemd.
pub async fn watchdog(store: Store, accept_loops: Vec<(String, JoinHandle<()>)>) {
    let Some(interval) = watchdog_interval() else {
        return;
    };
    let mut tick = tokio::time::interval(interval / 2);
    loop {
        tick.tick().await;
        if let Some((socket, _)) = accept_loops.iter().find(|(_, task)| task.is_finished()) {
            tracing::error!("watchdog not pinged: {socket} is no longer served");
            continue;
        }
        match store.queue_depths() {
            Ok(_) => notify("WATCHDOG=1"),
            Err(e) => tracing::error!("watchdog not pinged: the state database does not answer: {e}"),
        }
    }
}

/// Waits for SIGTERM or SIGINT; each SIGHUP meanwhile runs `reload`.
pub async fn until_stopped(reload: impl Fn() -> Result<String, String>) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        // Without signal handlers we can still be stopped by SIGKILL.
        std::future::pending::<()>().await;
        return;
    };
    loop {
        tokio::select! {
            _ = term.recv() => return,
            _ = int.recv() => return,
            _ = hup.recv() => {
                notify("RELOADING=1");
                match reload() {
                    Ok(what) => tracing::info!("reloaded: {what}"),
                    Err(e) => tracing::error!("reload refused, the running configuration stays: {e}"),
                }
                notify("READY=1");
            }
        }
    }
}
