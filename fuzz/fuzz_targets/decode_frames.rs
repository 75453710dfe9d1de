//! Feeds arbitrary bytes to every decoder a peer can reach: the framing
//! layer and each per-role message enum. Nothing may panic, and whatever
//! decodes must survive a re-encode unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oxibot_proto::messages::{
    BrokerToChannel, ChannelToBroker, CtlReply, CtlRequest, Message, ToolReply, ToolRequest,
};
use oxibot_proto::{decode, encode, read_frame, Hello};

fn check<T: Message + PartialEq + std::fmt::Debug>(data: &[u8]) {
    if let Ok(msg) = decode::<T>(data) {
        let _ = msg.validate();
        let again = encode(&msg).expect("a decoded message re-encodes");
        assert_eq!(decode::<T>(&again).expect("re-encoded bytes decode"), msg);
    }
}

fuzz_target!(|data: &[u8]| {
    check::<Hello>(data);
    check::<ToolRequest>(data);
    check::<ToolReply>(data);
    check::<ChannelToBroker>(data);
    check::<BrokerToChannel>(data);
    check::<CtlRequest>(data);
    check::<CtlReply>(data);
    // The framing layer over an in-memory stream.
    let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    rt.block_on(async {
        let mut input = data;
        while let Ok(body) = read_frame(&mut input).await {
            check::<ToolRequest>(&body);
        }
    });
});
