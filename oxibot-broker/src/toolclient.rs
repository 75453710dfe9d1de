//! The broker's side of `tool.sock`: one active tool-daemon connection,
//! requests multiplexed by id. If the daemon dies, every pending request
//! fails at once with a clear error instead of hanging.
//!
//! Every request is checked against toold's limits here, before it is
//! queued: a request the broker built from model or workspace input that
//! toold would refuse becomes an error for that one tool call, never a
//! frame that costs every chat its running commands.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use oxibot_proto::messages::{TextFile, ToolCall, ToolOutcome, ToolReply, ToolRequest};
use oxibot_proto::{Checked, ConnReader, ConnWriter, FrameError};
use tokio::sync::{mpsc, oneshot, watch};

use crate::store::Store;

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<ToolOutcome>>>>;

struct Active {
    generation: u64,
    requests: mpsc::Sender<Checked<ToolRequest>>,
    pending: Pending,
}

/// What toold tells of a running MCP server, unasked.
#[derive(Debug)]
pub enum McpEvent {
    /// Bytes of its standard output.
    Output(Vec<u8>),
    /// It ended: how, in toold's words (and the server's stderr).
    Ended(String),
}

type McpRoutes = Arc<Mutex<HashMap<String, mpsc::Sender<McpEvent>>>>;

/// How many pieces of a server's output may wait to be read before the
/// server is cut off (the broker reads them as they come).
const MCP_BACKLOG: usize = 256;

pub struct ToolClient {
    active: Mutex<Option<Active>>,
    /// Where each MCP server's output goes. Emptied when the tool daemon
    /// goes away (its servers went with it).
    mcp: McpRoutes,
    connected: watch::Sender<bool>,
    next_id: AtomicU64,
    next_generation: AtomicU64,
    store: Store,
}

/// How long a tool call waits for a (re)starting tool daemon to connect.
const CONNECT_WAIT: Duration = Duration::from_secs(15);

impl ToolClient {
    pub fn new(store: Store) -> Arc<Self> {
        Arc::new(ToolClient {
            active: Mutex::new(None),
            mcp: McpRoutes::default(),
            connected: watch::channel(false).0,
            next_id: AtomicU64::new(1),
            next_generation: AtomicU64::new(1),
            store,
        })
    }

    pub fn is_connected(&self) -> bool {
        *self.connected.borrow()
    }

    /// Waits until a tool daemon is connected.
    pub async fn wait_connected(&self) {
        let mut connected = self.connected.subscribe();
        let _ = connected.wait_for(|c| *c).await;
    }

    /// Where MCP server `name`'s output and end will come, from now on
    /// (replacing an earlier route). The route ends (`None`) when the tool
    /// daemon goes away.
    pub fn mcp_route(&self, name: &str) -> mpsc::Receiver<McpEvent> {
        let (tx, rx) = mpsc::channel(MCP_BACKLOG);
        self.mcp
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string(), tx);
        rx
    }

    pub fn mcp_unroute(&self, name: &str) {
        self.mcp.lock().unwrap_or_else(|p| p.into_inner()).remove(name);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Active>> {
        self.active.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits briefly for a previous tool-daemon connection to end: a daemon
    /// that restarted may reach us before its old connection's end has been
    /// read. False when the old connection is still alive: one live link.
    pub async fn previous_gone(&self, grace: Duration) -> bool {
        let old = self.lock().as_ref().map(|a| a.requests.clone());
        match old {
            None => true,
            Some(old) => tokio::time::timeout(grace, old.closed()).await.is_ok(),
        }
    }

    /// Takes over a freshly handshaken tool-daemon connection. A previous
    /// connection is dropped, and its pending requests fail.
    pub fn attach(self: &Arc<Self>, mut reader: ConnReader<ToolReply>, mut writer: ConnWriter<ToolRequest>) {
        let generation = self.next_generation.fetch_add(1, Ordering::Relaxed);
        let pending: Pending = Arc::default();
        let (tx, mut rx) = mpsc::channel::<Checked<ToolRequest>>(64);
        *self.lock() = Some(Active {
            generation,
            requests: tx,
            pending: pending.clone(),
        });
        self.connected.send_replace(true);
        tracing::info!(generation, "tool daemon connected");

        let writer_task = tokio::spawn(async move {
            while let Some(req) = rx.recv().await {
                if let Err(e) = writer.send_checked(&req).await {
                    tracing::warn!("cannot send to the tool daemon: {e}");
                    break;
                }
            }
        });
        let this = self.clone();
        let mcp = self.mcp.clone();
        tokio::spawn(async move {
            let reason = loop {
                match reader.recv().await {
                    Ok(ToolReply::McpOutput { server, data }) => route(&mcp, &server, McpEvent::Output(data)),
                    Ok(ToolReply::McpEnded { server, message }) => route(&mcp, &server, McpEvent::Ended(message)),
                    Ok(ToolReply::Result { id, outcome }) => {
                        let waiter = pending.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
                        match waiter {
                            Some(w) => {
                                let _ = w.send(outcome);
                            }
                            None => {
                                // An answer to a question we never asked: the
                                // daemon is confused or compromised. Fail-stop.
                                this.store.audit(
                                    "protocol_violation",
                                    &format!("tool daemon answered unknown request id {id}"),
                                );
                                break format!("reply to unknown request id {id}");
                            }
                        }
                    }
                    Err(e) => {
                        if !matches!(e, oxibot_proto::FrameError::Closed) {
                            this.store
                                .audit("protocol_violation", &format!("tool daemon connection: {e}"));
                        }
                        break e.to_string();
                    }
                }
            };
            writer_task.abort();
            tracing::warn!(generation, %reason, "tool daemon connection closed");
            // Dropping the senders wakes every waiter with an error (and
            // every MCP server's supervisor: its server is gone too).
            pending.lock().unwrap_or_else(|p| p.into_inner()).clear();
            let mut active = this.lock();
            if active.as_ref().is_some_and(|a| a.generation == generation) {
                *active = None;
                mcp.lock().unwrap_or_else(|p| p.into_inner()).clear();
                this.connected.send_replace(false);
            }
        });
    }

    /// Runs one tool call. Errors display in words for the model and the user.
    pub async fn call(&self, call: ToolCall, timeout: Duration) -> Result<String, ToolCallError> {
        match self.outcome(call, timeout).await? {
            ToolOutcome::Ok { output } => Ok(output),
            ToolOutcome::Failed { message } => Err(ToolCallError::Failed(message)),
            ToolOutcome::Texts { .. } | ToolOutcome::Probed { .. } => Err(ToolCallError::WrongAnswer("a tool call")),
        }
    }

    /// What the jail lacks of these programs and environment variables
    /// (see `ToolCall::Probe`).
    pub async fn probe(
        &self,
        bins: Vec<String>,
        env: Vec<String>,
        timeout: Duration,
    ) -> Result<(Vec<String>, Vec<String>), ToolCallError> {
        match self.outcome(ToolCall::Probe { bins, env }, timeout).await? {
            ToolOutcome::Probed {
                missing_bins,
                missing_env,
            } => Ok((missing_bins, missing_env)),
            ToolOutcome::Failed { message } => Err(ToolCallError::Failed(message)),
            _ => Err(ToolCallError::WrongAnswer("Probe")),
        }
    }

    /// Workspace files for the broker itself (never a host-side open: the
    /// workspace is the jail's): see `ToolCall::ReadTexts`.
    pub async fn read_texts(
        &self,
        patterns: &[&str],
        max_bytes: u32,
        timeout: Duration,
    ) -> Result<Vec<TextFile>, ToolCallError> {
        let call = ToolCall::ReadTexts {
            patterns: patterns.iter().map(|p| p.to_string()).collect(),
            max_bytes,
        };
        match self.outcome(call, timeout).await? {
            ToolOutcome::Texts { files } => Ok(files),
            ToolOutcome::Failed { message } => Err(ToolCallError::Failed(message)),
            _ => Err(ToolCallError::WrongAnswer("ReadTexts")),
        }
    }

    async fn outcome(&self, call: ToolCall, timeout: Duration) -> Result<ToolOutcome, ToolCallError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let request = prepare(id, call)?;
        let mut connected = self.connected.subscribe();
        if tokio::time::timeout(CONNECT_WAIT, connected.wait_for(|c| *c))
            .await
            .is_err()
        {
            return Err(ToolCallError::NotRunning);
        }
        let (tx, rx) = oneshot::channel();
        let requests = {
            let active = self.lock();
            let Some(a) = active.as_ref() else {
                return Err(ToolCallError::Disconnected);
            };
            a.pending.lock().unwrap_or_else(|p| p.into_inner()).insert(id, tx);
            a.requests.clone()
        };
        if requests.send(request).await.is_err() {
            return Err(ToolCallError::Disconnected);
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(outcome)) => Ok(outcome),
            Ok(Err(_)) => Err(ToolCallError::StoppedMidCall),
            Err(_) => Err(ToolCallError::TimedOut(timeout.as_secs())),
        }
    }
}

/// Hands an MCP server's event to its supervisor. A server nobody
/// listens to (stopped a moment ago) is dropped silently; one whose
/// output is not read in time loses its route, which its supervisor sees
/// as the server's end.
fn route(routes: &McpRoutes, server: &str, event: McpEvent) {
    let mut routes = routes.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(tx) = routes.get(server) {
        if tx.try_send(event).is_err() {
            tracing::warn!(
                server,
                "an MCP server's output was not read in time; its route is closed"
            );
            routes.remove(server);
        }
    }
}

/// A tool request checked against toold's limits (`Checked::new`, the one
/// check `send` makes too), or the error the model gets instead.
pub fn prepare(id: u64, call: ToolCall) -> Result<Checked<ToolRequest>, ToolCallError> {
    Checked::new(&ToolRequest::Call { id, call }).map_err(ToolCallError::NotSent)
}

/// Why a tool call has no result. Each displays as a sentence for the
/// model and the user: what happened and whether to try again.
#[derive(Debug, thiserror::Error)]
pub enum ToolCallError {
    /// Over the tool daemon's limits: refused before it was sent.
    #[error("this request was not sent to the tool daemon: {0}")]
    NotSent(FrameError),
    #[error(
        "the tool daemon is not running (it failed to start or is restarting); try again shortly, and see `oxibotctl status`"
    )]
    NotRunning,
    #[error("the tool daemon disconnected before answering; try again shortly")]
    Disconnected,
    #[error(
        "the tool daemon stopped while running this tool (it crashed or was killed); it is being restarted, and the tool's effects are unknown"
    )]
    StoppedMidCall,
    #[error("no answer from the tool daemon within {0} s")]
    TimedOut(u64),
    /// The tool ran and failed: the tool daemon's own words.
    #[error("{0}")]
    Failed(String),
    #[error("the tool daemon answered {0} with something else")]
    WrongAnswer(&'static str),
}
