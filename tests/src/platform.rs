//! One face for the five chat platforms, so that the tests every channel
//! must pass (`tests/tests/channels.rs`) are written once, and every
//! channel test starts the same way ([`crate::run::Run`]). Each
//! implementation drives its fake server (or, for e-mail, the real Dovecot
//! and OpenSMTPD) the way a user on that platform would; the fakes are
//! public for what only one platform does.
//!
//! Users are named by short tags ("alice", "stranger"); each platform maps
//! a tag to its own kind of id and to the chat the bot answers in.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde_json::{json, Value};

use crate::fake_discord::FakeDiscord;
use crate::fake_slack::FakeSlack;
use crate::fake_telegram::FakeTelegram;
use crate::fake_whatsapp::FakeBridge;
use crate::mail;

pub trait Platform: Sized {
    /// The channel's name in config.json.
    const NAME: &'static str;
    /// The most characters one message may hold; None when replies are never split.
    const LIMIT: Option<usize>;

    /// Starts the platform. With `accept_credential` false it refuses the
    /// credential the broker will present. None when it cannot run here.
    fn start(accept_credential: bool) -> Option<Self>;
    /// `channels.<name>` in config.json, without the access rules.
    fn settings(&self) -> Value;
    /// `channels.<name>` in the secrets file.
    fn credential(&self) -> Value;
    /// A credential string that must be in the daemon's memory.
    fn credential_marker(&self) -> String;
    /// The id an allow-list names `who` by (the broker's sender id).
    fn user(&self, who: &str) -> String;
    /// A direct message from `who`; returns the platform's id for it.
    fn send(&self, who: &str, text: &str) -> String;
    /// What the bot has sent to `who`, in order, as the user sees it.
    fn replies(&self, who: &str) -> Vec<String>;
    /// Something on the platform's wire that the client cannot make sense of.
    fn send_malformed(&self);
    /// What `oxibotctl status` must say about a refused credential.
    fn rejection_words(&self) -> &'static str;
    /// Waits until the daemon has certainly fetched message `id` from the platform.
    fn wait_fetched(&self, _id: &str) {
        std::thread::sleep(Duration::from_millis(500));
    }
    /// Whether the platform's cursor has moved past message `id` (Telegram
    /// offset, Slack envelope ack, IMAP \Seen, bridge ack); None where the
    /// platform has no cursor.
    fn committed(&self, id: &str) -> Option<bool>;
    /// Whether a reply part keeps its code block whole.
    fn code_blocks_whole(part: &str) -> bool {
        part.matches("```").count().is_multiple_of(2)
    }

    fn wait_replies(&self, who: &str, n: usize, timeout: Duration) -> Vec<String> {
        crate::poll::wait_for(&format!("{n} replies to {who} on {}", Self::NAME), timeout, || {
            Some(self.replies(who)).filter(|r| r.len() >= n)
        })
    }
}

/// A fake's URL with `localhost` for 127.0.0.1: the daemon then resolves a
/// name (getaddrinfo, in its sandbox) as it does for the real platforms.
fn by_name(url: &str) -> String {
    url.replace("127.0.0.1", "localhost")
}

/// A number per tag, stable within a process.
fn number(who: &str) -> u64 {
    who.bytes()
        .fold(1_000u64, |n, b| (n * 31 + u64::from(b)) % 1_000_000_000)
}

pub struct Telegram {
    pub fake: FakeTelegram,
}

pub const TELEGRAM_TOKEN: &str = "123456:TEST-telegram-token-abcdef";

impl Platform for Telegram {
    const NAME: &'static str = "telegram";
    const LIMIT: Option<usize> = Some(4096);

    fn start(accept: bool) -> Option<Self> {
        let fake = FakeTelegram::start(if accept { TELEGRAM_TOKEN } else { "999:the-real-token" });
        Some(Telegram { fake })
    }
    fn settings(&self) -> Value {
        // By name: the daemon resolves it inside its sandbox, as it does
        // api.telegram.org.
        json!({"apiBase": by_name(&self.fake.base_url)})
    }
    fn credential(&self) -> Value {
        json!({"token": TELEGRAM_TOKEN})
    }
    fn credential_marker(&self) -> String {
        TELEGRAM_TOKEN.into()
    }
    fn user(&self, who: &str) -> String {
        number(who).to_string()
    }
    fn send(&self, who: &str, text: &str) -> String {
        self.fake.send_text(number(who) as i64, text).to_string()
    }
    fn replies(&self, who: &str) -> Vec<String> {
        let chat = json!(number(who));
        self.fake
            .sent()
            .iter()
            .filter(|m| m["chat_id"] == chat)
            .map(|m| m["text"].as_str().unwrap_or_default().to_string())
            .collect()
    }
    fn send_malformed(&self) {
        let id = self.fake.next_update_id();
        self.fake
            .inject_raw(json!({"update_id": id, "mystery_kind": {"weird": [1, 2, {"x": null}]}}));
        let id = self.fake.next_update_id();
        self.fake
            .inject_raw(json!({"update_id": id, "message": {"message_id": "not a number", "chat": 5}}));
    }
    fn rejection_words(&self) -> &'static str {
        "401 Unauthorized"
    }
    fn wait_fetched(&self, id: &str) {
        self.fake
            .wait_served(id.parse().unwrap_or_default(), Duration::from_secs(10));
    }
    fn committed(&self, id: &str) -> Option<bool> {
        Some(self.fake.committed(id.parse().unwrap_or_default()))
    }
    fn code_blocks_whole(part: &str) -> bool {
        part.matches("<pre>").count() == part.matches("</pre>").count()
    }
}

pub struct Discord {
    pub fake: FakeDiscord,
}

pub const DISCORD_TOKEN: &str = "discord-bot-token-0123456789";

impl Discord {
    /// The DM channel between the bot and `who`.
    pub fn dm(who: &str) -> u64 {
        number(who) + 5_000_000_000
    }
}

impl Platform for Discord {
    const NAME: &'static str = "discord";
    const LIMIT: Option<usize> = Some(2000);

    fn start(accept: bool) -> Option<Self> {
        let fake = FakeDiscord::start(if accept { DISCORD_TOKEN } else { "some-other-token" });
        Some(Discord { fake })
    }
    fn settings(&self) -> Value {
        json!({"apiBase": self.fake.api_base})
    }
    fn credential(&self) -> Value {
        json!({"token": DISCORD_TOKEN})
    }
    fn credential_marker(&self) -> String {
        DISCORD_TOKEN.into()
    }
    fn user(&self, who: &str) -> String {
        number(who).to_string()
    }
    fn send(&self, who: &str, text: &str) -> String {
        self.fake
            .post(Self::dm(who), None, number(who), text, false)
            .to_string()
    }
    fn replies(&self, who: &str) -> Vec<String> {
        let chat = Self::dm(who).to_string();
        self.fake
            .sent()
            .iter()
            .filter(|(c, _)| *c == chat)
            .map(|(_, m)| m["content"].as_str().unwrap_or_default().to_string())
            .collect()
    }
    fn send_malformed(&self) {
        self.fake
            .push_raw(json!({"t": "MESSAGE_CREATE", "d": {"id": "not-a-snowflake", "content": 5}}));
        self.fake.push_raw(json!({"t": "MYSTERY_EVENT", "d": [1, 2, 3]}));
    }
    fn rejection_words(&self) -> &'static str {
        "401 Unauthorized"
    }
    fn wait_fetched(&self, id: &str) {
        self.fake
            .wait_dispatched(id.parse().unwrap_or_default(), Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(200));
    }
    fn committed(&self, _id: &str) -> Option<bool> {
        // The gateway has no acks: a missed message is fetched back over
        // REST after a reconnect.
        None
    }
}

pub struct Slack {
    pub fake: FakeSlack,
}

pub const SLACK_BOT_TOKEN: &str = "xoxb-test-0123456789";
pub const SLACK_APP_TOKEN: &str = "xapp-test-0123456789";

impl Slack {
    fn dm(who: &str) -> String {
        format!("D{}", number(who))
    }
}

impl Platform for Slack {
    const NAME: &'static str = "slack";
    const LIMIT: Option<usize> = Some(4000);

    fn start(accept: bool) -> Option<Self> {
        let app = if accept {
            SLACK_APP_TOKEN
        } else {
            "xapp-some-other-token"
        };
        Some(Slack {
            fake: FakeSlack::start(SLACK_BOT_TOKEN, app),
        })
    }
    fn settings(&self) -> Value {
        json!({"apiBase": by_name(&self.fake.api_base)})
    }
    fn credential(&self) -> Value {
        json!({"botToken": SLACK_BOT_TOKEN, "appToken": SLACK_APP_TOKEN})
    }
    fn credential_marker(&self) -> String {
        SLACK_APP_TOKEN.into()
    }
    fn user(&self, who: &str) -> String {
        format!("U{}", number(who))
    }
    fn send(&self, who: &str, text: &str) -> String {
        self.fake.message(&Self::dm(who), "im", &self.user(who), text)
    }
    fn replies(&self, who: &str) -> Vec<String> {
        let chat = Self::dm(who);
        self.fake
            .posted()
            .iter()
            .filter(|m| m["channel"] == chat.as_str())
            .map(|m| m["text"].as_str().unwrap_or_default().to_string())
            .collect()
    }
    fn send_malformed(&self) {
        self.fake
            .push_raw(json!({"envelope_id": "env-junk-1", "type": "events_api",
                                  "payload": {"event": {"type": "message", "channel": 5}}}));
        self.fake.push_raw(json!({"type": "mystery", "what": [1, 2]}));
    }
    fn rejection_words(&self) -> &'static str {
        "invalid_auth"
    }
    fn committed(&self, id: &str) -> Option<bool> {
        Some(self.fake.acked().iter().any(|a| a == id))
    }
}

pub struct WhatsApp {
    pub fake: FakeBridge,
    token: &'static str,
}

pub const BRIDGE_TOKEN: &str = "bridge-token-0123456789";

impl Platform for WhatsApp {
    const NAME: &'static str = "whatsapp";
    const LIMIT: Option<usize> = Some(4096);

    fn start(accept: bool) -> Option<Self> {
        Some(WhatsApp {
            fake: FakeBridge::start(BRIDGE_TOKEN),
            token: if accept { BRIDGE_TOKEN } else { "not-the-token" },
        })
    }
    fn settings(&self) -> Value {
        json!({"bridgeUrl": self.fake.url})
    }
    fn credential(&self) -> Value {
        json!({"bridgeToken": self.token})
    }
    fn credential_marker(&self) -> String {
        self.token.into()
    }
    fn user(&self, who: &str) -> String {
        format!("49151{}@s.whatsapp.net", number(who))
    }
    fn send(&self, who: &str, text: &str) -> String {
        self.fake.receive(&self.user(who), text)
    }
    fn replies(&self, who: &str) -> Vec<String> {
        let to = self.user(who);
        self.fake
            .sent()
            .iter()
            .filter(|m| m["to"] == to.as_str())
            .map(|m| m["text"].as_str().unwrap_or_default().to_string())
            .collect()
    }
    fn send_malformed(&self) {
        self.fake.push_raw(json!({"type": "message", "sender": 42}));
        self.fake.push_raw(json!({"type": "who-knows", "x": [1]}));
    }
    fn rejection_words(&self) -> &'static str {
        "bridgeToken"
    }
    fn committed(&self, id: &str) -> Option<bool> {
        Some(self.fake.acked().iter().any(|a| a == id))
    }
}

/// A mailbox name suffix no earlier test run used. The mail store outlives
/// a run and pids are reused (pid_max is 32768 here), so the pid alone once
/// handed a test a mailbox holding an earlier run's replies: the start time
/// makes it unique.
pub fn mailbox_tag() -> String {
    let n = MAILBOXES.fetch_add(1, Ordering::Relaxed);
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{}-{started:x}-{n}", std::process::id())
}

/// E-mail against the real servers: every user is a fresh Dovecot mailbox.
pub struct Email {
    tag: String,
    password: &'static str,
}

static MAILBOXES: AtomicU32 = AtomicU32::new(0);

impl Email {
    /// E-mail whose mailboxes are named `{who}-{tag}`, for a test that
    /// names them itself; [`Platform::start`] picks a tag unique across
    /// runs. None (the test skipped) when the mail servers are not running.
    pub fn tagged(tag: String, accept: bool) -> Option<Self> {
        if !mail::servers_up() {
            crate::harness::skip(
                "Dovecot/OpenSMTPD are not running on 127.0.0.1 (scripts/mail-servers.sh starts them)",
            );
            return None;
        }
        Some(Email {
            tag,
            password: if accept { mail::PASSWORD } else { "wrong-password-0123" },
        })
    }
    /// `who`'s Dovecot mailbox, which is also their IMAP user name
    /// (`bot` is the bot's).
    pub fn mailbox(&self, who: &str) -> String {
        format!("{who}-{}", self.tag)
    }
    /// `who`'s address, where the bot's replies to them land.
    pub fn address(&self, who: &str) -> String {
        format!("{}@example.com", self.mailbox(who))
    }
    /// The bot's address: the users write to it.
    pub fn bot_address(&self) -> String {
        format!("{}@oxibot.test", self.mailbox("bot"))
    }
    /// Hands a raw message to OpenSMTPD for the bot.
    pub fn deliver(&self, from_who: &str, headers: &str, body: &str) {
        let (from, to) = (self.address(from_who), self.bot_address());
        mail::smtp_send(&from, &to, &format!("From: {from}\nTo: {to}\n{headers}\n{body}\n"));
    }
}

impl Platform for Email {
    const NAME: &'static str = "email";
    const LIMIT: Option<usize> = None;

    fn start(accept: bool) -> Option<Self> {
        Email::tagged(mailbox_tag(), accept)
    }
    fn settings(&self) -> Value {
        json!({
            "imapHost": "localhost", "imapPort": mail::IMAP_PORT, "imapUsername": self.mailbox("bot"),
            "imapUseSsl": false, "smtpHost": "127.0.0.1", "smtpPort": mail::SMTP_PORT, "smtpUseTls": false,
            "fromAddress": self.bot_address(), "pollIntervalSeconds": 1, "authservId": mail::AUTHSERV_ID
        })
    }
    fn credential(&self) -> Value {
        json!({"imapPassword": self.password})
    }
    fn credential_marker(&self) -> String {
        self.password.into()
    }
    fn user(&self, who: &str) -> String {
        self.address(who)
    }
    fn send(&self, who: &str, text: &str) -> String {
        let n = MAILBOXES.fetch_add(1, Ordering::Relaxed);
        let id = format!("<m{n}.{}@example.com>", self.mailbox(who));
        // Through the port where the receiving server vouches for the
        // sender's domain (it prepends its own Authentication-Results).
        let (from, to) = (self.address(who), self.bot_address());
        let message = format!("From: {from}\nTo: {to}\nSubject: note\nMessage-ID: {id}\n\n{text}\n");
        mail::smtp_send_via(mail::SIGNED_SMTP_PORT, &from, &to, &message);
        id
    }
    fn replies(&self, who: &str) -> Vec<String> {
        mail::mailbox(&self.mailbox(who))
            .iter()
            .map(|(raw, _)| mail::body_text(raw))
            .collect()
    }
    fn send_malformed(&self) {
        // No usable From, a multipart without a boundary, and bytes that are
        // not UTF-8: each must be skipped, not crash the daemon.
        mail::smtp_send(
            &self.address("mallory"),
            &self.bot_address(),
            &format!("To: {}\nSubject: no sender\n\nwho am I\n", self.bot_address()),
        );
        self.deliver(
            "mallory",
            "Subject: broken\nContent-Type: multipart/mixed\nContent-Transfer-Encoding: base64\n",
            "%%%% not base64 \u{00ff}\u{00fe} ====",
        );
    }
    fn rejection_words(&self) -> &'static str {
        "IMAP login"
    }
    fn committed(&self, id: &str) -> Option<bool> {
        let inbox = mail::mailbox(&self.mailbox("bot"));
        let header = format!("Message-ID: {id}");
        inbox
            .iter()
            .find(|(raw, _)| raw.contains(&header))
            .map(|(_, seen)| *seen)
    }
    fn wait_fetched(&self, _id: &str) {
        // Two poll intervals: the daemon has fetched it and waits for the ack.
        std::thread::sleep(Duration::from_millis(2500));
    }
}
