//! Property tests: every message round-trips, and no byte string (truncated,
//! garbage, oversized) makes the decoder panic.

use proptest::prelude::*;

use crate::messages::*;
use crate::{decode, encode, read_frame, write_frame, FrameError, Hello, Role, MAX_FRAME};

fn tool_call() -> impl Strategy<Value = ToolCall> {
    prop_oneof![
        (
            any::<String>(),
            proptest::option::of(any::<String>()),
            any::<u32>(),
            proptest::option::of((
                "[0-9a-f]{32}",
                proptest::option::of(any::<String>()),
                proptest::collection::vec("[A-Z_]{1,12}", 0..3)
            ))
        )
            .prop_map(|(command, working_dir, timeout_secs, egress)| ToolCall::Exec {
                command,
                working_dir,
                timeout_secs,
                egress: egress.map(|(key, trust, placeholders)| ExecEgress {
                    key,
                    trust,
                    placeholders
                })
            }),
        any::<String>().prop_map(|path| ToolCall::ReadFile { path }),
        (any::<String>(), any::<String>()).prop_map(|(path, content)| ToolCall::WriteFile { path, content }),
        (any::<String>(), any::<String>(), any::<String>()).prop_map(|(path, old_text, new_text)| ToolCall::EditFile {
            path,
            old_text,
            new_text
        }),
        any::<String>().prop_map(|path| ToolCall::ListDir { path }),
        (any::<String>(), proptest::collection::vec(any::<u8>(), 0..64))
            .prop_map(|(path, data)| ToolCall::SaveUpload { path, data, offset: 0 }),
    ]
}

fn attachment() -> impl Strategy<Value = Attachment> {
    (
        prop_oneof![
            Just(AttachmentKind::Image),
            Just(AttachmentKind::Audio),
            Just(AttachmentKind::Document)
        ],
        any::<String>(),
        any::<String>(),
        proptest::collection::vec(any::<u8>(), 0..256),
    )
        .prop_map(|(kind, name, mime, data)| Attachment { kind, name, mime, data })
}

fn channel_msg() -> impl Strategy<Value = ChannelToBroker> {
    prop_oneof![
        (
            any::<String>(),
            any::<String>(),
            any::<String>(),
            any::<String>(),
            any::<bool>(),
            any::<bool>(),
            proptest::collection::vec(attachment(), 0..3)
        )
            .prop_map(
                |(platform_id, chat_id, sender, text, is_group, mentioned, attachments)| ChannelToBroker::Inbound {
                    platform_id,
                    chat_id,
                    sender,
                    text,
                    is_group,
                    mentioned,
                    attachments,
                }
            ),
        any::<u64>().prop_map(|outbox_id| ChannelToBroker::Delivered { outbox_id }),
        (any::<u64>(), any::<String>(), any::<bool>()).prop_map(|(outbox_id, error, retryable)| {
            ChannelToBroker::SendFailed {
                outbox_id,
                error,
                retryable,
            }
        }),
        (any::<bool>(), proptest::option::of(any::<String>()))
            .prop_map(|(connected, last_error)| ChannelToBroker::Status { connected, last_error }),
        (
            any::<String>(),
            0..MAX_ATTACHMENTS as u8,
            proptest::collection::vec(any::<u8>(), 0..64)
        )
            .prop_map(|(platform_id, index, data)| ChannelToBroker::FilePart {
                platform_id,
                index,
                data
            }),
    ]
}

proptest! {
    #[test]
    fn tool_request_round_trips(id in any::<u64>(), call in tool_call()) {
        let msg = ToolRequest::Call { id, call };
        let back: ToolRequest = decode(&encode(&msg).unwrap()).unwrap();
        prop_assert_eq!(back, msg);
    }

    #[test]
    fn channel_message_round_trips(msg in channel_msg()) {
        let back: ChannelToBroker = decode(&encode(&msg).unwrap()).unwrap();
        prop_assert_eq!(back, msg);
    }

    #[test]
    fn a_piece_for_a_fifth_attachment_is_refused(index in MAX_ATTACHMENTS as u8..) {
        let msg = ChannelToBroker::FilePart { platform_id: "1".into(), index, data: Vec::new() };
        prop_assert!(matches!(encode(&msg), Err(FrameError::Refused(r)) if r.what == "attachment index"));
    }

    #[test]
    fn ctl_request_round_trips(session in any::<String>(), message in any::<String>()) {
        let msg = CtlRequest::Agent { session, message };
        let back: CtlRequest = decode(&encode(&msg).unwrap()).unwrap();
        prop_assert_eq!(back, msg);
    }

    #[test]
    fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode::<ToolRequest>(&bytes);
        let _ = decode::<ToolReply>(&bytes);
        let _ = decode::<ChannelToBroker>(&bytes);
        let _ = decode::<BrokerToChannel>(&bytes);
        let _ = decode::<CtlRequest>(&bytes);
        let _ = decode::<CtlReply>(&bytes);
        let _ = decode::<Hello>(&bytes);
    }

    #[test]
    fn truncated_messages_are_errors(id in any::<u64>(), call in tool_call(), cut in 1usize..64) {
        let body = encode(&ToolRequest::Call { id, call }).unwrap();
        let cut = cut.min(body.len());
        let short = &body[..body.len() - cut];
        prop_assert!(decode::<ToolRequest>(short).is_err());
    }
}

#[test]
fn trailing_bytes_are_rejected() {
    let mut body = encode(&CtlRequest::Status).unwrap();
    body.push(0);
    assert!(matches!(decode::<CtlRequest>(&body), Err(FrameError::TrailingBytes(1))));
}

#[test]
fn unknown_variant_is_rejected() {
    // Variant index 200 does not exist in CtlRequest.
    assert!(matches!(decode::<CtlRequest>(&[200, 1]), Err(FrameError::Malformed(_))));
}

#[test]
fn a_channel_message_is_not_a_tool_request() {
    // The dispatch table in the type system: a Delivered frame from a channel
    // decodes as something else entirely or fails, never as an Exec.
    let body = encode(&ChannelToBroker::Status {
        connected: true,
        last_error: None,
    })
    .unwrap();
    if let Ok(ToolRequest::Call {
        call: ToolCall::Exec { .. },
        ..
    }) = decode::<ToolRequest>(&body)
    {
        panic!("a channel status frame decoded as an exec request");
    }
}

/// The postcard bytes of `ChannelToBroker::Register { channel }` written
/// without the field's bound, as a hostile peer would.
fn raw_register(channel: &str) -> Vec<u8> {
    postcard::to_stdvec(&(0u32, channel)).unwrap()
}

#[test]
fn a_field_over_its_bound_does_not_decode() {
    let fine: ChannelToBroker = decode(&raw_register("telegram")).unwrap();
    assert_eq!(
        fine,
        ChannelToBroker::Register {
            channel: "telegram".into()
        }
    );
    let long = "x".repeat(MAX_ID + 1);
    match decode::<ChannelToBroker>(&raw_register(&long)) {
        Err(FrameError::Refused(r)) => {
            assert_eq!(
                (r.what, r.size, r.max),
                ("name or id", MAX_ID as u64 + 1, MAX_ID as u64)
            );
            assert_eq!(r.to_string(), "name or id is 257 bytes, the limit is 256");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    // Nor can it be encoded.
    let msg = ChannelToBroker::Inbound {
        platform_id: long,
        chat_id: String::new(),
        sender: String::new(),
        text: String::new(),
        is_group: false,
        mentioned: false,
        attachments: Vec::new(),
    };
    assert!(matches!(encode(&msg), Err(FrameError::Refused(r)) if r.what == "name or id"));
}

#[test]
fn attachments_are_bounded_in_size_and_number() {
    let file = |size: usize| Attachment {
        kind: AttachmentKind::Document,
        name: "f.bin".into(),
        mime: "application/octet-stream".into(),
        data: vec![0; size],
    };
    let inbound = |attachments: Vec<Attachment>| ChannelToBroker::Inbound {
        platform_id: "1".into(),
        chat_id: "c".into(),
        sender: "s".into(),
        text: String::new(),
        is_group: false,
        mentioned: false,
        attachments,
    };
    let checked = |msg: &ChannelToBroker| crate::Checked::new(msg).map(|_| ());
    assert!(checked(&inbound(vec![file(MAX_PART)])).is_ok());
    let err = checked(&inbound(vec![file(MAX_PART / 2 + 1), file(MAX_PART / 2)])).unwrap_err();
    assert!(err.to_string().contains("inline"), "{err}");
    let err = checked(&inbound(vec![file(1); MAX_ATTACHMENTS + 1])).unwrap_err();
    assert!(err.to_string().contains("attachments, the limit"), "{err}");
    let part = |index: u8, size: usize| ChannelToBroker::FilePart {
        platform_id: "1".into(),
        index,
        data: vec![0; size],
    };
    assert!(checked(&part(0, MAX_PART)).is_ok());
    assert!(checked(&part(0, MAX_PART + 1)).is_err());
    let err = checked(&part(MAX_ATTACHMENTS as u8, 1)).unwrap_err();
    assert!(err.to_string().contains("attachment index 4 is over 3"), "{err}");
    // The largest piece and a full message still fit in one frame each.
    assert!(encode(&part(3, MAX_PART)).is_ok());
    assert!(encode(&inbound(vec![file(MAX_PART)])).is_ok());
}

#[tokio::test]
async fn oversized_length_is_refused_before_allocation() {
    // Claims 4 GiB - 1; read_frame must refuse from the prefix alone.
    let mut input: &[u8] = &[0xff, 0xff, 0xff, 0xff];
    match read_frame(&mut input).await {
        Err(FrameError::Oversized(n)) => assert_eq!(n, u32::MAX as usize),
        other => panic!("expected Oversized, got {other:?}"),
    }
}

#[tokio::test]
async fn frames_round_trip_and_eof_is_closed() {
    let mut buf = Vec::new();
    let body = encode(&Hello::new(Role::Tool)).unwrap();
    write_frame(&mut buf, &body).await.unwrap();
    let mut input: &[u8] = &buf;
    let got = read_frame(&mut input).await.unwrap();
    assert_eq!(decode::<Hello>(&got).unwrap(), Hello::new(Role::Tool));
    assert!(matches!(read_frame(&mut input).await, Err(FrameError::Closed)));
    let too_big = vec![0u8; MAX_FRAME + 1];
    assert!(matches!(
        write_frame(&mut Vec::new(), &too_big).await,
        Err(FrameError::Oversized(_))
    ));
}

#[tokio::test]
async fn handshake_rejects_wrong_role() {
    let (a, b) = tokio::net::UnixStream::pair().unwrap();
    let server = tokio::spawn(async move {
        crate::accept_handshake::<ToolReply, ToolRequest>(a, Role::Broker, Role::Tool)
            .await
            .err()
    });
    // A channel daemon tries to talk on the tool socket.
    let _ = crate::connect_handshake::<BrokerToChannel, ChannelToBroker>(b, Role::Channel, Role::Broker).await;
    let err = server.await.unwrap().expect("handshake must fail");
    assert!(err.to_string().contains("peer says it is channel"), "{err}");
}

#[test]
fn a_sender_checks_what_its_receiver_would_refuse() {
    use crate::Checked;
    let call = |call| ToolRequest::Call { id: 1, call };
    let long_path = call(ToolCall::ReadFile { path: "a".repeat(5000) });
    assert!(
        matches!(Checked::new(&long_path), Err(FrameError::Refused(e)) if e.to_string().contains("path is 5000 bytes"))
    );
    // Each field within its bound, the frame over the cap.
    let huge = call(ToolCall::EditFile {
        path: "f".into(),
        old_text: "o".repeat(800_000),
        new_text: "n".repeat(800_000),
    });
    assert!(matches!(Checked::new(&huge), Err(FrameError::Oversized(_))));
    let fine = call(ToolCall::ReadFile {
        path: "notes.md".into(),
    });
    assert!(Checked::new(&fine).is_ok());
}

#[tokio::test]
async fn a_bad_request_is_read_whole_with_its_verdict() {
    let (broker_end, tool_end) = tokio::net::UnixStream::pair().unwrap();
    let tool = tokio::spawn(crate::connect_handshake::<ToolRequest, ToolReply>(
        tool_end,
        Role::Tool,
        Role::Broker,
    ));
    // A broker with a bug: it writes frames raw, without the bounds.
    let (mut r, mut w) = broker_end.into_split();
    write_frame(&mut w, &encode(&Hello::new(Role::Broker)).unwrap())
        .await
        .unwrap();
    read_frame(&mut r).await.unwrap();
    let mut conn = tool.await.unwrap().unwrap();
    let bad = ToolRequest::Call {
        id: 7,
        call: ToolCall::ReadFile { path: "a".repeat(5000) },
    };
    // Call (0), id 7, ReadFile (1), the path.
    let raw = postcard::to_stdvec(&(0u32, 7u64, 1u32, "a".repeat(5000))).unwrap();
    write_frame(&mut w, &raw).await.unwrap();
    let (msg, verdict) = conn.reader.recv_judged().await.unwrap();
    assert_eq!(msg, bad);
    assert!(verdict.unwrap_err().to_string().contains("path is 5000 bytes"));
    // The same frame, read strictly (every untrusted direction), is refused.
    assert!(matches!(decode::<ToolRequest>(&raw), Err(FrameError::Refused(_))));
}
