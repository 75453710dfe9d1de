//! Logging, the same in every OxiBot process: to standard error, through
//! [`RedactedStderr`](crate::redact::RedactedStderr) (each event in one
//! write, every known secret redacted), filtered by `OXIBOT_LOG` or
//! `RUST_LOG` (default `info`). Colours only when a person reads it on a
//! terminal; under journald (`JOURNAL_STREAM` set) no timestamp of ours
//! either, since the journal stamps each line itself.

pub fn init() {
    let filter = std::env::var("OXIBOT_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(|| crate::redact::RedactedStderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        builder.without_time().init();
    } else {
        builder.init();
    }
}
