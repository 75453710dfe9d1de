//! oxibot-toold: the tool daemon. The steps, and what each gives up, are
//! in the library (`lib.rs`).

fn main() -> std::process::ExitCode {
    oxibot_toold::main()
}
