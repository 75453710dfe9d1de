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
    // For the packages: `--man-page` prints this program's manual (roff).
    if std::env::args().nth(1).as_deref() == Some("--man-page") {
        let man = clap_mangen::Man::new(<Args as clap::CommandFactory>::command()).section("8");
        return ExitCode::from(u8::from(man.render(&mut std::io::stdout()).is_err()));
    }
    let args = Args::parse();
    // Nothing else on our uid may read our memory (the secrets) or ptrace
    // us: in unprivileged supervise mode the daemons share the uid.
    if let Err(e) = nix::sys::prctl::set_dumpable(false) {
        eprintln!("oxibot-broker: cannot clear the dumpable flag: {e}");
        return ExitCode::FAILURE;
    }
    oxibot_proto::logging::init();
    let (config, report) = match Config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("oxibot-broker: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    oxibot_proto::redact::set_log_redactor(oxibot_proto::redact::Redactor::new(
        config.all_secrets().iter().map(|s| s.expose()),
    ));
    for w in &report.warnings {
        tracing::warn!("{w}");
    }
    if args.check {
        println!("configuration OK: {}", args.config.display());
        return ExitCode::SUCCESS;
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
