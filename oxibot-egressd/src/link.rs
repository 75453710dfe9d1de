//! The broker's link: the settings (where commands may go), the keys of
//! running execs (granted before an exec starts, revoked when it ends),
//! and back the record of every connection, for the audit.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use oxibot_egress::grants::{Grant, Grants};
use oxibot_egress::inject::Injection;
use oxibot_egress::proxy::{Policy, IDLE};
use oxibot_egress::tls::{self, Authority};
use oxibot_egress::Guard;
use oxibot_proto::messages::{ConnectionRecord, CredentialSetting, EgressEvent, EgressRequest};
use oxibot_proto::settings::HostPattern;
use oxibot_proto::{connect_handshake, FrameError, Role};
use rustls::pki_types::CertificateDer;
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
    /// Refusals of this second by session (None: no running exec), and
    /// how many of them were not recorded one by one.
    refusals: Mutex<HashMap<Option<String>, (u32, u32)>>,
}

/// Refused connections recorded one by one, per session and second; the
/// rest are counted in one row at the end of the second. Allowed
/// connections are always recorded one by one.
pub const REFUSALS_SHOWN_PER_SECOND: u32 = 10;

impl Door {
    pub fn policy(&self) -> Arc<Policy> {
        self.policy.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Whether `key` belongs to a running exec.
    pub fn in_force(&self, key: &[u8]) -> bool {
        self.grants.held(key).is_some()
    }

    /// Tells the broker; waits while the link is busy (a flood of
    /// connections slows down rather than losing its records).
    pub async fn tell(&self, event: EgressEvent) {
        let _ = self.events.send(event).await;
    }

    /// One connection's record, unless its session was refused more than
    /// [`REFUSALS_SHOWN_PER_SECOND`] times this second (then it is counted).
    pub async fn report(&self, record: ConnectionRecord) {
        if !record.allowed && !self.count_refusal(record.session.clone(), false) {
            return;
        }
        self.tell(EgressEvent::Connection(record)).await;
    }

    /// A connection closed unanswered (its exec, or the keyless, had all
    /// their slots): counted for the second's summary.
    pub fn held_back(&self, key: &[u8]) {
        let session = self.grants.held(key).map(|h| h.grant.session);
        self.count_refusal(session, true);
    }

    /// Counts a refusal; true when it is to be recorded one by one.
    fn count_refusal(&self, session: Option<String>, never_shown: bool) -> bool {
        let mut refusals = self.refusals.lock().unwrap_or_else(|p| p.into_inner());
        let (shown, counted) = refusals.entry(session).or_insert((0, 0));
        if !never_shown && *shown < REFUSALS_SHOWN_PER_SECOND {
            *shown += 1;
            return true;
        }
        *counted += 1;
        false
    }

    /// The second's summary rows, and a new second.
    fn summaries(&self) -> Vec<ConnectionRecord> {
        let refusals = std::mem::take(&mut *self.refusals.lock().unwrap_or_else(|p| p.into_inner()));
        refusals
            .into_iter()
            .filter(|(_, (_, counted))| *counted > 0)
            .map(|(session, (_, counted))| ConnectionRecord {
                session,
                call: None,
                host: None,
                port: None,
                allowed: false,
                outcome: format!(
                    "{counted} more connections refused or closed in one second, not recorded one by one \
                     (at most {REFUSALS_SHOWN_PER_SECOND} a second are)"
                ),
                injected: None,
                bytes_up: 0,
                bytes_down: 0,
                millis: 0,
            })
            .collect()
    }
}

/// Every second, the summary of the refusals not recorded one by one.
async fn summarize(door: Arc<Door>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        tick.tick().await;
        for record in door.summaries() {
            door.tell(EgressEvent::Connection(record)).await;
        }
    }
}

/// Events waiting for the link: records are small, and a full queue makes
/// the relays wait instead of dropping records.
const EVENT_QUEUE: usize = 1024;

/// What the daemon made or read before its sandbox closed: the authority
/// it answers TLS with, and the system's trust anchors.
pub struct Made {
    pub authority: Arc<Authority>,
    pub system_roots: Vec<CertificateDer<'static>>,
}

pub async fn serve(link: UnixStream, door: UnixListener, peers: Peers, made: Made) -> Result<(), Stop> {
    let conn = connect_handshake::<EgressRequest, EgressEvent>(link, Role::Egress, Role::Broker)
        .await
        .map_err(Stop::Handshake)?;
    let (mut reader, mut writer) = conn.split();
    // The jail's commands are to trust this authority (its key stays here).
    writer
        .send(&EgressEvent::Authority {
            certificate: made.authority.certificate_pem().to_string(),
        })
        .await
        .map_err(Stop::LinkBroke)?;
    let grants = Arc::new(Grants::default());
    let first = match reader.recv().await {
        Ok(settings @ EgressRequest::Settings { .. }) => policy(settings, grants.clone(), &made)?,
        Ok(_) => return Err(Stop::NoSettings),
        Err(e) => return Err(Stop::LinkBroke(e)),
    };
    tracing::info!(
        allowed = first.allowed.len(),
        credentials = first.injections.len(),
        "egress door open"
    );
    let (events, mut queued) = mpsc::channel(EVENT_QUEUE);
    let state = Arc::new(Door {
        policy: RwLock::new(Arc::new(first)),
        grants: grants.clone(),
        events,
        refusals: Mutex::default(),
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
    let summarizing = tokio::spawn(summarize(state.clone()));
    let stopped = loop {
        let request = tokio::select! {
            r = reader.recv() => r,
            e = &mut writing => break Stop::LinkBroke(e.unwrap_or(FrameError::Closed)),
        };
        match request {
            Ok(settings @ EgressRequest::Settings { .. }) => {
                // The broker checked these when the configuration loaded;
                // one that does not parse here keeps the last good ones.
                match policy(settings, grants.clone(), &made) {
                    Ok(p) => *state.policy.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(p),
                    Err(e) => tracing::error!("new settings refused, the previous ones stay: {e}"),
                }
            }
            Ok(EgressRequest::Grant {
                key,
                session,
                call,
                credentials,
                hosts,
            }) => {
                // The broker checked them; one that does not parse here
                // leaves the key ungranted (its connections are refused).
                let hosts = match hosts.map(|list| {
                    list.iter()
                        .map(|p| HostPattern::parse(p))
                        .collect::<Result<Vec<_>, _>>()
                }) {
                    None => Some(None),
                    Some(Ok(h)) => Some(Some(h)),
                    Some(Err(e)) => {
                        tracing::error!(%session, "a grant's own hosts do not parse; not granted: {e}");
                        None
                    }
                };
                if let Some(hosts) = hosts {
                    state.grants.insert(
                        key.clone(),
                        Grant {
                            session,
                            call,
                            credentials,
                            hosts,
                        },
                    );
                }
                state.tell(EgressEvent::Granted { key }).await;
            }
            Ok(EgressRequest::Revoke { key }) => state.grants.revoke(&key),
            Err(FrameError::Closed) => break Stop::LinkBroke(FrameError::Closed),
            Err(e) => break Stop::LinkBroke(e),
        }
    };
    accepting.abort();
    summarizing.abort();
    Err(stopped)
}

fn policy(settings: EgressRequest, grants: Arc<Grants>, made: &Made) -> Result<Policy, Stop> {
    let EgressRequest::Settings {
        allowed_hosts,
        allow_private,
        credentials,
        upstream_roots,
    } = settings
    else {
        return Err(Stop::NoSettings);
    };
    let bad = |e: &dyn std::fmt::Display| Stop::BadSettings(e.to_string());
    let patterns = |list: &[String]| {
        list.iter()
            .map(|p| HostPattern::parse(p).map_err(|e| bad(&e)))
            .collect::<Result<Vec<_>, _>>()
    };
    let allowed = patterns(&allowed_hosts)?;
    let guard = Guard::new(&allow_private).map_err(|e| bad(&e))?;
    let injections = credentials
        .into_iter()
        .map(|c: CredentialSetting| {
            Ok(Injection {
                hosts: patterns(&c.hosts)?,
                name: c.name,
                header: c.header,
                prefix: c.prefix,
                secret: c.secret,
                plain_http: c.plain_http,
            })
        })
        .collect::<Result<Vec<_>, Stop>>()?;
    let (upstream_tls, extra) = tls::upstream_config(&made.system_roots, &upstream_roots).map_err(|e| bad(&e))?;
    if made.system_roots.is_empty() && extra == 0 && !injections.is_empty() {
        tracing::warn!(
            "no trust anchors: the system's trust store is empty or unreadable and tools.exec.upstreamCaFile is unset, \
             so no host with a credential can be reached"
        );
    }
    Ok(Policy {
        allowed,
        guard,
        grants,
        injections,
        authority: Some(made.authority.clone()),
        upstream_tls,
        idle: IDLE,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> EgressRequest {
        EgressRequest::Settings {
            allowed_hosts: Vec::new(),
            allow_private: Vec::new(),
            credentials: Vec::new(),
            upstream_roots: String::new(),
        }
    }

    fn made() -> Made {
        Made {
            authority: Arc::new(Authority::generate().unwrap()),
            system_roots: Vec::new(),
        }
    }

    fn door() -> (Arc<Door>, mpsc::Receiver<EgressEvent>) {
        let (events, told) = mpsc::channel(EVENT_QUEUE);
        let grants = Arc::new(Grants::default());
        let door = Door {
            policy: RwLock::new(Arc::new(policy(settings(), grants.clone(), &made()).unwrap())),
            grants,
            events,
            refusals: Mutex::default(),
        };
        (Arc::new(door), told)
    }

    fn refused(session: Option<&str>) -> ConnectionRecord {
        ConnectionRecord {
            session: session.map(String::from),
            call: None,
            host: Some("x.test".into()),
            port: Some(443),
            allowed: false,
            outcome: "not listed".into(),
            injected: None,
            bytes_up: 0,
            bytes_down: 0,
            millis: 1,
        }
    }

    #[tokio::test]
    async fn a_flood_of_refusals_is_recorded_ten_a_second_and_counted() {
        let (door, mut told) = door();
        for _ in 0..500 {
            door.report(refused(None)).await;
        }
        door.report(refused(Some("telegram:1"))).await;
        let mut allowed = refused(None);
        allowed.allowed = true;
        door.report(allowed).await;
        let mut one_by_one = 0;
        while let Ok(EgressEvent::Connection(r)) = told.try_recv() {
            one_by_one += 1;
            assert!(r.allowed || r.host.is_some());
        }
        // Ten of the flood, the other session's one, the allowed one.
        assert_eq!(one_by_one, REFUSALS_SHOWN_PER_SECOND as usize + 2);
        let summaries = door.summaries();
        assert_eq!(summaries.len(), 1, "{summaries:?}");
        assert!(
            summaries[0].outcome.starts_with("490 more connections"),
            "{}",
            summaries[0].outcome
        );
        assert_eq!(summaries[0].session, None);
        // A new second: recorded one by one again.
        door.report(refused(None)).await;
        assert!(told.try_recv().is_ok());
    }
}
