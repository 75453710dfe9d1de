//! The daemon's first steps, before its sandbox: reach the broker (the
//! inherited socketpair, or `channel.sock`), say which channel it serves,
//! and receive that channel's settings and credential.

use oxibot_proto::messages::{BrokerToChannel, ChannelToBroker};
use oxibot_proto::{connect_handshake, Role};
use tokio::sync::mpsc;
use zeroize::Zeroizing;

use crate::link::{Job, Link};
use crate::{Args, Fatal};

/// What the broker handed over, and the running link to it.
pub struct Setup {
    pub link: Link,
    pub jobs: mpsc::Receiver<Job>,
    /// The channel's settings (JSON, no secrets).
    pub settings: String,
    /// The channel's own credential (JSON object).
    pub credential: Zeroizing<String>,
    pub resume_after: Vec<(String, String)>,
}

impl Setup {
    /// Every string in the credential, for redacting logs.
    pub fn redactor(&self) -> oxibot_runtime::redact::Redactor {
        let value: serde_json::Value = serde_json::from_str(&self.credential).unwrap_or_default();
        let strings: Vec<&str> = value
            .as_object()
            .map(|m| m.values().filter_map(serde_json::Value::as_str).collect())
            .unwrap_or_default();
        oxibot_runtime::redact::Redactor::new(strings)
    }
}

pub async fn connect(args: &Args) -> Result<Setup, Fatal> {
    // Before anything else: nothing on our uid may read the credential we
    // are about to receive out of our memory, or ptrace us.
    nix::sys::prctl::set_dumpable(false).map_err(|e| Fatal::broker(format!("cannot clear the dumpable flag: {e}")))?;
    let stream = match args.broker_fd {
        Some(fd) => oxibot_runtime::inherit::take_broker_socket(fd)
            .and_then(|s| {
                s.set_nonblocking(true)?;
                tokio::net::UnixStream::from_std(s)
            })
            .map_err(|e| Fatal::broker(format!("the broker connection (descriptor {fd}) is not usable: {e}")))?,
        None => tokio::net::UnixStream::connect(&args.socket).await.map_err(|e| {
            Fatal::broker(format!(
                "cannot connect to {}: {e}; is the broker running?",
                args.socket.display()
            ))
        })?,
    };
    let mut conn = connect_handshake::<BrokerToChannel, ChannelToBroker>(stream, Role::Channel, Role::Broker)
        .await
        .map_err(|e| Fatal::broker(format!("handshake with the broker failed: {e}")))?;
    conn.send(&ChannelToBroker::Register {
        channel: args.channel.clone(),
    })
    .await
    .map_err(|e| Fatal::broker(format!("cannot register: {e}")))?;
    let (settings, credential, resume_after) = match conn.recv().await {
        Ok(BrokerToChannel::Setup {
            settings_json,
            credential_json,
            resume_after,
            ..
        }) => (settings_json, Zeroizing::new(credential_json), resume_after),
        Ok(_) => return Err(Fatal::broker("the broker sent something other than Setup first".into())),
        // Not a configuration error: a restarted daemon may be refused while
        // the broker still holds its predecessor's link; trying again helps.
        Err(e) => {
            return Err(Fatal::broker(format!(
                "the broker refused channel \"{}\" ({e}); is it enabled in config.json? See `oxibotctl status` \
                 and the audit log",
                args.channel
            )))
        }
    };
    let (reader, writer) = conn.split();
    let (link, jobs) = Link::start(reader, writer);
    Ok(Setup {
        link,
        jobs,
        settings,
        credential,
        resume_after,
    })
}
