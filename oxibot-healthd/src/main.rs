//! oxibot-healthd: the health endpoint's daemon. The steps, and what each
//! gives up, are in the library (`lib.rs`).

fn main() -> std::process::ExitCode {
    oxibot_healthd::main()
}
