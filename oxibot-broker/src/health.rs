//! The optional monitoring endpoint (`health.enabled`, 127.0.0.1:18790 by
//! default): `GET /healthz` (the broker answers), `GET /readyz` (the tool
//! daemon and every enabled channel are connected; 503 and the reasons
//! otherwise) and `GET /metrics` (Prometheus text).
//!
//! The broker binds the port but never reads a byte from it: whoever can
//! reach a local port may send anything, and the process that holds every
//! secret parses nothing a stranger wrote. A small daemon of its own,
//! `oxibot-healthd`, inherits the listening socket, speaks HTTP in its own
//! sandbox (no files, no new sockets, no exec), and asks the broker one
//! question over its link: a snapshot of readiness and the metrics text.
//! The daemon shares one answer a second among its requests, and the broker
//! reads its state at most twice a second, off the runtime's workers:
//! however often the port is asked, the agent loop and the channels do
//! not wait.

use std::sync::Arc;
use std::time::{Duration, Instant};

use oxibot_proto::messages::{HealthReply, HealthRequest, HEALTH_LISTENING_NOTE as LISTENING};
use oxibot_proto::{accept_handshake, FrameError, Role};
use tokio::net::UnixStream;

use crate::broker::Broker;
use crate::supervise::{ChildLink, ChildSpec, PassedListener};

/// The daemon shares one answer a second among its requests; the broker
/// reads its state at most this often, however often it is asked (a
/// compromised daemon cannot make it read in a loop).
const MIN_SPACING: Duration = Duration::from_millis(500);

/// Binds the endpoint if the configuration enables it, and returns the
/// health daemon to start with the socket. A port that cannot be bound
/// (another program, or a local user, took it) does not stop the broker —
/// the assistant matters more than its monitoring — but it is logged,
/// recorded as the last error, and shown by `oxibotctl status`.
pub async fn start(broker: &Broker) -> Option<ChildSpec> {
    let config = broker.svc.config();
    let health = &config.health;
    if !health.enabled {
        return None;
    }
    let address = std::net::SocketAddr::new(health.host, health.port);
    let (note, spec) = match bind(address).and_then(|listener| Ok((listener, healthd(&config)?))) {
        Ok((listener, (program, run_as))) => {
            tracing::info!(%address, "health endpoint: /healthz /readyz /metrics (served by oxibot-healthd)");
            let spec = ChildSpec {
                name: "healthd".into(),
                program,
                args: vec!["--listener-fd".into(), crate::supervise::PASSED_FD.to_string()],
                run_as,
                link: ChildLink::Health,
                pass: Some(Arc::new(listener)),
            };
            (format!("{LISTENING}{address}"), Some(spec))
        }
        Err(e) => {
            let message = format!(
                "the health endpoint is NOT listening: {e}. If something else holds the port \
                 (ss -ltnp 'sport = :{}'), set health.port and restart the broker",
                health.port
            );
            tracing::error!("{message}");
            broker.svc.audit.record_error(&message);
            (message, None)
        }
    };
    *broker.health.lock().unwrap_or_else(|p| p.into_inner()) = Some(note);
    spec
}

fn bind(address: std::net::SocketAddr) -> anyhow::Result<PassedListener> {
    PassedListener::bind(address).map_err(|e| anyhow::anyhow!("cannot bind {address}: {e}"))
}

/// The daemon's program, and whom it runs as: a broker started as root
/// hands it to `nobody`; otherwise it shares the broker's uid, and its
/// sandbox is what keeps it from the broker's files.
fn healthd(config: &crate::config::Config) -> anyhow::Result<(std::path::PathBuf, Option<(u32, u32)>)> {
    let program = crate::broker::bin_dir(config)?.join("oxibot-healthd");
    let run_as = match nix::unistd::geteuid().is_root() {
        true => Some(crate::broker::daemon_user("nobody", "health daemon")?),
        false => None,
    };
    Ok((program, run_as))
}

/// Serves the health daemon's link: one question, one answer, in turn.
pub async fn serve_link(broker: Arc<Broker>, stream: UnixStream, peer: String) {
    let mut conn = match accept_handshake::<HealthRequest, HealthReply>(stream, Role::Broker, Role::Health).await {
        Ok(c) => c,
        Err(e) => {
            broker
                .svc
                .audit
                .log("protocol_violation", &format!("health daemon ({peer}) handshake: {e}"));
            return;
        }
    };
    let mut last: Option<Instant> = None;
    loop {
        match conn.recv().await {
            Ok(HealthRequest::Snapshot) => {}
            Err(FrameError::Closed) => return,
            Err(e) => {
                broker
                    .svc
                    .audit
                    .log("protocol_violation", &format!("health daemon ({peer}): {e}"));
                return;
            }
        }
        if let Some(wait) = last.and_then(|at| MIN_SPACING.checked_sub(at.elapsed())) {
            tokio::time::sleep(wait).await;
        }
        last = Some(Instant::now());
        let reply = match snapshot(&broker).await {
            Ok(reply) => reply,
            Err(e) => {
                // The daemon answers 503 when the link ends.
                tracing::warn!("health endpoint: reading the broker's status failed: {e}");
                return;
            }
        };
        if let Err(e) = conn.send(&reply).await {
            tracing::debug!("the health daemon went away: {e}");
            return;
        }
    }
}

/// Readiness and the metrics text. Reading the status touches the store
/// (queue depths): off the runtime's worker threads.
async fn snapshot(broker: &Arc<Broker>) -> Result<HealthReply, tokio::task::JoinError> {
    let broker = broker.clone();
    let report = tokio::task::spawn_blocking(move || broker.status()).await?;
    Ok(HealthReply::Snapshot {
        not_ready: report.problems(),
        metrics: crate::metrics::render(&report),
    })
}
