//! oxibot-channeld --channel NAME: one chat platform, one credential.
//!
//! This build is the skeleton: it connects to the broker, registers for its
//! channel, receives its settings and credential, and exits cleanly. The
//! platform clients (Telegram, Discord, Slack, e-mail, WhatsApp) arrive in
//! their own change.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use oxibot_proto::messages::{BrokerToChannel, ChannelToBroker};
use oxibot_proto::{connect_handshake, Role};

#[derive(Parser)]
#[command(name = "oxibot-channeld", version, about = "OxiBot channel daemon")]
struct Args {
    /// Which channel to serve (telegram, discord, slack, email, whatsapp).
    #[arg(long)]
    channel: String,
    /// The broker's channel socket.
    #[arg(long, default_value = "/run/oxibot/channel.sock")]
    socket: PathBuf,
}

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
        Err(e) => {
            eprintln!("oxibot-channeld: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    let stream = tokio::net::UnixStream::connect(&args.socket).await.map_err(|e| {
        format!(
            "cannot connect to {}: {e}; is the broker running?",
            args.socket.display()
        )
    })?;
    let mut conn = connect_handshake::<BrokerToChannel, ChannelToBroker>(stream, Role::Channel, Role::Broker)
        .await
        .map_err(|e| format!("handshake with the broker failed: {e}"))?;
    conn.send(&ChannelToBroker::Register {
        channel: args.channel.clone(),
    })
    .await
    .map_err(|e| format!("cannot register: {e}"))?;
    match conn.recv().await {
        Ok(BrokerToChannel::Setup { channel, .. }) => {
            tracing::warn!(%channel, "received settings, but this build has no client for this platform yet; exiting");
            Ok(())
        }
        Ok(_) => Err("the broker sent something other than Setup first".into()),
        Err(e) => Err(format!(
            "the broker refused channel \"{}\" ({e}); is it enabled in config.json?",
            args.channel
        )),
    }
}
