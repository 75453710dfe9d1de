//! One message enum per role and direction. This is the privsep dispatch
//! table: each connection is typed with exactly one inbound enum, so a peer
//! can only ask for what its role may ask for. Variants are only ever
//! appended (postcard encodes the variant index).

use serde::{de::DeserializeOwned, Deserialize, Serialize};

/// Upper bounds checked after decoding. The 1 MiB frame cap bounds the total;
/// these keep individual fields sane so that no handler has to.
pub const MAX_ID: usize = 256;
pub const MAX_PATH: usize = 4096;
pub const MAX_TEXT: usize = 900 * 1024;
/// The most file data one chat message may carry, all files together
/// (Telegram's own bot download limit).
pub const MAX_FILE_BYTES: usize = 20 << 20;
/// File data travels in pieces of at most this size (`FilePart`,
/// `SaveUpload`), so that every frame stays far below the frame cap.
pub const MAX_PART: usize = 512 * 1024;
/// How many chats a daemon is asked to catch up on after a restart.
pub const MAX_RESUME_CHATS: usize = 100;
/// How many files one message may carry (their sizes together still fit a frame).
pub const MAX_ATTACHMENTS: usize = 4;
/// How many path patterns one `ReadTexts` may name, and how many files it
/// may return.
pub const MAX_TEXT_FILES: usize = 64;
/// The most text one `ReadTexts` answer holds, all files together (well
/// below the frame cap). An answer that reaches this, or `MAX_TEXT_FILES`,
/// may have left files out.
pub const MAX_TEXTS_TOTAL: usize = 768 * 1024;

pub trait Message: Serialize + DeserializeOwned + Send + 'static {
    /// Checks field bounds after decoding; an error closes the connection.
    fn validate(&self) -> Result<(), String> {
        Ok(())
    }
}

fn bounded(field: &str, value: &str, max: usize) -> Result<(), String> {
    if value.len() > max {
        return Err(format!("{field} is {} bytes, the limit is {max}", value.len()));
    }
    Ok(())
}

fn bytes_bounded(field: &str, value: &[u8], max: usize) -> Result<(), String> {
    if value.len() > max {
        return Err(format!("{field} is {} bytes, the limit is {max}", value.len()));
    }
    Ok(())
}

// ---------------------------------------------------------------- tool daemon

/// Broker → tool daemon.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ToolRequest {
    Call { id: u64, call: ToolCall },
}

/// The operations toold performs. Paths are relative to the workspace (or
/// absolute inside the jail); toold resolves them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ToolCall {
    Exec {
        command: String,
        working_dir: Option<String>,
        timeout_secs: u32,
    },
    ReadFile {
        path: String,
    },
    WriteFile {
        path: String,
        content: String,
    },
    EditFile {
        path: String,
        old_text: String,
        new_text: String,
    },
    ListDir {
        path: String,
    },
    /// Files under `path` whose workspace-relative path matches a glob.
    FindFiles {
        pattern: String,
        path: String,
    },
    /// Lines matching a regex in files under `path` (optionally only files
    /// matching the `include` glob).
    Grep {
        pattern: String,
        path: String,
        include: Option<String>,
        case_insensitive: bool,
    },
    /// A unified diff (one or more files), applied whole or not at all.
    ApplyPatch {
        patch: String,
    },
    /// A file a user sent through a channel, saved for them (never asked for
    /// by the model). An existing file is never overwritten: toold picks a
    /// free name and reports it.
    /// Sent in pieces: the piece at offset 0 creates the file (the reply
    /// is the path used); later pieces append to that path at `offset`.
    SaveUpload {
        path: String,
        data: Vec<u8>,
        offset: u64,
    },
    /// Workspace files the broker needs for itself (bootstrap files,
    /// memory, skills), never asked for by the model. Each pattern is a
    /// workspace-relative path whose components may be `*` (any one
    /// name). Only regular files are read, never through a symlink, each
    /// capped at `max_bytes`; missing files are left out.
    ReadTexts {
        patterns: Vec<String>,
        max_bytes: u32,
    },
    /// Appends to a workspace file, creating it (and its directories) when
    /// missing: the broker's memory notes. Never through a symlink.
    AppendFile {
        path: String,
        content: String,
    },
    /// Which of these programs the jail's commands can run (on the `PATH`
    /// that `Exec` uses) and which environment variables they see: a
    /// skill's requirements, checked where the skill would run.
    Probe {
        bins: Vec<String>,
        env: Vec<String>,
    },
}

/// How many names one `Probe` may ask about.
pub const MAX_PROBE_NAMES: usize = 64;

/// Tool daemon → broker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ToolReply {
    Result { id: u64, outcome: ToolOutcome },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ToolOutcome {
    Ok {
        output: String,
    },
    Failed {
        message: String,
    },
    /// The answer to `ReadTexts`, in pattern order (and name order within a pattern).
    Texts {
        files: Vec<TextFile>,
    },
    /// The answer to `Probe`: what the jail lacks.
    Probed {
        missing_bins: Vec<String>,
        missing_env: Vec<String>,
    },
}

/// One file of a `ReadTexts` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextFile {
    /// Workspace-relative.
    pub path: String,
    /// Lossily decoded UTF-8, at most the requested bytes.
    pub text: String,
    /// The file was longer than the cap.
    pub truncated: bool,
}

impl Message for ToolRequest {
    fn validate(&self) -> Result<(), String> {
        let ToolRequest::Call { call, .. } = self;
        match call {
            ToolCall::Exec {
                command, working_dir, ..
            } => {
                bounded("command", command, MAX_TEXT)?;
                bounded("working_dir", working_dir.as_deref().unwrap_or(""), MAX_PATH)
            }
            ToolCall::ReadFile { path } | ToolCall::ListDir { path } => bounded("path", path, MAX_PATH),
            ToolCall::FindFiles { pattern, path } => {
                bounded("pattern", pattern, MAX_PATH)?;
                bounded("path", path, MAX_PATH)
            }
            ToolCall::Grep {
                pattern, path, include, ..
            } => {
                bounded("pattern", pattern, MAX_PATH)?;
                bounded("path", path, MAX_PATH)?;
                bounded("include", include.as_deref().unwrap_or(""), MAX_PATH)
            }
            ToolCall::ApplyPatch { patch } => bounded("patch", patch, MAX_TEXT),
            ToolCall::SaveUpload { path, data, offset } => {
                bounded("path", path, MAX_PATH)?;
                bytes_bounded("data", data, MAX_PART)?;
                if *offset > MAX_FILE_BYTES as u64 {
                    return Err(format!("offset {offset} is past the {MAX_FILE_BYTES}-byte limit"));
                }
                Ok(())
            }
            ToolCall::WriteFile { path, content } => {
                bounded("path", path, MAX_PATH)?;
                bounded("content", content, MAX_TEXT)
            }
            ToolCall::ReadTexts { patterns, max_bytes } => {
                if patterns.len() > MAX_TEXT_FILES {
                    return Err(format!("{} patterns, the limit is {MAX_TEXT_FILES}", patterns.len()));
                }
                patterns.iter().try_for_each(|p| bounded("pattern", p, MAX_PATH))?;
                if *max_bytes as usize > MAX_PART {
                    return Err(format!("max_bytes {max_bytes} is over {MAX_PART}"));
                }
                Ok(())
            }
            ToolCall::EditFile {
                path,
                old_text,
                new_text,
            } => {
                bounded("path", path, MAX_PATH)?;
                bounded("old_text", old_text, MAX_TEXT)?;
                bounded("new_text", new_text, MAX_TEXT)
            }
            ToolCall::AppendFile { path, content } => {
                bounded("path", path, MAX_PATH)?;
                bounded("content", content, MAX_TEXT)
            }
            ToolCall::Probe { bins, env } => names(bins).and_then(|()| names(env)),
        }
    }
}

impl Message for ToolReply {
    fn validate(&self) -> Result<(), String> {
        let ToolReply::Result { outcome, .. } = self;
        match outcome {
            ToolOutcome::Ok { output } => bounded("output", output, MAX_TEXT),
            ToolOutcome::Failed { message } => bounded("message", message, MAX_TEXT),
            ToolOutcome::Texts { files } => {
                if files.len() > MAX_TEXT_FILES {
                    return Err(format!("{} files, the limit is {MAX_TEXT_FILES}", files.len()));
                }
                files.iter().try_for_each(|f| {
                    bounded("path", &f.path, MAX_PATH)?;
                    bounded("text", &f.text, MAX_TEXT)
                })
            }
            ToolOutcome::Probed {
                missing_bins,
                missing_env,
            } => names(missing_bins).and_then(|()| names(missing_env)),
        }
    }
}

// ------------------------------------------------------------ channel daemon

/// Broker → channel daemon.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum BrokerToChannel {
    /// The first message after Hello: this channel's settings (JSON, no
    /// secrets) and its one credential (JSON object of that channel's secrets).
    Setup {
        channel: String,
        settings_json: String,
        credential_json: String,
        /// (chat id, platform id) of the newest committed message of each
        /// recent chat, for platforms without a server-side cursor (Discord)
        /// to fetch what arrived while the daemon was down.
        resume_after: Vec<(String, String)>,
    },
    /// The inbound message with this platform id is committed; the daemon may
    /// now advance the platform cursor.
    Ack { platform_id: String },
    /// Deliver this text; answer with `PartDelivered` after each part the
    /// platform took, then `Delivered` or `SendFailed`.
    Send {
        outbox_id: u64,
        chat_id: String,
        text: String,
        reply_to: Option<String>,
        /// How many parts of the split text the platform already took on an
        /// earlier attempt: those are not sent again.
        first_part: u32,
    },
    /// Close down cleanly.
    Shutdown,
    /// The assistant started working on a message in this chat: show a
    /// typing indicator until the next `Send` to the chat.
    Typing { chat_id: String },
    /// The answer to `MayFetch`: whether the sender would be admitted.
    FetchAnswer { platform_id: String, allowed: bool },
}

/// Channel daemon → broker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ChannelToBroker {
    /// The first message after Hello: which channel this daemon serves. The
    /// broker answers with `Setup` or closes the connection.
    Register {
        channel: String,
    },
    Inbound {
        platform_id: String,
        chat_id: String,
        sender: String,
        text: String,
        /// A group or channel chat rather than a direct message.
        is_group: bool,
        /// The message mentions or replies to the bot.
        mentioned: bool,
        /// Photos, voice notes and files that came with it.
        attachments: Vec<Attachment>,
    },
    Delivered {
        outbox_id: u64,
    },
    SendFailed {
        outbox_id: u64,
        error: String,
        retryable: bool,
    },
    Status {
        connected: bool,
        last_error: Option<String>,
    },
    /// A piece of attachment `index` of the message `platform_id`; pieces
    /// come in order, right before that message's `Inbound`, and are
    /// prepended to the attachment's own data.
    FilePart {
        platform_id: String,
        index: u8,
        data: Vec<u8>,
    },
    /// Before downloading a message's files: would this sender be admitted?
    /// (Access is the broker's to decide; strangers' files are not fetched.)
    MayFetch {
        platform_id: String,
        chat_id: String,
        sender: String,
        is_group: bool,
        mentioned: bool,
    },
    /// The platform took the first `parts` parts of outbox message
    /// `outbox_id` (a reply split at the platform's length limit).
    PartDelivered {
        outbox_id: u64,
        parts: u32,
    },
}

/// A file that came with a chat message, already downloaded by the channel
/// daemon (the broker never talks to the platforms).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attachment {
    pub kind: AttachmentKind,
    /// The file name the user gave it, or one the daemon made up.
    pub name: String,
    pub mime: String,
    pub data: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AttachmentKind {
    /// Shown to the model when it can see images.
    Image,
    /// Transcribed to text when transcription is configured.
    Audio,
    /// Saved into the workspace for the tools.
    Document,
}

impl Message for BrokerToChannel {
    fn validate(&self) -> Result<(), String> {
        match self {
            BrokerToChannel::Setup {
                channel,
                settings_json,
                credential_json,
                resume_after,
            } => {
                bounded("channel", channel, MAX_ID)?;
                bounded("settings_json", settings_json, MAX_TEXT)?;
                bounded("credential_json", credential_json, MAX_TEXT)?;
                if resume_after.len() > MAX_RESUME_CHATS {
                    return Err(format!("resume_after has {} chats", resume_after.len()));
                }
                resume_after.iter().try_for_each(|(chat, id)| {
                    bounded("resume chat", chat, MAX_ID)?;
                    bounded("resume id", id, MAX_ID)
                })
            }
            BrokerToChannel::Ack { platform_id } => bounded("platform_id", platform_id, MAX_ID),
            BrokerToChannel::Send {
                chat_id,
                text,
                reply_to,
                ..
            } => {
                bounded("chat_id", chat_id, MAX_ID)?;
                bounded("text", text, MAX_TEXT)?;
                bounded("reply_to", reply_to.as_deref().unwrap_or(""), MAX_ID)
            }
            BrokerToChannel::Shutdown => Ok(()),
            BrokerToChannel::Typing { chat_id } => bounded("chat_id", chat_id, MAX_ID),
            BrokerToChannel::FetchAnswer { platform_id, .. } => bounded("platform_id", platform_id, MAX_ID),
        }
    }
}

impl Message for ChannelToBroker {
    fn validate(&self) -> Result<(), String> {
        match self {
            ChannelToBroker::Register { channel } => bounded("channel", channel, MAX_ID),
            ChannelToBroker::Inbound {
                platform_id,
                chat_id,
                sender,
                text,
                attachments,
                ..
            } => {
                bounded("platform_id", platform_id, MAX_ID)?;
                bounded("chat_id", chat_id, MAX_ID)?;
                bounded("sender", sender, MAX_ID)?;
                bounded("text", text, MAX_TEXT)?;
                if attachments.len() > MAX_ATTACHMENTS {
                    return Err(format!(
                        "{} attachments, the limit is {MAX_ATTACHMENTS}",
                        attachments.len()
                    ));
                }
                attachments.iter().try_for_each(|a| {
                    bounded("attachment name", &a.name, MAX_ID)?;
                    bounded("attachment mime", &a.mime, MAX_ID)
                })?;
                // More than a piece's worth travels as FileParts.
                let inline: usize = attachments.iter().map(|a| a.data.len()).sum();
                if inline > MAX_PART {
                    return Err(format!(
                        "{inline} bytes of attachment data inline; the limit is {MAX_PART}"
                    ));
                }
                Ok(())
            }
            ChannelToBroker::Delivered { .. } | ChannelToBroker::PartDelivered { .. } => Ok(()),
            ChannelToBroker::SendFailed { error, .. } => bounded("error", error, MAX_TEXT),
            ChannelToBroker::Status { last_error, .. } => {
                bounded("last_error", last_error.as_deref().unwrap_or(""), MAX_TEXT)
            }
            ChannelToBroker::FilePart {
                platform_id,
                index,
                data,
            } => {
                bounded("platform_id", platform_id, MAX_ID)?;
                if usize::from(*index) >= MAX_ATTACHMENTS {
                    return Err(format!(
                        "file part for attachment {index}; the limit is {MAX_ATTACHMENTS}"
                    ));
                }
                bytes_bounded("file part", data, MAX_PART)
            }
            ChannelToBroker::MayFetch {
                platform_id,
                chat_id,
                sender,
                ..
            } => {
                bounded("platform_id", platform_id, MAX_ID)?;
                bounded("chat_id", chat_id, MAX_ID)?;
                bounded("sender", sender, MAX_ID)
            }
        }
    }
}

// ------------------------------------------------------------- control (CLI)

/// oxibotctl → broker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CtlRequest {
    Status,
    /// One user turn in `session`; the reply is the agent's final answer.
    Agent {
        session: String,
        message: String,
    },
    /// Admin diagnostics: run one tool (by the model's name and JSON
    /// arguments) through the same tool daemon the agent uses.
    RunTool {
        name: String,
        arguments_json: String,
    },
    /// Pairing requests from unknown chat users (dmPolicy "pairing").
    PairingList,
    /// Approve or deny a pairing code.
    PairingDecide {
        code: String,
        approve: bool,
    },
    /// Re-read the configuration and secrets (as SIGHUP does).
    Reload,
    /// Close a channel's link: its daemon exits and its supervisor
    /// (systemd or the broker) starts it again.
    ChannelRestart {
        channel: String,
    },
    /// Every stored conversation, newest first.
    SessionList,
    /// The last `limit` messages of one conversation.
    SessionShow {
        session: String,
        limit: u32,
    },
    /// Forget one conversation's history (audited).
    SessionReset {
        session: String,
    },
    /// Audit entries matching the filter.
    Audit(AuditQuery),
    /// Admit (`allow`) or refuse a user on a channel, whatever the
    /// allow-list says (audited).
    UserDecide {
        channel: String,
        user: String,
        allow: bool,
    },
    /// Every scheduled job.
    CronList,
    /// Schedule a job that delivers to `channel`/`chat_id`.
    CronAdd(CronJobSpec),
    CronRemove {
        id: u64,
    },
    /// Pause (`enabled: false`) or resume a job.
    CronEnable {
        id: u64,
        enabled: bool,
    },
    /// Run a job now, once, outside its schedule.
    CronRun {
        id: u64,
    },
    /// The prompt files the broker knows: accepted and waiting versions
    /// (digests, no texts).
    PromptList,
    /// One prompt file with both texts, for `prompt diff`.
    PromptShow {
        path: String,
    },
    /// Accept the waiting version of `path` (all when None); with `sha`,
    /// only a waiting version whose digest starts with it.
    PromptAccept {
        path: Option<String>,
        sha: Option<String>,
    },
}

/// A job as `oxibotctl cron add` describes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CronJobSpec {
    pub name: String,
    pub channel: String,
    pub chat_id: String,
    /// `every 10 minutes`, `at 2026-12-24T18:00`, or a 5- or 6-field cron
    /// expression.
    pub schedule: String,
    /// IANA time zone for cron expressions and `at` times without an offset.
    pub tz: Option<String>,
    /// What the agent is asked to do when the job runs.
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
    pub limit: u32,
    /// Any of these kinds (all kinds when empty).
    pub kinds: Vec<String>,
    pub channel: Option<String>,
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

impl Message for CtlRequest {
    fn validate(&self) -> Result<(), String> {
        match self {
            CtlRequest::Status => Ok(()),
            CtlRequest::Agent { session, message } => {
                bounded("session", session, MAX_ID)?;
                bounded("message", message, MAX_TEXT)
            }
            CtlRequest::RunTool { name, arguments_json } => {
                bounded("name", name, MAX_ID)?;
                bounded("arguments_json", arguments_json, MAX_TEXT)
            }
            CtlRequest::PairingList => Ok(()),
            CtlRequest::PairingDecide { code, .. } => bounded("code", code, MAX_ID),
            CtlRequest::Reload | CtlRequest::SessionList => Ok(()),
            CtlRequest::ChannelRestart { channel } => bounded("channel", channel, MAX_ID),
            CtlRequest::SessionShow { session, limit } => {
                bounded("session", session, MAX_ID)?;
                listed(*limit)
            }
            CtlRequest::SessionReset { session } => bounded("session", session, MAX_ID),
            CtlRequest::Audit(q) => {
                listed(q.limit)?;
                if q.kinds.len() > 32 {
                    return Err(format!("{} kinds, the limit is 32", q.kinds.len()));
                }
                q.kinds.iter().try_for_each(|k| bounded("kind", k, MAX_ID))?;
                bounded("channel", q.channel.as_deref().unwrap_or(""), MAX_ID)?;
                bounded("user", q.user.as_deref().unwrap_or(""), MAX_ID)
            }
            CtlRequest::UserDecide { channel, user, .. } => {
                bounded("channel", channel, MAX_ID)?;
                bounded("user", user, MAX_ID)
            }
            CtlRequest::CronList
            | CtlRequest::CronRemove { .. }
            | CtlRequest::CronEnable { .. }
            | CtlRequest::CronRun { .. }
            | CtlRequest::PromptList => Ok(()),
            CtlRequest::PromptShow { path } => bounded("path", path, MAX_PATH),
            CtlRequest::PromptAccept { path, sha } => {
                bounded("path", path.as_deref().unwrap_or(""), MAX_PATH)?;
                bounded("sha", sha.as_deref().unwrap_or(""), 64)
            }
            CtlRequest::CronAdd(spec) => {
                bounded("name", &spec.name, MAX_ID)?;
                bounded("channel", &spec.channel, MAX_ID)?;
                bounded("chat_id", &spec.chat_id, MAX_ID)?;
                bounded("schedule", &spec.schedule, MAX_ID)?;
                bounded("tz", spec.tz.as_deref().unwrap_or(""), MAX_ID)?;
                bounded("message", &spec.message, MAX_TEXT)
            }
        }
    }
}

/// A `Probe`'s list: bounded in count and length.
fn names(list: &[String]) -> Result<(), String> {
    if list.len() > MAX_PROBE_NAMES {
        return Err(format!("{} names, the limit is {MAX_PROBE_NAMES}", list.len()));
    }
    list.iter().try_for_each(|n| bounded("name", n, MAX_ID))
}

fn listed(limit: u32) -> Result<(), String> {
    if limit > MAX_LISTED {
        return Err(format!("limit {limit} is above {MAX_LISTED}"));
    }
    Ok(())
}

impl Message for CtlReply {}

impl Message for crate::hello::Hello {}
