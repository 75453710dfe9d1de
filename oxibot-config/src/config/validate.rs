//! Checking a parsed configuration: the rules a `Config` must satisfy
//! beyond what its types say (ranges, required combinations, a provider
//! for every model). Pure checks on the parsed value, no file system or
//! environment, so kept apart from `load.rs`, which calls them last.

use std::path::Path;

use super::load::{invalid, ConfigError};
use super::schema::Config;

impl Config {
    pub(super) fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        if let Some(old) = &self.users.channel {
            return Err(invalid(
                path,
                "users.channel",
                &format!(
                    "each channel now runs as its own user: replace it with \"users\": {{\"channels\": {{\"telegram\": \"{old}\", …}}}}, \
                     or remove it to use the defaults (oxibot-telegram, oxibot-discord, …)"
                ),
            ));
        }
        let d = &self.agents.defaults;
        if d.model.trim().is_empty() {
            return Err(invalid(path, "agents.defaults.model", "must name a model"));
        }
        if self.tools.exec.timeout == 0 || self.tools.exec.timeout > 600 {
            return Err(invalid(path, "tools.exec.timeout", "must be between 1 and 600 seconds"));
        }
        let e = &self.tools.exec;
        if !(1024..=512 * 1024).contains(&e.max_output_bytes) {
            return Err(invalid(
                path,
                "tools.exec.maxOutputBytes",
                "must be between 1024 and 524288",
            ));
        }
        if e.max_processes < 8 || e.max_memory_mb < 64 || e.max_file_size_mb == 0 {
            return Err(invalid(
                path,
                "tools.exec",
                "maxProcesses must be at least 8, maxMemoryMb at least 64, maxFileSizeMb at least 1",
            ));
        }
        for (name, c) in &e.credentials {
            let key = format!("tools.exec.credentials.{name}");
            let fail = |what: &str| Err(invalid(path, &key, what));
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return fail("the name may hold letters, digits, - and _ only");
            }
            if c.hosts.is_empty() {
                return fail("names no hosts (\"hosts\": [\"api.github.com\"])");
            }
            if let Some(h) = c.hosts.iter().find(|h| !e.allowed_hosts.iter().any(|a| a.covers(h))) {
                return fail(&format!(
                    "host {h} is not in tools.exec.allowedHosts: commands could never reach it; add it there"
                ));
            }
            let token = |t: &str| {
                !t.is_empty()
                    && t.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
            };
            if !token(&c.header) || c.header.len() > 64 {
                return fail("header must be one HTTP header name, such as Authorization");
            }
            let plain = |t: &str| t.bytes().all(|b| b == b' ' || b == b'\t' || (0x21..0x7f).contains(&b));
            if !plain(&c.prefix) || c.prefix.len() > 64 {
                return fail("prefix may hold printable characters only (no line breaks)");
            }
            match &c.secret {
                None => {
                    return fail(&format!(
                        "has no secret: set it in the secrets file at tools.exec.credentials.{name}.secret \
                         (oxibotctl secrets set tools.exec.credentials.{name}.secret)"
                    ))
                }
                Some(s) if s.expose().is_empty() || !plain(s.expose()) || s.expose().len() > 4000 => {
                    return fail("its secret must be printable text without line breaks, at most 4000 characters")
                }
                Some(_) => {}
            }
            if let Some(v) = c
                .env
                .iter()
                .find(|v| v.is_empty() || v.len() > 64 || !v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
            {
                return fail(&format!("env: {v:?} is not an environment variable name"));
            }
        }
        for (name, server) in &self.tools.mcp_servers {
            if let Err(why) = crate::mcp::check(name, server) {
                return Err(invalid(path, &format!("tools.mcpServers.{name}"), &why));
            }
        }
        if e.credentials.len() > oxibot_proto::messages::MAX_CREDENTIALS {
            return Err(invalid(path, "tools.exec.credentials", "at most 64 credentials"));
        }
        if d.history_budget_tokens < 1000 {
            return Err(invalid(
                path,
                "agents.defaults.historyBudgetTokens",
                "must be at least 1000",
            ));
        }
        let h = &self.heartbeat;
        if h.enabled && (h.channel.is_none() || h.chat_id.is_none() || h.interval_secs == 0) {
            return Err(invalid(
                path,
                "heartbeat",
                "an enabled heartbeat needs channel, chatId (where its results go) and intervalSecs of at least 1",
            ));
        }
        let s = &self.subagents;
        if s.max_iterations == 0 || s.timeout_secs == 0 {
            return Err(invalid(
                path,
                "subagents",
                "maxIterations and timeoutSecs must be at least 1",
            ));
        }
        match &self.tools.message.allowed_targets {
            crate::abilities::AllowedTargets::OneListForAll(list) => {
                return Err(invalid(
                    path,
                    "tools.message.allowedTargets",
                    &format!(
                        "is now per chat: write {{\"telegram:111\": {}}} to let chat telegram:111 (and its jobs) \
                         write there; one list for every chat let any chat, and any page a turn read, write to \
                         every target",
                        serde_json::to_string(list).unwrap_or_default()
                    ),
                ));
            }
            crate::abilities::AllowedTargets::PerChat(map) => {
                for (from, targets) in map {
                    for chat in std::iter::once(from).chain(targets) {
                        if !chat.contains(':') && chat != "console" {
                            return Err(invalid(
                                path,
                                "tools.message.allowedTargets",
                                &format!("\"{chat}\" is not \"channel:chat_id\""),
                            ));
                        }
                    }
                }
            }
        }
        if let Some(p) = &self.tools.web.search.provider {
            if p != "brave" && p != "searxng" {
                return Err(invalid(
                    path,
                    "tools.web.search.provider",
                    &format!("\"{p}\" is not a search provider (brave or searxng)"),
                ));
            }
        }
        if d.max_tool_iterations == 0 {
            return Err(invalid(path, "agents.defaults.maxToolIterations", "must be at least 1"));
        }
        if !(0.0..=2.0).contains(&d.temperature) {
            return Err(invalid(path, "agents.defaults.temperature", "must be between 0 and 2"));
        }
        let models: Vec<&str> = std::iter::once(&d.model)
            .chain(&d.fallback_models)
            .map(String::as_str)
            .collect();
        crate::owner::check(&self.tools.approval, &self.budgets, &models)
            .map_err(|(key, why)| invalid(path, &key, &why))?;
        for model in std::iter::once(&d.model).chain(&d.fallback_models) {
            self.resolve_provider(model)
                .map_err(|m| invalid(path, "agents.defaults.model", &m.to_string()))?;
        }
        Ok(())
    }
}
