//! The channel hub: the one live link of each channel daemon (with its
//! generation, so that the end of an old link never removes its
//! successor) and each channel's status. It alone claims, releases and
//! drops links, and hands messages to a daemon; what the link carries is
//! `channels`' business, what the messages mean is the outbox's.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use oxibot_proto::messages::{BrokerToChannel, ChannelCounters, ChannelStatus};
use tokio::sync::mpsc;

use crate::audit::Audit;

/// How long a new link waits for the previous link of the same daemon to
/// end (a restarted daemon may arrive before its predecessor's EOF is read).
pub const LIVE_LINK_GRACE: Duration = Duration::from_secs(3);

#[derive(Default)]
pub struct Hub {
    links: Mutex<HashMap<String, LinkEntry>>,
    next_link: AtomicU64,
    statuses: Mutex<BTreeMap<String, ChannelStatus>>,
    /// The console's chats have chat clients, not a daemon.
    pub consoles: crate::console::Consoles,
    /// Streamed answers and tool lists being shown in chats.
    pub drafts: crate::channels::drafts::Drafts,
}

/// A channel's live link.
struct LinkEntry {
    generation: u64,
    tx: mpsc::Sender<BrokerToChannel>,
}

/// Why a second daemon for a channel gets no link (audited).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ClaimRefused {
    #[error("the channel's daemon is connected and alive")]
    Alive,
    #[error("another daemon took the link meanwhile")]
    TakenMeanwhile,
}

impl Hub {
    /// Takes the channel's link slot, after giving a previous link a moment
    /// to end. Refused while the previous link is alive. Returns the new
    /// link's generation.
    pub async fn claim(
        &self,
        channel: &str,
        tx: mpsc::Sender<BrokerToChannel>,
        audit: &Audit,
    ) -> Result<u64, ClaimRefused> {
        let previous = self.sender(channel);
        if let Some(previous) = previous {
            if tokio::time::timeout(LIVE_LINK_GRACE, previous.closed()).await.is_err() {
                return Err(ClaimRefused::Alive);
            }
        }
        let mut links = self.links.lock().unwrap_or_else(|p| p.into_inner());
        if links.get(channel).is_some_and(|l| !l.tx.is_closed()) {
            return Err(ClaimRefused::TakenMeanwhile);
        }
        let generation = self.next_link.fetch_add(1, Ordering::Relaxed) + 1;
        if links
            .insert(channel.to_string(), LinkEntry { generation, tx })
            .is_some()
        {
            audit.about(
                "link_replaced",
                Some(channel),
                None,
                &format!("channel {channel}: the ended link was replaced by link {generation}"),
            );
        }
        Ok(generation)
    }

    /// Removes the channel's link if it is still this one, and marks the
    /// channel disconnected.
    pub fn release(&self, channel: &str, generation: u64) {
        {
            let mut links = self.links.lock().unwrap_or_else(|p| p.into_inner());
            if links.get(channel).is_some_and(|l| l.generation == generation) {
                links.remove(channel);
            }
        }
        let mut statuses = self.statuses.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = statuses.get_mut(channel) {
            if s.connected {
                s.counters.disconnects += 1;
                s.connected = false;
            }
        }
    }

    /// Closes the channel's link (its settings changed, or the admin asked):
    /// the daemon sees the connection end, exits, and comes back to receive
    /// the new ones. Returns whether there was a link to close.
    pub fn drop_link(&self, channel: &str) -> bool {
        let link = self.links.lock().unwrap_or_else(|p| p.into_inner()).remove(channel);
        let Some(link) = link else {
            return false;
        };
        tokio::spawn(async move {
            let _ = link.tx.send(BrokerToChannel::Shutdown).await;
        });
        true
    }

    /// Hands a message to the channel's daemon if it is connected; if not,
    /// an outbox message waits for the next connection.
    pub async fn deliver(&self, channel: &str, msg: BrokerToChannel) {
        if channel == crate::turn::CONSOLE {
            self.consoles.deliver(msg);
            return;
        }
        if let Some(link) = self.sender(channel) {
            let _ = link.send(msg).await;
        }
    }

    fn sender(&self, channel: &str) -> Option<mpsc::Sender<BrokerToChannel>> {
        self.links
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(channel)
            .map(|l| l.tx.clone())
    }

    /// Updates a channel's status row (made on first use).
    pub fn update_status(&self, channel: &str, update: impl FnOnce(&mut ChannelStatus)) {
        let mut statuses = self.statuses.lock().unwrap_or_else(|p| p.into_inner());
        let status = statuses.entry(channel.to_string()).or_insert_with(|| ChannelStatus {
            name: channel.to_string(),
            connected: false,
            last_error: None,
            counters: ChannelCounters::default(),
        });
        update(status);
    }

    pub fn count(&self, channel: &str, update: impl FnOnce(&mut ChannelCounters)) {
        self.update_status(channel, |status| update(&mut status.counters));
    }

    /// Every enabled channel (one that never connected is reported down),
    /// and any other that has connected since the start.
    pub fn statuses(&self, enabled: Vec<String>) -> Vec<ChannelStatus> {
        let mut seen = self.statuses.lock().unwrap_or_else(|p| p.into_inner()).clone();
        for name in enabled {
            seen.entry(name.clone()).or_insert_with(|| ChannelStatus {
                name,
                connected: false,
                last_error: Some("its daemon has not connected since the broker started".into()),
                counters: Default::default(),
            });
        }
        seen.into_values().collect()
    }
}

/// A `Send` of an outbox message that no attempt has delivered a part of.
pub fn fresh_send(outbox_id: i64, chat_id: String, text: String, reply_to: Option<String>) -> BrokerToChannel {
    replacing_send(outbox_id, chat_id, text, reply_to, None)
}

/// As [`fresh_send`], replacing the platform message `edit` (a draft).
pub fn replacing_send(
    outbox_id: i64,
    chat_id: String,
    text: String,
    reply_to: Option<String>,
    edit: Option<String>,
) -> BrokerToChannel {
    BrokerToChannel::Send {
        outbox_id: outbox_id as u64,
        chat_id,
        text,
        reply_to,
        first_part: 0,
        buttons: Vec::new(),
        edit,
        draft: None,
    }
}
