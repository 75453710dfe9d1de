//! One server's supervisor: start a stdio server in the jail and speak MCP
//! to it over the relay, or reach an HTTP server through the guard; when
//! it ends (or the tool daemon does), say why and start it again after a
//! pause that doubles up to a minute.

use std::sync::Arc;
use std::time::{Duration, Instant};

use oxibot_config::mcp::{McpServer, Transport};
use oxibot_proto::messages::{McpLaunch, ToolCall};
use rmcp::transport::async_rw::AsyncRwTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::{IntoTransport, StreamableHttpClientTransport};
use rmcp::{RoleClient, ServiceExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{offer, Ready, Shared};
use crate::services::Services;
use crate::toolclient::McpEvent;

/// How long a server may take to start and answer `initialize`, and to
/// list its tools.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// The pauses before a restart: doubling from the first to the last.
const FIRST_PAUSE: Duration = Duration::from_secs(1);
const LAST_PAUSE: Duration = Duration::from_secs(60);
/// A server that ran this long starts its pauses over.
const STEADY: Duration = Duration::from_secs(120);
/// The most pages of tools asked for.
const MAX_PAGES: usize = 16;
/// The longest JSON-RPC message read from a server.
const MAX_MESSAGE: usize = 4 << 20;
/// What goes to a server in one relay request.
const INPUT_PIECE: usize = 64 * 1024;
/// How long toold may take to start or stop a server, or pass on input.
const JAIL_WAIT: Duration = Duration::from_secs(20);

pub async fn supervise(svc: Arc<Services>, shared: Arc<Shared>) {
    let mut pause = FIRST_PAUSE;
    loop {
        if shared.transport == Transport::Stdio {
            shared.status().state = "waiting for the tool daemon".into();
            svc.tools.wait_connected().await;
        }
        let config = svc.config();
        let Some(settings) = config.tools.mcp_servers.get(&shared.name) else {
            return;
        };
        shared.status().state = "starting".into();
        let started = Instant::now();
        let reason = run_once(&svc, &shared, settings).await;
        let reason = svc.audit.scrub(&reason, "an MCP server's end");
        svc.audit
            .log("mcp_server", &format!("MCP server {} stopped: {reason}", shared.name));
        tracing::warn!(server = %shared.name, %reason, "MCP server stopped");
        if shared.transport == Transport::Stdio {
            stop_in_jail(&svc, &shared.name);
        }
        if started.elapsed() > STEADY {
            pause = FIRST_PAUSE;
        }
        {
            let mut s = shared.status();
            s.ready = None;
            s.last_error = Some(reason);
            s.restarts += 1;
            s.state = format!("restarting in {} s", pause.as_secs());
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(LAST_PAUSE);
    }
}

/// The server's tools, a page at a time (rmcp's `list_all_tools` keeps
/// every page, and follows a server's cursors without end): at most
/// [`MAX_PAGES`] pages, each sorted before the next is asked for.
async fn list_tools(
    client: &rmcp::service::RunningService<RoleClient, ()>,
    name: &str,
    settings: &McpServer,
) -> Result<(Vec<offer::Offered>, Vec<String>), rmcp::ServiceError> {
    let mut sorter = offer::Sorter::new(name);
    let mut cursor = None;
    for _ in 0..MAX_PAGES {
        let params = cursor.map(|c| rmcp::model::PaginatedRequestParams::default().with_cursor(Some(c)));
        let page = client.peer().list_tools(params).await?;
        sorter.add(page.tools, |t| settings.offers(t));
        match page.next_cursor {
            Some(next) if sorter.wants_more() => cursor = Some(next),
            Some(_) => return Ok(sorter.finish()),
            None => return Ok(sorter.finish()),
        }
    }
    sorter.stopped(format!("(the rest): more than {MAX_PAGES} pages of tools; not listed"));
    Ok(sorter.finish())
}

/// Tells toold to end a server (and its session), in the background.
pub fn stop_in_jail(svc: &Arc<Services>, name: &str) {
    svc.tools.mcp_unroute(name);
    let svc = svc.clone();
    let server = name.to_string();
    tokio::spawn(async move {
        if svc.tools.is_connected() {
            let _ = svc.tools.call(ToolCall::McpStop { server }, JAIL_WAIT).await;
        }
    });
}

/// Runs the server once, to its end; returns why it ended.
async fn run_once(svc: &Arc<Services>, shared: &Arc<Shared>, settings: &McpServer) -> String {
    match settings.transport() {
        Transport::Stdio => run_in_jail(svc, shared, settings).await,
        Transport::Http => run_over_http(svc, shared, settings).await,
    }
}

/// An HTTP server, through the guard (see `http`).
async fn run_over_http(svc: &Arc<Services>, shared: &Arc<Shared>, settings: &McpServer) -> String {
    let Some(url) = settings.url.clone() else {
        return "has no url".into();
    };
    let client = match super::http::Guarded::connect(&url, &settings.headers, &svc.config()).await {
        Ok(c) => c,
        Err(e) => return format!("could not be reached: {e}"),
    };
    let origin = url::Url::parse(&url)
        .map(|u| format!("{}://{}", u.scheme(), u.host_str().unwrap_or_default()))
        .unwrap_or_default();
    svc.audit.log(
        "mcp_server",
        &format!(
            "MCP server {} reached at {origin} from the broker, through the guard",
            shared.name
        ),
    );
    let transport =
        StreamableHttpClientTransport::with_client(client, StreamableHttpClientTransportConfig::with_uri(url));
    speak(svc, shared, settings, transport).await
}

/// A stdio server, in the jail.
async fn run_in_jail(svc: &Arc<Services>, shared: &Arc<Shared>, settings: &McpServer) -> String {
    let name = shared.name.clone();
    let Some(command) = settings.command.clone() else {
        return "has no command".into();
    };
    // Its own key to the door, with its own allowedHosts; revoked when
    // this run ends (dropped).
    let key = match svc.egress.open_for_server(&name, &settings.allowed_hosts).await {
        Ok(key) => key,
        Err(e) => return format!("could not be started: {e}"),
    };
    let mut events = svc.tools.mcp_route(&name);
    let launch = McpLaunch {
        server: name.clone(),
        command,
        args: settings.args.clone(),
        env: settings
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.expose().to_string()))
            .collect(),
        egress: key.as_ref().map(|k| k.pass()),
    };
    if let Err(e) = svc.tools.call(ToolCall::McpStart { launch }, JAIL_WAIT).await {
        return format!("could not be started: {e}");
    }
    svc.audit.log(
        "mcp_server",
        &format!(
            "MCP server {name} started in the jail (network: {})",
            if key.is_some() {
                "its allowedHosts, through the egress door"
            } else {
                "none"
            }
        ),
    );

    let (ours, theirs) = tokio::io::duplex(INPUT_PIECE);
    let (mut from_client, mut to_client) = tokio::io::split(ours);
    // The client's messages, to the server's standard input.
    let uplink = async {
        let mut buf = vec![0u8; INPUT_PIECE];
        loop {
            let n = match from_client.read(&mut buf).await {
                Ok(0) | Err(_) => return "the MCP client closed".to_string(),
                Ok(n) => n,
            };
            let call = ToolCall::McpInput {
                server: name.clone(),
                data: buf[..n].to_vec(),
            };
            if let Err(e) = svc.tools.call(call, JAIL_WAIT).await {
                return format!("could not be written to: {e}");
            }
        }
    };
    // The server's output, to the client; its end.
    let downlink = async {
        while let Some(event) = events.recv().await {
            match event {
                McpEvent::Output(data) => {
                    if to_client.write_all(&data).await.is_err() {
                        return "the MCP client closed".to_string();
                    }
                }
                McpEvent::Ended(how) => return how,
            }
        }
        "the tool daemon went away, and the server with it (or its output was not read in time)".to_string()
    };
    let session = async {
        let (read, write) = tokio::io::split(theirs);
        let transport = AsyncRwTransport::<RoleClient, _, _>::new(read, write).with_max_line_length(MAX_MESSAGE);
        speak(svc, shared, settings, transport).await
    };
    let reason = tokio::select! {
        r = uplink => r,
        r = downlink => r,
        r = session => r,
    };
    drop(key);
    reason
}

/// Speaks MCP over `transport` until the session ends: initialize, list
/// the tools, offer them, then wait. Returns why it ended.
async fn speak<T, E, A>(svc: &Arc<Services>, shared: &Arc<Shared>, settings: &McpServer, transport: T) -> String
where
    T: IntoTransport<RoleClient, E, A>,
    E: std::error::Error + Send + Sync + 'static,
{
    let name = shared.name.clone();
    {
        let client = match tokio::time::timeout(START_TIMEOUT, ().serve(transport)).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return format!("did not complete MCP's initialize: {e}"),
            Err(_) => return format!("did not answer MCP's initialize within {} s", START_TIMEOUT.as_secs()),
        };
        let listed = tokio::time::timeout(START_TIMEOUT, list_tools(&client, &name, settings)).await;
        let (offered, refused) = match listed {
            Ok(Ok(sorted)) => sorted,
            Ok(Err(e)) => return format!("did not list its tools: {e}"),
            Err(_) => return format!("did not list its tools within {} s", START_TIMEOUT.as_secs()),
        };
        if !refused.is_empty() {
            svc.audit.log(
                "mcp_server",
                &svc.audit.scrub(
                    &format!("MCP server {name}: tools refused: {}", refused.join("; ")),
                    "an MCP server's tools",
                ),
            );
        }
        {
            let mut s = shared.status();
            s.state = "ready".into();
            s.offered = offered;
            s.refused = refused;
            s.ready = Some(Ready {
                peer: client.peer().clone(),
                timeout: Duration::from_secs(u64::from(settings.tool_timeout)),
            });
        }
        tracing::info!(server = %name, "MCP server ready");
        match client.waiting().await {
            Ok(reason) => format!("closed the MCP session ({reason:?})"),
            Err(e) => format!("the MCP session failed: {e}"),
        }
    }
}
