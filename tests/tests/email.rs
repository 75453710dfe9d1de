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
    if !mail::servers_up() {
        eprintln!("SKIPPED: Dovecot/OpenSMTPD are not running on 127.0.0.1 (scripts/mail-servers.sh starts them)");
        return None;
    }
    let tag = format!("{test}-{}", std::process::id());
    let bot = format!("bot-{tag}");
    let alice = format!("alice-{tag}");
    let llm = FakeLlm::start(script);
    let settings = json!({
        "enabled": true,
        "imapHost": "127.0.0.1", "imapPort": IMAP_PORT, "imapUsername": bot, "imapUseSsl": false,
        "smtpHost": "127.0.0.1", "smtpPort": SMTP_PORT, "smtpUseTls": false,
        "fromAddress": format!("{bot}@oxibot.test"), "pollIntervalSeconds": 1,
        "allowedUsers": [format!("{alice}@example.com")]
    });
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
