//! The egress door (`tools.exec.allowedHosts`): a jailed command reaches
//! the hosts listed there through a proxy port on the jail's loopback, and
//! nothing else. The broker neither reads nor relays a byte of it: toold's
//! jail accepts each connection and hands it, tagged with the key of the
//! exec it came from, to `oxibot-egressd`, which parses the HTTP, decides
//! and dials in its own sandbox. The broker
//! - in supervise mode, binds the door's socket (in the runtime directory,
//!   0600: only toold, which runs as root or as the broker's own user
//!   there, may connect) and starts the daemon with it; under systemd the
//!   units do both (`oxibot-egress-door.socket`, `oxibot-egressd.service`)
//!   and the daemon connects to `egress.sock` as its own user;
//! - tells the daemon where commands may go, and grants each exec a key
//!   before it starts (the exec waits until the daemon holds it) and
//!   revokes it when it ends, which closes what the exec left open;
//! - files what the daemon reports of every connection in the audit
//!   (`egress`: session, exec, host, port, decision, bytes, duration).
//!
//! Not yet: TLS termination and credential injection.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use oxibot_proto::messages::{ConnectionRecord, EgressEvent, EgressRequest};
use oxibot_proto::{accept_handshake, FrameError, Role};
use tokio::net::UnixStream;
use tokio::sync::{mpsc, oneshot};

use crate::config::Config;
use crate::services::Services;
use crate::supervise::{ChildLink, ChildSpec, PassedListener, PASSED_FD};

/// The door's socket in the runtime directory.
pub const DOOR_SOCKET: &str = "egress-door.sock";
/// How long an exec waits for the daemon to hold its key; after that it
/// runs without the network (and says so in the log).
const GRANT_WAIT: Duration = Duration::from_secs(5);

/// The link to the egress daemon, and the keys of the running execs.
#[derive(Default)]
pub struct Egress {
    link: Mutex<Option<mpsc::UnboundedSender<EgressRequest>>>,
    /// Keys in force, sent again to a restarted daemon.
    live: Mutex<HashMap<String, (String, String)>>,
    waiting: Mutex<HashMap<String, oneshot::Sender<()>>>,
    calls: AtomicU64,
}

/// An exec's key to the door; revoked when dropped (the exec ended, or
/// its call was abandoned).
pub struct Key {
    value: String,
    egress: Arc<Egress>,
}

impl Key {
    pub fn value(&self) -> &str {
        &self.value
    }
}

impl Drop for Key {
    fn drop(&mut self) {
        self.egress.lock_live().remove(&self.value);
        self.egress.send(EgressRequest::Revoke {
            key: self.value.clone(),
        });
    }
}

impl Egress {
    /// A key for an exec of `session` about to run, once the daemon holds
    /// it. None when commands have no network (`tools.exec.allowedHosts`
    /// is empty) or the door's daemon is not running.
    pub async fn open(self: &Arc<Self>, config: &Config, session: &str, digest: &str) -> Option<Key> {
        if config.tools.exec.allowed_hosts.is_empty() {
            return None;
        }
        if self.lock_link().is_none() {
            tracing::warn!("the egress daemon is not connected: this command runs without the network");
            return None;
        }
        let number = self.calls.fetch_add(1, Ordering::Relaxed) + 1;
        let call = format!("exec #{number} (arguments sha256:{digest})");
        let value = oxibot_runtime::random::hex(16).ok()?;
        let (told, granted) = oneshot::channel();
        self.lock_waiting().insert(value.clone(), told);
        self.lock_live()
            .insert(value.clone(), (session.to_string(), call.clone()));
        let key = Key {
            value: value.clone(),
            egress: self.clone(),
        };
        self.send(EgressRequest::Grant {
            key: value.clone(),
            session: session.to_string(),
            call,
        });
        match tokio::time::timeout(GRANT_WAIT, granted).await {
            Ok(Ok(())) => Some(key),
            _ => {
                self.lock_waiting().remove(&value);
                tracing::warn!("the egress daemon did not take an exec's key in time: it runs without the network");
                None
            }
        }
    }

    fn send(&self, request: EgressRequest) {
        if let Some(link) = self.lock_link().as_ref() {
            let _ = link.send(request);
        }
    }

    fn lock_link(&self) -> std::sync::MutexGuard<'_, Option<mpsc::UnboundedSender<EgressRequest>>> {
        self.link.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_live(&self) -> std::sync::MutexGuard<'_, HashMap<String, (String, String)>> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_waiting(&self) -> std::sync::MutexGuard<'_, HashMap<String, oneshot::Sender<()>>> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The settings the daemon decides by.
    pub fn settings(config: &Config) -> EgressRequest {
        EgressRequest::Settings {
            allowed_hosts: config.tools.exec.allowed_hosts.iter().map(|p| p.to_string()).collect(),
            allow_private: config.tools.web.allow_private.clone(),
        }
    }

    /// Tells a running daemon the settings of a reloaded configuration.
    pub fn reload(&self, config: &Config) {
        self.send(Self::settings(config));
    }
}

/// With `tools.exec.allowedHosts` set and the jail on, in supervise mode:
/// binds the door and returns the daemon to start with it, and the
/// socket's path for toold. Fails with the fix when the door cannot be
/// opened (commands were meant to reach the network).
pub fn start(config: &Config) -> anyhow::Result<Option<(ChildSpec, std::path::PathBuf)>> {
    if config.tools.exec.allowed_hosts.is_empty() {
        return Ok(None);
    }
    if config.tools.sandbox == crate::config::SandboxMode::Off {
        tracing::warn!(
            "tools.exec.allowedHosts is set, but the sandbox is off: commands run unjailed, with this \
             host's whole network, and the egress door is not opened"
        );
        return Ok(None);
    }
    if !config.supervise {
        // systemd starts oxibot-egressd (its own unit and user) with the
        // door's socket; it connects to egress.sock.
        return Ok(None);
    }
    let path = config.runtime_dir.join(DOOR_SOCKET);
    let listener =
        bind_door(&path).map_err(|e| anyhow::anyhow!("cannot open the egress door {}: {e}", path.display()))?;
    let program = crate::broker::bin_dir(config)?.join("oxibot-egressd");
    let run_as = match nix::unistd::geteuid().is_root() {
        true => Some(crate::broker::daemon_user(&config.users.egress, "egress daemon")?),
        false => None,
    };
    let spec = ChildSpec {
        name: "egressd".into(),
        program,
        args: vec![
            "--listener-fd".into(),
            PASSED_FD.to_string(),
            "--tool-user".into(),
            config.users.tool.clone(),
        ],
        run_as,
        link: ChildLink::Egress,
        pass: Some(Arc::new(PassedListener::unix(listener))),
    };
    tracing::info!(
        hosts = config.tools.exec.allowed_hosts.len(),
        "egress door open for jailed commands"
    );
    Ok(Some((spec, path)))
}

/// The door's socket, 0600: toold (root, or the broker's own user) is the
/// only one to connect. A stale one from an earlier run is replaced.
fn bind_door(path: &std::path::Path) -> std::io::Result<std::os::unix::net::UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let listener = std::os::unix::net::UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Serves the egress daemon's link until it goes away.
pub async fn serve_link(svc: Arc<Services>, stream: UnixStream, peer: String) {
    let conn = match accept_handshake::<EgressEvent, EgressRequest>(stream, Role::Broker, Role::Egress).await {
        Ok(c) => c,
        Err(e) => {
            svc.audit
                .log("protocol_violation", &format!("egress daemon ({peer}) handshake: {e}"));
            return;
        }
    };
    svc.audit
        .log("link_established", &format!("egress daemon connected ({peer})"));
    let (mut reader, mut writer) = conn.split();
    let (link, mut requests) = mpsc::unbounded_channel();
    // The settings first, then the keys of the execs still running (a
    // restarted daemon knows none).
    let _ = link.send(Egress::settings(&svc.config()));
    for (key, (session, call)) in svc.egress.lock_live().iter() {
        let _ = link.send(EgressRequest::Grant {
            key: key.clone(),
            session: session.clone(),
            call: call.clone(),
        });
    }
    *svc.egress.lock_link() = Some(link.clone());
    let writing = tokio::spawn(async move {
        while let Some(request) = requests.recv().await {
            if writer.send(&request).await.is_err() {
                return;
            }
        }
    });
    loop {
        match reader.recv().await {
            Ok(EgressEvent::Granted { key }) => {
                if let Some(waiting) = svc.egress.lock_waiting().remove(&key) {
                    let _ = waiting.send(());
                }
            }
            Ok(EgressEvent::Connection(record)) => file(&svc, &record),
            Err(FrameError::Closed) => break,
            Err(e) => {
                svc.audit
                    .log("protocol_violation", &format!("egress daemon ({peer}): {e}"));
                break;
            }
        }
    }
    // Only if it is still ours: a restarted daemon's link may already be
    // in place.
    let mut current = svc.egress.lock_link();
    if current.as_ref().is_some_and(|c| c.same_channel(&link)) {
        *current = None;
    }
    drop(current);
    writing.abort();
}

/// One connection's audit row, filed under the chat's channel. The host
/// and the outcome may hold what a command wrote: quoted, as data.
fn file(svc: &Services, r: &ConnectionRecord) {
    let session = r.session.as_deref().unwrap_or("-");
    let channel = r.session.as_deref().and_then(|s| s.split_once(':')).map(|(c, _)| c);
    let decision = if r.allowed { "allowed" } else { "refused" };
    let detail = format!(
        "session {session}: {} → {:?}:{} {decision}: {:?}{}; {} bytes up, {} down, {} ms",
        r.call.as_deref().unwrap_or("no running exec"),
        r.host.as_deref().unwrap_or("?"),
        r.port.map(|p| p.to_string()).unwrap_or_else(|| "?".into()),
        r.outcome,
        r.injected
            .as_deref()
            .map(|name| format!(" (credential {name:?} set)"))
            .unwrap_or_default(),
        r.bytes_up,
        r.bytes_down,
        r.millis
    );
    svc.store.audit_about("egress", channel, None, &detail);
}
