//! A deliberately small HTTP/1.1 responder, not a framework: three fixed
//! paths, no request body, one response per connection. A request head is
//! read with a size and time limit, the whole exchange has a deadline, and
//! at most 16 connections are served at once (more are closed). A local user can still keep the endpoint
//! itself busy (it has no authentication); monitoring that must not be
//! fooled should also run `oxibotctl status`, which only admins may use.

use std::sync::Arc;
use std::time::{Duration, Instant};

use oxibot_proto::messages::{HealthReply, HealthRequest};
use oxibot_proto::{connect_handshake, Conn, FrameError, Role};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UnixStream};
use tokio::sync::{Mutex, Semaphore};

const MAX_HEAD: usize = 8 * 1024;
/// A monitoring client sends its few bytes at once; anything slower is
/// holding a slot.
const HEAD_TIMEOUT: Duration = Duration::from_secs(2);
/// The whole exchange, the answer included (a client that stops reading).
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_CONNECTIONS: usize = 16;
/// How long the broker may take to answer.
const BROKER_WAIT: Duration = Duration::from_secs(5);

/// What the broker last said. One question is out at a time; requests
/// that arrive while it is out wait and share its answer, and no request
/// is answered with figures read before it arrived. The broker itself
/// reads its state at most twice a second, however often it is asked.
struct Snapshot {
    link: Mutex<Asking>,
    /// Told when the link broke: the daemon exits and is restarted.
    broken: tokio::sync::Notify,
}

/// The link, and the last answer with when it was asked for.
type Asking = (Conn<HealthReply, HealthRequest>, Option<(Instant, Arc<Figures>)>);

struct Figures {
    not_ready: Vec<String>,
    metrics: String,
}

/// Why the daemon stops serving (it exits; the broker starts it again).
#[derive(Debug, thiserror::Error)]
pub enum Stop {
    #[error("handshake with the broker: {0}")]
    Handshake(FrameError),
    #[error("the listening socket is gone ({0}); exiting")]
    ListenerGone(std::io::Error),
    #[error("the broker's link broke; exiting")]
    LinkBroke,
}

/// Why the broker's figures could not be had for one request.
#[derive(Debug, thiserror::Error)]
enum Unanswered {
    #[error("the broker's link broke: {0}")]
    Link(FrameError),
    #[error("the broker did not answer within {BROKER_WAIT:?}")]
    TimedOut,
}

/// Why one client got no (complete) answer; logged at debug level only.
#[derive(Debug, thiserror::Error)]
enum ClientError {
    #[error("the client's connection failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("the client closed before the end of its request")]
    ClosedEarly,
    #[error("request head above {MAX_HEAD} bytes")]
    HeadTooLong,
    #[error("request head not complete within {HEAD_TIMEOUT:?}")]
    HeadTooSlow,
}

impl Snapshot {
    async fn get(&self) -> Result<Arc<Figures>, Unanswered> {
        let arrived = Instant::now();
        let mut link = self.link.lock().await;
        let (conn, last) = &mut *link;
        if let Some((asked, figures)) = last.as_ref() {
            if *asked >= arrived {
                return Ok(figures.clone());
            }
        }
        let asked_at = Instant::now();
        let asked = async {
            conn.send(&HealthRequest::Snapshot).await?;
            conn.recv().await
        };
        let reply = match tokio::time::timeout(BROKER_WAIT, asked).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(e)) => {
                self.broken.notify_one();
                return Err(Unanswered::Link(e));
            }
            Err(_) => {
                self.broken.notify_one();
                return Err(Unanswered::TimedOut);
            }
        };
        let HealthReply::Snapshot { not_ready, metrics } = reply;
        let figures = Arc::new(Figures { not_ready, metrics });
        *last = Some((asked_at, figures.clone()));
        Ok(figures)
    }
}

/// Answers the port until the broker's link breaks.
pub async fn serve(link: UnixStream, listener: TcpListener) -> Result<(), Stop> {
    let conn = connect_handshake::<HealthReply, HealthRequest>(link, Role::Health, Role::Broker)
        .await
        .map_err(Stop::Handshake)?;
    let snapshot = Arc::new(Snapshot {
        link: Mutex::new((conn, None)),
        broken: tokio::sync::Notify::new(),
    });
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((s, _)) => s,
                // The socket no longer listens (torn down): exit, and the
                // broker hands the next start a fresh one.
                Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOTSOCK | libc::EBADF)) => {
                    return Err(Stop::ListenerGone(e));
                }
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = snapshot.broken.notified() => return Err(Stop::LinkBroke),
        };
        // Over the limit, the connection is closed unanswered.
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            continue;
        };
        let snapshot = snapshot.clone();
        tokio::spawn(async move {
            let _slot = slot;
            match tokio::time::timeout(EXCHANGE_TIMEOUT, answer(&snapshot, stream)).await {
                Ok(Err(e)) => tracing::debug!("{e}"),
                Err(_) => tracing::debug!("a client took longer than {EXCHANGE_TIMEOUT:?}"),
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

async fn read_head(stream: &mut TcpStream) -> Result<Vec<u8>, ClientError> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    let read = async {
        loop {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                return Err(ClientError::ClosedEarly);
            }
            head.extend_from_slice(&buf[..n]);
            if head.windows(4).any(|w| w == b"\r\n\r\n") {
                return Ok(());
            }
            if head.len() > MAX_HEAD {
                return Err(ClientError::HeadTooLong);
            }
        }
    };
    tokio::time::timeout(HEAD_TIMEOUT, read)
        .await
        .map_err(|_| ClientError::HeadTooSlow)??;
    Ok(head)
}

async fn answer(snapshot: &Snapshot, mut stream: TcpStream) -> Result<(), ClientError> {
    let head = match read_head(&mut stream).await {
        Ok(h) => h,
        Err(e) => {
            let _ = respond(&mut stream, 400, "text/plain", "bad request\n").await;
            return Err(e);
        }
    };
    let (status, kind, body) = match parse_head(&head) {
        Some(("GET" | "HEAD", path @ ("/healthz" | "/readyz" | "/metrics"))) => match snapshot.get().await {
            Err(e) => {
                tracing::warn!("health endpoint: {e}");
                (
                    503,
                    "text/plain",
                    "the broker's status could not be read; see its log\n".to_string(),
                )
            }
            // The broker answered: it is alive.
            Ok(_) if path == "/healthz" => (200, "text/plain", "ok\n".to_string()),
            Ok(figures) if path == "/metrics" => {
                (200, "text/plain; version=0.0.4; charset=utf-8", figures.metrics.clone())
            }
            Ok(figures) => {
                let problems = &figures.not_ready;
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

async fn respond(stream: &mut TcpStream, status: u16, kind: &str, body: &str) -> Result<(), ClientError> {
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
    stream.write_all(response.as_bytes()).await?;
    Ok(stream.shutdown().await?)
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
