//! Framing: a 4-byte big-endian length, then a postcard-encoded message.
//!
//! The length is checked against [`MAX_FRAME`] before a single byte of the
//! body is allocated, so a hostile peer cannot make us reserve 4 GiB by
//! sending four bytes.

use serde::{de::DeserializeOwned, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::messages::limit::judged;
use crate::messages::Refused;

/// The largest frame body either side accepts or sends: 1 MiB.
pub const MAX_FRAME: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("peer closed the connection")]
    Closed,
    #[error("frame of {0} bytes exceeds the {MAX_FRAME}-byte limit")]
    Oversized(usize),
    #[error("empty frame")]
    Empty,
    #[error("malformed message: {0}")]
    Malformed(String),
    #[error("malformed message: {0} trailing bytes after the message")]
    TrailingBytes(usize),
    #[error("message violates protocol limits: {0}")]
    Invalid(String),
    #[error("message violates protocol limits: {0}")]
    Refused(#[from] Refused),
    #[error("i/o error on the socket: {0}")]
    Io(#[from] std::io::Error),
}

/// Encodes `msg` as a frame body. Fails rather than produce a frame the peer
/// would refuse: a field over its bound, or a body over the cap.
pub fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, FrameError> {
    let (body, refused) = judged(false, || postcard::to_stdvec(msg));
    let body = body.map_err(|e| refused.map_or_else(|| FrameError::Malformed(e.to_string()), FrameError::Refused))?;
    if body.len() > MAX_FRAME {
        return Err(FrameError::Oversized(body.len()));
    }
    Ok(body)
}

/// Decodes one whole frame body. Trailing bytes are an error: a frame holds
/// exactly one message, and anything else means the peer is confused or hostile.
pub fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, FrameError> {
    let (msg, refused) = decode_judged(body, false)?;
    match refused {
        Some(refused) => Err(FrameError::Refused(refused)),
        None => Ok(msg),
    }
}

/// Decodes one whole frame body; leniently, a field over its bound is kept
/// and its refusal returned beside the message (see `messages::limit`).
pub(crate) fn decode_judged<T: DeserializeOwned>(
    body: &[u8],
    lenient: bool,
) -> Result<(T, Option<Refused>), FrameError> {
    if body.len() > MAX_FRAME {
        return Err(FrameError::Oversized(body.len()));
    }
    let (decoded, refused) = judged(lenient, || postcard::take_from_bytes::<T>(body));
    let (msg, rest) =
        decoded.map_err(|e| refused.map_or_else(|| FrameError::Malformed(e.to_string()), FrameError::Refused))?;
    if !rest.is_empty() {
        return Err(FrameError::TrailingBytes(rest.len()));
    }
    Ok((msg, refused))
}

/// Reads one frame body. EOF before the length prefix is [`FrameError::Closed`].
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> Result<Vec<u8>, FrameError> {
    let mut len_buf = [0u8; 4];
    match r.read_exact(&mut len_buf).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(FrameError::Closed),
        Err(e) => return Err(FrameError::Io(e)),
    }
    let len = u32::from_be_bytes(len_buf) as usize;
    if len > MAX_FRAME {
        return Err(FrameError::Oversized(len));
    }
    if len == 0 {
        return Err(FrameError::Empty);
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await?;
    Ok(body)
}

/// Writes one frame (length prefix and body in a single write).
pub async fn write_frame<W: AsyncWrite + Unpin>(w: &mut W, body: &[u8]) -> Result<(), FrameError> {
    if body.len() > MAX_FRAME {
        return Err(FrameError::Oversized(body.len()));
    }
    let mut buf = Vec::with_capacity(4 + body.len());
    buf.extend_from_slice(&(body.len() as u32).to_be_bytes());
    buf.extend_from_slice(body);
    w.write_all(&buf).await?;
    w.flush().await?;
    Ok(())
}
