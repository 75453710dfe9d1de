//! A received mail, as the e-mail channel reads it: MIME structure,
//! headers, the From address by RFC 5322's grammar, `Authentication-Results`
//! (RFC 8601), attachments and the text. Nothing may panic, and a sender is
//! either verified (a plain address) or marked `unverified:`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oxibot_proto::messages::ChannelToBroker;

fuzz_target!(|data: &[u8]| {
    if let Some(ChannelToBroker::Inbound { sender, chat_id, .. }) = oxibot_channeld::fuzzing::email(data) {
        // A verified sender is one address; the unverified keep their mark
        // in both the sender and the conversation.
        assert_eq!(sender.starts_with("unverified:"), chat_id.starts_with("unverified:"));
        assert!(sender.contains('@'), "{sender}");
    }
});
