//! The tool daemon's connection: what the broker asks, what toold answers.

use serde::{Deserialize, Serialize};

use super::*;

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
        #[serde(with = "limit::text")]
        command: String,
        #[serde(with = "limit::path")]
        working_dir: Option<String>,
        timeout_secs: u32,
        /// When the jail may reach the network: how this exec goes
        /// through the egress door.
        egress: Option<ExecEgress>,
    },
    ReadFile {
        #[serde(with = "limit::path")]
        path: String,
    },
    WriteFile {
        #[serde(with = "limit::path")]
        path: String,
        #[serde(with = "limit::text")]
        content: String,
    },
    EditFile {
        #[serde(with = "limit::path")]
        path: String,
        #[serde(with = "limit::text")]
        old_text: String,
        #[serde(with = "limit::text")]
        new_text: String,
    },
    ListDir {
        #[serde(with = "limit::path")]
        path: String,
    },
    /// Files under `path` whose workspace-relative path matches a glob.
    FindFiles {
        #[serde(with = "limit::path")]
        pattern: String,
        #[serde(with = "limit::path")]
        path: String,
    },
    /// Lines matching a regex in files under `path` (optionally only files
    /// matching the `include` glob).
    Grep {
        #[serde(with = "limit::path")]
        pattern: String,
        #[serde(with = "limit::path")]
        path: String,
        #[serde(with = "limit::path")]
        include: Option<String>,
        case_insensitive: bool,
    },
    /// A unified diff (one or more files), applied whole or not at all.
    ApplyPatch {
        #[serde(with = "limit::text")]
        patch: String,
    },
    /// A file a user sent through a channel, saved for them (never asked for
    /// by the model). An existing file is never overwritten: toold picks a
    /// free name and reports it.
    /// Sent in pieces: the piece at offset 0 creates the file (the reply
    /// is the path used); later pieces append to that path at `offset`.
    SaveUpload {
        #[serde(with = "limit::path")]
        path: String,
        #[serde(with = "limit::part")]
        data: Vec<u8>,
        #[serde(with = "limit::file_offset")]
        offset: u64,
    },
    /// Workspace files the broker needs for itself (bootstrap files,
    /// memory, skills), never asked for by the model. Each pattern is a
    /// workspace-relative path whose components may be `*` (any one
    /// name). Only regular files are read, never through a symlink, each
    /// capped at `max_bytes`; missing files are left out.
    ReadTexts {
        #[serde(with = "limit::patterns")]
        patterns: Vec<String>,
        #[serde(with = "limit::part_size")]
        max_bytes: u32,
    },
    /// Appends to a workspace file, creating it (and its directories) when
    /// missing: the broker's memory notes. Never through a symlink.
    AppendFile {
        #[serde(with = "limit::path")]
        path: String,
        #[serde(with = "limit::text")]
        content: String,
    },
    /// Which of these programs the jail's commands can run (on the `PATH`
    /// that `Exec` uses) and which environment variables they see: a
    /// skill's requirements, checked where the skill would run.
    Probe {
        #[serde(with = "limit::probe_names")]
        bins: Vec<String>,
        #[serde(with = "limit::probe_names")]
        env: Vec<String>,
    },
    /// Starts a stdio MCP server in the jail (see [`McpLaunch`]). Answered
    /// once it runs; what it writes then comes as [`ToolReply::McpOutput`],
    /// and its end as [`ToolReply::McpEnded`]. A server of that name that
    /// still runs is stopped first.
    McpStart { launch: McpLaunch },
    /// Bytes for a server's standard input (its JSON-RPC messages).
    McpInput {
        #[serde(with = "limit::id")]
        server: String,
        #[serde(with = "limit::part")]
        data: Vec<u8>,
    },
    /// Ends a server and every process of its session.
    McpStop {
        #[serde(with = "limit::id")]
        server: String,
    },
}

/// One stdio MCP server, as toold starts it: in a session of its own (so
/// the door knows its connections), in a Landlock domain of its own (no
/// command and no other server can read its memory, environment or state
/// directory, or signal it), with a state directory of its own as `HOME`.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct McpLaunch {
    /// `tools.mcpServers.<name>`.
    #[serde(with = "limit::id")]
    pub server: String,
    /// The program, run without a shell.
    #[serde(with = "limit::path")]
    pub command: String,
    #[serde(with = "limit::mcp_args")]
    pub args: Vec<String>,
    /// Its environment besides toold's minimal one: names and values, the
    /// values from the secrets file. Never logged (see `Debug`).
    #[serde(with = "limit::mcp_env")]
    pub env: Vec<(String, String)>,
    /// Its way through the egress door, as an exec's (its own key).
    pub egress: Option<ExecEgress>,
}

impl std::fmt::Debug for McpLaunch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpLaunch")
            .field("server", &self.server)
            .field("command", &self.command)
            .field("args", &self.args)
            .field("env", &self.env.iter().map(|(n, _)| n).collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// How many MCP servers toold runs, and how many arguments and
/// environment variables one may have.
pub const MAX_MCP_SERVERS: usize = 16;
pub const MAX_MCP_ARGS: usize = 64;

/// How many names one `Probe` may ask about.
pub const MAX_PROBE_NAMES: usize = 64;

/// Tool daemon → broker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ToolReply {
    Result {
        id: u64,
        outcome: ToolOutcome,
    },
    /// What an MCP server wrote to its standard output, as it came.
    McpOutput {
        #[serde(with = "limit::id")]
        server: String,
        #[serde(with = "limit::part")]
        data: Vec<u8>,
    },
    /// An MCP server ended (or could not be kept): how, and the end of
    /// what it wrote to its standard error (its own words).
    McpEnded {
        #[serde(with = "limit::id")]
        server: String,
        #[serde(with = "limit::path")]
        message: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ToolOutcome {
    Ok {
        #[serde(with = "limit::text")]
        output: String,
    },
    Failed {
        #[serde(with = "limit::text")]
        message: String,
    },
    /// The answer to `ReadTexts`, in pattern order (and name order within a pattern).
    Texts {
        #[serde(with = "limit::text_files")]
        files: Vec<TextFile>,
    },
    /// The answer to `Probe`: what the jail lacks.
    Probed {
        #[serde(with = "limit::probe_names")]
        missing_bins: Vec<String>,
        #[serde(with = "limit::probe_names")]
        missing_env: Vec<String>,
    },
}

/// One file of a `ReadTexts` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextFile {
    /// Workspace-relative.
    #[serde(with = "limit::path")]
    pub path: String,
    /// Lossily decoded UTF-8, at most the requested bytes.
    #[serde(with = "limit::text")]
    pub text: String,
    /// The file was longer than the cap.
    pub truncated: bool,
}

// Every bound of these messages is on its field.
impl Message for ToolRequest {}

impl Message for ToolReply {}

/// An exec's way through the egress door.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecEgress {
    /// The key the door knows this exec by (the broker granted it to the
    /// door first). toold gives it to no command: it tags the connections
    /// of this exec's processes with it.
    #[serde(with = "limit::id")]
    pub key: String,
    /// The certificate (PEM, no key) of the door's authority, which the
    /// exec's commands are to trust besides the system's: the door answers
    /// TLS with it for hosts with a credential. None until the door's
    /// daemon has told it.
    #[serde(with = "limit::path")]
    pub trust: Option<String>,
    /// Environment variables set to a placeholder for the exec's commands,
    /// for tools that insist on a token (`gh` wants `GH_TOKEN`): the door
    /// replaces the header they send with the real credential.
    #[serde(with = "limit::credential_names")]
    pub placeholders: Vec<String>,
}
