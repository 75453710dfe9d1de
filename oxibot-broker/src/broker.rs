//! The running broker: it builds the rooms (`Services`), opens the
//! sockets, starts the daemons it supervises and the background loops, and
//! runs until it is stopped. It holds no logic of its own beyond the
//! wiring and the status report.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use nix::unistd::User;

use oxibot_proto::messages::{ProviderStatus, QueueDepths, StatusReport, ToolReply, ToolRequest};
use oxibot_proto::{accept_handshake, check_peer, Role};
use tokio::net::UnixListener;
use tokio::sync::{mpsc, watch};

use crate::audit::Audit;
use crate::config::Config;
use crate::hub::{Hub, LIVE_LINK_GRACE};
use crate::live::{Live, Loaded, Settings};
use crate::secret::Scrubber;
use crate::services::Services;
use crate::sessions::Sessions;
use crate::sockets::{self, SocketRole};
use crate::store::Store;
use crate::supervise::{ChildLink, ChildSpec, Handoff, Supervisor};
use crate::toolclient::ToolClient;

/// The running broker: what it hands every piece of work (`svc`), and
/// what only the service itself keeps: where the configuration came from,
/// the children it supervises, which uid is which channel, and the health
/// endpoint's state.
pub struct Broker {
    pub svc: Arc<Services>,
    /// Where the configuration was read from, for reloads.
    pub config_path: PathBuf,
    pub supervisor: Arc<Supervisor>,
    /// Without supervise mode: the channel each daemon uid serves.
    pub channel_uids: HashMap<u32, String>,
    /// Where the health endpoint listens, or why it does not (a status note).
    pub health: Mutex<Option<String>>,
}

impl Broker {
    pub fn status(&self) -> StatusReport {
        let svc = &self.svc;
        let (inbound_pending, outbox_pending) = svc.store.queue_depths().unwrap_or((0, 0));
        let mut processes = vec![oxibot_proto::messages::ProcessStatus {
            name: "broker".into(),
            pid: Some(std::process::id()),
            uptime_secs: Some(svc.started.elapsed().as_secs()),
            restarts: 0,
            last_exit: None,
        }];
        processes.extend(self.supervisor.status().into_iter().map(|mut p| {
            p.last_exit = p.last_exit.map(|e| svc.audit.scrub(&e, "a process's exit status"));
            p
        }));
        let config = svc.config();
        StatusReport {
            broker_pid: std::process::id(),
            uptime_secs: svc.started.elapsed().as_secs(),
            processes,
            channels: svc.hub.statuses(config.enabled_channels()),
            queues: QueueDepths {
                inbound_pending,
                outbox_pending,
            },
            providers: providers(&svc.live.settings()),
            tool_connected: svc.tools.is_connected(),
            notes: crate::separation::notes(&config)
                .into_iter()
                .chain(self.health.lock().unwrap_or_else(|p| p.into_inner()).clone())
                .chain(crate::prompt_files::status_note(&svc.store))
                .chain(crate::approval::status_note(&svc.approvals))
                .chain(crate::budgets::status_notes(svc))
                .collect(),
            last_error: svc.audit.last_error(),
        }
    }
}

/// The providers in force, each with its models.
pub fn providers(settings: &Settings) -> Vec<ProviderStatus> {
    let mut providers: Vec<ProviderStatus> = Vec::new();
    for (name, base, model, has_key) in settings.llm().describe() {
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
    providers
}

/// Starts everything and runs until SIGTERM or SIGINT; SIGHUP reloads the
/// configuration and secrets from `config_path`.
pub async fn run(config: Config, config_path: PathBuf) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.state_dir)
        .map_err(|e| anyhow::anyhow!("cannot create stateDir {}: {e}", config.state_dir.display()))?;
    let workspace = config.workspace();
    std::fs::create_dir_all(&workspace)
        .map_err(|e| anyhow::anyhow!("cannot create the workspace {}: {e}", workspace.display()))?;
    // Who the daemons are: in supervise mode the broker starts them (and
    // knows each by the socketpair it handed over); otherwise systemd does,
    // and each channel daemon is known by its uid.
    let channel_uids = if config.supervise {
        HashMap::new()
    } else {
        channel_uid_map(&config)?
    };
    let roles: &[SocketRole] = if config.supervise {
        &[SocketRole::Ctl]
    } else {
        &SocketRole::ALL
    };
    let db = config.state_dir.join("oxibot.db");
    let store = Store::open(&db).map_err(|e| anyhow::anyhow!("{} ({})", e, db.display()))?;
    let tools = ToolClient::new(store.clone());
    let audit = Audit::new(store.clone(), Scrubber::new(&config.all_secrets()));
    let live = Live::new(Loaded::build(config)?);
    let config = live.config();
    let listeners = sockets::open(&config.runtime_dir, roles, &config.users)?;
    let bound: Vec<SocketRole> = listeners.bound.clone();
    // The egress door's socket lives in the runtime directory, made above.
    let egress = crate::egress::start(&config)?;
    let mut specs = if config.supervise {
        child_specs(&config, egress.as_ref().map(|(_, door)| door.as_path()))?
    } else {
        Vec::new()
    };
    specs.extend(egress.map(|(spec, _)| spec));
    let svc = Arc::new(Services {
        live,
        store,
        audit,
        tools,
        egress: Arc::default(),
        mcp: Arc::default(),
        hub: Hub::default(),
        sessions: Sessions::default(),
        subagents: Default::default(),
        approvals: Default::default(),
        budgets: Default::default(),
        started: Instant::now(),
    });
    let broker = Arc::new(Broker {
        svc: svc.clone(),
        config_path,
        supervisor: Arc::default(),
        channel_uids,
        health: Mutex::default(),
    });
    for note in crate::separation::notes(&config) {
        tracing::warn!("{note}");
    }

    // The watchdog checks that these are still running.
    let mut vital = Vec::new();
    for (role, listener) in listeners.by_role {
        vital.push((
            role.file_name(),
            tokio::spawn(accept_loop(broker.clone(), role, listener)),
        ));
    }
    // The health endpoint's daemon runs in either mode: the broker binds the
    // port and hands it over; the HTTP is parsed there, never here.
    specs.extend(crate::health::start(&broker).await);
    tokio::spawn(crate::channels::resume_pending(svc.clone()));
    tokio::spawn(crate::cron::scheduler::run_scheduler(svc.clone()));
    {
        let svc = svc.clone();
        tokio::spawn(async move { crate::subagents::report_interrupted(&svc).await });
    }
    tokio::spawn(crate::heartbeat::run(svc.clone()));
    tokio::spawn(crate::prompt_files::first_read(svc.clone()));
    // Each MCP server starts once the tool daemon is connected.
    svc.mcp.reconcile(&svc);
    // What a burst allocated goes back to the system once it is freed.
    tokio::spawn(oxibot_runtime::heap::trim_periodically());

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (handoff_tx, handoff_rx) = mpsc::channel(8);
    tokio::spawn(accept_handoffs(broker.clone(), handoff_rx));
    let mut children = Vec::new();
    for spec in specs {
        children.push(tokio::spawn(broker.supervisor.clone().run(
            spec,
            shutdown_rx.clone(),
            handoff_tx.clone(),
        )));
    }
    drop(handoff_tx);
    crate::service::notify("READY=1");
    tokio::spawn(crate::service::watchdog(svc.store.clone(), vital));
    tracing::info!(runtime_dir = %config.runtime_dir.display(), supervise = config.supervise, "broker ready");

    crate::service::until_stopped(|| crate::reload::reload(&broker)).await;
    tracing::info!("shutting down");
    crate::service::notify("STOPPING=1");
    shutdown_tx.send_replace(true);
    for c in children {
        let _ = c.await;
    }
    // Only what we bound ourselves: systemd's sockets outlive us.
    for role in bound {
        let _ = std::fs::remove_file(config.runtime_dir.join(role.file_name()));
    }
    Ok(())
}

/// The (uid, gid) of a daemon's user, or a start error that names the fix.
pub fn daemon_user(name: &str, role: &str) -> anyhow::Result<(u32, u32)> {
    match User::from_name(name) {
        Ok(Some(u)) if u.uid.is_root() => Err(anyhow::anyhow!(
            "the {role} is configured to run as root (user {name}); give it an unprivileged user of its own"
        )),
        Ok(Some(u)) => Ok((u.uid.as_raw(), u.gid.as_raw())),
        Ok(None) => Err(anyhow::anyhow!(
            "user {name} (for the {role}) does not exist. Install the OxiBot package (it creates the users), \
             or create it: useradd --system --no-create-home --shell /usr/sbin/nologin {name}"
        )),
        Err(e) => Err(anyhow::anyhow!("cannot look up user {name} (for the {role}): {e}")),
    }
}

/// Where the daemons' executables are: `binDir`, or beside the broker's.
pub fn bin_dir(config: &Config) -> anyhow::Result<PathBuf> {
    match &config.bin_dir {
        Some(d) => Ok(d.clone()),
        None => std::env::current_exe()?
            .parent()
            .map(PathBuf::from)
            .ok_or_else(|| anyhow::anyhow!("cannot tell where the broker's executable lives; set binDir")),
    }
}

/// `egress_door`: the egress daemon's socket, when the door is open.
fn child_specs(config: &Config, egress_door: Option<&std::path::Path>) -> anyhow::Result<Vec<ChildSpec>> {
    let bin_dir = bin_dir(config)?;
    let root = nix::unistd::geteuid().is_root();
    if root && config.tools.sandbox == crate::config::SandboxMode::On {
        // toold starts as root and becomes this user inside its jail; check
        // now, so that the start fails here with the fix.
        daemon_user(&config.users.tool, "tool daemon")?;
    }
    let mut toold_args = vec![
        "--workspace".to_string(),
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
    ];
    if config.tools.seccomp_log {
        toold_args.push("--seccomp-log".into());
    }
    if let Some(door) = egress_door {
        toold_args.push("--egress-door".into());
        toold_args.push(door.display().to_string());
    }
    let mut specs = vec![ChildSpec {
        name: "toold".into(),
        program: bin_dir.join("oxibot-toold"),
        args: toold_args,
        // toold starts with the broker's rights, builds its jail, then
        // becomes the tool user.
        run_as: None,
        link: ChildLink::Tool,
        pass: None,
    }];
    for name in config.enabled_channels() {
        let run_as = if root {
            Some(daemon_user(
                &config.users.channel_user(&name),
                &format!("{name} channel daemon"),
            )?)
        } else {
            None
        };
        let mut args = vec!["--channel".to_string(), name.clone()];
        if !root {
            // It shares our uid: only Landlock keeps it from our files.
            args.push("--require-landlock".into());
        }
        specs.push(ChildSpec {
            name: format!("channel:{name}"),
            program: bin_dir.join("oxibot-channeld"),
            args,
            run_as,
            link: ChildLink::Channel(name),
            pass: None,
        });
    }
    Ok(specs)
}

/// Without supervise mode: which channel each uid serves. Every enabled
/// channel needs a user of its own, or the broker could not tell its
/// daemons apart.
fn channel_uid_map(config: &Config) -> anyhow::Result<HashMap<u32, String>> {
    let mut map: HashMap<u32, String> = HashMap::new();
    for name in config.enabled_channels() {
        let user = config.users.channel_user(&name);
        let (uid, _) = daemon_user(&user, &format!("{name} channel daemon"))?;
        if let Some(other) = map.insert(uid, name.clone()) {
            return Err(anyhow::anyhow!(
                "channels {other} and {name} both run as user {user} (uid {uid}); without supervise mode each \
                 channel needs a user of its own (users.channels), or the broker cannot tell them apart"
            ));
        }
    }
    Ok(map)
}

/// The broker's ends of the socketpairs of the children it just started.
async fn accept_handoffs(broker: Arc<Broker>, mut handoffs: mpsc::Receiver<Handoff>) {
    while let Some(h) = handoffs.recv().await {
        let broker = broker.clone();
        tokio::spawn(async move {
            let peer = format!("supervised child pid {}", h.pid);
            match h.link {
                ChildLink::Tool => serve_tool(&broker.svc, h.stream, peer).await,
                ChildLink::Channel(channel) => {
                    let identity = crate::channels::Identity { channel, peer };
                    crate::channels::serve(broker.svc.clone(), h.stream, identity).await
                }
                ChildLink::Health => crate::health::serve_link(broker, h.stream, peer).await,
                ChildLink::Egress => crate::egress::serve_link(broker.svc.clone(), h.stream, peer).await,
            }
        });
    }
}

async fn serve_tool(svc: &Services, stream: tokio::net::UnixStream, peer: String) {
    match accept_handshake::<ToolReply, ToolRequest>(stream, Role::Broker, Role::Tool).await {
        Ok(conn) => {
            if !svc.tools.previous_gone(LIVE_LINK_GRACE).await {
                svc.audit.log(
                    "link_refused",
                    &format!("tool daemon link from {peer} refused: another tool daemon is connected and alive"),
                );
                return;
            }
            svc.audit
                .log("link_established", &format!("tool daemon connected ({peer})"));
            crate::metrics::link_established("toold");
            let (r, w) = conn.split();
            svc.tools.attach(r, w);
        }
        Err(e) => svc
            .audit
            .log("protocol_violation", &format!("tool daemon ({peer}) handshake: {e}")),
    }
}

async fn accept_loop(broker: Arc<Broker>, role: SocketRole, listener: UnixListener) {
    let channel_uids: Vec<u32> = broker.channel_uids.keys().copied().collect();
    let policy = sockets::policy(role, &broker.svc.config().users, &channel_uids);
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
        let cred = match check_peer(&stream, &policy) {
            Ok(c) => c,
            Err(e) => {
                broker
                    .svc
                    .audit
                    .log("peer_refused", &format!("{}: {e}", role.file_name()));
                continue;
            }
        };
        let broker = broker.clone();
        tokio::spawn(async move {
            let peer = format!("uid {} pid {}", cred.uid, cred.pid.unwrap_or(0));
            match role {
                SocketRole::Tool => serve_tool(&broker.svc, stream, peer).await,
                SocketRole::Ctl => crate::ctl::serve(broker, stream).await,
                SocketRole::Egress => crate::egress::serve_link(broker.svc.clone(), stream, peer).await,
                SocketRole::Channel => {
                    // The policy admitted only uids in the map.
                    let Some(channel) = broker.channel_uids.get(&cred.uid).cloned() else {
                        return;
                    };
                    let identity = crate::channels::Identity { channel, peer };
                    crate::channels::serve(broker.svc.clone(), stream, identity).await
                }
            }
        });
    }
}
