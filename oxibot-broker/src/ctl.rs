//! The control socket: what `oxibotctl` may ask.

use std::sync::Arc;

use oxibot_proto::messages::{CtlReply, CtlRequest, PairingInfo};
use oxibot_proto::{accept_handshake, FrameError, Role};
use tokio::net::UnixStream;

use crate::broker::Broker;

pub async fn serve(broker: Arc<Broker>, stream: UnixStream) {
    let mut conn = match accept_handshake::<CtlRequest, CtlReply>(stream, Role::Broker, Role::Ctl).await {
        Ok(c) => c,
        Err(e) => {
            broker
                .store
                .audit("protocol_violation", &format!("ctl.sock handshake: {e}"));
            return;
        }
    };
    loop {
        let request = match conn.recv().await {
            Ok(r) => r,
            Err(FrameError::Closed) => return,
            Err(e) => {
                broker.store.audit("protocol_violation", &format!("ctl.sock: {e}"));
                return;
            }
        };
        let reply = handle(&broker, request).await;
        if let Err(e) = conn.send(&reply).await {
            tracing::debug!("ctl client went away: {e}");
            return;
        }
    }
}

async fn handle(broker: &Broker, request: CtlRequest) -> CtlReply {
    match request {
        CtlRequest::Status => CtlReply::Status(broker.status()),
        CtlRequest::Agent { session, message } => match broker.agent.run_turn(&session, &message, Vec::new()).await {
            Ok(text) => CtlReply::AgentReply { text },
            Err(e) => {
                let message = e.to_string();
                broker.record_error(&message);
                CtlReply::Error { message }
            }
        },
        CtlRequest::PairingList => match broker.store.pairings() {
            Ok(list) => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs() as i64)
                    .unwrap_or(0);
                CtlReply::Pairings(
                    list.into_iter()
                        .map(|p| PairingInfo {
                            code: p.code,
                            channel: p.channel,
                            sender: p.sender,
                            status: p.status,
                            age_secs: (now - p.created_at).max(0) as u64,
                        })
                        .collect(),
                )
            }
            Err(e) => CtlReply::Error { message: e.to_string() },
        },
        CtlRequest::PairingDecide { code, approve } => {
            let code = code.trim().to_ascii_uppercase();
            match broker.store.decide_pairing(&code, approve) {
                Ok(Some(p)) => {
                    let verb = if approve { "approved" } else { "denied" };
                    broker.store.audit(
                        "pairing_decided",
                        &format!("code {code} {verb}: channel {} user {}", p.channel, p.sender),
                    );
                    if approve {
                        let text = "You're approved. Say hello!";
                        if let Ok(id) = broker.store.queue_outbox(&p.channel, &p.chat_id, text) {
                            let msg = crate::channels::fresh_send(id, p.chat_id.clone(), text.into(), None);
                            crate::channels::deliver(broker, &p.channel, msg).await;
                        }
                    }
                    CtlReply::Done {
                        message: format!("{verb} user {} on {}", p.sender, p.channel),
                    }
                }
                Ok(None) => CtlReply::Error {
                    message: format!("no pending pairing with code {code}; see `oxibotctl pairing list`"),
                },
                Err(e) => CtlReply::Error { message: e.to_string() },
            }
        }
        CtlRequest::Reload => match crate::reload::reload(broker) {
            Ok(what) => CtlReply::Done {
                message: format!("reloaded: {what}"),
            },
            Err(e) => CtlReply::Error {
                message: format!("reload refused, the running configuration stays: {e}"),
            },
        },
        CtlRequest::RunTool { name, arguments_json } => {
            broker.store.audit("admin_tool", &format!("oxibotctl ran tool {name}"));
            match broker.agent.run_tool_checked("oxibotctl", &name, &arguments_json).await {
                Ok(output) => CtlReply::ToolResult { ok: true, output },
                Err(output) => CtlReply::ToolResult { ok: false, output },
            }
        }
    }
}
