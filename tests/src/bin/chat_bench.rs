//! The chat client's figures, on the real binaries against the fake LLM
//! streaming as the providers do:
//! - first-token latency: from sending a `Chat` request over an open ctl
//!   connection to the first streamed piece, p50/p99 (the provider's
//!   first piece is sent at once, the next one 200 ms later);
//! - the whole streamed turn;
//! - with `--record`: `oxibotctl chat` driven in a pseudo-terminal (a
//!   streamed answer after a tool line, then `/new`), its screen printed
//!   as text.
//!
//! Run: `cargo build --workspace && cargo run -p oxibot-tests --bin chat-bench [-- --record]`

use std::time::{Duration, Instant};

use oxibot_proto::messages::{ChatEvent, CtlReply, CtlRequest};
use oxibot_proto::{connect_handshake, Conn, Role};
use oxibot_tests::bench::report;
use oxibot_tests::fake_llm::{FakeLlm, Step};
use oxibot_tests::harness::{bin, Broker};
use serde_json::json;

const N: usize = 100;

fn streamed() -> Step {
    Step::Parts {
        parts: vec!["Hello".into(), ", streamed".into(), " world.".into()],
        gap: Duration::from_millis(200),
    }
}

/// One streamed turn: (time to the first piece, time to the answer).
async fn turn(conn: &mut Conn<CtlReply, CtlRequest>) -> (Duration, Duration) {
    let t = Instant::now();
    conn.send(&CtlRequest::Chat {
        session: "console:bench".into(),
        message: "hi".into(),
    })
    .await
    .unwrap();
    let mut first = None;
    loop {
        match conn.recv().await.unwrap() {
            CtlReply::Chat(ChatEvent::Text { .. }) => {
                first.get_or_insert_with(|| t.elapsed());
            }
            CtlReply::Chat(ChatEvent::Answer { .. }) => return (first.unwrap_or_default(), t.elapsed()),
            CtlReply::Chat(_) | CtlReply::Done { .. } => {}
            other => panic!("{other:?}"),
        }
    }
}

fn main() {
    let record = std::env::args().any(|a| a == "--record");
    let llm = FakeLlm::start(vec![]);
    let broker = Broker::start(&llm.base_url, json!({}), json!({}));
    std::thread::sleep(Duration::from_millis(500));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (firsts, wholes) = rt.block_on(async {
        let stream = tokio::net::UnixStream::connect(broker.ctl_socket()).await.unwrap();
        let mut conn: Conn<CtlReply, CtlRequest> = connect_handshake(stream, Role::Ctl, Role::Broker).await.unwrap();
        let (mut firsts, mut wholes) = (Vec::new(), Vec::new());
        for i in 0..N + 5 {
            llm.push(streamed());
            let (first, whole) = turn(&mut conn).await;
            // The first few warm the caches.
            if i >= 5 {
                firsts.push(first);
                wholes.push(whole);
            }
            // A fresh conversation each time: the prompt stays the same size.
            conn.send(&CtlRequest::ChatCommand {
                session: "console:bench".into(),
                text: "/new".into(),
            })
            .await
            .unwrap();
            let _ = conn.recv().await.unwrap();
        }
        (firsts, wholes)
    });
    report("chat: first streamed piece", firsts);
    report("chat: whole turn (800 ms of the fake's pauses)", wholes);

    if record {
        record_session(&broker, &llm);
    }
}

/// `oxibotctl chat` in a pseudo-terminal; prints what the screen showed.
fn record_session(broker: &Broker, llm: &FakeLlm) {
    llm.push(Step::Tool {
        name: "exec".into(),
        args: json!({"command": "ls -la notes"}),
    });
    llm.push(Step::Parts {
        parts: vec![
            "The workspace has ".into(),
            "one folder, `notes`, ".into(),
            "with **two** files.".into(),
        ],
        gap: Duration::from_millis(300),
    });
    let state = tempfile::tempdir().unwrap();
    let mut cmd = std::process::Command::new(bin("oxibotctl"));
    cmd.arg("--socket")
        .arg(broker.ctl_socket())
        .env("OXIBOT_CONFIG", broker.config_path())
        .env("XDG_STATE_HOME", state.path())
        .env("TERM", "xterm-256color")
        .arg("chat")
        .arg("--raw");
    let mut pty = rexpect::session::spawn_command(cmd, Some(30_000)).unwrap();
    let mut screen = String::new();
    let mut take = |pty: &mut rexpect::session::PtySession, needle: &str| {
        screen.push_str(&pty.exp_string(needle).unwrap());
        screen.push_str(needle);
    };
    take(&mut pty, "you> ");
    for key in "what is in the workspace?".chars() {
        pty.send(&key.to_string()).unwrap();
    }
    pty.send("\r").unwrap();
    pty.flush().unwrap();
    take(&mut pty, "files.");
    take(&mut pty, "you> ");
    pty.send("/new\r").unwrap();
    pty.flush().unwrap();
    take(&mut pty, "Started a new conversation.");
    take(&mut pty, "you> ");
    pty.send_control('d').unwrap();
    // rexpect hands each byte over as one char: the UTF-8 again.
    let bytes: Vec<u8> = screen.chars().map(|c| c as u32 as u8).collect();
    println!("--- the terminal's text (escape sequences removed) ---");
    println!("{}", plain(&String::from_utf8_lossy(&bytes)));
}

/// The text a terminal shows, line by line: a carriage return goes back
/// to the line's start (what follows overwrites it), `ESC[nC` moves right,
/// `ESC[K`/`ESC[2K` clear; other escape sequences show nothing.
fn plain(raw: &str) -> String {
    let chars: Vec<char> = raw.chars().collect();
    let (mut out, mut line, mut col) = (String::new(), Vec::<char>::new(), 0usize);
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '\u{1b}' if chars.get(i + 1) == Some(&'[') => {
                let start = i + 2;
                i = start;
                while i < chars.len() && !chars[i].is_ascii_alphabetic() && chars[i] != '~' {
                    i += 1;
                }
                let arg: String = chars[start..i.min(chars.len())].iter().collect();
                match chars.get(i) {
                    Some('C') => col += arg.parse::<usize>().unwrap_or(1),
                    Some('K') if arg == "2" => line.clear(),
                    Some('K') => line.truncate(col),
                    _ => {}
                }
            }
            '\u{1b}' => i += 1,
            '\r' => col = 0,
            '\n' => {
                out.push_str(line.iter().collect::<String>().trim_end());
                out.push('\n');
                line.clear();
                col = 0;
            }
            c => {
                while line.len() < col {
                    line.push(' ');
                }
                if col < line.len() {
                    line[col] = c;
                } else {
                    line.push(c);
                }
                col += 1;
            }
        }
        i += 1;
    }
    out.push_str(line.iter().collect::<String>().trim_end());
    out
}
