//! The broker's link: the settings (where commands may go), the keys of
//! running execs (granted before an exec starts, revoked when it ends),
//! and back the record of every connection, for the audit.

use std::sync::{Arc, RwLock};

use oxibot_egress::grants::{Grant, Grants};
use oxibot_egress::proxy::{Policy, IDLE};
use oxibot_egress::Guard;
use oxibot_proto::messages::{EgressEvent, EgressRequest};
use oxibot_proto::settings::HostPattern;
use oxibot_proto::{connect_handshake, FrameError, Role};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;

use crate::door::{self, Peers};

/// Why the daemon stops serving (it exits; the broker starts it again).
#[derive(Debug, thiserror::Error)]
pub enum Stop {
    #[error("handshake with the broker: {0}")]
    Handshake(FrameError),
    #[error("the broker's first message was not the settings")]
    NoSettings,
    #[error("the broker sent settings that do not parse: {0}")]
    BadSettings(String),
    #[error("the broker's link broke: {0}")]
    LinkBroke(FrameError),
}

/// What every connection is decided against: replaced whole when the
/// broker sends new settings; the keys live on across a reload.
pub struct Door {
    policy: RwLock<Arc<Policy>>,
    grants: Arc<Grants>,
    events: mpsc::Sender<EgressEvent>,
}

impl Door {
    pub fn policy(&self) -> Arc<Policy> {
        self.policy.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Tells the broker; waits while the link is busy (a flood of
    /// connections slows down rather than losing its records).
    pub async fn tell(&self, event: EgressEvent) {
        let _ = self.events.send(event).await;
    }
}

/// Events waiting for the link: records are small, and a full queue makes
/// the relays wait instead of dropping records.
const EVENT_QUEUE: usize = 1024;

pub async fn serve(link: UnixStream, door: UnixListener, peers: Peers) -> Result<(), Stop> {
    let conn = connect_handshake::<EgressRequest, EgressEvent>(link, Role::Egress, Role::Broker)
        .await
        .map_err(Stop::Handshake)?;
    let (mut reader, mut writer) = conn.split();
    let grants = Arc::new(Grants::default());
    let first = match reader.recv().await {
        Ok(EgressRequest::Settings {
            allowed_hosts,
            allow_private,
        }) => policy(&allowed_hosts, &allow_private, grants.clone())?,
        Ok(_) => return Err(Stop::NoSettings),
        Err(e) => return Err(Stop::LinkBroke(e)),
    };
    tracing::info!(allowed = first.allowed.len(), "egress door open");
    let (events, mut queued) = mpsc::channel(EVENT_QUEUE);
    let state = Arc::new(Door {
        policy: RwLock::new(Arc::new(first)),
        grants: grants.clone(),
        events,
    });
    let mut writing = tokio::spawn(async move {
        while let Some(event) = queued.recv().await {
            if let Err(e) = writer.send(&event).await {
                return e;
            }
        }
        FrameError::Closed
    });
    let accepting = tokio::spawn(door::accept(door, peers, state.clone()));
    let stopped = loop {
        let request = tokio::select! {
            r = reader.recv() => r,
            e = &mut writing => break Stop::LinkBroke(e.unwrap_or(FrameError::Closed)),
        };
        match request {
            Ok(EgressRequest::Settings {
                allowed_hosts,
                allow_private,
            }) => {
                // The broker checked these when the configuration loaded;
                // one that does not parse here keeps the last good ones.
                match policy(&allowed_hosts, &allow_private, grants.clone()) {
                    Ok(p) => *state.policy.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(p),
                    Err(e) => tracing::error!("new settings refused, the previous ones stay: {e}"),
                }
            }
            Ok(EgressRequest::Grant { key, session, call }) => {
                state.grants.insert(key.clone(), Grant { session, call });
                state.tell(EgressEvent::Granted { key }).await;
            }
            Ok(EgressRequest::Revoke { key }) => state.grants.revoke(&key),
            Err(FrameError::Closed) => break Stop::LinkBroke(FrameError::Closed),
            Err(e) => break Stop::LinkBroke(e),
        }
    };
    accepting.abort();
    Err(stopped)
}

fn policy(allowed: &[String], private: &[String], grants: Arc<Grants>) -> Result<Policy, Stop> {
    let allowed = allowed
        .iter()
        .map(|p| HostPattern::parse(p).map_err(|e| Stop::BadSettings(e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    let guard = Guard::new(private).map_err(|e| Stop::BadSettings(e.to_string()))?;
    Ok(Policy {
        allowed,
        guard,
        grants,
        injections: Vec::new(),
        idle: IDLE,
    })
}
