//! oxibot-channeld --channel NAME: one chat platform, one credential.
//!
//! What it gives up, in order:
//! 1. its settings and credential come over the broker socket — nothing
//!    secret in argv, the environment or a file;
//! 2. then no_new_privs and a seccomp filter (no exec, no ptrace, no mount,
//!    Unix/IPv4/IPv6 sockets only), before it reads any platform traffic;
//! 3. if the broker connection drops, it exits and is restarted.
//!
//! Exit status 78 (EX_CONFIG) means "fix the configuration": the
//! supervisor does not restart it.

mod attach;
mod discord;
mod email;
mod format;
mod link;
mod sandbox;
mod settings;
mod slack;
mod telegram;
mod whatsapp;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use oxibot_proto::messages::{BrokerToChannel, ChannelToBroker};
use oxibot_proto::{connect_handshake, Role};
use zeroize::Zeroizing;

#[derive(Parser)]
#[command(name = "oxibot-channeld", version, about = "OxiBot channel daemon")]
struct Args {
    /// Which channel to serve (telegram, discord, slack, whatsapp, email).
    #[arg(long)]
    channel: String,
    /// The broker's channel socket.
    #[arg(long, default_value = "/run/oxibot/channel.sock")]
    socket: PathBuf,
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

const EX_CONFIG: u8 = 78;

fn main() -> ExitCode {
    let args = Args::parse();
    let filter = std::env::var("OXIBOT_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".into());
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("oxibot-channeld: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
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
    let stream = tokio::net::UnixStream::connect(&args.socket).await.map_err(|e| {
        Fatal::broker(format!(
            "cannot connect to {}: {e}; is the broker running?",
            args.socket.display()
        ))
    })?;
    let mut conn = connect_handshake::<BrokerToChannel, ChannelToBroker>(stream, Role::Channel, Role::Broker)
        .await
        .map_err(|e| Fatal::broker(format!("handshake with the broker failed: {e}")))?;
    conn.send(&ChannelToBroker::Register {
        channel: args.channel.clone(),
    })
    .await
    .map_err(|e| Fatal::broker(format!("cannot register: {e}")))?;
    let (settings, credential, resume_after) = match conn.recv().await {
        Ok(BrokerToChannel::Setup {
            settings_json,
            credential_json,
            resume_after,
            ..
        }) => (settings_json, Zeroizing::new(credential_json), resume_after),
        Ok(_) => return Err(Fatal::broker("the broker sent something other than Setup first".into())),
        Err(e) => {
            return Err(Fatal::config(format!(
                "the broker refused channel \"{}\" ({e}); is it enabled in config.json?",
                args.channel
            )))
        }
    };

    // From here on, hostile platform traffic: lock down first.
    sandbox::install().map_err(|e| Fatal::config(format!("cannot install the sandbox: {e}")))?;

    let (reader, writer) = conn.split();
    let (link, jobs) = link::Link::start(reader, writer);
    match args.channel.as_str() {
        "telegram" => telegram::run(link, jobs, &settings, &credential).await,
        "whatsapp" => whatsapp::run(link, jobs, &settings, &credential).await,
        "email" => email::run(link, jobs, &settings, &credential).await,
        "discord" => discord::run(link, jobs, &settings, &credential, resume_after).await,
        "slack" => slack::run(link, jobs, &settings, &credential).await,
        other => {
            let msg = format!(
                "this build has no client for channel \"{other}\" yet (available: telegram, discord, slack, whatsapp, email)"
            );
            link.status(false, Some(msg.clone())).await;
            Err(Fatal::config(msg))
        }
    }
}
