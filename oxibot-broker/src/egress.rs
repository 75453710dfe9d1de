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
//!   (`egress`: session, exec, host, port, decision, bytes, duration);
//! - hands the daemon the credentials of `tools.exec.credentials` (with
//!   their secrets, audited as `egress_credentials`), and tells it with
//!   each exec's key which of them that exec may have: those whose
//!   `chats` take the exec's conversation, and for unattended turns only
//!   those marked `background`. The daemon sets them on the way out; the
//!   exec's commands get the certificate of the daemon's authority to
//!   trust (its key never leaves the daemon) and placeholders for the
//!   variables a tool wants set.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use oxibot_proto::messages::{ConnectionRecord, CredentialSetting, EgressEvent, EgressRequest, ExecEgress};
use oxibot_proto::{accept_handshake, FrameError, Role};
use tokio::net::UnixStream;
use tokio::sync::{mpsc, oneshot};

use crate::config::Config;
use crate::services::Services;
use crate::supervise::{ChildLink, ChildSpec, PassedListener, PASSED_FD};
use crate::turn::{Turn, TurnKind};

/// The door's socket in the runtime directory.
pub const DOOR_SOCKET: &str = "egress-door.sock";
/// How long an exec waits for the daemon to hold its key; after that it
/// runs without the network (and says so in the log).
const GRANT_WAIT: Duration = Duration::from_secs(5);
/// How long an MCP server with allowedHosts waits for the door's daemon
/// to connect (it may start after toold).
const LINK_WAIT: Duration = Duration::from_secs(10);

/// The link to the egress daemon, and the keys of the running execs.
#[derive(Default)]
pub struct Egress {
    link: Mutex<Option<mpsc::UnboundedSender<EgressRequest>>>,
    /// Keys in force, sent again to a restarted daemon: the session, the
    /// call and the credentials granted.
    live: Mutex<HashMap<String, LiveKey>>,
    /// The certificate of the running daemon's authority (PEM).
    authority: Mutex<Option<String>>,
    waiting: Mutex<HashMap<String, oneshot::Sender<()>>>,
    calls: AtomicU64,
}

/// A running exec's (or MCP server's) key: what its grant says.
#[derive(Clone)]
struct LiveKey {
    session: String,
    call: String,
    credentials: Vec<String>,
    /// An MCP server's own allowedHosts.
    hosts: Option<Vec<String>>,
}

impl LiveKey {
    fn grant(&self, key: &str) -> EgressRequest {
        EgressRequest::Grant {
            key: key.to_string(),
            session: self.session.clone(),
            call: self.call.clone(),
            credentials: self.credentials.clone(),
            hosts: self.hosts.clone(),
        }
    }
}

/// An exec's key to the door; revoked when dropped (the exec ended, or
/// its call was abandoned).
pub struct Key {
    value: String,
    egress: Arc<Egress>,
    pass: ExecEgress,
}

impl Key {
    /// What toold needs for the exec: the key, the authority to trust,
    /// the placeholders.
    pub fn pass(&self) -> ExecEgress {
        self.pass.clone()
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
    /// A key for an exec of `turn` about to run, once the daemon holds
    /// it. None when commands have no network (`tools.exec.allowedHosts`
    /// is empty) or the door's daemon is not running.
    pub async fn open(self: &Arc<Self>, config: &Config, turn: &Turn, digest: &str) -> Option<Key> {
        if config.tools.exec.allowed_hosts.is_empty() {
            return None;
        }
        if self.lock_link().is_none() {
            tracing::warn!("the egress daemon is not connected: this command runs without the network");
            return None;
        }
        let number = self.calls.fetch_add(1, Ordering::Relaxed) + 1;
        let live = LiveKey {
            session: turn.session.clone(),
            call: format!("exec #{number} (arguments sha256:{digest})"),
            credentials: granted(config, turn),
            hosts: None,
        };
        self.grant(live, placeholders(config, turn)).await
    }

    /// A key for MCP server `name` about to start, with its own
    /// `allowedHosts` (and no credential of `tools.exec.credentials`: a
    /// server's secrets are its own environment). Ok(None) when the server
    /// has no network; an error when it should and the door's daemon is
    /// not there (a server is started once, not per call: it waits for
    /// the daemon, which may start after toold, rather than run without).
    pub async fn open_for_server(
        self: &Arc<Self>,
        name: &str,
        hosts: &[oxibot_proto::settings::HostPattern],
    ) -> Result<Option<Key>, String> {
        if hosts.is_empty() {
            return Ok(None);
        }
        let deadline = tokio::time::Instant::now() + LINK_WAIT;
        while self.lock_link().is_none() {
            if tokio::time::Instant::now() >= deadline {
                return Err("the egress door's daemon is not connected, and this server's allowedHosts need it".into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let live = LiveKey {
            session: format!("mcp:{name}"),
            call: format!("MCP server {name}"),
            credentials: Vec::new(),
            hosts: Some(hosts.iter().map(|h| h.to_string()).collect()),
        };
        match self.grant(live, Vec::new()).await {
            Some(key) => Ok(Some(key)),
            None => Err("the egress door's daemon did not take this server's key".into()),
        }
    }

    async fn grant(self: &Arc<Self>, live: LiveKey, placeholders: Vec<String>) -> Option<Key> {
        let value = oxibot_runtime::random::hex(16).ok()?;
        let (told, granted) = oneshot::channel();
        self.lock_waiting().insert(value.clone(), told);
        let request = live.grant(&value);
        self.lock_live().insert(value.clone(), live);
        let key = Key {
            value: value.clone(),
            egress: self.clone(),
            pass: ExecEgress {
                key: value.clone(),
                trust: self.authority.lock().unwrap_or_else(|p| p.into_inner()).clone(),
                placeholders,
            },
        };
        self.send(request);
        match tokio::time::timeout(GRANT_WAIT, granted).await {
            Ok(Ok(())) => Some(key),
            _ => {
                self.lock_waiting().remove(&value);
                tracing::warn!("the egress daemon did not take a key in time: the command runs without the network");
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

    fn lock_live(&self) -> std::sync::MutexGuard<'_, HashMap<String, LiveKey>> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_waiting(&self) -> std::sync::MutexGuard<'_, HashMap<String, oneshot::Sender<()>>> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The settings the daemon decides by, with the credentials' secrets.
    pub fn settings(config: &Config) -> EgressRequest {
        let exec = &config.tools.exec;
        let upstream_roots = match &exec.upstream_ca_file {
            None => String::new(),
            Some(path) => std::fs::read_to_string(path).unwrap_or_else(|e| {
                tracing::error!(
                    "cannot read tools.exec.upstreamCaFile {}: {e}; the door trusts the system's authorities only",
                    path.display()
                );
                String::new()
            }),
        };
        EgressRequest::Settings {
            allowed_hosts: exec.allowed_hosts.iter().map(|p| p.to_string()).collect(),
            allow_private: config.tools.web.allow_private.clone(),
            credentials: exec
                .credentials
                .iter()
                .filter_map(|(name, c)| {
                    Some(CredentialSetting {
                        name: name.clone(),
                        hosts: c.hosts.iter().map(|h| h.to_string()).collect(),
                        header: c.header.clone(),
                        prefix: c.prefix.clone(),
                        secret: c.secret.as_ref()?.expose().to_string(),
                        plain_http: c.plain_http,
                    })
                })
                .collect(),
            upstream_roots,
        }
    }

    /// Tells a running daemon the settings of a reloaded configuration
    /// (the credentials it is handed are audited).
    pub fn reload(&self, config: &Config, audit: &crate::audit::Audit) {
        if self.lock_link().is_none() {
            return;
        }
        let settings = Self::settings(config);
        audit_handed(audit, &settings, "the running egress daemon");
        self.send(settings);
    }
}

/// The variables set to a placeholder for the commands of `turn`: those of
/// the credentials it may have (none while commands have no network).
pub fn placeholders(config: &Config, turn: &Turn) -> Vec<String> {
    if config.tools.exec.allowed_hosts.is_empty() {
        return Vec::new();
    }
    let granted = granted(config, turn);
    let mut names: Vec<String> = config
        .tools
        .exec
        .credentials
        .iter()
        .filter(|(name, _)| granted.contains(name))
        .flat_map(|(_, c)| c.env.iter().cloned())
        .collect();
    names.sort();
    names.dedup();
    names
}

/// The credentials an exec of `turn` may have: a person's turn those
/// whose `chats` take its chat (or session), or that name none; an
/// unattended turn (a job, the heartbeat, a background task) only those
/// marked `background` (and whose `chats` take it).
pub fn granted(config: &Config, turn: &Turn) -> Vec<String> {
    let chat = turn.origin.as_ref().map(|o| format!("{}:{}", o.channel, o.chat_id));
    config
        .tools
        .exec
        .credentials
        .iter()
        .filter(|(_, c)| c.background || turn.kind == TurnKind::Chat)
        .filter(|(_, c)| {
            c.chats.as_ref().is_none_or(|chats| {
                chats
                    .iter()
                    .any(|want| *want == turn.session || chat.as_deref() == Some(want.as_str()))
            })
        })
        .map(|(name, _)| name.clone())
        .collect()
}

/// With `tools.exec.allowedHosts` set and the jail on, in supervise mode:
/// binds the door and returns the daemon to start with it, and the
/// socket's path for toold. Fails with the fix when the door cannot be
/// opened (commands were meant to reach the network).
pub fn start(config: &Config) -> anyhow::Result<Option<(ChildSpec, std::path::PathBuf)>> {
    if !config.tools.network_wanted() {
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

/// Files which credentials go to the daemon (by name; never a secret).
fn audit_handed(audit: &crate::audit::Audit, settings: &EgressRequest, to: &str) {
    if let EgressRequest::Settings { credentials, .. } = settings {
        if !credentials.is_empty() {
            let names: Vec<&str> = credentials.iter().map(|c| c.name.as_str()).collect();
            audit.log(
                "egress_credentials",
                &format!(
                    "credentials {} handed to {to}, to set on commands' requests",
                    names.join(", ")
                ),
            );
        }
    }
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
    let settings = Egress::settings(&svc.config());
    audit_handed(&svc.audit, &settings, &format!("the egress daemon ({peer})"));
    let _ = link.send(settings);
    for (key, live) in svc.egress.lock_live().iter() {
        let _ = link.send(live.grant(key));
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
            Ok(EgressEvent::Authority { certificate }) => {
                // Public: the certificate the jail's commands will trust.
                *svc.egress.authority.lock().unwrap_or_else(|p| p.into_inner()) = Some(certificate);
            }
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

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::turn::ChatRef;

    fn config(dir: &std::path::Path) -> Config {
        let secrets = dir.join("secrets.json");
        std::fs::write(
            &secrets,
            r#"{"providers": {"openai": {"apiKey": "sk-test-123456"}},
                "tools": {"exec": {"credentials": {"everyone": {"secret": "s1-value"}, "ops": {"secret": "s2-value"},
                                                  "jobs": {"secret": "s3-value"}}}}}"#,
        )
        .unwrap();
        std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o600)).unwrap();
        let path = dir.join("config.json");
        std::fs::write(
            &path,
            format!(
                r#"{{"secretsFile": "{}", "agents": {{"defaults": {{"model": "gpt-4o"}}}},
                    "tools": {{"exec": {{"allowedHosts": ["api.github.com", "api.example.com"],
                      "credentials": {{
                        "everyone": {{"hosts": ["api.github.com"], "env": ["GH_TOKEN"]}},
                        "ops": {{"hosts": ["api.example.com"], "chats": ["telegram:42"], "env": ["OPS_TOKEN"]}},
                        "jobs": {{"hosts": ["api.example.com"], "chats": ["telegram:42"], "background": true}}
                      }}}}}}}}"#,
                secrets.display()
            ),
        )
        .unwrap();
        Config::load_with_env(&path, Vec::new()).unwrap().0
    }

    fn turn(chat: &str, kind: TurnKind) -> Turn {
        let (channel, chat_id) = chat.split_once(':').unwrap();
        let mut turn = Turn::chat(ChatRef {
            channel: channel.into(),
            chat_id: chat_id.into(),
        });
        turn.kind = kind;
        turn
    }

    #[test]
    fn a_credential_goes_to_the_chats_and_turns_it_names_only() {
        let d = tempfile::tempdir().unwrap();
        let c = config(d.path());
        // A person's turn: every credential its chat is listed for.
        assert_eq!(
            granted(&c, &turn("telegram:42", TurnKind::Chat)),
            ["everyone", "jobs", "ops"]
        );
        assert_eq!(granted(&c, &turn("telegram:7", TurnKind::Chat)), ["everyone"]);
        // Unattended turns: only what is marked background, even in the
        // chat it names.
        for kind in [TurnKind::Scheduled, TurnKind::Heartbeat, TurnKind::Subagent] {
            assert_eq!(granted(&c, &turn("telegram:42", kind)), ["jobs"], "{kind:?}");
            assert!(granted(&c, &turn("telegram:7", kind)).is_empty(), "{kind:?}");
        }
        // The console's own session is no chat of the list.
        assert_eq!(granted(&c, &Turn::console(&c, "oxibotctl")), ["everyone"]);
        // Placeholders follow what was granted.
        assert_eq!(
            placeholders(&c, &turn("telegram:42", TurnKind::Chat)),
            ["GH_TOKEN", "OPS_TOKEN"]
        );
        assert!(placeholders(&c, &turn("telegram:42", TurnKind::Heartbeat)).is_empty());
        // The settings carry each secret to the daemon; nothing prints it.
        let settings = Egress::settings(&c);
        let EgressRequest::Settings { credentials, .. } = &settings else {
            unreachable!()
        };
        assert_eq!(credentials.len(), 3);
        assert!(credentials.iter().any(|s| s.secret == "s2-value"));
        assert!(!format!("{settings:?}").contains("-value"));
    }
}
