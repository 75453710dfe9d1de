//! Reloading the configuration and secrets without a restart (SIGHUP,
//! `oxibotctl reload`, `oxibotctl secrets set`). Nothing changes unless the
//! new files load and every client builds: a broken edit leaves the running
//! configuration in force and says why.
//!
//! What a reload changes at once: provider keys and URLs, models, limits,
//! the egress door's hosts and credentials (once the door is open),
//! the secrets that are scrubbed (and redacted from logs), transcription,
//! and each channel's settings and credential — a channel whose settings
//! changed has its link closed, so its daemon reconnects and receives the
//! new ones. What needs a restart: which channels are enabled, the users,
//! the directories, supervise mode, the jail's settings, the health
//! endpoint (the answer says so).

use crate::broker::Broker;
use crate::config::Config;
use crate::live::Loaded;
use crate::secret::Scrubber;

/// Loads, checks and puts in force; returns a description of what changed.
pub fn reload(broker: &Broker) -> Result<String, String> {
    let (config, report) = Config::reload(&broker.config_path).map_err(|e| e.to_string())?;
    for w in &report.warnings {
        tracing::warn!("{w}");
    }
    let svc = &broker.svc;
    let old = svc.config();
    let mut needs_restart = Vec::new();
    if old.enabled_channels() != config.enabled_channels() {
        needs_restart.push("the enabled channels");
    }
    if old.supervise != config.supervise || old.runtime_dir != config.runtime_dir || old.state_dir != config.state_dir {
        needs_restart.push("supervise/runtimeDir/stateDir");
    }
    if old.workspace() != config.workspace() || old.tools.sandbox != config.tools.sandbox {
        needs_restart.push("the workspace or the sandbox");
    }
    if old.tools.network_wanted() != config.tools.network_wanted() {
        needs_restart
            .push("whether the jail reaches the network (tools.exec.allowedHosts, an MCP server's allowedHosts)");
    }
    if old.health != config.health {
        needs_restart.push("the health endpoint");
    }
    let changed_channels: Vec<String> = config
        .enabled_channels()
        .into_iter()
        .filter(|c| old.channels.get(c) != config.channels.get(c))
        .collect();

    let scrubber = Scrubber::new(&config.all_secrets());
    let redactor = oxibot_runtime::redact::Redactor::new(config.all_secrets().iter().map(|s| s.expose()));
    // Every client is built before anything is put in force.
    let loaded = Loaded::build(config).map_err(|e| e.to_string())?;
    oxibot_runtime::redact::set_log_redactor(redactor);
    svc.audit.replace_scrubber(scrubber);
    svc.live.replace(loaded);
    // Where commands may go and the credentials set on their way.
    svc.egress.reload(&svc.config(), &svc.audit);
    // MCP servers removed or changed are stopped, new ones started.
    svc.mcp.reconcile(svc);
    for channel in &changed_channels {
        let _ = svc.hub.drop_link(channel);
    }
    svc.audit.log(
        "reload",
        &format!("configuration and secrets reloaded; channels with new settings: {changed_channels:?}"),
    );
    let mut what = "providers, keys, limits and scrubbing".to_string();
    if !changed_channels.is_empty() {
        what.push_str(&format!(
            "; new settings for {} (their daemons reconnect)",
            changed_channels.join(", ")
        ));
    }
    if !needs_restart.is_empty() {
        what.push_str(&format!(
            "; a change to {} takes effect after a restart (systemctl restart oxibot.target)",
            needs_restart.join(", ")
        ));
    }
    Ok(what)
}
