//! `web_search`: Brave Search (its key injected here; the model never sees
//! it) or a self-hosted SearXNG (no key). The admin configured the endpoint,
//! so it is not subject to the fetch guard (a SearXNG on localhost is the
//! usual set-up).

use std::time::Duration;

use serde_json::Value;

use crate::config::Config;

const BRAVE_BASE: &str = "https://api.search.brave.com";

enum Provider<'a> {
    Brave { base: &'a str, key: &'a str },
    Searxng { base: &'a str },
}

fn provider(config: &Config) -> Option<Provider<'_>> {
    let s = &config.tools.web.search;
    let key = s.api_key.as_ref().map(|k| k.expose()).filter(|k| !k.is_empty());
    match (s.provider.as_deref(), key, s.base_url.as_deref()) {
        (Some("searxng"), _, Some(base)) => Some(Provider::Searxng { base }),
        (Some("brave") | None, Some(key), base) => Some(Provider::Brave {
            base: base.unwrap_or(BRAVE_BASE),
            key,
        }),
        _ => None,
    }
}

/// Whether the model gets `web_search` (a provider with what it needs).
pub fn search_configured(config: &Config) -> bool {
    provider(config).is_some()
}

pub async fn search(config: &Config, query: &str, count: Option<u32>) -> Result<String, String> {
    let query = query.trim();
    if query.is_empty() {
        return Err("the query is empty".into());
    }
    let provider = provider(config).ok_or(
        "no search provider is configured (tools.web.search: a Brave apiKey, or provider searxng with baseUrl)",
    )?;
    let count = count.unwrap_or(config.tools.web.search.max_results).clamp(1, 10);
    // No redirects: the key header would follow them to another host.
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(config.tools.web.fetch.timeout_secs.max(1)))
        .build()
        .map_err(|e| format!("cannot set up the HTTP client: {e}"))?;
    let (name, request) = match provider {
        Provider::Brave { base, key } => (
            "Brave Search",
            client
                .get(format!("{}/res/v1/web/search", base.trim_end_matches('/')))
                .query(&[("q", query), ("count", &count.to_string())])
                .header("Accept", "application/json")
                .header("X-Subscription-Token", key),
        ),
        Provider::Searxng { base } => (
            "SearXNG",
            client
                .get(format!("{}/search", base.trim_end_matches('/')))
                .query(&[("q", query), ("format", "json")]),
        ),
    };
    let resp = request
        .send()
        .await
        .map_err(|e| format!("{name} could not be reached: {}", e.without_url()))?;
    let status = resp.status();
    if !status.is_success() {
        let body = resp.text().await.unwrap_or_default();
        return Err(format!(
            "{name} answered {status}: {}",
            super::wrap(name, &crate::providers::shorten(body.trim(), 300))
        ));
    }
    let body: Value = resp
        .json()
        .await
        .map_err(|e| format!("{name} answered something that is not search results: {e}"))?;
    let results = match name {
        "Brave Search" => body["web"]["results"].as_array(),
        _ => body["results"].as_array(),
    };
    let lines: Vec<String> = results
        .into_iter()
        .flatten()
        .take(count as usize)
        .enumerate()
        .map(|(i, r)| {
            let snippet = r["description"].as_str().or(r["content"].as_str()).unwrap_or("");
            format!(
                "{}. {}\n   {}\n   {}",
                i + 1,
                r["title"].as_str().unwrap_or(""),
                r["url"].as_str().unwrap_or(""),
                snippet
            )
        })
        .collect();
    if lines.is_empty() {
        return Ok(format!("No results for \"{query}\"."));
    }
    Ok(format!(
        "Results for \"{query}\" ({name}):\n{}",
        super::wrap(name, &lines.join("\n"))
    ))
}
