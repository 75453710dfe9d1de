//! `web_search`: Brave Search (its key injected here; the model never sees
//! it) or a self-hosted SearXNG (no key). The admin configured the endpoint,
//! so it is not subject to the fetch guard (a SearXNG on localhost is the
//! usual set-up).

use std::time::Duration;

use serde_json::Value;

use crate::config::Config;

const BRAVE_BASE: &str = "https://api.search.brave.com";
/// A search answer is a few kilobytes; a server that sends more is cut off
/// here rather than held in memory whole.
const MAX_BODY: usize = 2 << 20;

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
    // No redirects: the key header would follow them to another host. No
    // proxy from the environment either: the admin named the endpoint, and
    // a proxy variable would send the key to whoever runs the proxy.
    let client = reqwest::Client::builder()
        .no_proxy()
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
    let mut resp = request
        .send()
        .await
        .map_err(|e| format!("{name} could not be reached: {}", e.without_url()))?;
    let status = resp.status();
    let mut raw = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| format!("{name}: reading the answer failed: {}", e.without_url()))?
    {
        if raw.len() + chunk.len() > MAX_BODY {
            if !status.is_success() {
                break;
            }
            return Err(format!(
                "{name} sent more than {} MiB; no results taken",
                MAX_BODY >> 20
            ));
        }
        raw.extend_from_slice(&chunk);
    }
    if !status.is_success() {
        let body = String::from_utf8_lossy(&raw);
        return Err(format!(
            "{name} answered {status}: {}",
            super::wrap(name, &crate::providers::shorten(body.trim(), 300))
        ));
    }
    let body: Value = serde_json::from_slice(&raw)
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

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A one-answer HTTP server on loopback; returns its port and a hit counter.
    async fn serve(body: Vec<u8>) -> (u16, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                let body = body.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let _ = s.read(&mut buf).await;
                    let head = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                        body.len()
                    );
                    let _ = s.write_all(head.as_bytes()).await;
                    let _ = s.write_all(&body).await;
                });
            }
        });
        (port, hits)
    }

    fn searxng_at(dir: &std::path::Path, port: u16) -> Config {
        let secrets = dir.join("secrets.json");
        std::fs::write(&secrets, r#"{"providers":{"openai":{"apiKey":"sk-test-123456"}}}"#).unwrap();
        std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o600)).unwrap();
        let config = dir.join("config.json");
        let text = format!(
            r#"{{"secretsFile": "{}", "agents": {{"defaults": {{"model": "gpt-4o"}}}},
                "tools": {{"web": {{"search": {{"provider": "searxng", "baseUrl": "http://127.0.0.1:{port}"}}}}}}}}"#,
            secrets.display()
        );
        std::fs::write(&config, text).unwrap();
        Config::load_with_env(&config, Vec::new()).unwrap().0
    }

    /// The review's case: the search client honoured proxy variables from
    /// the environment (a Brave key would go to whoever runs the proxy) and
    /// read answers without a size limit.
    #[tokio::test]
    async fn no_proxy_from_the_environment_and_a_bounded_answer() {
        let d = tempfile::tempdir().unwrap();
        let (proxy, proxied) = serve(br#"{"results": [{"title": "from the proxy"}]}"#.to_vec()).await;
        // nextest runs each test in a process of its own.
        for var in ["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"] {
            std::env::set_var(var, format!("http://127.0.0.1:{proxy}"));
        }
        let (site, _) = serve(br#"{"results": [{"title": "the real answer", "url": "https://e.x/"}]}"#.to_vec()).await;
        let out = search(&searxng_at(d.path(), site), "tea", None).await.unwrap();
        assert!(out.contains("the real answer"), "{out}");
        assert_eq!(proxied.load(Ordering::SeqCst), 0, "the search went through the proxy");

        let (huge, _) = serve(vec![b' '; MAX_BODY + 1024]).await;
        let e = search(&searxng_at(d.path(), huge), "tea", None).await.unwrap_err();
        assert!(e.contains("sent more than 2 MiB"), "{e}");
    }
}
