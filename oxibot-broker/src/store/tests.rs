//! The store against an in-memory database.

use super::*;
use oxibot_proto::messages::Attachment;

fn call(id: &str) -> ChatMessage {
    ChatMessage {
        role: Role::Assistant,
        content: String::new(),
        tool_calls: vec![ToolCallRequest {
            id: id.into(),
            name: "list_dir".into(),
            arguments: "{}".into(),
        }],
        tool_call_id: None,
        images: Vec::new(),
    }
}

fn result(id: &str) -> ChatMessage {
    ChatMessage {
        role: Role::Tool,
        content: "ok".into(),
        tool_calls: vec![],
        tool_call_id: Some(id.into()),
        images: Vec::new(),
    }
}

#[test]
fn history_never_starts_with_an_orphaned_tool_result() {
    let s = Store::open_in_memory().unwrap();
    let u = Usage::default();
    s.append(
        "a",
        &[ChatMessage::text(Role::User, "one"), call("c1"), result("c1")],
        &u,
    )
    .unwrap();
    s.append("a", &[ChatMessage::text(Role::Assistant, "done")], &u)
        .unwrap();
    s.append(
        "a",
        &[
            ChatMessage::text(Role::User, "two"),
            ChatMessage::text(Role::Assistant, "ok"),
        ],
        &u,
    )
    .unwrap();
    // The last 4 messages begin with the tool result; it must be dropped
    // together with everything before the next user message.
    let h = s.history("a", 4).unwrap();
    assert_eq!(h.len(), 2);
    assert_eq!(h[0].content, "two");
    let all = s.history("a", 100).unwrap();
    assert_eq!(all.len(), 6);
    assert_eq!(all[1].tool_calls[0].id, "c1");
}

#[test]
fn inbound_is_deduplicated_and_reply_queued_atomically() {
    let s = Store::open_in_memory().unwrap();
    let photo = Attachment {
        kind: AttachmentKind::Image,
        name: "photo.jpg".into(),
        mime: "image/jpeg".into(),
        data: vec![0xff, 0xd8, 0],
    };
    let m = s
        .commit_inbound("telegram", "42", "chat", "alice", "hi", vec![photo.clone()])
        .unwrap()
        .unwrap();
    assert!(s
        .commit_inbound("telegram", "42", "chat", "alice", "hi", vec![])
        .unwrap()
        .is_none());
    assert_eq!(s.queue_depths().unwrap(), (1, 0));
    // After a restart the file comes back with its message.
    assert_eq!(s.pending_inbound().unwrap()[0].files, vec![photo]);
    let id = s.finish_inbound(&m, "hello").unwrap();
    let left: i64 = s
        .lock()
        .query_row("SELECT COUNT(*) FROM inbound_files", [], |r| r.get(0))
        .unwrap();
    assert_eq!(left, 0, "files outlived their turn");
    assert_eq!(s.queue_depths().unwrap(), (0, 1));
    // Another channel's daemon cannot confirm it, nor record progress.
    let channel = m.channel.clone();
    let other = if channel == "telegram" { "discord" } else { "telegram" };
    assert!(!s.outbox_delivered(other, id).unwrap());
    assert!(!s.outbox_progress(other, id, 3).unwrap());
    assert_eq!(s.outbox_failed(other, id, "x", true).unwrap(), None);
    assert_eq!(s.queue_depths().unwrap(), (0, 1));
    assert!(s.outbox_progress(&channel, id, 2).unwrap());
    assert!(s.outbox_progress(&channel, id, 1).unwrap());
    assert_eq!(
        s.pending_outbox(&channel).unwrap()[0].parts_sent,
        2,
        "progress never goes back"
    );
    assert!(s.outbox_delivered(&channel, id).unwrap());
    assert_eq!(s.queue_depths().unwrap(), (0, 0));
}

#[test]
fn resume_points_are_the_newest_message_of_each_recent_chat() {
    let s = Store::open_in_memory().unwrap();
    for (channel, id, chat) in [("d", "1", "a"), ("d", "2", "a"), ("d", "3", "b"), ("t", "4", "a")] {
        s.commit_inbound(channel, id, chat, "u", "x", vec![]).unwrap();
    }
    let points = s.resume_points("d", 10).unwrap();
    assert_eq!(points, vec![("b".into(), "3".into()), ("a".into(), "2".into())]);
    assert_eq!(s.resume_points("d", 1).unwrap(), vec![("b".into(), "3".into())]);
}

#[test]
fn pairing_codes_are_reused_until_decided() {
    let s = Store::open_in_memory().unwrap();
    assert_eq!(
        s.pairing_code("t", "7", "c7", "AAAAAA").unwrap(),
        ("AAAAAA".into(), true)
    );
    assert_eq!(
        s.pairing_code("t", "7", "c7", "BBBBBB").unwrap(),
        ("AAAAAA".into(), false)
    );
    assert!(!s.is_paired("t", "7").unwrap());
    assert!(s.decide_pairing("ZZZZZZ", true).unwrap().is_none());
    assert_eq!(s.decide_pairing("AAAAAA", true).unwrap().unwrap().sender, "7");
    assert!(s.is_paired("t", "7").unwrap());
    assert!(
        s.decide_pairing("AAAAAA", false).unwrap().is_none(),
        "a decided code is final"
    );
}

#[test]
fn usage_accumulates_per_session() {
    let s = Store::open_in_memory().unwrap();
    let u = Usage {
        prompt_tokens: 10,
        completion_tokens: 3,
    };
    s.append("a", &[], &u).unwrap();
    s.append("a", &[], &u).unwrap();
    assert_eq!(
        s.session_usage("a").unwrap(),
        Some(Usage {
            prompt_tokens: 20,
            completion_tokens: 6
        })
    );
}

#[test]
fn migrations_are_idempotent() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("state.db");
    Store::open(&p).unwrap().audit("test", "x");
    let s = Store::open(&p).unwrap();
    let n: i64 = s
        .lock()
        .query_row("SELECT COUNT(*) FROM audit", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 1);
}

/// The queue depths are read on every status and health request: they
/// must count pending rows through an index, not scan the whole history
/// (which a busy bot grows without end).
#[test]
fn queue_depths_count_through_an_index() {
    let s = Store::open_in_memory().unwrap();
    let conn = s.lock();
    for table in ["inbound", "outbox"] {
        let plan: String = conn
            .query_row(
                &format!("EXPLAIN QUERY PLAN SELECT COUNT(*) FROM {table} WHERE status = 'pending'"),
                [],
                |r| r.get(3),
            )
            .unwrap();
        assert!(plan.contains(&format!("INDEX {table}_pending")), "{table}: {plan}");
    }
}
