//! A plain HTTP upstream on the host's loopback, for the egress door's
//! and the MCP servers' tests: it answers every request with one body, and
//! sends the head of each request it read down a channel.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

/// Its port, and what it heard.
pub fn plain(body: &'static str) -> (u16, std::sync::mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let port = listener.local_addr().expect("its address").port();
    let (seen, heard) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && s.read(&mut byte).unwrap_or(0) == 1 {
                head.push(byte[0]);
            }
            let _ = seen.send(String::from_utf8_lossy(&head).into_owned());
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (port, heard)
}

/// One test per jail mode: `both_modes!(name, |mode| { … })` makes
/// `name::root_started` and `name::unprivileged`.
#[macro_export]
macro_rules! both_modes {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;
            #[test]
            fn root_started() {
                ($body as fn($crate::harness::Mode))($crate::harness::Mode::RootStarted);
            }
            #[test]
            fn unprivileged() {
                ($body as fn($crate::harness::Mode))($crate::harness::Mode::Unprivileged);
            }
        }
    };
}
