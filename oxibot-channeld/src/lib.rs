//! oxibot-channeld --channel NAME: one chat platform, one credential.
//!
//! What it gives up, in order:
//! 1. its dumpable flag, first: nothing on its uid may read its memory or
//!    ptrace it;
//! 2. its settings and credential come over the broker connection (the
//!    socketpair a supervising broker handed it, or `channel.sock`) —
//!    nothing secret in argv, the environment or a file;
//! 3. then, before it reads a byte of platform traffic (`sandbox`):
//!    no_new_privs, a Landlock file allow-list (what TLS and DNS need, not
//!    the secrets file or the state), no TCP listening, no signals or
//!    abstract sockets outside itself, and a default-deny seccomp
//!    allow-list (no exec, ptrace, mount, namespaces; IPv4/IPv6 sockets
//!    only);
//! 4. if the broker connection drops, it exits and is restarted.
//!
//! Exit status 78 (EX_CONFIG) means "fix the configuration": the
//! supervisor does not restart it. The library is what the binary runs; it
//! is a library so that the seam tests can run the very same start-up and
//! sandbox in a stand-in for a compromised daemon.

mod attach;
mod discord;
mod email;
mod format;
mod incoming;
mod link;
pub mod sandbox;
mod settings;
mod slack;
pub mod startup;
mod telegram;
mod whatsapp;

/// The readers of what strangers send, for the fuzz targets in `fuzz/`:
/// each takes the raw bytes as they come off the wire. Not an API.
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::format::{
        is_closing_fence, markdown_to_slack, markdown_to_telegram_html, markdown_to_whatsapp, split, split_for_telegram,
    };
    use oxibot_proto::messages::ChannelToBroker;

    fn inbound(incoming: crate::incoming::Incoming) -> ChannelToBroker {
        incoming.into_inbound(Vec::new(), &[])
    }

    /// A received mail, read as the e-mail channel reads it (sender
    /// verification against the authserv-id "mx").
    pub fn email(raw: &[u8]) -> Option<ChannelToBroker> {
        crate::email::read_for_fuzzing(raw)
    }

    /// A Telegram update (Bot API JSON).
    pub fn telegram_update(json: &[u8]) -> Option<ChannelToBroker> {
        let update: teloxide_core::types::Update = serde_json::from_slice(json).ok()?;
        crate::telegram::read(&update, "oxibot_bot").map(|(incoming, _)| inbound(incoming))
    }

    /// A Discord MESSAGE_CREATE payload (gateway JSON).
    pub fn discord_message(json: &[u8]) -> Option<ChannelToBroker> {
        let msg: serenity::all::Message = serde_json::from_slice(json).ok()?;
        crate::discord::read(&msg, serenity::all::UserId::new(1)).map(inbound)
    }

    /// A Slack Events API push (`event_callback` JSON).
    pub fn slack_event(json: &[u8]) -> Option<ChannelToBroker> {
        use slack_morphism::prelude::{SlackEventCallbackBody, SlackPushEvent};
        match serde_json::from_slice::<SlackPushEvent>(json).ok()? {
            SlackPushEvent::EventCallback(cb) => match cb.event {
                SlackEventCallbackBody::Message(msg) => crate::slack::read(&msg, "U0BOT").map(inbound),
                _ => None,
            },
            _ => None,
        }
    }

    /// A Discord INTERACTION_CREATE payload (a button press).
    pub fn discord_press(json: &[u8]) -> Option<ChannelToBroker> {
        match serde_json::from_slice::<serenity::all::Interaction>(json).ok()? {
            serenity::all::Interaction::Component(press) => crate::discord::pressed(&press).map(inbound),
            _ => None,
        }
    }

    /// A Slack interaction payload (a `block_actions` button press).
    pub fn slack_press(json: &[u8]) -> Option<ChannelToBroker> {
        use slack_morphism::prelude::SlackInteractionEvent;
        match serde_json::from_slice::<SlackInteractionEvent>(json).ok()? {
            SlackInteractionEvent::BlockActions(press) => crate::slack::pressed(&press).map(inbound),
            _ => None,
        }
    }

    /// A WhatsApp bridge frame (JSON text).
    pub fn whatsapp_frame(json: &[u8]) -> Option<ChannelToBroker> {
        crate::whatsapp::read(&serde_json::from_slice(json).ok()?).map(inbound)
    }
}

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

#[derive(Parser)]
#[command(name = "oxibot-channeld", version, about = "OxiBot channel daemon")]
pub struct Args {
    /// Which channel to serve (telegram, discord, slack, whatsapp, email).
    #[arg(long)]
    pub channel: String,
    /// The broker's channel socket.
    #[arg(long, default_value = "/run/oxibot/channel.sock")]
    pub socket: PathBuf,
    /// Use this inherited descriptor as the broker connection instead of
    /// connecting to --socket (a supervising broker hands over a socketpair).
    #[arg(long)]
    pub broker_fd: Option<i32>,
    /// Refuse to start unless Landlock confines file access (the broker asks
    /// for this when the daemon shares its uid).
    #[arg(long)]
    pub require_landlock: bool,
}

/// Why the daemon stops.
pub enum Fatal {
    /// Bad settings or credential: restarting will not help.
    Config(String),
    /// The broker went away or misbehaved: restart.
    Broker(String),
}

impl Fatal {
    pub fn config(m: String) -> Self {
        Fatal::Config(m)
    }
    pub fn broker(m: String) -> Self {
        Fatal::Broker(m)
    }
}

impl From<link::LinkError> for Fatal {
    fn from(e: link::LinkError) -> Self {
        Fatal::Broker(e.to_string())
    }
}

const EX_CONFIG: u8 = 78;

/// The daemon: parses its arguments, runs, and maps the outcome to an exit status.
pub fn main() -> ExitCode {
    if let Some(status) = oxibot_runtime::man::printed_if_asked::<Args>() {
        return status;
    }
    let args = Args::parse();
    oxibot_runtime::logging::init();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("oxibot-channeld: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(args));
    // Blocking lookups in flight must not keep a daemon without a broker alive.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Fatal::Config(e)) => {
            eprintln!("oxibot-channeld: {e}");
            ExitCode::from(EX_CONFIG)
        }
        Err(Fatal::Broker(e)) => {
            eprintln!("oxibot-channeld: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), Fatal> {
    let setup = startup::connect(&args).await?;
    // A platform error may quote the credential (Telegram's API URL holds
    // the bot token): every log line is redacted from here on.
    oxibot_runtime::redact::set_log_redactor(setup.redactor());
    // What a burst allocated goes back to the system once it is freed.
    tokio::spawn(oxibot_runtime::heap::trim_periodically());

    // From here on, hostile platform traffic: lock down first.
    let report = sandbox::install(&sandbox::Plan::for_settings(&setup.settings))
        .map_err(|e| Fatal::config(format!("cannot install the sandbox: {e}")))?;
    if args.require_landlock && !report.files_confined {
        return Err(Fatal::config(format!(
            "this daemon shares the broker's uid, and without Landlock nothing would keep it from the \
             broker's files ({}). Use a kernel with Landlock enabled (5.13+), or start the broker as root so \
             that each daemon runs as its own user",
            report.landlock
        )));
    }
    tracing::info!(channel = %args.channel, landlock = %report.landlock, "sandbox installed");

    let startup::Setup {
        link,
        jobs,
        settings,
        credential,
        resume_after,
    } = setup;
    let broker_gone = link.clone();
    let platform = async move {
        match args.channel.as_str() {
            "telegram" => telegram::run(link, jobs, &settings, &credential).await,
            "whatsapp" => whatsapp::run(link, jobs, &settings, &credential).await,
            "email" => email::run(link, jobs, &settings, &credential).await,
            "discord" => discord::run(link, jobs, &settings, &credential, resume_after).await,
            "slack" => slack::run(link, jobs, &settings, &credential).await,
            other => unknown_channel(link, other).await,
        }
    };
    // The daemon lives exactly as long as its broker connection.
    tokio::select! {
        result = platform => result,
        _ = broker_gone.closed() => Err(Fatal::broker("the broker connection closed; exiting".into())),
    }
}

async fn unknown_channel(link: link::Link, other: &str) -> Result<(), Fatal> {
    let msg = format!(
        "this build has no client for channel \"{other}\" yet (available: telegram, discord, slack, whatsapp, email)"
    );
    link.status(false, Some(msg.clone())).await;
    Err(Fatal::config(msg))
}
