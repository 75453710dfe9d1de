//! oxibot-broker: holds the secrets and the agent loop; the only process
//! that talks to LLM providers. It never runs a shell or any program other
//! than its own daemons (in supervise mode).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use oxibot_broker::config::Config;

#[derive(Parser)]
#[command(
    name = "oxibot-broker",
    version,
    about = "OxiBot broker: secrets, agent loop, supervision"
)]
struct Args {
    /// Path to config.json.
    #[arg(long, default_value = "/etc/oxibot/config.json")]
    config: PathBuf,
    /// Check the configuration and exit.
    #[arg(long)]
    check: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    init_logging();
    let (config, report) = match Config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("oxibot-broker: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    for w in &report.warnings {
        tracing::warn!("{w}");
    }
    if args.check {
        println!("configuration OK: {}", args.config.display());
        return ExitCode::SUCCESS;
    }
    if nix::unistd::geteuid().is_root() {
        tracing::warn!(
            "the broker is running as root; it keeps root only to start its daemons under their own users. \
             Run it as the `oxibot` user (the packaged systemd unit does)"
        );
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("oxibot-broker: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(oxibot_broker::broker::run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("oxibot-broker: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging() {
    let filter = std::env::var("OXIBOT_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".into());
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .init();
}
