//! oxibot-channeld --channel NAME: one chat platform, one credential. The
//! steps, and what each gives up, are in the library (`lib.rs`).

fn main() -> std::process::ExitCode {
    oxibot_channeld::main()
}
