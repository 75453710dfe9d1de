//! The door's core on a loopback port, for trying it by hand (and for an
//! attacker's review) before the daemon exists:
//!
//! ```text
//! cargo run -p oxibot-egress --example door -- --listen 127.0.0.1:3128 \
//!     --allow 'api.github.com' --allow '127.0.0.1:8080' --private 127.0.0.1 \
//!     --credential '127.0.0.1:8080=Authorization=Bearer =SECRET'
//! ```
//!
//! It prints one token per `--grant` (default one) on stdout, then one line
//! per connection with its record. `--revoke-after SECS` revokes the first
//! token after that long (a process left behind by an ended exec).

use std::sync::Arc;
use std::time::Duration;

use oxibot_egress::grants::{Grant, Grants, PROXY_USER};
use oxibot_egress::inject::Injection;
use oxibot_egress::proxy::{serve, Policy};
use oxibot_egress::{Guard, SystemLookup};
use oxibot_proto::settings::HostPattern;

/// Connections open at once; more are closed unanswered.
const MAX_CONNECTIONS: usize = 256;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut listen = "127.0.0.1:3128".to_string();
    let (mut allowed, mut private, mut injections) = (Vec::new(), Vec::new(), Vec::new());
    let (mut grants_wanted, mut revoke_after) = (1u64, None);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--listen" => listen = value,
            "--allow" => allowed.push(HostPattern::parse(&value)?),
            "--private" => private.push(value),
            "--grant" => grants_wanted = value.parse()?,
            "--revoke-after" => revoke_after = Some(Duration::from_secs(value.parse()?)),
            "--credential" => {
                // HOSTPATTERN=HEADER=PREFIX=SECRET
                let parts: Vec<&str> = value.splitn(4, '=').collect();
                let [host, header, prefix, secret] = parts[..] else {
                    return Err("--credential HOSTPATTERN=HEADER=PREFIX=SECRET".into());
                };
                injections.push(Injection {
                    name: format!("credential-{}", injections.len() + 1),
                    hosts: vec![HostPattern::parse(host)?],
                    header: header.into(),
                    prefix: prefix.into(),
                    secret: secret.into(),
                });
            }
            other => return Err(format!("unknown flag {other}").into()),
        }
    }
    let policy = Arc::new(Policy {
        allowed,
        guard: Guard::new(&private)?,
        grants: Grants::default(),
        injections,
        idle: oxibot_egress::proxy::IDLE,
    });
    let mut tokens = Vec::new();
    for call in 1..=grants_wanted {
        let token = policy.grants.grant(Grant {
            session: "door-example".into(),
            call,
        })?;
        println!("token {call}: {token}  (proxy URL http://{PROXY_USER}:{token}@{listen})");
        tokens.push(token);
    }
    if let (Some(after), Some(first)) = (revoke_after, tokens.first().cloned()) {
        let policy = policy.clone();
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            policy.grants.revoke(&first);
            println!("token 1 revoked");
        });
    }
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    // A cap on open connections, and an accept that survives running out
    // of descriptors: the daemon will do the same.
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                eprintln!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            continue;
        };
        let policy = policy.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let record = serve(stream, &policy, &SystemLookup).await;
            println!(
                "{:?}:{:?} grant={:?} injected={:?} decision={} up={} down={} in {:?}",
                record.host,
                record.port,
                record.grant.map(|g| g.call),
                record.injected,
                record.decision,
                record.bytes_up,
                record.bytes_down,
                record.duration
            );
        });
    }
}
