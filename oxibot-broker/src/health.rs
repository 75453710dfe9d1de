//! The optional monitoring endpoint (`health.enabled`, 127.0.0.1:18790 by
//! default): `GET /healthz` (the broker answers), `GET /readyz` (the tool
//! daemon and every enabled channel are connected; 503 and the reasons
//! otherwise) and `GET /metrics` (Prometheus text).
//!
//! A deliberately small HTTP/1.1 responder, not a framework: three fixed
//! paths, no request body, one response per connection. A request head
//! is read with a size and time limit, the whole exchange has a deadline,
//! and at most 16 connections are served at once (more are closed). The
//! broker's state is read at most once a second, off the runtime's worker
//! threads, and shared by every request in that second: however many
//! requests arrive, the agent loop and the channels do not wait for them.
//! A local user can still keep the endpoint itself busy (it has no
//! authentication); monitoring that must not be fooled should also run
//! `oxibotctl status`, which only admins may use.

use std::sync::Arc;
use std::time::{Duration, Instant};

use oxibot_proto::messages::StatusReport;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Mutex, Semaphore};

use crate::broker::Broker;

const MAX_HEAD: usize = 8 * 1024;
/// A monitoring client sends its few bytes at once; anything slower is
/// holding a slot.
const HEAD_TIMEOUT: Duration = Duration::from_secs(2);
/// The whole exchange, the answer included (a client that stops reading).
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_CONNECTIONS: usize = 16;
/// How long one reading of the broker's state answers requests.
const SNAPSHOT_AGE: Duration = Duration::from_secs(1);

use oxibot_proto::messages::HEALTH_LISTENING_NOTE as LISTENING;

/// Binds the endpoint if the configuration enables it. A port that cannot
/// be bound (another program, or a local user, took it) does not stop the
/// broker — the assistant matters more than its monitoring — but it is
/// logged, recorded as the last error, and shown by `oxibotctl status`.
pub async fn start(broker: Arc<Broker>) {
    let health = broker.svc.config().health.clone();
    if !health.enabled {
        return;
    }
    let address = std::net::SocketAddr::new(health.host, health.port);
    let note = match TcpListener::bind(address).await {
        Ok(listener) => {
            tracing::info!(%address, "health endpoint: /healthz /readyz /metrics");
            tokio::spawn(serve(broker.clone(), listener));
            format!("{LISTENING}{address}")
        }
        Err(e) => {
            let message = format!(
                "the health endpoint is NOT listening: cannot bind {address}: {e}. Something else holds the port \
                 (ss -ltnp 'sport = :{}'); set health.port and restart the broker",
                health.port
            );
            tracing::error!("{message}");
            broker.svc.audit.record_error(&message);
            message
        }
    };
    *broker.health.lock().unwrap_or_else(|p| p.into_inner()) = Some(note);
}

/// The broker's status as the endpoint last read it. Reading it touches
/// the store (queue depths), so requests share one reading a second, and
/// the reading runs on a blocking thread.
#[derive(Default)]
struct Snapshot {
    last: Mutex<Option<(Instant, Arc<StatusReport>)>>,
}

impl Snapshot {
    async fn get(&self, broker: &Arc<Broker>) -> Result<Arc<StatusReport>, String> {
        // Requests that arrive while a reading runs wait for it and share it.
        let mut last = self.last.lock().await;
        if let Some((at, report)) = last.as_ref() {
            if at.elapsed() < SNAPSHOT_AGE {
                return Ok(report.clone());
            }
        }
        let broker = broker.clone();
        let report = tokio::task::spawn_blocking(move || broker.status())
            .await
            .map_err(|e| format!("reading the broker's status failed: {e}"))?;
        let report = Arc::new(report);
        *last = Some((Instant::now(), report.clone()));
        Ok(report)
    }
}

async fn serve(broker: Arc<Broker>, listener: TcpListener) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let snapshot = Arc::new(Snapshot::default());
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("health endpoint: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // Over the limit, the connection is closed unanswered.
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            continue;
        };
        let broker = broker.clone();
        let snapshot = snapshot.clone();
        tokio::spawn(async move {
            let _slot = slot;
            match tokio::time::timeout(EXCHANGE_TIMEOUT, answer(&broker, &snapshot, stream)).await {
                Ok(Err(e)) => tracing::debug!("health endpoint: {e}"),
                Err(_) => tracing::debug!("health endpoint: a client took longer than {EXCHANGE_TIMEOUT:?}"),
                Ok(Ok(())) => {}
            }
        });
    }
}

/// What the request asked for: the method and path of its first line.
fn parse_head(head: &[u8]) -> Option<(&str, &str)> {
    let text = std::str::from_utf8(head).ok()?;
    let line = text.split("\r\n").next()?;
    let mut parts = line.split(' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || !version.starts_with("HTTP/1.") {
        return None;
    }
    // A query string does not change the answer.
    let path = target.split('?').next().unwrap_or(target);
    Some((method, path))
}

async fn read_head(stream: &mut TcpStream) -> Result<Vec<u8>, String> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    let read = async {
        loop {
            let n = stream.read(&mut buf).await.map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("the client closed before the end of its request".to_string());
            }
            head.extend_from_slice(&buf[..n]);
            if head.windows(4).any(|w| w == b"\r\n\r\n") {
                return Ok(());
            }
            if head.len() > MAX_HEAD {
                return Err(format!("request head above {MAX_HEAD} bytes"));
            }
        }
    };
    tokio::time::timeout(HEAD_TIMEOUT, read)
        .await
        .map_err(|_| format!("request head not complete within {HEAD_TIMEOUT:?}"))??;
    Ok(head)
}

async fn answer(broker: &Arc<Broker>, snapshot: &Snapshot, mut stream: TcpStream) -> Result<(), String> {
    let head = match read_head(&mut stream).await {
        Ok(h) => h,
        Err(e) => {
            let _ = respond(&mut stream, 400, "text/plain", "bad request\n").await;
            return Err(e);
        }
    };
    let (status, kind, body) = match parse_head(&head) {
        Some(("GET" | "HEAD", "/healthz")) => (200, "text/plain", "ok\n".to_string()),
        Some(("GET" | "HEAD", path @ ("/readyz" | "/metrics"))) => match snapshot.get(broker).await {
            Err(e) => {
                tracing::warn!("health endpoint: {e}");
                (
                    503,
                    "text/plain",
                    "the broker's status could not be read; see its log\n".to_string(),
                )
            }
            Ok(report) if path == "/metrics" => (
                200,
                "text/plain; version=0.0.4; charset=utf-8",
                crate::metrics::render(&report),
            ),
            Ok(report) => {
                let problems = report.problems();
                if problems.is_empty() {
                    (200, "text/plain", "ready\n".to_string())
                } else {
                    (503, "text/plain", format!("not ready:\n{}\n", problems.join("\n")))
                }
            }
        },
        Some(("GET" | "HEAD", _)) => (
            404,
            "text/plain",
            "not found: /healthz, /readyz, /metrics\n".to_string(),
        ),
        Some(_) => (405, "text/plain", "only GET\n".to_string()),
        None => (400, "text/plain", "bad request\n".to_string()),
    };
    let body = if head.starts_with(b"HEAD ") {
        String::new()
    } else {
        body
    };
    respond(&mut stream, status, kind, &body).await
}

async fn respond(stream: &mut TcpStream, status: u16, kind: &str, body: &str) -> Result<(), String> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Service Unavailable",
    };
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await.map_err(|e| e.to_string())?;
    stream.shutdown().await.map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_well_formed_request_line_is_understood() {
        assert_eq!(
            parse_head(b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n"),
            Some(("GET", "/readyz"))
        );
        assert_eq!(
            parse_head(b"GET /metrics?x=1 HTTP/1.0\r\n\r\n"),
            Some(("GET", "/metrics"))
        );
        assert_eq!(parse_head(b"GET /readyz\r\n\r\n"), None);
        assert_eq!(parse_head(b"GET /a b HTTP/1.1\r\n\r\n"), None);
        assert_eq!(parse_head(b"GET / SPDY/3\r\n\r\n"), None);
        assert_eq!(parse_head(&[0xff, 0xfe, b'\r', b'\n']), None);
    }
}
