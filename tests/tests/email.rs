//! E-mail end to end against real servers: OpenSMTPD takes the message and
//! hands it to Dovecot over LMTP; oxibot-channeld reads it over IMAP
//! (async-imap), the broker answers, and the reply goes back through
//! OpenSMTPD (lettre) into the sender's Dovecot mailbox.

use std::time::Duration;

use oxibot_tests::consts::SLOW;
use oxibot_tests::fake_llm::Step;
use oxibot_tests::harness::merge;
use oxibot_tests::mail::{self, PASSWORD};
use oxibot_tests::platform::{mailbox_tag, Email};
use oxibot_tests::poll::{self, POLL_COSTLY};
use oxibot_tests::run::Run;
use serde_json::{json, Value};

fn start(test: &str, script: Vec<Step>) -> Option<Run<Email>> {
    start_with(test, script, json!({}))
}

fn start_with(test: &str, script: Vec<Step>, extra: Value) -> Option<Run<Email>> {
    let r = launch(test, script, extra)?;
    r.wait_connected();
    Some(r)
}

/// Starts the broker without waiting for the channel to connect. The
/// mailboxes are named after `test` (`alice-{test}-{unique tag}`), `alice` is
/// allowed, and `extra` is merged into the channel's settings.
fn launch(test: &str, script: Vec<Step>, extra: Value) -> Option<Run<Email>> {
    let email = Email::tagged(format!("{test}-{}", mailbox_tag()), true)?;
    // IMAP by address, where the shared tests go by name.
    let mut settings = json!({"imapHost": "127.0.0.1"});
    merge(&mut settings, extra);
    let run = Run::<Email>::builder(script)
        .settings(move |email: &Email| {
            // `smtpUsername` names a user ("bot"); their mailbox has this
            // run's unique name.
            if let Some(who) = settings["smtpUsername"].as_str() {
                settings["smtpUsername"] = json!(email.mailbox(who));
            }
            settings
        })
        .secrets(json!({"channels": {"email": {"smtpPassword": PASSWORD}}}))
        .start_on(email);
    Some(run)
}

fn letter(from: &str, to: &str, id: &str, subject: &str) -> String {
    format!("From: {from}\nTo: {to}\nSubject: {subject}\nMessage-ID: {id}\n\nHello, can you help?\n")
}

/// Hands a letter to OpenSMTPD: through the port where the receiving server
/// vouches for the sender (`verified`), or the one where it does not. The
/// test never writes the Authentication-Results header itself.
fn post(verified: bool, from: &str, to: &str, message: &str) {
    let port = if verified {
        mail::SIGNED_SMTP_PORT
    } else {
        mail::SMTP_PORT
    };
    mail::smtp_send_via(port, from, to, message);
}

#[test]
fn a_verified_sender_gets_a_threaded_reply() {
    let Some(r) = start("reply", vec![Step::Text("Sure, here is the plan.".into())]) else {
        return;
    };
    let (from, to) = (r.p.address("alice"), r.p.bot_address());
    let id = format!("<q1.{}@example.com>", r.p.mailbox("alice"));
    post(true, &from, &to, &letter(&from, &to, &id, "Plans"));
    let replies = mail::wait_mail(&r.p.mailbox("alice"), 1, SLOW);
    let reply = &replies[0].0;
    assert!(reply.contains("Subject: Re: Plans"), "{reply}");
    assert!(reply.contains(&format!("In-Reply-To: {id}")), "{reply}");
    assert!(reply.contains(&format!("References: {id}")), "{reply}");
    assert!(reply.contains("Sure, here is the plan."), "{reply}");
    assert!(r.llm.requests()[0].body.to_string().contains("Subject: Plans"));
    // Marked \Seen: it was committed before.
    let inbox = mail::mailbox(&r.p.mailbox("bot"));
    assert_eq!(inbox.len(), 1);
    assert!(inbox[0].1, "the question was not marked \\Seen");
}

#[test]
fn a_forged_from_header_is_refused_and_audited() {
    let Some(r) = start("forged", vec![]) else { return };
    let (from, to) = (r.p.address("alice"), r.p.bot_address());
    post(false, &from, &to, &letter(&from, &to, "<f1@evil.test>", "Pay now"));
    let entry = r.broker.wait_audit("access_denied", &format!("unverified:{from}"));
    assert!(entry.contains("email"), "{entry}");
    assert!(r.llm.requests().is_empty());
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        mail::mailbox(&r.p.mailbox("alice")).is_empty(),
        "a forged sender got an answer"
    );
}

/// Asks `alice` a question and returns how long the answer took.
fn round_trip(r: &Run<Email>, id: &str) -> Duration {
    let (from, to) = (r.p.address("alice"), r.p.bot_address());
    let started = std::time::Instant::now();
    post(true, &from, &to, &letter(&from, &to, id, "Quick"));
    poll::until(Duration::from_secs(60), POLL_COSTLY, || {
        (!mail::mailbox(&r.p.mailbox("alice")).is_empty()).then_some(())
    })
    .unwrap_or_else(|| panic!("no answer within 60 s; broker log:\n{}", r.broker.log_text()));
    started.elapsed()
}

#[test]
fn new_mail_is_noticed_through_idle_without_waiting_for_a_poll() {
    // A poll interval far longer than the test's patience: only IDLE can
    // make the answer arrive in time.
    let extra = json!({"pollIntervalSeconds": 3600});
    let Some(r) = start_with("idle", vec![Step::Text("pushed".into())], extra) else {
        return;
    };
    let took = round_trip(&r, &format!("<i1.{}@example.com>", r.p.mailbox("alice")));
    assert!(took < Duration::from_secs(30), "took {took:?}");
    assert!(
        r.broker.log_text().contains("with IMAP IDLE"),
        "{}",
        r.broker.log_text()
    );
}

#[test]
fn without_idle_the_mailbox_is_polled() {
    let extra = json!({"imapIdle": false, "pollIntervalSeconds": 1});
    let Some(r) = start_with("poll", vec![Step::Text("polled".into())], extra) else {
        return;
    };
    round_trip(&r, &format!("<p1.{}@example.com>", r.p.mailbox("alice")));
    assert!(
        r.broker.log_text().contains("polling INBOX every 1 s"),
        "{}",
        r.broker.log_text()
    );
}

#[test]
fn attachments_are_saved_into_the_workspace() {
    let Some(r) = start("attach", vec![Step::Text("filed".into())]) else {
        return;
    };
    let (from, to) = (r.p.address("alice"), r.p.bot_address());
    // "bolts,40\n" in base64, as a mail client sends a file.
    let message = format!(
        "From: {from}\nTo: {to}\nSubject: Stock\nMessage-ID: <a1.{}@example.com>\n\
         MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"b1\"\n\n\
         --b1\nContent-Type: text/plain\n\nHere is the stock list.\n\
         --b1\nContent-Type: text/csv; name=\"stock.csv\"\nContent-Disposition: attachment; filename=\"stock.csv\"\n\
         Content-Transfer-Encoding: base64\n\nYm9sdHMsNDAK\n--b1--\n",
        r.p.mailbox("alice")
    );
    post(true, &from, &to, &message);
    mail::wait_mail(&r.p.mailbox("alice"), 1, SLOW);
    let request = r.llm.requests()[0].body.to_string();
    assert!(
        request.contains("Here is the stock list.") && request.contains("inbox/stock.csv"),
        "{request}"
    );
    assert_eq!(
        std::fs::read(r.broker.workspace.join("inbox/stock.csv")).unwrap(),
        b"bolts,40\n"
    );
}

/// The private CA that scripts/mail-servers.sh made for its TLS listeners.
const TEST_CA: &str = "/var/tmp/oxibot-test-mail/tls/ca.pem";

/// Whether Dovecot logged `user` logging in to `service` over TLS.
fn logged_in_over_tls(service: &str, user: &str) -> bool {
    let log = std::fs::read_to_string("/var/tmp/oxibot-test-mail/dovecot.log").unwrap_or_default();
    log.lines()
        .any(|l| l.contains(&format!("{service}-login: Info: Login: user=<{user}>")) && l.contains(", TLS"))
}

fn tls_listeners_up() -> bool {
    let up = [10993, 10587, 10465]
        .iter()
        .all(|p| std::net::TcpStream::connect(("127.0.0.1", *p)).is_ok());
    if !up || !std::path::Path::new(TEST_CA).exists() {
        oxibot_tests::harness::skip("the TLS mail listeners are not up (scripts/mail-servers.sh starts them)");
    }
    up
}

#[test]
fn imaps_and_starttls_work_with_a_private_ca() {
    if !tls_listeners_up() {
        return;
    }
    // Submission on 10587 wants STARTTLS and then AUTH, as a real one does.
    let extra = json!({"imapUseSsl": true, "imapPort": 10993, "smtpUseTls": true, "smtpPort": 10587,
                       "smtpUsername": "bot", "tlsCaFile": TEST_CA});
    let Some(r) = start_with("starttls", vec![Step::Text("over TLS".into())], extra) else {
        return;
    };
    round_trip(&r, &format!("<t1.{}@example.com>", r.p.mailbox("alice")));
    assert!(mail::mailbox(&r.p.mailbox("alice"))[0].0.contains("over TLS"));
    assert!(logged_in_over_tls("imap", &r.p.mailbox("bot")), "IMAP did not use TLS");
    assert!(
        logged_in_over_tls("submission", &r.p.mailbox("bot")),
        "SMTP did not use STARTTLS"
    );
}

#[test]
fn smtps_works_with_a_private_ca() {
    if !tls_listeners_up() {
        return;
    }
    let extra = json!({"smtpUseSsl": true, "smtpPort": 10465, "tlsCaFile": TEST_CA,
                       "smtpUsername": "bot"});
    let Some(r) = start_with("smtps", vec![Step::Text("wrapped".into())], extra) else {
        return;
    };
    round_trip(&r, &format!("<t2.{}@example.com>", r.p.mailbox("alice")));
    assert!(
        logged_in_over_tls("submission", &r.p.mailbox("bot")),
        "SMTP did not use TLS"
    );
}

#[test]
fn a_certificate_from_an_unknown_ca_is_refused() {
    if !tls_listeners_up() {
        return;
    }
    let extra = json!({"imapUseSsl": true, "imapPort": 10993});
    let Some(r) = launch("untrusted", vec![], extra) else {
        return;
    };
    let st = r
        .broker
        .wait_until("the TLS failure to be reported", Duration::from_secs(20), |st| {
            st["channels"][0]["lastError"]
                .as_str()
                .is_some_and(|e| e.contains("TLS with 127.0.0.1"))
        });
    let error = st["channels"][0]["lastError"].as_str().unwrap_or_default().to_string();
    assert!(error.contains("UnknownIssuer"), "{error}");
    assert_eq!(st["channels"][0]["connected"], false);
}
