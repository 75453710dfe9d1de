//! The egress door, end to end: a jailed command reaches an allowed local
//! upstream through the proxy on the jail's loopback (curl, Python's
//! urllib, an HTTPS tunnel that stays end to end), and nothing else — a
//! host not listed, a command that ignores the proxy, a process left
//! behind by an earlier exec. Every decision is in the audit. Each case
//! runs in both modes (root-started and unprivileged).

use std::net::TcpListener;
use std::path::Path;
use std::time::Duration;

use oxibot_tests::harness::{Broker, Mode};
use serde_json::json;

/// A broker whose jail may reach `allowed`, in `mode`; None (printed) when
/// the mode cannot run here.
fn door(mode: Mode, allowed: &[String]) -> Option<Broker> {
    let run_as = match mode.run_as() {
        Ok(r) => r,
        Err(why) => {
            oxibot_tests::harness::skip(&why);
            return None;
        }
    };
    let config = json!({"tools": {
        "exec": {"timeout": 20, "allowedHosts": allowed},
        "web": {"allowPrivate": ["127.0.0.1"]},
    }});
    let broker = Broker::start_as("http://127.0.0.1:9", config, json!({}), run_as);
    broker.wait_audit("link_established", "egress daemon connected");
    Some(broker)
}

use oxibot_tests::both_modes;
use oxibot_tests::upstream::plain as upstream;

fn has(out: &str, needle: &str) {
    assert!(out.contains(needle), "expected {needle:?} in:\n{out}");
}

both_modes!(an_allowed_host_is_reached_with_curl_and_urllib_and_audited, |mode| {
    let (port, heard) = upstream("hello from upstream");
    let Some(broker) = door(mode, &[format!("127.0.0.1:{port}")]) else {
        return;
    };
    let url = format!("http://127.0.0.1:{port}/weather?city=Oslo");
    let out = broker.exec(&format!("curl -sS --max-time 10 '{url}'"));
    has(&out, "hello from upstream");
    has(&out, "[exit code: 0]");
    let request = heard.recv_timeout(Duration::from_secs(5)).unwrap();
    // In origin form, without the proxy's headers.
    assert!(request.starts_with("GET /weather?city=Oslo HTTP/1.1\r\n"), "{request}");
    assert!(!request.to_ascii_lowercase().contains("proxy-"), "{request}");

    let python = format!(
        "python3 -c 'import urllib.request; print(urllib.request.urlopen(\"{url}\", timeout=10).read().decode())'"
    );
    has(&broker.exec(&python), "hello from upstream");

    let row = broker.wait_audit("egress", "allowed");
    has(&row, &format!("\"127.0.0.1\":{port} allowed"));
    has(&row, "exec #");
    has(&row, "arguments sha256:");
    has(&row, "bytes up");
});

both_modes!(a_host_not_listed_is_refused_with_the_reason_and_audited, |mode| {
    let (allowed, _) = upstream("allowed");
    let (other, heard) = upstream("must not be reached");
    let Some(broker) = door(mode, &[format!("127.0.0.1:{allowed}")]) else {
        return;
    };
    let out = broker.exec(&format!("curl -sS --max-time 10 http://127.0.0.1:{other}/"));
    has(&out, "is not in tools.exec.allowedHosts");
    assert!(!out.contains("must not be reached"), "{out}");
    // A tunnel to it is refused as well.
    let out = broker.exec(&format!(
        "curl -sS --max-time 10 -p http://127.0.0.1:{other}/ ; echo; curl -sS --max-time 10 https://example.com/"
    ));
    has(&out, "403");
    assert!(
        heard.recv_timeout(Duration::from_millis(300)).is_err(),
        "the refused upstream was dialled"
    );
    let row = broker.wait_audit("egress", &format!(":{other} refused"));
    has(&row, "is not in tools.exec.allowedHosts");
    broker.wait_audit("egress", "\"example.com\":443 refused");
});

both_modes!(a_command_that_ignores_the_proxy_reaches_nothing, |mode| {
    let (port, heard) = upstream("must not be reached");
    let Some(broker) = door(mode, &[format!("127.0.0.1:{port}")]) else {
        return;
    };
    // curl told not to use the proxy: the jail's loopback has no such port.
    let out = broker.exec(&format!("curl -sS --max-time 5 --noproxy '*' http://127.0.0.1:{port}/"));
    assert!(!out.contains("must not be reached"), "{out}");
    has(&out, "Failed to connect");
    // A raw socket: no route out of the jail's network namespace, and
    // Landlock allows connecting to the proxy's port only.
    let raw = |address: &str, port: u16| {
        format!(
            "python3 -c 'import socket\ntry:\n socket.create_connection((\"{address}\", {port}), timeout=5)\n print(\"connected\")\nexcept OSError as e:\n print(\"refused\", e.errno, e.strerror)'"
        )
    };
    // Landlock refuses the connect (EACCES); without it, the empty
    // network namespace would (no route; nothing listens on its loopback).
    let out = broker.exec(&raw("1.1.1.1", 443));
    has(&out, "refused 13 Permission denied");
    assert!(!out.contains("connected"), "{out}");
    let out = broker.exec(&raw("127.0.0.1", port));
    has(&out, "refused 13 Permission denied");
    assert!(heard.recv_timeout(Duration::from_millis(300)).is_err());
    // Sanity: the proxy's own port is what a command may connect to.
    has(&broker.exec(&raw("127.0.0.1", 3128)), "connected");
});

both_modes!(a_process_left_behind_gets_nothing_while_another_exec_runs, |mode| {
    let (port, heard) = upstream("for the running exec");
    let Some(broker) = door(mode, &[format!("127.0.0.1:{port}")]) else {
        return;
    };
    std::thread::scope(|scope| {
        // Exec B runs first and long, so that the jail keeps what exec A
        // leaves behind (with no exec running, leftovers are killed).
        let b = scope.spawn(|| {
            broker.exec(&format!(
                "while [ ! -e /workspace/a-ended ]; do sleep 0.1; done; touch /workspace/go; \
                 for i in $(seq 1 100); do [ -s /workspace/left.txt ] && break; sleep 0.1; done; \
                 cat /workspace/left.txt; echo; curl -sS --max-time 10 http://127.0.0.1:{port}/mine"
            ))
        });
        // Exec A leaves a process behind (in a session of its own: what
        // stays in the exec's process group is killed with it) that waits
        // for B's signal, then asks through the proxy and writes what it
        // got. A waits a moment, or its group's end would catch the
        // leftover before it left.
        std::thread::sleep(Duration::from_millis(500));
        let out = broker.exec(&format!(
            "setsid nohup sh -c 'while [ ! -e /workspace/go ]; do sleep 0.1; done; \
             curl -sS --max-time 10 http://127.0.0.1:{port}/left > /workspace/left.txt 2>&1' >/dev/null 2>&1 & sleep 1"
        ));
        has(&out, "[exit code: 0]");
        std::fs::write(broker.workspace.join("a-ended"), "").unwrap();
        let out = b.join().unwrap();
        has(&out, "came from no running command");
        has(&out, "for the running exec");
    });
    // Only exec B's request reached the upstream.
    let first = heard.recv_timeout(Duration::from_secs(5)).unwrap();
    assert!(first.starts_with("GET /mine "), "{first}");
    broker.wait_audit("egress", "no running exec");
});

both_modes!(
    a_command_that_uses_up_the_process_limit_does_not_close_the_door,
    |mode| {
        let (port, _) = upstream("still open");
        let run_as = match mode.run_as() {
            Ok(r) => r,
            Err(why) => return oxibot_tests::harness::skip(&why),
        };
        let config = json!({"tools": {
            "exec": {"timeout": 30, "maxProcesses": 32, "allowedHosts": [format!("127.0.0.1:{port}")]},
            "web": {"allowPrivate": ["127.0.0.1"]},
        }});
        let broker = Broker::start_as("http://127.0.0.1:9", config, json!({}), run_as);
        broker.wait_audit("link_established", "egress daemon connected");
        // Fork until refused, wait until idle runtime threads have ended
        // (tokio's blocking pool lets them go after 10 s), fork again into the
        // places they left, then connect to the door while no new thread or
        // process can start.
        let script = format!(
            "import os, socket, time\n\
         kids = []\n\
         def fill():\n\
         \x20   try:\n\
         \x20       while True:\n\
         \x20           pid = os.fork()\n\
         \x20           if pid == 0:\n\
         \x20               time.sleep(60); os._exit(0)\n\
         \x20           kids.append(pid)\n\
         \x20   except OSError:\n\
         \x20       pass\n\
         fill()\n\
         time.sleep(11)\n\
         fill()\n\
         print('forked', len(kids))\n\
         s = socket.create_connection(('127.0.0.1', 3128), timeout=5)\n\
         s.sendall(b'GET http://127.0.0.1:{port}/ HTTP/1.1\\r\\nHost: 127.0.0.1:{port}\\r\\n\\r\\n')\n\
         print(s.recv(200))\n\
         for k in kids:\n\
         \x20   os.kill(k, 9)\n"
        );
        std::fs::write(broker.workspace.join("exhaust.py"), script).unwrap();
        let out = broker.exec("python3 exhaust.py");
        has(&out, "forked");
        // The door is still there for the next command.
        has(
            &broker.exec(&format!("curl -sS --max-time 10 http://127.0.0.1:{port}/")),
            "still open",
        );
    }
);

both_modes!(a_flood_from_outside_any_exec_leaves_the_running_exec_its_door, |mode| {
    let (port, _) = upstream("through the flood");
    let Some(broker) = door(mode, &[format!("127.0.0.1:{port}")]) else {
        return;
    };
    // A process in a session of its own (so of no running exec) keeps 300
    // silent connections open to the door, opening a new one for each
    // that closes; the exec's own request must still go through.
    let flood = "import socket, time\n\
                 open_ = []\n\
                 end = time.time() + 8\n\
                 while time.time() < end:\n\
                 \x20   open_ = [s for s in open_ if s.fileno() >= 0]\n\
                 \x20   while len(open_) < 300:\n\
                 \x20       try:\n\
                 \x20           open_.append(socket.create_connection(('127.0.0.1', 3128), timeout=1))\n\
                 \x20       except OSError:\n\
                 \x20           break\n\
                 \x20   for s in list(open_):\n\
                 \x20       s.setblocking(False)\n\
                 \x20       try:\n\
                 \x20           if s.recv(1) == b'':\n\
                 \x20               s.close()\n\
                 \x20       except BlockingIOError:\n\
                 \x20           pass\n\
                 \x20       except OSError:\n\
                 \x20           s.close()\n\
                 \x20   time.sleep(0.05)\n";
    std::fs::write(broker.workspace.join("flood.py"), flood).unwrap();
    let out = broker.exec(&format!(
        "setsid python3 flood.py >/dev/null 2>&1 & sleep 3; \
         curl -sS --max-time 10 http://127.0.0.1:{port}/; echo; sleep 6"
    ));
    has(&out, "through the flood");
    // The flood is in the audit, counted rather than row by row.
    broker.wait_audit("egress", "more connections refused or closed in one second");
});

both_modes!(
    an_exec_holding_thousands_of_descriptors_does_not_cut_off_another,
    |mode| {
        let (port, _) = upstream("still reached");
        let Some(broker) = door(mode, &[format!("127.0.0.1:{port}")]) else {
            return;
        };
        // 21 processes with 1,000 descriptors each: more than the door reads
        // of any exec, for as long as the other exec asks.
        let hog = "import os, time\n\
               for _ in range(21):\n\
               \x20   if os.fork() == 0:\n\
               \x20       fds = [os.open('/dev/null', os.O_RDONLY) for _ in range(1000)]\n\
               \x20       time.sleep(8); os._exit(0)\n\
               time.sleep(8)\n";
        std::fs::write(broker.workspace.join("hog.py"), hog).unwrap();
        std::thread::scope(|scope| {
            let hogging = scope.spawn(|| broker.exec("python3 hog.py; echo hog done"));
            std::thread::sleep(Duration::from_secs(3));
            let out = broker.exec(&format!("curl -sS --max-time 10 http://127.0.0.1:{port}/"));
            has(&out, "still reached");
            has(&hogging.join().unwrap(), "hog done");
        });
    }
);

both_modes!(without_allowed_hosts_a_command_has_no_proxy_and_no_network, |mode| {
    let run_as = match mode.run_as() {
        Ok(r) => r,
        Err(why) => return oxibot_tests::harness::skip(&why),
    };
    let broker = Broker::start_as("http://127.0.0.1:9", json!({}), json!({}), run_as);
    let out = broker.exec("env | grep -ci proxy; curl -sS --max-time 5 http://127.0.0.1:3128/");
    assert!(out.starts_with("0\n"), "{out}");
    has(&out, "Failed to connect");
    assert!(broker.audit("egress").is_empty());
});

/// A TLS upstream with a certificate of its own (made with openssl), run
/// by Python on the host; returns its port and the certificate's path.
fn tls_upstream(dir: &Path) -> Option<(u16, std::path::PathBuf, oxibot_tests::fake_https::Server)> {
    let (cert, key) = (dir.join("upstream.pem"), dir.join("upstream.key"));
    let made = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=upstream.test",
        ])
        .args(["-addext", "subjectAltName=IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .ok()?;
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let script = format!(
        "import http.server, ssl\n\
         class H(http.server.BaseHTTPRequestHandler):\n\
         \x20def do_GET(self):\n\
         \x20 b = b'tls end to end'\n\
         \x20 self.send_response(200); self.send_header('Content-Length', str(len(b))); self.end_headers(); self.wfile.write(b)\n\
         s = http.server.HTTPServer(('127.0.0.1', {port}), H)\n\
         c = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); c.load_cert_chain('{}', '{}')\n\
         s.socket = c.wrap_socket(s.socket, server_side=True)\n\
         s.serve_forever()\n",
        cert.display(),
        key.display()
    );
    let child = oxibot_tests::fake_https::Server(
        std::process::Command::new("/usr/bin/python3")
            .arg("-c")
            .arg(script)
            .spawn()
            .ok()?,
    );
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Some((port, cert, child));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

both_modes!(
    a_tunnel_is_end_to_end_the_upstreams_certificate_reaches_the_client,
    |mode| {
        let dir = tempfile::tempdir().unwrap();
        let Some((port, cert, mut server)) = tls_upstream(dir.path()) else {
            return oxibot_tests::harness::skip("openssl or python3 is missing");
        };
        let Some(broker) = door(mode, &[format!("127.0.0.1:{port}")]) else {
            return;
        };
        std::fs::copy(&cert, broker.workspace.join("upstream.pem")).unwrap();
        let out = broker.exec(&format!(
            "curl -sS --max-time 10 --cacert upstream.pem https://127.0.0.1:{port}/ ; echo; \
         openssl s_client -proxy 127.0.0.1:3128 -connect 127.0.0.1:{port} </dev/null 2>/dev/null | grep -m1 '^subject'"
        ));
        server.kill();
        has(&out, "tls end to end");
        // What the client saw is the upstream's own certificate, not one the
        // door made.
        has(&out, "upstream.test");
        broker.wait_audit("egress", &format!(":{port} allowed"));
    }
);

/// The secret of the test's credential, written in the test only as two
/// halves, so that a search inside the jail does not find it in its own
/// command line.
const SECRET_HEAD: &str = "oxi-SEC";
const SECRET_TAIL: &str = "RET-4f9c2a7e1b";

fn secret() -> String {
    format!("{SECRET_HEAD}{SECRET_TAIL}")
}

both_modes!(a_credential_is_set_outside_the_jail_and_never_enters_it, |mode| {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let Some((port, ca, mut api)) = oxibot_tests::fake_https::echoing_https_api(dir.path()) else {
        return oxibot_tests::harness::skip("openssl or python3 is missing");
    };
    let Ok(run_as) = mode.run_as() else {
        api.kill();
        return oxibot_tests::harness::skip("this mode cannot run here");
    };
    // The same API, listed twice: once with a credential for every chat,
    // once (by another port) with one for a chat this exec is not from.
    let (other, other_heard) = upstream("no credential here");
    let config = json!({"tools": {
        "exec": {
            "timeout": 30,
            "allowedHosts": [format!("127.0.0.1:{port}"), format!("127.0.0.1:{other}")],
            "upstreamCaFile": ca,
            "credentials": {
                "api": {"hosts": [format!("127.0.0.1:{port}")], "env": ["API_TOKEN"]},
                "elsewhere": {"hosts": [format!("127.0.0.1:{other}")], "chats": ["telegram:1"], "plainHttp": true}
            }
        },
        "web": {"allowPrivate": ["127.0.0.1"]},
    }});
    let secrets = json!({"tools": {"exec": {"credentials": {
        "api": {"secret": secret()},
        "elsewhere": {"secret": "elsewhere-secret-value"}
    }}}});
    let broker = Broker::start_as("http://127.0.0.1:9", config, secrets, run_as);
    broker.wait_audit("link_established", "egress daemon connected");
    broker.wait_audit("egress_credentials", "credentials api, elsewhere handed");
    let base = format!("https://127.0.0.1:{port}");
    // Everything the command sees goes to a file the test reads itself
    // (the tool's answer is scrubbed by the broker, which would hide a
    // leak), then a search of what the jail can read for the secret (the
    // pattern comes through a pipe: it is in no file and no argv).
    let out = broker.exec(&format!(
        "{{ curl -sS -v --max-time 10 {base}/plain; echo; \
           curl -sS --max-time 10 {base}/gzip; echo; \
           curl -sS -i --max-time 10 {base}/chunked; echo; \
           curl -sS -L --max-time 10 '{base}/redirect?to=http://127.0.0.1:{other}/'; echo; \
           python3 -c 'import urllib.request; print(urllib.request.urlopen(\"{base}/python\", timeout=10).read().decode())'; \
           env; echo API_TOKEN is $API_TOKEN; \
           echo planted >> /etc/oxibot-egress/bundle.pem; echo planting exited $?; \
           printf '%s%s\\n' '{SECRET_HEAD}' '{SECRET_TAIL}' | timeout 60 grep -rIl -s -f - /etc /workspace /tmp /proc/[0-9]*/environ /proc/[0-9]*/cmdline; \
           echo search done; }} > /workspace/seen-in-jail.txt 2>&1; cat /workspace/seen-in-jail.txt"
    ));
    api.kill();
    let seen_in_jail = std::fs::read_to_string(broker.workspace.join("seen-in-jail.txt")).unwrap();
    assert!(
        !seen_in_jail.contains(&secret()),
        "the secret entered the jail:\n{seen_in_jail}"
    );
    assert!(!seen_in_jail.contains("elsewhere-secret"), "{seen_in_jail}");
    assert!(!out.contains("[REDACTED]"), "the broker had to scrub a leak: {out}");
    // The calls worked: TLS answered by the door, verified by curl and
    // Python against the bundle they were pointed to.
    let masked = "*".repeat("Bearer ".len() + secret().len());
    has(&seen_in_jail, &format!("X-Echo: {masked}"));
    has(&seen_in_jail, &format!("{{\"you_sent\": \"{masked}\"}}"));
    assert_eq!(
        seen_in_jail.matches(&format!("{{\"you_sent\": \"{masked}\"}}")).count(),
        4,
        "plain, gzip, chunked and Python each answered, scrubbed:\n{seen_in_jail}"
    );
    has(&seen_in_jail, "OxiBot egress door (trusted inside the jail only)");
    has(&seen_in_jail, "SSL_CERT_FILE=/etc/oxibot-egress/bundle.pem");
    has(&seen_in_jail, "API_TOKEN is set-by-the-oxibot-egress-door");
    has(&seen_in_jail, "search done");
    // A command cannot plant an authority for a later one: the bundle is
    // toold's to write (the exec's own Landlock domain).
    has(
        &seen_in_jail,
        "cannot create /etc/oxibot-egress/bundle.pem: Permission denied",
    );
    // The API got the real credential, each time, over real TLS.
    let seen_by_api = std::fs::read_to_string(dir.path().join("seen.log")).unwrap();
    for path in ["/plain", "/gzip", "/chunked", "/python"] {
        has(&seen_by_api, &format!("{path} Bearer {}", secret()));
    }
    // The redirect went to another host: no credential of this one.
    let redirected = other_heard.recv_timeout(Duration::from_secs(5)).unwrap();
    assert!(!redirected.contains(&secret()), "{redirected}");
    assert!(
        !redirected.contains("elsewhere-secret"),
        "not this exec's chat: {redirected}"
    );
    has(&seen_in_jail, "no credential here");
    let row = broker.wait_audit("egress", "credential \"api\" set");
    has(&row, &format!("\"127.0.0.1\":{port} allowed"));
    assert!(
        broker.audit("secret_redacted").is_empty(),
        "{:?}",
        broker.audit("secret_redacted")
    );
});

both_modes!(
    settings_an_earlier_command_planted_do_not_run_with_the_network,
    |mode| {
        let (port, heard) = upstream("reached");
        let Some(broker) = door(mode, &[format!("127.0.0.1:{port}")]) else {
            return;
        };
        // An earlier command (any chat's, any turn's) plants settings where a
        // later one with the network would read them: a .curlrc that adds a
        // header (or could send data anywhere), a repository whose fsmonitor
        // runs a program on `git status`, a Python usercustomize.
        let planted = broker.exec(
        "printf 'header = \"X-Planted: yes\"\\n' > /workspace/.curlrc; \
         mkdir -p /workspace/.local/lib; \
         git init -q /workspace/repo && git -C /workspace/repo config core.fsmonitor 'touch /tmp/fsmonitor-ran; false'; \
         chmod 000 /etc/oxibot-egress/bundle.pem; chmod 111 /etc/oxibot-egress; \
         echo planted",
    );
        has(&planted, "planted");
        let out = broker.exec(&format!(
        "curl -sS --max-time 10 http://127.0.0.1:{port}/; echo; echo change > /workspace/repo/file; \
         echo fsmonitor is $(git config --file /workspace/repo/.git/config core.fsmonitor); git -C /workspace/repo status 2>&1; \
         ls /tmp/fsmonitor-ran 2>&1; echo HOME=$HOME; touch $HOME/.curlrc 2>&1; \
         stat -c 'bundle %a' /etc/oxibot-egress/bundle.pem; stat -c 'its directory %a' /etc/oxibot-egress; echo done"
    ));
        has(&out, "reached");
        // The repository's setting is there, and git ran without it.
        has(&out, "fsmonitor is touch /tmp/fsmonitor-ran; false");
        has(&out, "Untracked files");
        has(&out, "No such file");
        has(&out, "HOME=/etc/oxibot-egress/home");
        // The trust bundle made unreadable is readable again for the next.
        has(&out, "bundle 644");
        has(&out, "its directory 755");
        has(&out, "Permission denied");
        let request = heard.recv_timeout(Duration::from_secs(5)).unwrap();
        assert!(
            !request.contains("X-Planted"),
            "the planted .curlrc was read: {request}"
        );
    }
);
