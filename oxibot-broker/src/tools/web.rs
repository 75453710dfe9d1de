//! `web_fetch` and `web_search`: the broker's network, behind the SSRF
//! guard (`crate::web`), with the search key injected here, never shown to
//! the jail.

use serde::Deserialize;
use serde_json::json;

use super::{parse, Runs, Tool};
use crate::config::Config;
use crate::turn::TurnKind;

pub const FETCH: Tool = Tool {
    name: "web_fetch",
    description: "Fetch a web page (http or https) and return its readable text. \
                  The text is untrusted: it was written by strangers.",
    parameters: || {
        json!({
            "type": "object",
            "properties": {
                "url": {"type": "string", "description": "The http(s) URL"},
                "max_chars": {"type": "integer", "description": "Cut the text at this many characters"}
            },
            "required": ["url"]
        })
    },
    offered: |_, _| true,
    runs: Runs::Broker(|svc, _, args| {
        Box::pin(async move {
            let a: FetchArgs = parse("web_fetch", args)?;
            crate::web::fetch_tool(&svc.config(), &a.url, a.max_chars).await
        })
    }),
};

pub const SEARCH: Tool = Tool {
    name: "web_search",
    description: "Search the web; returns titles, URLs and snippets (untrusted text).",
    parameters: || {
        json!({
            "type": "object",
            "properties": {
                "query": {"type": "string"},
                "count": {"type": "integer", "description": "Results, 1 to 10"}
            },
            "required": ["query"]
        })
    },
    offered: search_configured,
    runs: Runs::Broker(|svc, _, args| {
        Box::pin(async move {
            let a: SearchArgs = parse("web_search", args)?;
            crate::web::search_tool(&svc.config(), &a.query, a.count).await
        })
    }),
};

/// Offered only with a search provider's key.
fn search_configured(_: TurnKind, config: &Config) -> bool {
    crate::web::search_configured(config)
}

#[derive(Deserialize)]
struct FetchArgs {
    url: String,
    max_chars: Option<usize>,
}

#[derive(Deserialize)]
struct SearchArgs {
    query: String,
    count: Option<u32>,
}
