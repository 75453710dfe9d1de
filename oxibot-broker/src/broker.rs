//! The running broker: shared state, the accept loops, and start-up/shutdown.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use oxibot_proto::messages::{
    BrokerToChannel, ChannelStatus, ProviderStatus, QueueDepths, StatusReport, ToolReply, ToolRequest,
};
use oxibot_proto::{accept_handshake, check_peer, Role};
use tokio::net::UnixListener;
use tokio::sync::{mpsc, watch};

use crate::agent::Agent;
use crate::config::Config;
use crate::sockets::{self, SocketRole};
use crate::store::Store;
use crate::supervise::{ChildSpec, Supervisor};
use crate::toolclient::ToolClient;

pub struct Broker {
    pub config: Config,
    pub store: Store,
    pub agent: Agent,
    pub tools: Arc<ToolClient>,
    /// Speech to text for voice messages, when configured.
    pub transcriber: Option<crate::providers::Transcriber>,
    pub supervisor: Arc<Supervisor>,
    pub channels: Mutex<BTreeMap<String, ChannelStatus>>,
    /// The live connection of each channel daemon, for outbound messages.
    pub links: Mutex<HashMap<String, mpsc::Sender<BrokerToChannel>>>,
    pub started: Instant,
    pub last_error: Mutex<Option<String>>,
    /// Running channel turns by session, for /stop.
    pub turns: Mutex<HashMap<String, Arc<tokio::sync::Notify>>>,
}

impl Broker {
    /// The stop signal of a session's running turns (made on first use).
    pub fn turn_stopper(&self, session: &str) -> Arc<tokio::sync::Notify> {
        let mut turns = self.turns.lock().unwrap_or_else(|p| p.into_inner());
        turns.entry(session.to_string()).or_default().clone()
    }

    /// Stops the session's running turns; false when none was waiting.
    pub fn stop_turn(&self, session: &str) -> bool {
        let turns = self.turns.lock().unwrap_or_else(|p| p.into_inner());
        match turns.get(session) {
            // Only the turn's own task and the map hold it while it runs.
            Some(n) if Arc::strong_count(n) > 1 => {
                n.notify_waiters();
                true
            }
            _ => false,
        }
    }

    pub fn record_error(&self, e: &str) {
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
    }

    pub fn status(&self) -> StatusReport {
        let (inbound_pending, outbox_pending) = self.store.queue_depths().unwrap_or((0, 0));
        let mut processes = vec![oxibot_proto::messages::ProcessStatus {
            name: "broker".into(),
            pid: Some(std::process::id()),
            uptime_secs: Some(self.started.elapsed().as_secs()),
            restarts: 0,
            last_exit: None,
        }];
        processes.extend(self.supervisor.status());
        let mut providers: Vec<ProviderStatus> = Vec::new();
        for (name, base, model, has_key) in self.agent.llm().describe() {
            match providers.iter_mut().find(|p| p.name == name) {
                Some(p) => p.models.push(model),
                None => providers.push(ProviderStatus {
                    name,
                    api_base: base,
                    has_key,
                    models: vec![model],
                }),
            }
        }
        StatusReport {
            broker_pid: std::process::id(),
            uptime_secs: self.started.elapsed().as_secs(),
            processes,
            channels: self
                .channels
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .values()
                .cloned()
                .collect(),
            queues: QueueDepths {
                inbound_pending,
                outbox_pending,
            },
            providers,
            tool_connected: self.tools.is_connected(),
            last_error: self.last_error.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        }
    }
}

/// Starts everything and runs until SIGTERM or SIGINT.
pub async fn run(config: Config) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.state_dir)
        .map_err(|e| anyhow::anyhow!("cannot create stateDir {}: {e}", config.state_dir.display()))?;
    let workspace = config.workspace();
    std::fs::create_dir_all(&workspace)
        .map_err(|e| anyhow::anyhow!("cannot create the workspace {}: {e}", workspace.display()))?;
    let db = config.state_dir.join("oxibot.db");
    let store = Store::open(&db).map_err(|e| anyhow::anyhow!("{} ({})", e, db.display()))?;
    let tools = ToolClient::new(store.clone());
    let agent = Agent::new(&config, store.clone(), tools.clone()).map_err(anyhow::Error::msg)?;
    let transcriber = crate::providers::Transcriber::new(&config).map_err(anyhow::Error::msg)?;
    let listeners = sockets::open(&config.runtime_dir, &config.users)?;
    let broker = Arc::new(Broker {
        agent,
        store,
        tools,
        transcriber,
        supervisor: Arc::default(),
        channels: Mutex::default(),
        links: Mutex::default(),
        turns: Mutex::default(),
        started: Instant::now(),
        last_error: Mutex::default(),
        config,
    });

    for (role, listener) in listeners.by_role {
        tokio::spawn(accept_loop(broker.clone(), role, listener));
    }
    tokio::spawn(crate::channels::resume_pending(broker.clone()));

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let mut children = Vec::new();
    if broker.config.supervise {
        for spec in child_specs(&broker.config)? {
            children.push(tokio::spawn(broker.supervisor.clone().run(spec, shutdown_rx.clone())));
        }
    }
    sd_notify("READY=1");
    tracing::info!(runtime_dir = %broker.config.runtime_dir.display(), supervise = broker.config.supervise, "broker ready");

    wait_for_signal().await;
    tracing::info!("shutting down");
    sd_notify("STOPPING=1");
    shutdown_tx.send_replace(true);
    for c in children {
        let _ = c.await;
    }
    for role in SocketRole::ALL {
        let _ = std::fs::remove_file(broker.config.runtime_dir.join(role.file_name()));
    }
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        // Without signal handlers we can still be stopped by SIGKILL.
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
}

/// Tells systemd about our state when it started us with `Type=notify`.
fn sd_notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let Ok(sock) = std::os::unix::net::UnixDatagram::unbound() else {
        return;
    };
    let path = PathBuf::from(path);
    // Abstract sockets ("@name") are not supported here; systemd uses a path.
    if let Err(e) = sock.send_to(state.as_bytes(), &path) {
        tracing::warn!("sd_notify({state}) failed: {e}");
    }
}

fn child_specs(config: &Config) -> anyhow::Result<Vec<ChildSpec>> {
    let bin_dir = match &config.bin_dir {
        Some(d) => d.clone(),
        None => std::env::current_exe()?
            .parent()
            .map(PathBuf::from)
            .ok_or_else(|| anyhow::anyhow!("cannot tell where the broker's executable lives; set binDir"))?,
    };
    let runtime = config.runtime_dir.display().to_string();
    let mut specs = vec![ChildSpec {
        name: "toold".into(),
        program: bin_dir.join("oxibot-toold"),
        args: vec![
            "--socket".into(),
            format!("{runtime}/tool.sock"),
            "--workspace".into(),
            config.workspace().display().to_string(),
            "--sandbox".into(),
            config.tools.sandbox.as_arg().into(),
            "--max-exec-timeout".into(),
            config.tools.exec.timeout.to_string(),
            "--max-output".into(),
            config.tools.exec.max_output_bytes.to_string(),
            "--max-processes".into(),
            config.tools.exec.max_processes.to_string(),
            "--max-memory-mb".into(),
            config.tools.exec.max_memory_mb.to_string(),
            "--max-file-size-mb".into(),
            config.tools.exec.max_file_size_mb.to_string(),
            "--user".into(),
            config.users.tool.clone(),
        ],
        // toold starts with the broker's rights, builds its jail, then
        // becomes the tool user.
        user: None,
    }];
    for name in config.enabled_channels() {
        specs.push(ChildSpec {
            name: format!("channel:{name}"),
            program: bin_dir.join("oxibot-channeld"),
            args: vec![
                "--channel".into(),
                name,
                "--socket".into(),
                format!("{runtime}/channel.sock"),
            ],
            user: Some(config.users.channel.clone()),
        });
    }
    Ok(specs)
}

async fn accept_loop(broker: Arc<Broker>, role: SocketRole, listener: UnixListener) {
    let policy = sockets::policy(role, &broker.config.users);
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::error!(socket = role.name(), "accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                continue;
            }
        };
        if let Err(e) = check_peer(&stream, &policy) {
            broker
                .store
                .audit("peer_refused", &format!("{}: {e}", role.file_name()));
            continue;
        }
        let broker = broker.clone();
        tokio::spawn(async move {
            match role {
                SocketRole::Tool => {
                    match accept_handshake::<ToolReply, ToolRequest>(stream, Role::Broker, Role::Tool).await {
                        Ok(conn) => {
                            let (r, w) = conn.split();
                            broker.tools.attach(r, w);
                        }
                        Err(e) => broker
                            .store
                            .audit("protocol_violation", &format!("tool.sock handshake: {e}")),
                    }
                }
                SocketRole::Ctl => crate::ctl::serve(broker, stream).await,
                SocketRole::Channel => crate::channels::serve(broker, stream).await,
            }
        });
    }
}
