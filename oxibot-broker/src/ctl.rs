//! The control socket: what `oxibotctl` may ask.

use std::sync::Arc;

use oxibot_proto::messages::{CtlReply, CtlRequest};
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
        CtlRequest::Agent { session, message } => match broker.agent.run_turn(&session, &message).await {
            Ok(text) => CtlReply::AgentReply { text },
            Err(e) => {
                let message = e.to_string();
                broker.record_error(&message);
                CtlReply::Error { message }
            }
        },
        CtlRequest::RunTool { name, arguments_json } => {
            broker.store.audit("admin_tool", &format!("oxibotctl ran tool {name}"));
            match broker.agent.run_tool_checked(&name, &arguments_json).await {
                Ok(output) => CtlReply::ToolResult { ok: true, output },
                Err(output) => CtlReply::ToolResult { ok: false, output },
            }
        }
    }
}
