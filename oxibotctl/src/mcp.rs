//! `oxibotctl mcp list`: the MCP servers, as the broker runs them. Tool
//! names, refusals and errors hold a server's own words: shown through
//! `shown_line` (no terminal escapes).

use oxibot_proto::messages::{CtlReply, CtlRequest};
use serde_json::json;

use crate::client::{self, ask, CtlConn};
use crate::show::shown_line;

pub async fn list(conn: &mut CtlConn, json: bool) -> Result<(), String> {
    let servers = match ask(conn, CtlRequest::McpList).await? {
        CtlReply::McpServers(s) => s,
        other => return Err(client::unexpected(&other)),
    };
    if json {
        let items: Vec<_> = servers
            .iter()
            .map(|s| {
                json!({"name": s.name, "transport": s.transport, "state": s.state, "tools": s.tools,
                       "refused": s.refused, "restarts": s.restarts, "lastError": s.last_error})
            })
            .collect();
        crate::show::print_json(&json!({"servers": items}));
        return Ok(());
    }
    if servers.is_empty() {
        println!("no MCP servers (tools.mcpServers is empty)");
    }
    for s in &servers {
        println!("{}  {}  {}", s.name, s.transport, shown_line(&s.state));
        if s.tools.is_empty() {
            println!("  tools: none yet");
        } else {
            println!("  tools: {}", shown_line(&s.tools.join(", ")));
        }
        for r in &s.refused {
            println!("  refused: {}", shown_line(r));
        }
        if s.restarts > 0 {
            println!("  restarts: {}", s.restarts);
        }
        if let Some(e) = &s.last_error {
            println!("  last error: {}", shown_line(e));
        }
    }
    Ok(())
}
