//! oxibot-egressd: the egress door's daemon. The steps, and what each
//! gives up, are in the library (`lib.rs`).

fn main() -> std::process::ExitCode {
    oxibot_egressd::main()
}
