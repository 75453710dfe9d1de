//! A rogue process that claims to be a channel daemon, for the seam tests:
//! it speaks the real protocol (oxibot-proto) and tries what a compromised
//! or stray process on a daemon's uid would try.
//!
//! ```text
//! rogue-channel --socket PATH --channel NAME [--delivered ID]... [--hold-secs N]
//! rogue-channel --fd N --channel NAME ...
//! ```
//!
//! It prints one JSON object on stdout: how far it got (`connect_error`,
//! `handshake_error`, `credential` from a Setup, `refused` when the broker
//! closed the link after Register), which replies the broker then handed it
//! (`sends`), and whether the broker cut it off while it held the link
//! (`cut_off`).

use std::os::fd::FromRawFd;
use std::time::Duration;

use oxibot_proto::messages::{BrokerToChannel, ChannelToBroker};
use oxibot_proto::{connect_handshake, FrameError, Role};
use serde_json::{json, Value};

struct Args {
    socket: Option<String>,
    fd: Option<i32>,
    channel: String,
    delivered: Vec<u64>,
    hold: Duration,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        socket: None,
        fd: None,
        channel: String::new(),
        delivered: Vec::new(),
        hold: Duration::from_secs(0),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--socket" => args.socket = Some(value),
            "--fd" => args.fd = Some(value.parse().map_err(|e| format!("--fd: {e}"))?),
            "--channel" => args.channel = value,
            "--delivered" => args
                .delivered
                .push(value.parse().map_err(|e| format!("--delivered: {e}"))?),
            "--hold-secs" => args.hold = Duration::from_secs(value.parse().map_err(|e| format!("--hold-secs: {e}"))?),
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(args)
}

fn main() {
    let report = match parse_args() {
        Ok(args) => match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(rt) => rt.block_on(attempt(args)),
            Err(e) => json!({"error": e.to_string()}),
        },
        Err(e) => json!({"error": e}),
    };
    println!("{report}");
}

async fn attempt(args: Args) -> Value {
    let mut report = json!({});
    let stream = match (&args.socket, args.fd) {
        (_, Some(fd)) => {
            // SAFETY: the fd was handed to us by whoever started us (the test).
            let std_stream = unsafe { std::os::unix::net::UnixStream::from_raw_fd(fd) };
            let _ = std_stream.set_nonblocking(true);
            tokio::net::UnixStream::from_std(std_stream)
        }
        (Some(path), None) => tokio::net::UnixStream::connect(path).await,
        (None, None) => return json!({"error": "give --socket or --fd"}),
    };
    let stream = match stream {
        Ok(s) => s,
        Err(e) => {
            report["connect_error"] = json!(e.to_string());
            report["connect_errno"] = json!(e.raw_os_error());
            return report;
        }
    };
    let conn = connect_handshake::<BrokerToChannel, ChannelToBroker>(stream, Role::Channel, Role::Broker).await;
    let mut conn = match conn {
        Ok(c) => c,
        Err(e) => {
            report["handshake_error"] = json!(e.to_string());
            return report;
        }
    };
    if conn
        .send(&ChannelToBroker::Register {
            channel: args.channel.clone(),
        })
        .await
        .is_err()
    {
        report["refused"] = json!(true);
        return report;
    }
    match tokio::time::timeout(Duration::from_secs(10), conn.recv()).await {
        Ok(Ok(BrokerToChannel::Setup { credential_json, .. })) => report["credential"] = json!(credential_json),
        Ok(Ok(other)) => report["unexpected"] = json!(format!("{other:?}")),
        Ok(Err(_)) => {
            report["refused"] = json!(true);
            return report;
        }
        Err(_) => {
            report["refused"] = json!("no answer within 10 s");
            return report;
        }
    }
    for id in &args.delivered {
        if conn.send(&ChannelToBroker::Delivered { outbox_id: *id }).await.is_err() {
            report["cut_off"] = json!(true);
        }
    }
    let mut sends = Vec::new();
    let deadline = tokio::time::Instant::now() + args.hold;
    loop {
        match tokio::time::timeout_at(deadline, conn.recv()).await {
            Err(_) => break,
            Ok(Ok(BrokerToChannel::Send { outbox_id, text, .. })) => sends.push(json!({"id": outbox_id, "text": text})),
            Ok(Ok(_)) => {}
            Ok(Err(FrameError::Closed)) | Ok(Err(_)) => {
                report["cut_off"] = json!(true);
                break;
            }
        }
    }
    report["sends"] = json!(sends);
    report
}
