//! Bytes both ways between the jail's client and the destination, for as
//! long as the exec's token stands and the connection is not idle: a
//! process left behind by an ended exec loses its open tunnels too, and a
//! connection nobody uses does not hold a descriptor for ever.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;

/// How a relayed connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// One side closed (or failed).
    Closed,
    /// The exec's key was revoked while it was open.
    Revoked,
    /// Nothing moved either way for the idle limit.
    Idle,
}

impl std::fmt::Display for End {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            End::Closed => "closed",
            End::Revoked => "closed when its command ended",
            End::Idle => "closed: idle too long",
        })
    }
}

/// Relays until either side closes, the key is revoked or the
/// connection is idle. Returns (bytes up, bytes down, how it ended).
pub async fn both_ways<C, U>(
    client: &mut C,
    upstream: &mut U,
    revoked: &mut watch::Receiver<bool>,
    idle: Duration,
) -> (u64, u64, End)
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let (mut up, mut down) = (0u64, 0u64);
    if *revoked.borrow() {
        return (up, down, End::Revoked);
    }
    let mut up_buf = vec![0u8; 16 * 1024];
    let mut down_buf = vec![0u8; 16 * 1024];
    let mut client_open = true;
    let end = loop {
        tokio::select! {
            read = client.read(&mut up_buf), if client_open => match read {
                Ok(0) | Err(_) => {
                    // The request side is done; the answer may still come.
                    client_open = false;
                    let _ = upstream.shutdown().await;
                }
                Ok(n) => {
                    if upstream.write_all(&up_buf[..n]).await.is_err() {
                        break End::Closed;
                    }
                    up += n as u64;
                }
            },
            read = upstream.read(&mut down_buf) => match read {
                Ok(0) | Err(_) => break End::Closed,
                Ok(n) => {
                    if client.write_all(&down_buf[..n]).await.is_err() {
                        break End::Closed;
                    }
                    down += n as u64;
                }
            },
            _ = revoked.changed() => break End::Revoked,
            _ = tokio::time::sleep(idle) => break End::Idle,
        }
    };
    let _ = client.shutdown().await;
    (up, down, end)
}

/// The answer alone, from the destination to the client, until it ends,
/// the key is revoked or nothing moves for `idle`. Returns (bytes, how it
/// ended).
pub async fn one_way<U, C>(
    upstream: &mut U,
    client: &mut C,
    revoked: &mut watch::Receiver<bool>,
    idle: Duration,
) -> (u64, End)
where
    U: AsyncRead + Unpin,
    C: AsyncWrite + Unpin,
{
    let mut down = 0u64;
    if *revoked.borrow() {
        return (down, End::Revoked);
    }
    let mut buf = vec![0u8; 16 * 1024];
    let end = loop {
        tokio::select! {
            read = upstream.read(&mut buf) => match read {
                Ok(0) | Err(_) => break End::Closed,
                Ok(n) => {
                    if client.write_all(&buf[..n]).await.is_err() {
                        break End::Closed;
                    }
                    down += n as u64;
                }
            },
            _ = revoked.changed() => break End::Revoked,
            _ = tokio::time::sleep(idle) => break End::Idle,
        }
    };
    let _ = client.shutdown().await;
    (down, end)
}
