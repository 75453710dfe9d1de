//! Each platform's inbound payload, from the JSON its server (or a hostile
//! one) sends to what the daemon hands the broker: a Telegram update, a
//! Discord MESSAGE_CREATE or button press, a Slack event callback or
//! button press, a WhatsApp bridge frame.
//! Nothing may panic; whatever is read has a platform id and a sender.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oxibot_channeld::fuzzing::{
    discord_message, discord_press, slack_event, slack_press, telegram_update, whatsapp_frame,
};
use oxibot_proto::messages::ChannelToBroker;

fuzz_target!(|data: &[u8]| {
    for read in [telegram_update, discord_message, discord_press, slack_event, slack_press, whatsapp_frame] {
        if let Some(ChannelToBroker::Inbound { platform_id, .. }) = read(data) {
            assert!(!platform_id.is_empty());
        }
    }
});
