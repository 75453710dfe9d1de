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
    /// Check the configuration (load it, build every client) and exit.
    #[arg(long)]
    check: bool,
    /// With --check: print the result as JSON.
    #[arg(long, requires = "check")]
    json: bool,
}

fn main() -> ExitCode {
    if let Some(status) = oxibot_runtime::man::printed_if_asked::<Args>() {
        return status;
    }
    let args = Args::parse();
    // Whatever the broker creates (the state directory, the database, logs
    // of a failed start) is its own: as systemd's UMask=0077 does, also
    // when it is started some other way.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    // Nothing else on our uid may read our memory (the secrets) or ptrace
    // us: in unprivileged supervise mode the daemons share the uid.
    if let Err(e) = nix::sys::prctl::set_dumpable(false) {
        eprintln!("oxibot-broker: cannot clear the dumpable flag: {e}");
        return ExitCode::FAILURE;
    }
    if args.check {
        return check(&args.config, args.json);
    }
    oxibot_runtime::logging::init();
    let (config, report) = match Config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("oxibot-broker: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    oxibot_runtime::redact::set_log_redactor(oxibot_runtime::redact::Redactor::new(
        config.all_secrets().iter().map(|s| s.expose()),
    ));
    for w in &report.warnings {
        tracing::warn!("{w}");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("oxibot-broker: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(oxibot_broker::broker::run(config, args.config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("oxibot-broker: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `--check`: everything the start does before it opens a socket — the
/// files, every provider client, transcription — and nothing after.
fn check(path: &std::path::Path, json: bool) -> ExitCode {
    let result = Config::load(path)
        .map_err(|e| e.to_string())
        .and_then(|(config, report)| {
            oxibot_broker::providers::LlmClient::new(&config).map_err(|e| e.to_string())?;
            oxibot_broker::providers::Transcriber::new(&config).map_err(|e| e.to_string())?;
            Ok((config, report))
        });
    match result {
        Ok((config, report)) => {
            let model = &config.agents.defaults.model;
            let provider = config.resolve_provider(model).map(|p| p.name).unwrap_or("?");
            if json {
                let summary = serde_json::json!({"ok": true, "model": model, "provider": provider,
                    "warnings": report.warnings, "channels": config.enabled_channels(),
                    "sandbox": config.tools.sandbox.as_arg()});
                println!("{summary}");
            } else {
                for w in &report.warnings {
                    println!("warning: {w}");
                }
                println!(
                    "configuration OK ({}): model {model} via {provider}; channels: {:?}",
                    path.display(),
                    config.enabled_channels()
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            if json {
                println!("{}", serde_json::json!({"ok": false, "error": e}));
            } else {
                eprintln!("oxibot-broker: configuration error: {e}");
            }
            ExitCode::FAILURE
        }
    }
}
