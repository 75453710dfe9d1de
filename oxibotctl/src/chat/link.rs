//! The chat client's connection: made again when the broker restarts,
//! attached to the console chat so its later messages arrive, and never
//! the cause of a message sent twice.

use std::path::Path;
use std::time::Duration;

use oxibot_proto::messages::{Button, ChatEvent, CtlReply, CtlRequest};
use oxibot_proto::ConnWriter;
use tokio::sync::mpsc;

use crate::client::{connect, CtlConn};

/// How long the client waits for a broker that went away.
const RECONNECT_FOR: Duration = Duration::from_secs(60);

/// A message for the console chat, to show and acknowledge.
pub struct Delivered {
    pub outbox_id: u64,
    pub text: String,
    pub buttons: Vec<Button>,
}

pub struct Link {
    socket: std::path::PathBuf,
    session: String,
    writer: ConnWriter<CtlRequest>,
    /// Frames, read by a task of their own: waiting for one here can be
    /// given up (for a line typed meanwhile) without losing half a frame.
    frames: mpsc::UnboundedReceiver<Result<CtlReply, String>>,
}

/// Splits the connection: its reader goes to a task.
fn split(
    conn: CtlConn,
) -> (
    ConnWriter<CtlRequest>,
    mpsc::UnboundedReceiver<Result<CtlReply, String>>,
) {
    let (mut reader, writer) = conn.split();
    let (tx, frames) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let frame = reader.recv().await.map_err(|e| e.to_string());
            let end = frame.is_err();
            if tx.send(frame).is_err() || end {
                return;
            }
        }
    });
    (writer, frames)
}

impl Link {
    /// Connects and attaches; returns the messages that waited.
    pub async fn open(socket: &Path, session: &str) -> Result<(Link, Vec<Delivered>), String> {
        let (conn, waiting) = attach(socket, session).await?;
        let (writer, frames) = split(conn);
        Ok((
            Link {
                socket: socket.to_path_buf(),
                session: session.to_string(),
                writer,
                frames,
            },
            waiting,
        ))
    }

    /// After the broker went away: tries again for a while. Returns the
    /// messages that waited for the console meanwhile.
    pub async fn reopen(&mut self) -> Result<Vec<Delivered>, String> {
        let started = std::time::Instant::now();
        loop {
            match attach(&self.socket, &self.session).await {
                Ok((conn, waiting)) => {
                    (self.writer, self.frames) = split(conn);
                    return Ok(waiting);
                }
                Err(e) if started.elapsed() >= RECONNECT_FOR => return Err(e),
                Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        }
    }

    /// Sends a request. A failed write means the broker read none of it
    /// (it went away before): the request is sent once more on a new
    /// connection. Returns the messages that waited meanwhile.
    /// The next frame; an error when the connection ended.
    pub async fn recv(&mut self) -> Result<CtlReply, String> {
        self.frames
            .recv()
            .await
            .unwrap_or_else(|| Err("the connection ended".into()))
    }

    pub async fn send(&mut self, request: &CtlRequest) -> Result<Vec<Delivered>, String> {
        if self.writer.send(request).await.is_ok() {
            return Ok(Vec::new());
        }
        let waiting = self.reopen().await?;
        self.writer
            .send(request)
            .await
            .map_err(|e| format!("cannot send to the broker: {e}"))?;
        Ok(waiting)
    }
}

async fn attach(socket: &Path, session: &str) -> Result<(CtlConn, Vec<Delivered>), String> {
    let mut conn = connect(socket).await?;
    let attach = CtlRequest::ConsoleAttach {
        session: session.to_string(),
    };
    conn.send(&attach)
        .await
        .map_err(|e| format!("cannot send to the broker: {e}"))?;
    let mut waiting = Vec::new();
    loop {
        match conn.recv().await {
            Ok(CtlReply::Chat(ChatEvent::Delivered {
                outbox_id,
                text,
                buttons,
            })) => waiting.push(Delivered {
                outbox_id,
                text,
                buttons,
            }),
            Ok(CtlReply::Done { .. }) => return Ok((conn, waiting)),
            // Not a console chat: it has nothing to wait for.
            Ok(CtlReply::Error { .. }) => return Ok((conn, waiting)),
            Ok(other) => return Err(crate::client::unexpected(&other)),
            Err(e) => return Err(format!("no answer from the broker: {e}")),
        }
    }
}
