//! Helpers for the e-mail tests against the real Dovecot and OpenSMTPD
//! that `scripts/mail-servers.sh` starts on 127.0.0.1.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

use futures_util::StreamExt;

use crate::poll::{self, POLL_COSTLY};

pub const IMAP_PORT: u16 = 10143;
/// OpenSMTPD stamps `Authentication-Results: mail.oxibot.test; dkim=none` here…
pub const SMTP_PORT: u16 = 10025;
/// …and `dkim=pass header.d=<envelope sender's domain>` here, as a receiving
/// server that verified the sender would (scripts/authres-filter.py).
pub const SIGNED_SMTP_PORT: u16 = 10026;
/// The receiving server's authserv-id (RFC 8601).
pub const AUTHSERV_ID: &str = "mail.oxibot.test";
pub const PASSWORD: &str = "imap-PASS-0xb0t-t3st";

/// Whether both servers answer; tests skip (and say so) when they do not.
pub fn servers_up() -> bool {
    [IMAP_PORT, SMTP_PORT, SIGNED_SMTP_PORT]
        .iter()
        .all(|p| TcpStream::connect(("127.0.0.1", *p)).is_ok())
}

/// Sends a raw RFC 5322 message over SMTP (no client library: the test
/// plays the sender's mail server) to the port where the receiving server
/// does not vouch for anyone.
pub fn smtp_send(from: &str, to: &str, message: &str) {
    smtp_send_via(SMTP_PORT, from, to, message)
}

/// As [`smtp_send`], to `port` (see [`SIGNED_SMTP_PORT`]).
pub fn smtp_send_via(port: u16, from: &str, to: &str, message: &str) {
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut w = stream;
    let mut expect = |code: &str| loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        assert!(line.starts_with(code), "SMTP: expected {code}, got {line}");
        if line.as_bytes().get(3) != Some(&b'-') {
            break;
        }
    };
    expect("220");
    for (cmd, code) in [
        ("EHLO test.example".to_string(), "250"),
        (format!("MAIL FROM:<{from}>"), "250"),
        (format!("RCPT TO:<{to}>"), "250"),
        ("DATA".to_string(), "354"),
    ] {
        write!(w, "{cmd}\r\n").unwrap();
        expect(code);
    }
    let body = message.replace("\r\n", "\n").replace('\n', "\r\n");
    write!(w, "{body}\r\n.\r\n").unwrap();
    expect("250");
    write!(w, "QUIT\r\n").unwrap();
}

/// (raw message, seen) for each message in `user`'s INBOX.
pub fn mailbox(user: &str) -> Vec<(String, bool)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", IMAP_PORT)).await.unwrap();
        let mut client = async_imap::Client::new(tcp);
        client.read_response().await.unwrap().unwrap();
        let mut session = client.login(user, PASSWORD).await.map_err(|(e, _)| e).unwrap();
        session.select("INBOX").await.unwrap();
        let mut out = Vec::new();
        {
            let mut fetched = session.fetch("1:*", "(FLAGS BODY.PEEK[])").await.unwrap();
            while let Some(Ok(f)) = fetched.next().await {
                let seen = f.flags().any(|fl| matches!(fl, async_imap::types::Flag::Seen));
                out.push((String::from_utf8_lossy(f.body().unwrap_or_default()).into_owned(), seen));
            }
        }
        let _ = session.logout().await;
        out
    })
}

/// Waits until `user` has at least `n` messages.
pub fn wait_mail(user: &str, n: usize, timeout: Duration) -> Vec<(String, bool)> {
    let mut had = 0;
    poll::until(timeout, POLL_COSTLY, || {
        let m = mailbox(user);
        had = m.len();
        Some(m).filter(|m| m.len() >= n)
    })
    .unwrap_or_else(|| panic!("{user} has {had} messages, expected {n}"))
}

/// The text a reader sees in a raw message: the decoded text/plain part.
pub fn body_text(raw: &str) -> String {
    let Ok(mail) = mailparse::parse_mail(raw.as_bytes()) else {
        return String::new();
    };
    fn plain(m: &mailparse::ParsedMail<'_>) -> Option<String> {
        if m.ctype.mimetype.eq_ignore_ascii_case("text/plain") {
            return m.get_body().ok();
        }
        m.subparts.iter().find_map(plain)
    }
    plain(&mail).unwrap_or_default().trim_end().to_string()
}
