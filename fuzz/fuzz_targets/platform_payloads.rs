//! Each platform's inbound payload, from the JSON its server (or a hostile
//! one) sends to what the daemon hands the broker: a Telegram update, a
//! Discord MESSAGE_CREATE, a Slack event callback, a WhatsApp bridge frame.
//! Nothing may panic; whatever is read has a platform id and a sender.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oxibot_channeld::fuzzing::{discord_message, slack_event, telegram_update, whatsapp_frame};
use oxibot_proto::messages::ChannelToBroker;

fuzz_target!(|data: &[u8]| {
    for read in [telegram_update, discord_message, slack_event, whatsapp_frame] {
        if let Some(ChannelToBroker::Inbound { platform_id, .. }) = read(data) {
            assert!(!platform_id.is_empty());
        }
    }
});
