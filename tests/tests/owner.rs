//! The owner stays in charge, end to end through the real channel daemon,
//! the fake Bot API and the fake LLM: approvals (the command waits in the
//! chat for `/approve CODE`, and only the chat's owner can give it) and
//! budgets (the call past a limit never reaches the model).

use std::time::{Duration, Instant};

use oxibot_tests::assistant::{start, text, tool, Setup, ALICE, ALICE_SESSION};
use oxibot_tests::consts::SLOW;
use oxibot_tests::fake_llm::{last_tool_result, Step};
use serde_json::{json, Value};

fn approval(mode: &str, allow: &[&str], deny: &[&str], timeout_secs: u32) -> Value {
    json!({"tools": {"approval": {"mode": mode, "allow": allow, "deny": deny, "timeoutSecs": timeout_secs}}})
}

/// The code of the newest approval request Telegram took.
fn wait_code(s: &Setup, nth: usize) -> String {
    let texts = oxibot_tests::poll::wait_for("an approval request", SLOW, || {
        let hits: Vec<String> = s
            .sent_texts()
            .into_iter()
            .filter(|t| t.contains("Approval needed"))
            .collect();
        Some(hits).filter(|h| h.len() >= nth)
    });
    let request = &texts[nth - 1];
    let at = request.find("/approve ").expect("the request names /approve") + "/approve ".len();
    let code = &request[at..at + 6];
    assert!(code.bytes().all(|b| b.is_ascii_alphanumeric()), "{request}");
    assert!(request.contains(&format!("/deny {code}")), "{request}");
    code.to_string()
}

/// The tool result the model was sent in its `n`th request (1-based).
fn tool_result(s: &Setup, n: usize) -> String {
    let reqs = s.llm.wait_requests(n, SLOW);
    last_tool_result(&reqs[n - 1].body, false).unwrap_or_default()
}

#[test]
fn an_asked_command_runs_only_once_the_owner_approves_it_in_the_chat() {
    let s = start(
        vec![
            tool(
                "exec",
                json!({"command": "echo approved-run > approved.txt; cat approved.txt"}),
            ),
            text("It ran."),
        ],
        |_| approval("on-miss", &["ls *"], &[], 60),
        json!({}),
    );
    s.tg.send_text(ALICE, "write the file");
    let code = wait_code(&s, 1);
    let request = s.wait_sent_containing("Approval needed", SLOW).remove(0);
    // The owner sees what runs: the command, and each program in it (in a
    // code block, which the daemon renders as Telegram HTML).
    assert!(
        request.contains("<pre><code>echo approved-run &gt; approved.txt; cat approved.txt"),
        "{request}"
    );
    assert!(
        request.contains("runs:\necho approved-run\ncat approved.txt"),
        "{request}"
    );
    // Nothing ran while it waits.
    assert!(s.broker.exec("ls approved.txt 2>&1 || true").contains("No such file"));
    assert_eq!(s.llm.requests().len(), 1);

    // The answer is taken while the turn waits (it holds the chat's turn).
    let asked = Instant::now();
    s.tg.send_text(ALICE, &format!("/approve {code}"));
    let result = tool_result(&s, 2);
    let round_trip = asked.elapsed();
    println!("approval round trip (/approve sent → the model has the command's output): {round_trip:?}");
    assert!(result.contains("approved-run"), "{result}");
    s.wait_sent_containing("It ran.", SLOW);
    s.wait_sent_containing(&format!("Approved ({code})"), SLOW);
    s.broker.wait_audit("approval_requested", &code);
    s.broker.wait_audit("approval_granted", &code);

    // What the allow list says runs without asking.
    s.llm.push(tool("exec", json!({"command": "ls -la"})));
    s.llm.push(text("Listed."));
    s.tg.send_text(ALICE, "list");
    s.wait_sent_containing("Listed.", SLOW);
    assert!(tool_result(&s, 4).contains("approved.txt"));
    assert_eq!(s.count_sent("Approval needed"), 1);
}

#[test]
fn a_denied_a_refused_and_a_timed_out_command_do_not_run_and_the_model_is_told_which() {
    let s = start(
        vec![
            tool("exec", json!({"command": "touch denied.txt"})),
            text("Understood."),
            tool("exec", json!({"command": "/usr/bin/rm -rf notes; touch refused.txt"})),
            text("Refused then."),
            tool("exec", json!({"command": "touch late.txt"})),
            text("No answer."),
        ],
        |_| approval("on-miss", &["ls *"], &["rm"], 3),
        json!({}),
    );
    s.tg.send_text(ALICE, "one");
    let code = wait_code(&s, 1);
    s.tg.send_text(ALICE, &format!("/deny {code}"));
    let result = tool_result(&s, 2);
    assert!(result.contains("the owner denied it"), "{result}");
    s.wait_sent_containing("Understood.", SLOW);

    // A deny pattern refuses at once, whatever path names the program.
    s.tg.send_text(ALICE, "two");
    let result = tool_result(&s, 4);
    assert!(
        result.contains("refused without asking") && result.contains("\"rm\""),
        "{result}"
    );
    s.wait_sent_containing("Refused then.", SLOW);
    assert_eq!(s.count_sent("Approval needed"), 1);

    // No answer within timeoutSecs is no.
    s.tg.send_text(ALICE, "three");
    wait_code(&s, 2);
    let result = tool_result(&s, 6);
    assert!(result.contains("did not answer within 3 s"), "{result}");
    s.wait_sent_containing("No answer.", SLOW);
    s.broker.wait_audit("approval_timeout", "no answer in 3 s");
    s.broker.wait_audit("approval_denied", &code);
    s.broker.wait_audit("approval_refused", "tools.approval.deny");
    let listing = s.broker.exec("ls");
    for file in ["denied.txt", "refused.txt", "late.txt"] {
        assert!(!listing.contains(file), "{file} exists: {listing}");
    }
}

/// Every bypass shape of the unit table, through the real path once: the
/// model's command is asked (never run) although `ls *` is allowed.
#[test]
fn wrapped_chained_and_substituted_commands_are_asked_not_run() {
    let cases = [
        "ls; touch pwned1",
        "ls $(touch pwned2)",
        "sh -c 'ls && touch pwned3'",
        "env PATH=/workspace ls",
        "eval 'touch pwned5'",
    ];
    let mut script = Vec::new();
    for c in cases {
        script.push(tool("exec", json!({"command": c})));
    }
    script.push(text("Done trying."));
    let s = start(script, |_| approval("on-miss", &["ls *", "cat *"], &[], 2), json!({}));
    s.tg.send_text(ALICE, "try them all");
    s.wait_sent_containing("Done trying.", Duration::from_secs(60));
    assert_eq!(s.count_sent("Approval needed"), cases.len());
    let reqs = s.llm.requests();
    for (i, c) in cases.iter().enumerate() {
        let result = last_tool_result(&reqs[i + 1].body, false).unwrap_or_default();
        assert!(result.contains("did not answer"), "{c}: {result}");
    }
    assert!(!s.broker.exec("ls").contains("pwned"));
}

/// Every command asked, in a group that admits everybody: Bob may talk
/// there, but is not named, so he is a member, not the owner.
fn group_with_a_member() -> Value {
    let mut c = approval("always", &[], &[], 60);
    c["channels"] = json!({"telegram": {"allowedUsers": [ALICE.to_string(), "*"], "groupPolicy": "open"}});
    c
}

#[test]
fn only_the_chats_owner_answers_and_an_old_code_is_refused() {
    const GROUP: i64 = -500;
    const BOB: i64 = 222;
    let s = start(
        vec![tool("exec", json!({"command": "echo group-run"})), text("Group done.")],
        |_| group_with_a_member(),
        json!({}),
    );
    s.tg.send_group_text(GROUP, ALICE, "run it");
    let code = wait_code(&s, 1);
    s.tg.send_group_text(GROUP, BOB, &format!("/approve {code}"));
    s.wait_sent_containing("Only the owner of this chat", SLOW);
    s.broker.wait_audit("approval_refused", "not the chat's owner");
    // A right code from the owner in another chat is refused too.
    s.tg.send_text(ALICE, &format!("/approve {code}"));
    s.wait_sent_containing("in this chat", SLOW);
    assert_eq!(s.llm.requests().len(), 1, "the command ran on a refused answer");

    s.tg.send_group_text(GROUP, ALICE, &format!("/approve {code}"));
    assert!(tool_result(&s, 2).contains("group-run"));
    s.wait_sent_containing("Group done.", SLOW);
    // The same code again: nothing waits under it any more.
    s.tg.send_group_text(GROUP, ALICE, &format!("/approve {code}"));
    s.wait_sent_containing(&format!("no request is waiting with code {code}"), SLOW);
    s.broker.wait_audit("approval_refused", "no request is waiting");
    // A made-up code.
    s.tg.send_group_text(GROUP, ALICE, "/deny ZZZZZZ");
    s.wait_sent_containing("no request is waiting with code ZZZZZZ", SLOW);
}

#[test]
fn a_scheduled_jobs_command_waits_in_its_chat_and_the_admin_can_answer() {
    let s = start(
        vec![
            tool(
                "cron",
                json!({"action": "add", "every_seconds": 3600, "message": "Check the disk", "name": "disk"}),
            ),
            text("Scheduled."),
        ],
        |_| approval("on-miss", &[], &[], 60),
        json!({}),
    );
    s.llm.route(
        "[Scheduled job #1",
        vec![
            tool("exec", json!({"command": "echo FROM-THE-JOB"})),
            text("Disk checked."),
        ],
    );
    assert_eq!(
        s.broker.agent(ALICE_SESSION, "check the disk hourly").unwrap(),
        "Scheduled."
    );
    let out = s.broker.ctl(&["cron", "run", "1"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let code = wait_code(&s, 1);
    let request = s.wait_sent_containing("Approval needed", SLOW).remove(0);
    assert!(request.contains("for a scheduled job"), "{request}");

    // The admin sees it and answers.
    let out = s.broker.ctl(&["approvals", "list", "--json"]);
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed["waiting"][0]["id"], json!(code));
    assert_eq!(listed["waiting"][0]["chat"], json!(ALICE_SESSION));
    assert!(listed["waiting"][0]["what"]
        .as_str()
        .unwrap()
        .contains("echo FROM-THE-JOB"));
    let out = s.broker.ctl(&["approvals", "approve", &code, "--always"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    s.wait_sent_containing("Disk checked.", SLOW);
    let result = last_tool_result(&s.llm.requests_with("[Scheduled job #1").last().unwrap().body, false);
    assert!(result.unwrap_or_default().contains("FROM-THE-JOB"));
    // "Always" added the exact program and shape, and it now runs unasked.
    let out = s.broker.ctl(&["approvals", "list", "--json"]);
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed["learned"], json!(["echo *"]));
    assert!(!s.broker.ctl(&["approvals", "approve", &code]).status.success());
}

fn budgets(b: Value) -> impl FnOnce(&str) -> Value {
    move |_| json!({"budgets": b})
}

#[test]
fn a_token_budget_stops_the_next_turn_before_the_model_and_resets_the_next_day() {
    // Each fake answer reports 18 tokens.
    let mut s = start(
        vec![text("one"), text("two"), text("after the reset")],
        budgets(json!({"tokensPerDay": 30})),
        json!({}),
    );
    s.tg.send_text(ALICE, "first");
    s.wait_sent_containing("one", SLOW);
    s.tg.send_text(ALICE, "second");
    s.wait_sent_containing("two", SLOW);
    // 36 of 30 now: told once at 80 %.
    s.wait_sent_containing("Heads-up: this chat has used 36 of its 30 tokens", SLOW);

    s.tg.send_text(ALICE, "third");
    let stop = s.wait_sent_containing("tokens for today (budgets.tokensPerDay)", SLOW);
    assert!(stop[0].contains("used 36 of its 30"), "{stop:?}");
    assert_eq!(s.llm.requests().len(), 2, "the model was called past the budget");

    // Once per window: the next message gets nothing, and costs nothing.
    let update = s.tg.send_text(ALICE, "fourth");
    s.tg.wait_committed(update, SLOW);
    s.broker.wait_audit("budget", "(already told)");
    // It survives a restart.
    s.broker.kill9_and_restart();
    s.wait_connected();
    let update = s.tg.send_text(ALICE, "fifth");
    s.tg.wait_committed(update, SLOW);
    oxibot_tests::poll::wait_for("two 'already told' stops", SLOW, || {
        Some(()).filter(|_| {
            s.broker
                .audit("budget")
                .iter()
                .filter(|a| a.contains("(already told)"))
                .count()
                >= 2
        })
    });
    assert_eq!(s.llm.requests().len(), 2);
    assert_eq!(s.count_sent("budgets.tokensPerDay"), 1);
    assert_eq!(s.count_sent("Heads-up"), 1);

    let out = s.broker.ctl(&["budgets", "--json"]);
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed["budgets"][0]["chat"], json!(ALICE_SESSION));
    assert_eq!(listed["budgets"][0]["tokensToday"], json!(36));
    assert_eq!(listed["budgets"][0]["tokensLimit"], json!(30));
    let status = s.broker.status().to_string();
    assert!(
        status.contains("budget of telegram:111: 36 of 30 tokens today"),
        "{status}"
    );

    // The next day (the stored day moves back one): the chat is answered.
    let moved = s
        .broker
        .db()
        .execute(
            "UPDATE budget_spend SET window = 'day:2000-01-01' WHERE window LIKE 'day:%'",
            [],
        )
        .unwrap();
    assert!(moved >= 1);
    s.tg.send_text(ALICE, "a new day");
    s.wait_sent_containing("after the reset", SLOW);
    assert_eq!(s.llm.requests().len(), 3);

    // The admin's reset.
    let out = s.broker.ctl(&["budgets", "reset", ALICE_SESSION]);
    assert!(out.status.success());
    s.broker.wait_audit("budget", "spending reset by oxibotctl");
}

#[test]
fn tool_calls_per_hour_stop_the_turn_at_the_limit() {
    let s = start(
        vec![
            tool("exec", json!({"command": "echo call-1"})),
            tool("exec", json!({"command": "echo call-2"})),
            tool("exec", json!({"command": "echo call-3"})),
            text("never"),
        ],
        budgets(json!({"toolCallsPerHour": 2})),
        json!({}),
    );
    s.tg.send_text(ALICE, "three calls please");
    s.wait_sent_containing("(budgets.toolCallsPerHour)", SLOW);
    // The third call did not run, and the model was not asked again.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(s.llm.requests().len(), 3);
    assert_eq!(s.count_sent("never"), 0);
    let history = s.broker.messages(ALICE_SESSION);
    let results: Vec<&String> = history.iter().filter(|m| m.0 == "tool").map(|m| &m.1).collect();
    assert!(
        results[0].contains("call-1") && results[1].contains("call-2"),
        "{results:?}"
    );
    assert!(results[2].contains("not run"), "{results:?}");
}

#[test]
fn concurrent_turns_refuse_what_would_run_beside_the_chats_running_turn() {
    let s = start(
        vec![Step::Delay(Duration::from_secs(4), Box::new(text("slow answer")))],
        budgets(json!({"channels": {"telegram": {"concurrentTurns": 1}}})),
        json!({}),
    );
    s.tg.send_text(ALICE, "slow one");
    s.llm.wait_requests(1, SLOW);
    s.tg.send_text(ALICE, "impatient");
    s.wait_sent_containing("budgets.concurrentTurns = 1", SLOW);
    s.wait_sent_containing("slow answer", SLOW);
    assert_eq!(s.llm.requests().len(), 1);
}

#[test]
fn a_button_press_answers_like_the_typed_command_and_only_for_the_owner() {
    const GROUP: i64 = -600;
    const BOB: i64 = 222;
    let s = start(
        vec![
            tool("exec", json!({"command": "echo pressed-run"})),
            text("Pressed done."),
        ],
        |_| group_with_a_member(),
        json!({}),
    );
    s.tg.send_group_text(GROUP, ALICE, "run it");
    let code = wait_code(&s, 1);
    let request =
        s.tg.sent()
            .into_iter()
            .find(|m| m["text"].as_str().unwrap_or_default().contains("Approval needed"))
            .unwrap();
    let buttons = &request["reply_markup"]["inline_keyboard"][0];
    assert_eq!(buttons[0]["text"], json!("Approve"));
    assert_eq!(buttons[0]["callback_data"], json!(format!("/approve {code}")));
    assert_eq!(buttons[1]["callback_data"], json!(format!("/approve {code} always")));
    assert_eq!(buttons[2]["callback_data"], json!(format!("/deny {code}")));
    let message_id = request["message_id"].as_i64().unwrap();

    // A member's press is refused like his typed command.
    let bob = s.tg.press_button(GROUP, BOB, message_id, &format!("/approve {code}"));
    s.wait_sent_containing("Only the owner of this chat", SLOW);
    assert_eq!(s.llm.requests().len(), 1);
    // The owner's press runs it, and each press is answered (no spinner).
    let alice = s.tg.press_button(GROUP, ALICE, message_id, &format!("/approve {code}"));
    assert!(tool_result(&s, 2).contains("pressed-run"));
    s.wait_sent_containing("Pressed done.", SLOW);
    oxibot_tests::poll::wait_for("both presses answered", SLOW, || {
        let answered = s.tg.answered_callbacks();
        Some(()).filter(|_| answered.contains(&format!("cbq-{bob}")) && answered.contains(&format!("cbq-{alice}")))
    });
}
