//! The control socket: what `oxibotctl` may ask, and the answers.

use serde::{Deserialize, Serialize};

use super::*;

/// oxibotctl → broker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CtlRequest {
    Status,
    /// One user turn in `session`; the reply is the agent's final answer.
    Agent {
        #[serde(with = "limit::id")]
        session: String,
        #[serde(with = "limit::text")]
        message: String,
    },
    /// Admin diagnostics: run one tool (by the model's name and JSON
    /// arguments) through the same tool daemon the agent uses.
    RunTool {
        #[serde(with = "limit::id")]
        name: String,
        #[serde(with = "limit::text")]
        arguments_json: String,
    },
    /// Pairing requests from unknown chat users (dmPolicy "pairing").
    PairingList,
    /// Approve or deny a pairing code.
    PairingDecide {
        #[serde(with = "limit::id")]
        code: String,
        approve: bool,
    },
    /// Re-read the configuration and secrets (as SIGHUP does).
    Reload,
    /// Close a channel's link: its daemon exits and its supervisor
    /// (systemd or the broker) starts it again.
    ChannelRestart {
        #[serde(with = "limit::id")]
        channel: String,
    },
    /// Every stored conversation, newest first.
    SessionList,
    /// The last `limit` messages of one conversation.
    SessionShow {
        #[serde(with = "limit::id")]
        session: String,
        #[serde(with = "limit::listed")]
        limit: u32,
    },
    /// Forget one conversation's history (audited).
    SessionReset {
        #[serde(with = "limit::id")]
        session: String,
    },
    /// Audit entries matching the filter.
    Audit(AuditQuery),
    /// Admit (`allow`) or refuse a user on a channel, whatever the
    /// allow-list says (audited).
    UserDecide {
        #[serde(with = "limit::id")]
        channel: String,
        #[serde(with = "limit::id")]
        user: String,
        allow: bool,
    },
    /// The schedule: one request, with what to do in it.
    Cron(CronRequest),
    /// The prompt files the broker knows: accepted and waiting versions
    /// (digests, no texts).
    PromptList,
    /// One prompt file with both texts, for `prompt diff`.
    PromptShow {
        #[serde(with = "limit::path")]
        path: String,
    },
    /// Accept the waiting version of `path` (all when None); with `sha`,
    /// only a waiting version whose digest starts with it.
    PromptAccept {
        #[serde(with = "limit::path")]
        path: Option<String>,
        #[serde(with = "limit::sha")]
        sha: Option<String>,
    },
    /// The MCP servers: state, tools, last error (`oxibotctl mcp list`).
    McpList,
    /// Approval requests waiting for an answer, and the patterns "approve
    /// always" added.
    ApprovalList,
    /// Answer a waiting request (by its code).
    ApprovalDecide {
        #[serde(with = "limit::id")]
        id: String,
        approve: bool,
        /// Also allow its pattern from now on.
        always: bool,
    },
    /// Remove a pattern "approve always" added.
    ApprovalForget {
        #[serde(with = "limit::text")]
        pattern: String,
    },
    /// What each chat spent against its budgets.
    BudgetList,
    /// Forget a chat's spending (`telegram:42`).
    BudgetReset {
        #[serde(with = "limit::id")]
        chat: String,
    },
    /// One user turn in `session`, answered as it happens: [`ChatEvent`]s
    /// (streamed text, tool lines) and last `ChatEvent::Answer` or an
    /// `Error`. Other requests on the connection wait for its end, except
    /// `ChatCancel`, `ConsoleAck` and `ApprovalDecide`.
    Chat {
        #[serde(with = "limit::id")]
        session: String,
        #[serde(with = "limit::text")]
        message: String,
    },
    /// Stops this connection's running `Chat` turn (as `/stop` does).
    ChatCancel,
    /// A chat command (`/new`, `/status`, `/stop`, `/model`, `/help`) for
    /// `session`, run as the chat platforms run it: never seen by the model.
    ChatCommand {
        #[serde(with = "limit::id")]
        session: String,
        #[serde(with = "limit::text")]
        text: String,
    },
    /// From now on, messages for the console chat `session`
    /// (`console:NAME`: a background task's result, a job's) come to this
    /// connection as `ChatEvent::Delivered`, those waiting first.
    ConsoleAttach {
        #[serde(with = "limit::id")]
        session: String,
    },
    /// The client showed a delivered message: it is not sent again.
    ConsoleAck {
        outbox_id: u64,
    },
}

/// What a `Chat` turn (and an attached console) shows as it happens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ChatEvent {
    /// The next piece of the model's text, as the provider streamed it.
    Text { delta: String },
    /// The model's answer broke off and is asked again: the text since the
    /// last tool line starts over.
    Retry,
    /// A tool starts: its name and a short summary of its arguments.
    Tool { name: String, summary: String },
    /// The turn's final answer, whole, with what the person must know
    /// about it (that it was cut at the token limit, say).
    Answer { text: String },
    /// The turn was stopped (`ChatCancel` or `/stop`).
    Cancelled,
    /// A message for the attached console chat, kept until acknowledged.
    Delivered {
        outbox_id: u64,
        text: String,
        /// Answers offered under it (an approval request's).
        buttons: Vec<Button>,
    },
}

/// `oxibotctl cron …`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CronRequest {
    /// Every scheduled job.
    List,
    /// Schedule a job that delivers to `channel`/`chat_id`.
    Add(CronJobSpec),
    Remove {
        id: u64,
    },
    /// Pause (`enabled: false`) or resume a job.
    Enable {
        id: u64,
        enabled: bool,
    },
    /// Run a job now, once, outside its schedule.
    Run {
        id: u64,
    },
}

/// A job as `oxibotctl cron add` describes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CronJobSpec {
    #[serde(with = "limit::id")]
    pub name: String,
    #[serde(with = "limit::id")]
    pub channel: String,
    #[serde(with = "limit::id")]
    pub chat_id: String,
    /// `every 10 minutes`, `at 2026-12-24T18:00`, or a 5- or 6-field cron
    /// expression.
    #[serde(with = "limit::id")]
    pub schedule: String,
    /// IANA time zone for cron expressions and `at` times without an offset.
    #[serde(with = "limit::id")]
    pub tz: Option<String>,
    /// What the agent is asked to do when the job runs.
    #[serde(with = "limit::text")]
    pub message: String,
}

/// One scheduled job, for `oxibotctl cron list`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CronJobInfo {
    pub id: u64,
    pub name: String,
    pub channel: String,
    pub chat_id: String,
    pub schedule: String,
    pub message: String,
    pub enabled: bool,
    /// Unix seconds; None when it will not run again.
    pub next_run_at: Option<i64>,
    pub last_run_at: Option<i64>,
    pub last_status: Option<String>,
}

/// Which audit entries `oxibotctl audit` wants. With `after_id` 0, the
/// newest `limit` matches; otherwise the next `limit` after that id.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AuditQuery {
    pub after_id: u64,
    #[serde(with = "limit::listed")]
    pub limit: u32,
    /// Any of these kinds (all kinds when empty).
    #[serde(with = "limit::audit_kinds")]
    pub kinds: Vec<String>,
    #[serde(with = "limit::id")]
    pub channel: Option<String>,
    #[serde(with = "limit::id")]
    pub user: Option<String>,
    /// Unix seconds: only entries at or after this time.
    pub since: Option<i64>,
}

/// The most entries one audit or history answer carries.
pub const MAX_LISTED: u32 = 1000;

/// Broker → oxibotctl.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CtlReply {
    Status(StatusReport),
    AgentReply {
        text: String,
    },
    Error {
        message: String,
    },
    /// The tool's output, or its error (`ok: false`).
    ToolResult {
        ok: bool,
        output: String,
    },
    Pairings(Vec<PairingInfo>),
    /// A command succeeded; the text says what it did.
    Done {
        message: String,
    },
    Sessions(Vec<SessionInfo>),
    History(Vec<HistoryEntry>),
    Audit(Vec<AuditEntry>),
    CronJobs(Vec<CronJobInfo>),
    PromptFiles(Vec<PromptFileInfo>),
    McpServers(Vec<McpServerInfo>),
    Approvals {
        waiting: Vec<ApprovalInfo>,
        /// Patterns added with "approve always".
        learned: Vec<String>,
    },
    Budgets(Vec<BudgetInfo>),
    /// Part of a `Chat` turn, or a console delivery.
    Chat(ChatEvent),
}

/// An approval request waiting for the owner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApprovalInfo {
    /// The code the chat was given.
    pub id: String,
    pub session: String,
    /// Where it was asked (`telegram:42`); None: only oxibotctl can answer.
    pub chat: Option<String>,
    /// What would run (the model's words: shown, never executed).
    pub what: String,
    pub why: String,
    pub age_secs: u64,
    pub timeout_secs: u64,
}

/// One chat's spending against its limits (None: no limit).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BudgetInfo {
    pub chat: String,
    /// The day counted, in `cron.timezone`.
    pub day: String,
    pub tokens_today: u64,
    pub tokens_limit: Option<u64>,
    pub cost_today_usd: f64,
    pub cost_limit_usd: Option<f64>,
    pub tool_calls_this_hour: u64,
    pub tool_calls_limit: Option<u64>,
    pub running_turns: u32,
    pub concurrent_limit: Option<u32>,
    /// Unix seconds.
    pub day_resets_at: i64,
}

/// One `tools.mcpServers.<name>`, as `oxibotctl mcp list` shows it.
/// Tool names and descriptions are the server's words.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct McpServerInfo {
    pub name: String,
    /// `stdio (jailed)` or `http`.
    pub transport: String,
    /// `starting`, `ready`, `restarting in N s`, `stopped`, `disabled`.
    pub state: String,
    /// The tools the model is offered, as it sees them (`mcp_<server>_<tool>`).
    pub tools: Vec<String>,
    /// Tools the broker refused to offer, each with the reason.
    pub refused: Vec<String>,
    pub restarts: u32,
    pub last_error: Option<String>,
}

/// One prompt file (`oxibotctl prompt`). The texts are sent only by
/// `PromptShow` (each at most a prompt file's cap).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromptFileInfo {
    pub path: String,
    /// None: accepted as absent.
    pub accepted_sha: Option<String>,
    /// None: nothing waits; "absent": the file's removal waits.
    pub pending_sha: Option<String>,
    /// Unix seconds.
    pub pending_at: Option<i64>,
    pub accepted_text: Option<String>,
    pub pending_text: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionInfo {
    pub session: String,
    pub messages: u64,
    /// Unix seconds.
    pub updated_at: i64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub role: String,
    pub text: String,
    /// Unix seconds.
    pub at: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub id: u64,
    /// Unix seconds.
    pub at: i64,
    pub kind: String,
    pub channel: Option<String>,
    pub user: Option<String>,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairingInfo {
    pub code: String,
    pub channel: String,
    pub sender: String,
    pub status: String,
    pub age_secs: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusReport {
    pub broker_pid: u32,
    pub uptime_secs: u64,
    pub processes: Vec<ProcessStatus>,
    pub channels: Vec<ChannelStatus>,
    pub queues: QueueDepths,
    pub providers: Vec<ProviderStatus>,
    pub tool_connected: bool,
    pub last_error: Option<String>,
    /// What this set-up separates and what it does not, and settings that
    /// weaken it (the admin should read these).
    pub notes: Vec<String>,
}

/// How a status note about the health endpoint begins when it listens
/// (followed by the address); `oxibotctl doctor` checks that address.
pub const HEALTH_LISTENING_NOTE: &str = "health endpoint listening on ";

impl StatusReport {
    /// What is down, in words; empty when the tool daemon and every
    /// enabled channel are connected. `oxibotctl status` exits 3 and
    /// `/readyz` answers 503 when it is not empty.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !self.tool_connected {
            out.push("the tool daemon is not connected".to_string());
        }
        for c in self.channels.iter().filter(|c| !c.connected) {
            out.push(format!("channel {} is not connected", c.name));
        }
        out
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessStatus {
    pub name: String,
    pub pid: Option<u32>,
    pub uptime_secs: Option<u64>,
    pub restarts: u32,
    pub last_exit: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChannelStatus {
    pub name: String,
    pub connected: bool,
    pub last_error: Option<String>,
    pub counters: ChannelCounters,
}

/// Since the broker started, counted by the broker (which sees every
/// message), so they survive channel daemon restarts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelCounters {
    /// Messages admitted and committed (duplicates not counted).
    pub received: u64,
    /// Messages refused by access control.
    pub refused: u64,
    /// Replies the platform accepted.
    pub sent: u64,
    /// Replies the platform did not take (each attempt).
    pub send_failures: u64,
    /// Times the daemon reported losing its platform connection.
    pub disconnects: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueDepths {
    pub inbound_pending: u64,
    pub outbox_pending: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProviderStatus {
    pub name: String,
    pub api_base: String,
    pub has_key: bool,
    pub models: Vec<String>,
}

// Every bound of these messages is on its field.
impl Message for CtlRequest {}

impl Message for CtlReply {}
