//! E-mail end to end against real servers: OpenSMTPD takes the message and
//! hands it to Dovecot over LMTP; oxibot-channeld reads it over IMAP
//! (async-imap), the broker answers, and the reply goes back through
//! OpenSMTPD (lettre) into the sender's Dovecot mailbox.

use std::time::Duration;

use oxibot_tests::fake_llm::{FakeLlm, Step};
use oxibot_tests::harness::Broker;
use oxibot_tests::mail::{self, IMAP_PORT, PASSWORD, SMTP_PORT};
use serde_json::json;

struct Setup {
    llm: FakeLlm,
    broker: Broker,
    bot: String,
    alice: String,
}

fn start(test: &str, script: Vec<Step>) -> Option<Setup> {
    start_with(test, script, json!({}))
}

fn start_with(test: &str, script: Vec<Step>, extra: serde_json::Value) -> Option<Setup> {
    if !mail::servers_up() {
        eprintln!("SKIPPED: Dovecot/OpenSMTPD are not running on 127.0.0.1 (scripts/mail-servers.sh starts them)");
        return None;
    }
    let tag = format!("{test}-{}", std::process::id());
    let bot = format!("bot-{tag}");
    let alice = format!("alice-{tag}");
    let llm = FakeLlm::start(script);
    let mut settings = json!({
        "enabled": true,
        "imapHost": "127.0.0.1", "imapPort": IMAP_PORT, "imapUsername": bot, "imapUseSsl": false,
        "smtpHost": "127.0.0.1", "smtpPort": SMTP_PORT, "smtpUseTls": false,
        "fromAddress": format!("{bot}@oxibot.test"), "pollIntervalSeconds": 1,
        "allowedUsers": [format!("{alice}@example.com")]
    });
    oxibot_tests::harness::merge(&mut settings, extra);
    let secrets = json!({"providers": {"openai": {"apiKey": "sk-llm-0000000000"}},
                         "channels": {"email": {"imapPassword": PASSWORD}}});
    let broker = Broker::start(&llm.base_url, json!({"channels": {"email": settings}}), secrets);
    broker.wait_until("email connected", Duration::from_secs(20), |s| {
        s["channels"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["name"] == "email" && c["connected"] == true))
    });
    Some(Setup {
        llm,
        broker,
        bot,
        alice,
    })
}

fn letter(from: &str, to: &str, id: &str, subject: &str, auth: bool) -> String {
    let results = if auth {
        "Authentication-Results: mx.oxibot.test; dkim=pass header.d=example.com\n"
    } else {
        ""
    };
    format!("From: {from}\nTo: {to}\nSubject: {subject}\nMessage-ID: {id}\n{results}\nHello, can you help?\n")
}

#[test]
fn a_verified_sender_gets_a_threaded_reply() {
    let Some(s) = start("reply", vec![Step::Text("Sure, here is the plan.".into())]) else {
        return;
    };
    let (from, to) = (format!("{}@example.com", s.alice), format!("{}@oxibot.test", s.bot));
    let id = format!("<q1.{}@example.com>", s.alice);
    mail::smtp_send(&from, &to, &letter(&from, &to, &id, "Plans", true));
    let replies = mail::wait_mail(&s.alice, 1, Duration::from_secs(30));
    let reply = &replies[0].0;
    assert!(reply.contains("Subject: Re: Plans"), "{reply}");
    assert!(reply.contains(&format!("In-Reply-To: {id}")), "{reply}");
    assert!(reply.contains(&format!("References: {id}")), "{reply}");
    assert!(reply.contains("Sure, here is the plan."), "{reply}");
    assert!(s.llm.requests()[0].body.to_string().contains("Subject: Plans"));
    // Marked \Seen: it was committed before.
    let inbox = mail::mailbox(&s.bot);
    assert_eq!(inbox.len(), 1);
    assert!(inbox[0].1, "the question was not marked \\Seen");
}

#[test]
fn a_forged_from_header_is_refused_and_audited() {
    let Some(s) = start("forged", vec![]) else { return };
    let (from, to) = (format!("{}@example.com", s.alice), format!("{}@oxibot.test", s.bot));
    mail::smtp_send(&from, &to, &letter(&from, &to, "<f1@evil.test>", "Pay now", false));
    let entry = s.broker.wait_audit("access_denied", &format!("unverified:{from}"));
    assert!(entry.contains("email"), "{entry}");
    assert!(s.llm.requests().is_empty());
    std::thread::sleep(Duration::from_secs(2));
    assert!(mail::mailbox(&s.alice).is_empty(), "a forged sender got an answer");
}

/// Asks `alice` a question and returns how long the answer took.
fn round_trip(s: &Setup, id: &str) -> Duration {
    let (from, to) = (format!("{}@example.com", s.alice), format!("{}@oxibot.test", s.bot));
    let started = std::time::Instant::now();
    mail::smtp_send(&from, &to, &letter(&from, &to, id, "Quick", true));
    mail::wait_mail(&s.alice, 1, Duration::from_secs(60));
    started.elapsed()
}

#[test]
fn new_mail_is_noticed_through_idle_without_waiting_for_a_poll() {
    // A poll interval far longer than the test's patience: only IDLE can
    // make the answer arrive in time.
    let extra = json!({"pollIntervalSeconds": 3600});
    let Some(s) = start_with("idle", vec![Step::Text("pushed".into())], extra) else {
        return;
    };
    let took = round_trip(&s, &format!("<i1.{}@example.com>", s.alice));
    assert!(took < Duration::from_secs(30), "took {took:?}");
    assert!(
        s.broker.log_text().contains("with IMAP IDLE"),
        "{}",
        s.broker.log_text()
    );
}

#[test]
fn without_idle_the_mailbox_is_polled() {
    let extra = json!({"imapIdle": false, "pollIntervalSeconds": 1});
    let Some(s) = start_with("poll", vec![Step::Text("polled".into())], extra) else {
        return;
    };
    round_trip(&s, &format!("<p1.{}@example.com>", s.alice));
    assert!(
        s.broker.log_text().contains("polling INBOX every 1 s"),
        "{}",
        s.broker.log_text()
    );
}

#[test]
fn attachments_are_saved_into_the_workspace() {
    let Some(s) = start("attach", vec![Step::Text("filed".into())]) else {
        return;
    };
    let (from, to) = (format!("{}@example.com", s.alice), format!("{}@oxibot.test", s.bot));
    // "bolts,40\n" in base64, as a mail client sends a file.
    let message = format!(
        "From: {from}\nTo: {to}\nSubject: Stock\nMessage-ID: <a1.{}@example.com>\n\
         Authentication-Results: mx.oxibot.test; dkim=pass header.d=example.com\n\
         MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"b1\"\n\n\
         --b1\nContent-Type: text/plain\n\nHere is the stock list.\n\
         --b1\nContent-Type: text/csv; name=\"stock.csv\"\nContent-Disposition: attachment; filename=\"stock.csv\"\n\
         Content-Transfer-Encoding: base64\n\nYm9sdHMsNDAK\n--b1--\n",
        s.alice
    );
    mail::smtp_send(&from, &to, &message);
    mail::wait_mail(&s.alice, 1, Duration::from_secs(30));
    let request = s.llm.requests()[0].body.to_string();
    assert!(
        request.contains("Here is the stock list.") && request.contains("inbox/stock.csv"),
        "{request}"
    );
    assert_eq!(
        std::fs::read(s.broker.workspace.join("inbox/stock.csv")).unwrap(),
        b"bolts,40\n"
    );
}
