//! Logging, the same in every OxiBot process: to standard error, through
//! [`RedactedStderr`](crate::redact::RedactedStderr) (each event in one
//! write, every known secret redacted), with colours only when a person
//! reads it on a terminal (not in a file or the journal), filtered by
//! `OXIBOT_LOG` or `RUST_LOG` (default `info`).

pub fn init() {
    let filter = std::env::var("OXIBOT_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".into());
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(|| crate::redact::RedactedStderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
