//! The one way the tests start OxiBot with a channel: a platform (its fake
//! server, or the real mail servers), the fake LLM, and a broker with only
//! that platform's channel enabled. The channel tests, the assistant tests
//! (`crate::assistant`, on Telegram) and the seam tests all start here; a
//! test without a channel uses [`Broker::start`] with [`secrets`].
//!
//! The tests every channel must pass (`tests/tests/channels.rs`) and each
//! platform's own tests (`tests/tests/telegram.rs`, …) use the same
//! [`Run`], so how a channel is configured, credentialed and waited for is
//! written once. What differs between the files (the allow-list, an extra
//! setting, config outside the channel, more secrets) is said through
//! [`RunBuilder`]; what only one platform can do goes through its fake
//! (`r.p.fake`).

use std::time::Duration;

use serde_json::{json, Value};

use crate::consts::SLOW;
use crate::fake_llm::{FakeLlm, Step};
use crate::harness::{merge, secrets, Broker};
use crate::platform::Platform;

/// A platform, the fake LLM and a broker with the platform's channel: what
/// a channel test drives and looks at.
pub struct Run<P: Platform> {
    /// The platform the users write on; its fake for platform-only checks.
    pub p: P,
    /// The model the broker asks.
    pub llm: FakeLlm,
    /// The real broker, with `P`'s channel daemon under it.
    pub broker: Broker,
}

/// How a [`Run`] is started; [`Run::builder`] makes one. Left as it is, it
/// is the set-up of the shared channel tests: `P` accepts the credential,
/// `alice` is the one allowed user, and the config holds only the channel.
pub struct RunBuilder<'a, P: Platform> {
    script: Vec<Step>,
    accept_credential: bool,
    allow: Option<Vec<String>>,
    settings: Box<dyn FnOnce(&P) -> Value + 'a>,
    config: Box<dyn FnOnce(&str) -> Value + 'a>,
    secrets: Value,
}

impl<'a, P: Platform> RunBuilder<'a, P> {
    /// Whether the platform accepts the credential the broker will present
    /// (true unless told): false tests how a refused one is reported.
    pub fn accept_credential(mut self, accept: bool) -> Self {
        self.accept_credential = accept;
        self
    }

    /// The channel's `allowedUsers`, as the broker names senders. Without
    /// it, `alice` as [`Platform::user`] names her: the platform files
    /// name their users by the platform's own ids.
    pub fn allow(mut self, users: impl IntoIterator<Item = String>) -> Self {
        self.allow = Some(users.into_iter().collect());
        self
    }

    /// Merged last into `channels.<name>`, over [`Platform::settings`]:
    /// access rules, channel options, or a setting that needs the started
    /// platform (a fake's URL).
    pub fn settings(mut self, settings: impl FnOnce(&P) -> Value + 'a) -> Self {
        self.settings = Box::new(settings);
        self
    }

    /// Merged into the broker's config (outside the channel too); given the
    /// fake LLM's URL, for a provider it also serves.
    pub fn config(mut self, config: impl FnOnce(&str) -> Value + 'a) -> Self {
        self.config = Box::new(config);
        self
    }

    /// Merged into the secrets file, over the LLM key and the channel's
    /// credential; each call adds to the last.
    pub fn secrets(mut self, secrets: Value) -> Self {
        merge(&mut self.secrets, secrets);
        self
    }

    /// Starts `P`, then the rest. None when `P` cannot run here (the
    /// test has been skipped).
    pub fn start(self) -> Option<Run<P>> {
        let p = P::start(self.accept_credential)?;
        Some(self.start_on(p))
    }

    /// Starts the fake LLM and the broker for a platform already started,
    /// for a test that starts it its own way (which also decides whether it
    /// accepts the credential).
    pub fn start_on(self, p: P) -> Run<P> {
        let RunBuilder {
            script,
            allow,
            settings: extra_settings,
            config: extra_config,
            secrets: extra_secrets,
            ..
        } = self;
        let llm = FakeLlm::start(script);
        let allow = allow.unwrap_or_else(|| vec![p.user("alice")]);
        let mut settings = p.settings();
        merge(&mut settings, json!({"enabled": true, "allowedUsers": allow}));
        merge(&mut settings, extra_settings(&p));
        let mut config = json!({"channels": {P::NAME: settings}});
        merge(&mut config, extra_config(&llm.base_url));
        let mut secrets = secrets(json!({"channels": {P::NAME: p.credential()}}));
        merge(&mut secrets, extra_secrets);
        let broker = Broker::start(&llm.base_url, config, secrets);
        Run { p, llm, broker }
    }
}

impl<P: Platform> Run<P> {
    /// A set-up that runs `script` on the fake LLM; see [`RunBuilder`].
    pub fn builder<'a>(script: Vec<Step>) -> RunBuilder<'a, P> {
        RunBuilder {
            script,
            accept_credential: true,
            allow: None,
            settings: Box::new(|_: &P| json!({})),
            config: Box::new(|_: &str| json!({})),
            secrets: json!({}),
        }
    }

    /// Waits until the broker reports the channel connected to its
    /// platform: before that, a message sent may find no one listening.
    pub fn wait_connected(&self) {
        self.broker.wait_channel_connected(P::NAME, SLOW);
    }

    /// The channel daemon's entry under `processes` in the broker's status
    /// (pid, restarts, last exit); Null when there is none.
    pub fn process(&self) -> Value {
        let name = format!("channel:{}", P::NAME);
        self.broker.status()["processes"]
            .as_array()
            .and_then(|ps| ps.iter().find(|p| p["name"] == name.as_str()).cloned())
            .unwrap_or(Value::Null)
    }

    /// The channel's entry under `channels` in the broker's status
    /// (connected, counters, last error); Null when there is none.
    pub fn channel_status(&self) -> Value {
        self.broker.status()["channels"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["name"] == P::NAME).cloned())
            .unwrap_or(Value::Null)
    }

    /// The running channel daemon's pid, to kill it or read its `/proc`.
    pub fn channeld_pid(&self) -> i32 {
        let pid = self.broker.process_pid(&format!("channel:{}", P::NAME));
        pid.unwrap_or_else(|| panic!("no {} daemon running", P::NAME))
    }

    /// Waits until the broker has no reply left to deliver, so that what
    /// the platform holds is all there will be.
    pub fn wait_outbox_drained(&self) {
        self.broker.wait_until("outbox drained", Duration::from_secs(10), |st| {
            st["queues"]["outboxPending"] == 0
        });
    }
}
