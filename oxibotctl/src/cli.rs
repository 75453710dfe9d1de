//! The command line: every command, its arguments, and the exit statuses.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

pub const EXIT_STATUS: &str = "\
Exit status:
  0  done; for status and doctor: everything is up and nothing was found
  1  error: the broker is not running, refused the connection, or the command failed
  2  usage: unknown command or bad arguments
  3  degraded: status found something down (toold, a channel); doctor found something to fix";

#[derive(Parser)]
#[command(name = "oxibotctl", version, about = "Control a running OxiBot broker", after_help = EXIT_STATUS)]
pub struct Cli {
    /// The broker's control socket.
    #[arg(
        long,
        env = "OXIBOT_CTL_SOCKET",
        default_value = "/run/oxibot/ctl.sock",
        global = true
    )]
    pub socket: PathBuf,
    /// The configuration file (for the commands that read or edit it).
    #[arg(
        long,
        env = "OXIBOT_CONFIG",
        default_value = "/etc/oxibot/config.json",
        global = true
    )]
    pub config: PathBuf,
    /// Print machine-readable JSON.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Processes, channels, queues, providers; exits 3 when anything is down.
    Status,
    /// Send one message and print the answer.
    Agent {
        /// The message; "-" reads it from standard input.
        #[arg(short, long)]
        message: String,
        /// Conversation to continue: the console chat `chat` uses, by
        /// default; "telegram:42" speaks in that chat.
        #[arg(long, default_value = "console:default")]
        session: String,
    },
    /// A conversation in the terminal: streamed answers, tool lines, slash
    /// commands (/help), history; Ctrl-C stops an answer, Ctrl-D leaves.
    /// With --json: one JSON answer per line of standard input.
    Chat {
        #[arg(long, default_value = "console:default")]
        session: String,
        /// Answers as plain text, not rendered Markdown (the default when
        /// the output is not a terminal).
        #[arg(long)]
        raw: bool,
    },
    #[command(subcommand)]
    Config(ConfigCommand),
    /// The chat channels: state, restart, enable, disable.
    #[command(subcommand)]
    Channels(ChannelsCommand),
    /// Stored conversations.
    #[command(subcommand)]
    Sessions(SessionsCommand),
    /// The audit log: refusals, credential hand-outs, tool calls, reloads…
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Admit or refuse one user on one channel, whatever the allow-list says.
    #[command(subcommand)]
    Users(UsersCommand),
    /// Admin diagnostics through the same tool daemon the agent uses.
    #[command(subcommand)]
    Tool(ToolCommand),
    /// Check the installation (files, users, sockets, sandbox, units,
    /// settings) and the jail; says the fix for each finding.
    Doctor,
    /// Pairing requests from unknown chat users (dmPolicy "pairing").
    #[command(subcommand)]
    Pairing(PairingCommand),
    /// Scheduled jobs: list, add, remove, enable, disable, run now.
    #[command(subcommand)]
    Cron(CronCommand),
    /// The workspace files that shape the assistant's instructions
    /// (AGENTS.md, SOUL.md, USER.md, TOOLS.md, IDENTITY.md, memory,
    /// HEARTBEAT.md, skills): a change a tool made waits here for the admin.
    #[command(subcommand)]
    Prompt(PromptCommand),
    /// MCP servers (tools.mcpServers): state, tools, last error.
    #[command(subcommand)]
    Mcp(McpCommand),
    /// Requests to run something that wait for the owner (tools.approval).
    #[command(subcommand)]
    Approvals(ApprovalsCommand),
    /// What each chat spent against its budgets (budgets in config.json).
    Budgets {
        #[command(subcommand)]
        command: Option<BudgetsCommand>,
    },
    /// Re-read the configuration and secrets without a restart.
    Reload,
    /// The secrets file: names, and setting one value.
    #[command(subcommand)]
    Secrets(SecretsCommand),
}

#[derive(Subcommand)]
pub enum ChannelsCommand {
    /// Each channel: enabled, connected, counters, last error.
    List,
    /// Stop the channel's daemon; systemd (or the broker) starts it again.
    Restart { channel: String },
    /// Set channels.NAME.enabled and start its daemon.
    Enable { channel: String },
    /// Clear channels.NAME.enabled and stop its daemon.
    Disable { channel: String },
}

#[derive(Subcommand)]
pub enum SessionsCommand {
    /// Every conversation, most recent first.
    List,
    /// The last messages of one conversation.
    Show {
        session: String,
        #[arg(short = 'n', long, default_value_t = 50)]
        limit: u32,
    },
    /// Forget one conversation's history (the user starts afresh).
    Reset { session: String },
}

#[derive(Args, Clone, Default)]
pub struct AuditFilter {
    /// Only this kind (repeat for several): access_denied, tool_call, …
    #[arg(long = "kind")]
    pub kinds: Vec<String>,
    #[arg(long)]
    pub channel: Option<String>,
    /// A user id as the platform gives it.
    #[arg(long)]
    pub user: Option<String>,
    /// Only entries this recent: 30s, 15m, 2h, 7d, or Unix seconds.
    #[arg(long)]
    pub since: Option<String>,
}

#[derive(Subcommand)]
pub enum AuditCommand {
    /// The newest entries.
    Tail {
        #[command(flatten)]
        filter: AuditFilter,
        #[arg(short = 'n', long, default_value_t = 20)]
        lines: u32,
    },
    /// The newest entries, then each new one as it is written, until Ctrl-C.
    Follow {
        #[command(flatten)]
        filter: AuditFilter,
        #[arg(short = 'n', long, default_value_t = 10)]
        lines: u32,
    },
}

#[derive(Subcommand)]
pub enum UsersCommand {
    /// Admit this user on this channel.
    Allow { channel: String, id: String },
    /// Refuse this user on this channel (beats allowedUsers and pairing).
    Deny { channel: String, id: String },
}

#[derive(Subcommand)]
pub enum SecretsCommand {
    /// Set one value (read from standard input), then reload the broker.
    Set {
        /// Dotted name, e.g. providers.openai.apiKey or channels.telegram.token.
        name: String,
    },
    /// The names of the values in the secrets file (never the values).
    List,
}

#[derive(Subcommand)]
pub enum ApprovalsCommand {
    /// Waiting requests, and the patterns "approve always" added.
    List,
    /// Run a waiting request (ID: the code the chat was given).
    Approve {
        id: String,
        /// Also allow its pattern from now on.
        #[arg(long)]
        always: bool,
    },
    /// Refuse a waiting request.
    Deny { id: String },
    /// Remove a pattern "approve always" added.
    Forget { pattern: String },
}

#[derive(Subcommand)]
pub enum BudgetsCommand {
    /// Each chat's spending today and this hour against its limits.
    List,
    /// Forget a chat's spending (CHAT: telegram:42).
    Reset { chat: String },
}

#[derive(Subcommand)]
pub enum PairingCommand {
    /// Pending and decided pairing requests.
    List,
    /// Let the user with this code talk to the assistant.
    Approve { code: String },
    /// Refuse the user with this code.
    Deny { code: String },
}

#[derive(Subcommand)]
pub enum CronCommand {
    /// Every scheduled job, with its next run.
    List,
    /// Schedule a job; its result is sent to CHAT on CHANNEL.
    Add {
        /// A configured channel, or "console" (shown in `oxibotctl chat`).
        #[arg(long)]
        channel: String,
        /// The chat's id on that channel; for "console", the chat's name
        /// (default: "default", the one `chat` and `agent` use).
        #[arg(long)]
        chat: Option<String>,
        /// "every 10 minutes", "at 2026-12-24T18:00", or a 5- or 6-field cron expression.
        #[arg(long)]
        schedule: String,
        /// IANA zone for cron expressions and local `at` times (default: cron.timezone).
        #[arg(long)]
        tz: Option<String>,
        /// What the assistant is asked to do when the job runs.
        #[arg(long, short)]
        message: String,
        #[arg(long)]
        name: Option<String>,
    },
    /// Delete a job.
    Remove { id: u64 },
    /// Resume a paused job (from now on; missed runs are not caught up).
    Enable { id: u64 },
    /// Pause a job.
    Disable { id: u64 },
    /// Run a job once now, outside its schedule.
    Run { id: u64 },
}

#[derive(Subcommand)]
pub enum McpCommand {
    /// Each server: where it runs, its state, the tools the model is
    /// offered, the tools refused and why, restarts, the last error.
    List,
}

#[derive(Subcommand)]
pub enum PromptCommand {
    /// Each prompt file: accepted, or changed and waiting.
    List,
    /// What changed: the accepted version against the waiting one.
    Diff { file: Option<String> },
    /// Use the waiting version of FILE from the next turn on: exactly the
    /// version `prompt diff FILE` showed, named by its whole digest.
    #[command(group(clap::ArgGroup::new("which").required(true).args(["file", "all"])))]
    Accept {
        #[arg(requires = "sha")]
        file: Option<String>,
        /// Every change waiting now (the upgrade path, after `prompt diff`):
        /// a version a turn wrote since is taken too.
        #[arg(long)]
        all: bool,
        /// The whole digest `prompt diff` printed.
        #[arg(long)]
        sha: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum ToolCommand {
    /// Run a command in the jail and exit with its status: `tool exec -- ls -la`
    /// (each word passed as given), or one command line: `tool exec -- 'ls | wc -l'`.
    Exec {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        command: Vec<String>,
    },
    /// Run one tool with JSON arguments: `oxibotctl tool run read_file '{"path":"a.txt"}'`.
    Run { name: String, arguments: String },
}

#[derive(Subcommand)]
pub enum ConfigCommand {
    /// Load and validate the configuration exactly as the broker would,
    /// without starting anything (runs `oxibot-broker --check`).
    Check,
    /// Split an OxiBot/nanobot config.json into config + secrets files,
    /// and say what behaves differently here.
    Import {
        path: PathBuf,
        #[arg(long, default_value = "/etc/oxibot/config.json")]
        config_out: PathBuf,
        #[arg(long, default_value = "/etc/oxibot/secrets.json")]
        secrets_out: PathBuf,
        /// Overwrite existing output files.
        #[arg(long)]
        force: bool,
        /// The user the broker runs as: owns the secrets file (when run as root).
        #[arg(long, default_value = "oxibot")]
        broker_user: String,
    },
}
