//! A typed, handshaken connection: after [`connect_handshake`] or
//! [`accept_handshake`], a side can only send its own direction's enum and
//! only receive the peer's.

use std::marker::PhantomData;
use std::time::Duration;

use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;

use crate::frame::{decode, decode_judged, encode, read_frame, write_frame, FrameError};
use crate::hello::{Hello, Role, MAGIC, PROTOCOL_MAJOR};
use crate::messages::{Message, Refused};

/// A peer that does not say Hello within this time is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

pub struct ConnReader<In> {
    /// Buffered: a frame's length and body usually arrive in one read.
    half: tokio::io::BufReader<OwnedReadHalf>,
    _in: PhantomData<fn() -> In>,
}

pub struct ConnWriter<Out> {
    half: OwnedWriteHalf,
    _out: PhantomData<fn(Out)>,
}

pub struct Conn<In, Out> {
    pub reader: ConnReader<In>,
    pub writer: ConnWriter<Out>,
    /// The peer's minor version, for features appended later.
    pub peer_minor: u16,
}

impl<In: Message> ConnReader<In> {
    /// Receives and validates one message. Any error is fatal for the
    /// connection: the caller must drop it.
    pub async fn recv(&mut self) -> Result<In, FrameError> {
        let body = read_frame(&mut self.half).await?;
        let msg: In = decode(&body)?;
        msg.validate()?;
        Ok(msg)
    }

    /// Receives one well-formed message and says, beside it, whether it is
    /// within the protocol's limits. For the side that may answer a bad
    /// request instead of closing: toold, whose peer is the trusted broker
    /// (fail-stop is for the untrusted direction). A field over its bound
    /// is decoded anyway and refused in the verdict; framing and decoding
    /// errors are still fatal.
    pub async fn recv_judged(&mut self) -> Result<(In, Result<(), Refused>), FrameError> {
        let body = read_frame(&mut self.half).await?;
        let (msg, refused): (In, _) = decode_judged(&body, true)?;
        let verdict = match refused {
            Some(refused) => Err(refused),
            None => msg.validate(),
        };
        Ok((msg, verdict))
    }
}

/// A message checked against the limits its receiver enforces (field
/// bounds and the frame cap) and encoded: the only thing a [`ConnWriter`]
/// sends. A sender that builds messages from untrusted input checks them
/// with [`Checked::new`] where it can still turn a violation into an
/// error for its caller, instead of a frame its peer must reject.
pub struct Checked<Out> {
    body: Vec<u8>,
    _out: PhantomData<fn(Out)>,
}

impl<Out: Message> Checked<Out> {
    pub fn new(msg: &Out) -> Result<Self, FrameError> {
        msg.validate()?;
        Ok(Checked {
            body: encode(msg)?,
            _out: PhantomData,
        })
    }

    /// The encoded frame body.
    pub fn bytes(&self) -> &[u8] {
        &self.body
    }
}

impl<Out: Message> ConnWriter<Out> {
    pub async fn send(&mut self, msg: &Out) -> Result<(), FrameError> {
        self.send_checked(&Checked::new(msg)?).await
    }

    pub async fn send_checked(&mut self, msg: &Checked<Out>) -> Result<(), FrameError> {
        write_frame(&mut self.half, &msg.body).await
    }
}

impl<In: Message, Out: Message> Conn<In, Out> {
    pub async fn recv(&mut self) -> Result<In, FrameError> {
        self.reader.recv().await
    }
    pub async fn send(&mut self, msg: &Out) -> Result<(), FrameError> {
        self.writer.send(msg).await
    }
    pub fn split(self) -> (ConnReader<In>, ConnWriter<Out>) {
        (self.reader, self.writer)
    }
}

/// Client side: send our Hello first, then expect the peer's.
pub async fn connect_handshake<In: Message, Out: Message>(
    stream: UnixStream,
    me: Role,
    peer: Role,
) -> Result<Conn<In, Out>, FrameError> {
    let (mut r, mut w) = stream.into_split();
    write_frame(&mut w, &encode(&Hello::new(me))?).await?;
    let minor = read_hello(&mut r, peer).await?;
    Ok(wrap(r, w, minor))
}

/// Server side: expect the peer's Hello first, then answer with ours. A
/// wrong magic, major version or role closes the connection before we say
/// anything, so a confused peer learns nothing.
pub async fn accept_handshake<In: Message, Out: Message>(
    stream: UnixStream,
    me: Role,
    peer: Role,
) -> Result<Conn<In, Out>, FrameError> {
    let (mut r, mut w) = stream.into_split();
    let minor = read_hello(&mut r, peer).await?;
    write_frame(&mut w, &encode(&Hello::new(me))?).await?;
    Ok(wrap(r, w, minor))
}

fn wrap<In, Out>(r: OwnedReadHalf, w: OwnedWriteHalf, peer_minor: u16) -> Conn<In, Out> {
    Conn {
        // Safe to buffer only now: the Hello was read with exact reads, so
        // nothing beyond it has been consumed yet.
        reader: ConnReader {
            half: tokio::io::BufReader::with_capacity(16 * 1024, r),
            _in: PhantomData,
        },
        writer: ConnWriter {
            half: w,
            _out: PhantomData,
        },
        peer_minor,
    }
}

async fn read_hello(r: &mut OwnedReadHalf, expected: Role) -> Result<u16, FrameError> {
    let body = tokio::time::timeout(HANDSHAKE_TIMEOUT, read_frame(r))
        .await
        .map_err(|_| FrameError::Invalid("no Hello within 10 s".into()))??;
    let hello: Hello = decode(&body)?;
    if hello.magic != MAGIC {
        return Err(FrameError::Invalid(
            "bad magic: the peer does not speak the OxiBot protocol".into(),
        ));
    }
    if hello.protocol_major != PROTOCOL_MAJOR {
        return Err(FrameError::Invalid(format!(
            "protocol major version mismatch: peer speaks {}, we speak {PROTOCOL_MAJOR}; install the same OxiBot version for every daemon",
            hello.protocol_major
        )));
    }
    if hello.role != expected {
        return Err(FrameError::Invalid(format!(
            "peer says it is {}, but this socket is for {expected}",
            hello.role
        )));
    }
    Ok(hello.protocol_minor)
}
