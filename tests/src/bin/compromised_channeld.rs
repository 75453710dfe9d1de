//! A stand-in for a compromised channel daemon, for the seam tests. It
//! starts exactly as `oxibot-channeld` does — the same start-up and the
//! same sandbox, from the daemon's own library — and then, instead of
//! serving a platform, tries what an attacker who took the daemon over
//! would try: read the secrets file, the state database and the broker's
//! memory, signal or ptrace the broker, reach the control socket, run a
//! program, listen on TCP, write a file. Beside them, two things the daemon
//! must still be able to do (read /etc/hosts, connect over TCP).
//!
//! What it finds goes to the broker as its status (`last_error`, prefixed
//! `ATTACK `), which `oxibotctl status` shows; the targets come in the
//! channel's settings under `attack`.

use std::io::Read;
use std::time::Duration;

use clap::Parser;
use serde_json::{json, Value};

fn outcome<T>(r: std::io::Result<T>) -> Value {
    match r {
        Ok(_) => json!("ok"),
        Err(e) => match e.raw_os_error() {
            Some(n) => json!(format!("{:?}", nix::errno::Errno::from_raw(n))),
            None => json!(format!("error: {e}")),
        },
    }
}

fn nix_outcome<T>(r: nix::Result<T>) -> Value {
    outcome(r.map_err(std::io::Error::from))
}

/// `broker` is the broker's pid, learnt before the sandbox (an attacker
/// could guess it; getppid itself is not in the allow-list).
fn attack(targets: &Value, broker: nix::unistd::Pid) -> Value {
    let path = |k: &str| targets[k].as_str().unwrap_or_default().to_string();
    let read = |p: String| {
        std::fs::File::open(p).and_then(|mut f| {
            let mut buf = [0u8; 16];
            f.read(&mut buf)
        })
    };
    json!({
        "read_secrets": outcome(read(path("secrets"))),
        "read_db": outcome(read(path("db"))),
        "read_broker_mem": outcome(read(format!("/proc/{broker}/mem"))),
        "read_broker_environ": outcome(read(format!("/proc/{broker}/environ"))),
        "signal_broker": nix_outcome(nix::sys::signal::kill(broker, nix::sys::signal::Signal::SIGCONT)),
        "ptrace_broker": nix_outcome(nix::sys::ptrace::attach(broker)),
        "connect_ctl": outcome(std::os::unix::net::UnixStream::connect(path("ctl"))),
        "exec": outcome(std::process::Command::new("/bin/true").status()),
        "tcp_listen": outcome(std::net::TcpListener::bind("127.0.0.1:0")),
        "write_tmp": outcome(std::fs::File::create("/tmp/oxibot-compromised-was-here")),
        // What the daemon must still be able to do.
        "read_hosts": outcome(read("/etc/hosts".into())),
        "tcp_connect": outcome(std::net::TcpStream::connect(path("tcp"))),
    })
}

fn main() -> std::process::ExitCode {
    let args = oxibot_channeld::Args::parse();
    let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
        return std::process::ExitCode::FAILURE;
    };
    rt.block_on(async move {
        let Ok(setup) = oxibot_channeld::startup::connect(&args).await else {
            return std::process::ExitCode::FAILURE;
        };
        let broker = nix::unistd::getppid();
        let plan = oxibot_channeld::sandbox::Plan::for_settings(&setup.settings);
        let sandbox = match oxibot_channeld::sandbox::install(&plan) {
            Ok(report) => json!(report.landlock),
            Err(e) => json!(format!("sandbox failed: {e}")),
        };
        let settings: Value = serde_json::from_str(&setup.settings).unwrap_or_default();
        // A line dressed up as the broker's own, with a terminal escape.
        eprintln!("2026-01-01T00:00:00Z  INFO oxibot_broker::broker: FORGED broker line\u{1b}[2J");
        let mut findings = attack(&settings["attack"], broker);
        findings["landlock"] = sandbox;
        setup.link.status(false, Some(format!("ATTACK {findings}"))).await;
        // Hold the link, as a daemon would.
        tokio::time::sleep(Duration::from_secs(3600)).await;
        std::process::ExitCode::SUCCESS
    })
}
