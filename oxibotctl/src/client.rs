//! The connection to the broker's control socket, with errors that say
//! whether the broker is down or the caller may not use it.

use std::io::ErrorKind;
use std::path::Path;

use oxibot_proto::messages::{CtlReply, CtlRequest};
use oxibot_proto::{connect_handshake, Conn, Role};

pub type CtlConn = Conn<CtlReply, CtlRequest>;

/// A small single-threaded runtime: oxibotctl does one thing at a time.
pub fn block_on<T>(work: impl std::future::Future<Output = Result<T, String>>) -> Result<T, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?
        .block_on(work)
}

pub async fn connect(socket: &Path) -> Result<CtlConn, String> {
    let at = socket.display();
    let stream = tokio::net::UnixStream::connect(socket)
        .await
        .map_err(|e| match e.kind() {
            ErrorKind::NotFound | ErrorKind::ConnectionRefused => format!(
                "the broker is not running: nothing listens on {at} ({e}). \
             Start it (systemctl start oxibot.target), or point --socket / OXIBOT_CTL_SOCKET at its socket"
            ),
            ErrorKind::PermissionDenied => format!(
                "you may not use {at}: only root and members of group oxibot-admin may \
             (usermod -aG oxibot-admin $USER, then log in again)"
            ),
            _ => format!("cannot connect to {at}: {e}"),
        })?;
    connect_handshake(stream, Role::Ctl, Role::Broker).await.map_err(|e| {
        format!(
            "the broker closed the connection during the handshake ({e}): only root and members of group oxibot-admin may use it, \
             and the refusal is in its audit log"
        )
    })
}

pub async fn ask(conn: &mut CtlConn, request: CtlRequest) -> Result<CtlReply, String> {
    conn.send(&request)
        .await
        .map_err(|e| format!("cannot send to the broker: {e}"))?;
    match conn.recv().await {
        Ok(CtlReply::Error { message }) => Err(message),
        Ok(reply) => Ok(reply),
        Err(e) => Err(format!("no answer from the broker: {e}")),
    }
}

/// For requests whose answer is `Done`: its message.
pub async fn done(conn: &mut CtlConn, request: CtlRequest) -> Result<String, String> {
    match ask(conn, request).await? {
        CtlReply::Done { message } => Ok(message),
        other => Err(unexpected(&other)),
    }
}

pub fn unexpected(reply: &CtlReply) -> String {
    format!("the broker answered something this oxibotctl does not expect ({reply:?}); is it the same version?")
}

/// Connects and runs one piece of work on the connection.
pub fn online<T>(socket: &Path, work: impl AsyncFnOnce(&mut CtlConn) -> Result<T, String>) -> Result<T, String> {
    block_on(async move {
        let mut conn = connect(socket).await?;
        work(&mut conn).await
    })
}
