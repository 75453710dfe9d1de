//! Scheduled jobs end to end: the agent schedules through its `cron` tool,
//! the broker runs the job and Telegram (the fake Bot API, through the
//! real channel daemon) gets the result once, even when the broker is
//! killed during the run. `oxibotctl cron` manages jobs.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use oxibot_tests::assistant::{start, text, tool, ALICE, ALICE_SESSION};
use oxibot_tests::consts::SLOW;
use oxibot_tests::fake_llm::Step;
use serde_json::{json, Value};

fn in_secs(secs: u64) -> String {
    let t = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() + secs;
    oxibot_runtime::clock::rfc3339_utc(t as i64)
}

fn db_count(s: &oxibot_tests::assistant::Setup, sql: &str) -> i64 {
    s.broker.db().query_row(sql, [], |r| r.get(0)).unwrap()
}

#[test]
fn a_job_the_agent_schedules_is_delivered_once_across_a_kill_at_its_due_time() {
    let s = start(
        vec![
            tool(
                "cron",
                json!({"action": "add", "at": in_secs(3), "message": "Tell the user: water the plants", "name": "plants"}),
            ),
            text("Scheduled."),
        ],
        |_| json!({}),
        json!({}),
    );
    // The run's model call takes long enough for the kill to land inside it.
    s.llm.route(
        "[Scheduled job #1",
        vec![
            Step::Delay(Duration::from_secs(30), Box::new(text("too late"))),
            text("Reminder: water the plants"),
        ],
    );
    assert_eq!(
        s.broker
            .agent(ALICE_SESSION, "remind me in 3 s to water the plants")
            .unwrap(),
        "Scheduled."
    );
    let added = s.llm.requests()[1].body.to_string();
    assert!(added.contains("Scheduled job #1 \\\"plants\\\""), "{added}");

    // The run is claimed and its model call is under way: kill -9 now.
    oxibot_tests::poll::wait_for("the run's model call", Duration::from_secs(20), || {
        Some(()).filter(|_| !s.llm.requests_with("[Scheduled job #1").is_empty())
    });
    assert_eq!(
        db_count(&s, "SELECT COUNT(*) FROM cron_runs WHERE status = 'running'"),
        1
    );
    let mut s = s;
    s.broker.kill9_and_restart();
    s.wait_connected();

    // The open run is run again, and its answer goes out once.
    let sent = s.wait_sent_containing("Reminder: water the plants", SLOW);
    assert_eq!(sent.len(), 1);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(s.count_sent("Reminder: water the plants"), 1, "{:?}", s.sent_texts());
    assert_eq!(s.count_sent("too late"), 0);
    assert_eq!(s.tg.sent().last().unwrap()["chat_id"], json!(ALICE));
    assert_eq!(db_count(&s, "SELECT COUNT(*) FROM cron_runs"), 1, "the job ran twice");
    // A run may message its chat, but not schedule or start more work.
    let run_tools = s.llm.requests_with("[Scheduled job #1")[0].body["tools"].to_string();
    assert!(run_tools.contains("\"message\""), "{run_tools}");
    assert!(
        !run_tools.contains("\"spawn\"") && !run_tools.contains("\"cron\""),
        "{run_tools}"
    );
    assert_eq!(db_count(&s, "SELECT COUNT(*) FROM cron_runs WHERE status = 'ok'"), 1);
    assert_eq!(
        db_count(&s, "SELECT COUNT(*) FROM outbox WHERE origin LIKE 'cron-run:%'"),
        1
    );
    // A one-time job is done, not rescheduled.
    assert_eq!(
        db_count(&s, "SELECT COUNT(*) FROM cron_jobs WHERE next_run_at IS NOT NULL"),
        0
    );
}

#[test]
fn the_cron_tool_sees_and_removes_only_its_own_chats_jobs() {
    let s = start(
        vec![
            tool(
                "cron",
                json!({"action": "add", "cron_expr": "0 9 * * 1-5", "tz": "Europe/Berlin", "message": "standup"}),
            ),
            text("ok"),
            // Another chat (an allowed target of nothing) lists and tries to remove it.
            tool("cron", json!({"action": "list"})),
            Step::EchoLastTool,
            tool("cron", json!({"action": "remove", "job_id": 1})),
            Step::EchoLastTool,
            // A console session has no chat to schedule for.
            tool("cron", json!({"action": "add", "every_seconds": 60, "message": "x"})),
            Step::EchoLastTool,
            // Bad input is explained.
            tool(
                "cron",
                json!({"action": "add", "cron_expr": "0 25 * * *", "message": "x"}),
            ),
            Step::EchoLastTool,
            // A job every second would be a model call every second.
            tool("cron", json!({"action": "add", "every_seconds": 1, "message": "x"})),
            Step::EchoLastTool,
            tool(
                "cron",
                json!({"action": "add", "cron_expr": "*/5 * * * * *", "message": "x"}),
            ),
            Step::EchoLastTool,
        ],
        |_| json!({}),
        json!({}),
    );
    assert_eq!(
        s.broker.agent(ALICE_SESSION, "every weekday at 9 Berlin time").unwrap(),
        "ok"
    );
    let listed = s.broker.agent("telegram:222", "what is scheduled?").unwrap();
    assert_eq!(listed, "tool said: No scheduled jobs in this chat.");
    let removed = s.broker.agent("telegram:222", "remove job 1").unwrap();
    assert!(removed.contains("this chat has no job #1"), "{removed}");
    let console = s.broker.agent("console", "every minute").unwrap();
    assert!(console.contains("belong to a chat"), "{console}");
    let bad = s.broker.agent(ALICE_SESSION, "at 25 o'clock").unwrap();
    assert!(bad.contains("not a valid cron expression"), "{bad}");
    for _ in 0..2 {
        let fast = s.broker.agent(ALICE_SESSION, "every second").unwrap();
        assert!(fast.contains("the shortest interval allowed is 60 s"), "{fast}");
    }

    let out = s.broker.ctl(&["--json", "cron", "list"]);
    let jobs: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(jobs["jobs"].as_array().unwrap().len(), 1, "{jobs}");
    assert_eq!(jobs["jobs"][0]["chatId"], "111");
    assert_eq!(jobs["jobs"][0]["schedule"], "cron 0 9 * * 1-5 (Europe/Berlin)");
}

#[test]
fn oxibotctl_adds_pauses_resumes_runs_and_removes_jobs() {
    let s = start(vec![], |_| json!({}), json!({}));
    s.llm.route("RUN-NOW-MARK", vec![text("manual run result")]);
    let ctl_ok = |args: &[&str]| -> Value {
        let out = s.broker.ctl(&[&["--json"], args].concat());
        assert!(
            out.status.success(),
            "{args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let added = ctl_ok(&[
        "cron",
        "add",
        "--channel",
        "telegram",
        "--chat",
        "111",
        "--schedule",
        "every 2 hours",
        "--message",
        "Report RUN-NOW-MARK",
        "--name",
        "report",
    ]);
    assert!(
        added["message"]
            .as_str()
            .unwrap()
            .contains("Scheduled job #1 \"report\": every 7200 s"),
        "{added}"
    );
    let job = |field: &str| ctl_ok(&["cron", "list"])["jobs"][0][field].clone();
    assert!(job("nextRunAt").is_i64());

    ctl_ok(&["cron", "disable", "1"]);
    assert_eq!(job("enabled"), false);
    ctl_ok(&["cron", "enable", "1"]);
    assert_eq!(job("enabled"), true);

    ctl_ok(&["cron", "run", "1"]);
    s.wait_sent_containing("manual run result", Duration::from_secs(20));
    s.broker.wait_until("the run recorded", Duration::from_secs(10), |_| {
        job("lastStatus") == "ok"
    });

    ctl_ok(&["cron", "remove", "1"]);
    assert_eq!(ctl_ok(&["cron", "list"])["jobs"], json!([]));
    let again = s.broker.ctl(&["cron", "remove", "1"]);
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("no job #1"),
        "{:?}",
        again
    );
    // Bad schedules, zones and unknown channels are refused with the reason.
    for (channel, schedule, tz, why) in [
        ("telegram", "every week", None, "give a number and a unit"),
        ("pigeon", "every 1 h", None, "no channel pigeon"),
        ("telegram", "0 9 * * *", Some("Mars/Base"), "IANA"),
    ] {
        let mut args = vec![
            "cron",
            "add",
            "--channel",
            channel,
            "--chat",
            "1",
            "--schedule",
            schedule,
            "-m",
            "x",
        ];
        if let Some(tz) = tz {
            args.extend(["--tz", tz]);
        }
        let out = s.broker.ctl(&args);
        assert!(!out.status.success(), "{args:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains(why), "{args:?}: {out:?}");
    }
}

#[test]
fn oxibot_cron_jobs_are_imported_once() {
    let old = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(old.path().join("cron")).unwrap();
    std::fs::write(
        old.path().join("config.json"),
        json!({"agents": {"defaults": {"model": "gpt-test"}},
               "channels": {"telegram": {"enabled": true, "token": "1:x", "allowFrom": ["111"]}}})
        .to_string(),
    )
    .unwrap();
    std::fs::write(
        old.path().join("cron/jobs.json"),
        json!({"version": 1, "jobs": [
            {"id": "abc123", "name": "standup", "enabled": true,
             "schedule": {"kind": "cron", "expr": "0 9 * * 1-5", "tz": "Europe/Berlin"},
             "payload": {"kind": "agent_turn", "message": "Summarise my day", "deliver": true, "channel": "telegram", "to": "111"}},
            {"id": "def456", "name": "water", "enabled": false,
             "schedule": {"kind": "every", "everyMs": 1_200_000},
             "payload": {"kind": "agent_turn", "message": "Drink water", "deliver": true, "channel": "telegram", "to": "111"}},
            {"id": "ghi789", "name": "nowhere", "schedule": {"kind": "every", "everyMs": 60_000},
             "payload": {"kind": "agent_turn", "message": "x"}}
        ]})
        .to_string(),
    )
    .unwrap();
    let new = tempfile::tempdir().unwrap();
    let user = nix::unistd::User::from_uid(nix::unistd::geteuid())
        .unwrap()
        .unwrap()
        .name;
    let out = std::process::Command::new(oxibot_tests::harness::bin("oxibotctl"))
        .args(["--json", "config", "import"])
        .arg(old.path().join("config.json"))
        .arg("--config-out")
        .arg(new.path().join("config.json"))
        .arg("--secrets-out")
        .arg(new.path().join("secrets.json"))
        .args(["--broker-user", &user])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["cronJobs"]["count"], 2, "{report}");
    assert!(report["warnings"].to_string().contains("ghi789"), "{report}");
    let converted = new.path().join("cron-jobs.json");
    let written: Value =
        serde_json::from_str(&std::fs::read_to_string(new.path().join("config.json")).unwrap()).unwrap();
    assert_eq!(written["cron"]["importFile"], json!(converted));

    // The broker adds them at start, once, however often it starts.
    let mut s = start(vec![], |_| json!({"cron": {"importFile": converted}}), json!({}));
    let list = |s: &oxibot_tests::assistant::Setup| -> Value {
        serde_json::from_slice(&s.broker.ctl(&["--json", "cron", "list"]).stdout).unwrap()
    };
    let jobs = list(&s)["jobs"].clone();
    assert_eq!(jobs.as_array().unwrap().len(), 2, "{jobs}");
    assert_eq!(jobs[0]["schedule"], "cron 0 9 * * 1-5 (Europe/Berlin)");
    assert_eq!(jobs[1]["schedule"], "every 1200 s");
    assert_eq!(jobs[1]["enabled"], false);
    s.broker.kill9_and_restart();
    assert_eq!(list(&s)["jobs"].as_array().unwrap().len(), 2);
}
