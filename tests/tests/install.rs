//! The install test: the Debian package on a real systemd, as a user would
//! install it. systemd boots as PID 1 in `systemd-nspawn` over an overlay
//! of this machine's `/` (nothing on the host changes), the package is
//! installed with dpkg, configured against the fake LLM and the fake
//! Telegram on the host's 127.0.0.1, and then:
//! a Telegram message is answered; the health endpoint answers from the
//! broker's unprivileged child; each daemon runs as its own user with no
//! capabilities, no_new_privs and seccomp; a rotated key is used at once
//! without a restart; an upgrade restarts the units; a purge removes it all.
//!
//! Needs root, systemd-nspawn and the .deb (`packaging/build.sh`, or
//! `OXIBOT_DEB`). Ignored by default; CI runs it as a step of its own:
//! `cargo nextest run -p oxibot-tests --test install --run-ignored only`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use oxibot_tests::fake_llm::{FakeLlm, Step};
use oxibot_tests::fake_telegram::FakeTelegram;
use oxibot_tests::platform::TELEGRAM_TOKEN;
use oxibot_tests::poll::{self, wait_for, POLL, POLL_COSTLY};
use serde_json::{json, Value};

const KEY_1: &str = "sk-install-FIRST-0000000";
const KEY_2: &str = "sk-install-ROTATED-11111";
const API_SECRET: &str = "api-install-SECRET-2222222";
const BOOT: Duration = Duration::from_secs(90);
/// The monitoring endpoint inside the container (its own network
/// namespace is the host's: nspawn without --private-network).
const HEALTH_PORT: u16 = 18791;

/// A booted container over an overlay of `/`; powered off and unmounted on drop.
struct Container {
    base: PathBuf,
    root: PathBuf,
    nspawn: Child,
    /// The container's systemd, as the host sees it.
    pid: i32,
}

impl Container {
    /// Copies a host file into the container; returns its path in there.
    fn put(&self, host: &std::path::Path) -> PathBuf {
        let inside = PathBuf::from("/var/cache").join(host.file_name().expect("a file name"));
        let target = self.root.join(inside.strip_prefix("/").expect("absolute"));
        std::fs::copy(host, &target).unwrap_or_else(|e| panic!("copy {} into the container: {e}", host.display()));
        inside
    }

    fn boot() -> Container {
        let base = PathBuf::from(format!("/var/tmp/oxibot-install-{}", std::process::id()));
        let (upper, work, root) = (base.join("upper"), base.join("work"), base.join("root"));
        for d in [&upper, &work, &root] {
            std::fs::create_dir_all(d).unwrap();
        }
        run_host(&[
            "mount",
            "-t",
            "overlay",
            "overlay",
            "-o",
            &format!("lowerdir=/,upperdir={},workdir={}", upper.display(), work.display()),
            &root.display().to_string(),
        ]);
        // Without this, Debian's image refuses every service (re)start silently.
        let _ = std::fs::remove_file(root.join("usr/sbin/policy-rc.d"));
        // The host's test users must not exist in there: the package makes them.
        for file in ["etc/passwd", "etc/group", "etc/shadow", "etc/gshadow"] {
            let path = root.join(file);
            if let Ok(text) = std::fs::read_to_string(&path) {
                let kept: String = text
                    .lines()
                    .filter(|l| !l.starts_with("oxibot"))
                    .map(|l| format!("{l}\n"))
                    .collect();
                std::fs::write(&path, kept).unwrap();
            }
        }
        let console = std::fs::File::create(base.join("console.log")).unwrap();
        let nspawn = Command::new("systemd-nspawn")
            .args(["-D", &root.display().to_string(), "--keep-unit", "--register=no"])
            .args(["--link-journal=no", "--console=pipe", "--boot"])
            .stdin(Stdio::null())
            .stdout(console.try_clone().unwrap())
            .stderr(console)
            .spawn()
            .expect("systemd-nspawn (apt-get install systemd-container)");
        let nspawn_pid = nspawn.id();
        let pid = wait_for("the container's systemd", BOOT, || child_of(nspawn_pid, "systemd"));
        let c = Container {
            base,
            root,
            nspawn,
            pid,
        };
        let mut state = String::new();
        poll::until(BOOT, POLL_COSTLY, || {
            state = c.sh("systemctl is-system-running || true");
            (state.contains("running") || state.contains("degraded")).then_some(())
        })
        .unwrap_or_else(|| panic!("the container did not boot: {state}"));
        c
    }

    /// Runs a shell command in the container; returns stdout + stderr.
    fn sh(&self, script: &str) -> String {
        self.sh_with_input(script, None)
    }

    fn sh_with_input(&self, script: &str, input: Option<&str>) -> String {
        use std::io::Write;
        let mut child = Command::new("nsenter")
            .args([
                "-t",
                &self.pid.to_string(),
                "-m",
                "-u",
                "-i",
                "-n",
                "-p",
                "--",
                "sh",
                "-c",
                script,
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        if let Some(text) = input {
            child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
        }
        drop(child.stdin.take());
        let out = child.wait_with_output().unwrap();
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr)
    }

    /// As `sh`, and the command must succeed.
    fn ok(&self, script: &str) -> String {
        let out = self.sh(&format!("{{ {script}\n}} 2>&1; echo \"rc=$?\""));
        assert!(
            out.trim_end().ends_with("rc=0"),
            "`{script}` failed:\n{out}\n{}",
            self.journal()
        );
        out
    }

    fn journal(&self) -> String {
        self.sh("journalctl --no-pager -n 80 -u 'oxibot*' 2>&1 | tail -80")
    }

    /// The main pid of a unit, in the container's pid namespace.
    fn main_pid(&self, unit: &str) -> u32 {
        self.sh(&format!("systemctl show -p MainPID --value {unit}"))
            .trim()
            .parse()
            .unwrap_or(0)
    }

    fn status_of(&self, pid: u32) -> String {
        self.sh(&format!("cat /proc/{pid}/status"))
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = self.sh("systemctl poweroff");
        let _ = poll::until(Duration::from_secs(20), POLL, || {
            (!matches!(self.nspawn.try_wait(), Ok(None))).then_some(())
        });
        let _ = self.nspawn.kill();
        let _ = self.nspawn.wait();
        let _ = Command::new("umount").arg(&self.root).status();
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

fn run_host(args: &[&str]) {
    let status = Command::new(args[0]).args(&args[1..]).status().unwrap();
    assert!(status.success(), "{args:?} failed");
}

/// The child of `parent` whose command is `name`.
fn child_of(parent: u32, name: &str) -> Option<i32> {
    std::fs::read_dir("/proc").ok()?.filter_map(Result::ok).find_map(|e| {
        let pid: i32 = e.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let comm = stat.split('(').nth(1)?.split(')').next()?;
        let ppid: u32 = stat.rsplit(')').next()?.split_whitespace().nth(1)?.parse().ok()?;
        (ppid == parent && comm == name).then_some(pid)
    })
}

fn the_deb() -> PathBuf {
    if let Ok(p) = std::env::var("OXIBOT_DEB") {
        return PathBuf::from(p);
    }
    let dir = oxibot_tests::harness::bin_dir().join("../debian");
    std::fs::read_dir(&dir)
        .unwrap_or_else(|_| panic!("no {}: build the package first (packaging/build.sh)", dir.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "deb"))
        .max_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        .expect("no .deb: build the package first (packaging/build.sh)")
        .canonicalize()
        .unwrap()
}

fn field(status: &str, name: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .map(|v| v.trim().to_string())
        .unwrap_or_default()
}

#[test]
#[ignore = "boots systemd in a container: CI runs it as a step of its own"]
fn a_packaged_oxibot_answers_under_systemd() {
    if !nix::unistd::geteuid().is_root() {
        return oxibot_tests::harness::skip("the install test needs root");
    }
    let started = Instant::now();
    let deb = the_deb();
    let llm = FakeLlm::start(vec![
        Step::Text("the packaged bot answers".into()),
        Step::Text("answered with the rotated key".into()),
        Step::Text("answered after the upgrade".into()),
        Step::Text("answered after channels enable".into()),
    ]);
    let tg = FakeTelegram::start(TELEGRAM_TOKEN);
    let c = Container::boot();
    eprintln!("booted in {:?}", started.elapsed());
    // Into the container's own tree: the host path may lie under /tmp,
    // which the container's systemd covers with a tmpfs of its own.
    let deb = c.put(&deb);

    c.ok(&format!("dpkg -i {}", deb.display()));
    // systemd's own check of the installed units.
    let verify = c.ok("cd /usr/lib/systemd/system && systemd-analyze verify oxibot.target oxibot-broker.service \
         oxibot-toold.service oxibot-channeld@telegram.service oxibot-ctl.socket oxibot-channel.socket oxibot-tool.socket \
         oxibot-egressd.service oxibot-egress.socket oxibot-egress-door.socket");
    assert_eq!(verify.trim(), "rc=0", "systemd-analyze verify: {verify}");
    for user in [
        "oxibot",
        "oxibot-tool",
        "oxibot-egress",
        "oxibot-telegram",
        "oxibot-email",
    ] {
        c.ok(&format!("id {user}"));
    }
    assert!(c
        .ok("stat -c '%a %U:%G' /etc/oxibot/secrets.json")
        .contains("640 root:oxibot"));
    // A web service on the host's loopback, which the jail's commands may
    // reach through the egress door (the container shares the host's network).
    let upstream = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let upstream_port = upstream.local_addr().unwrap().port();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for stream in upstream.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut head = [0u8; 2048];
            let _ = s.read(&mut head);
            let _ =
                s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 18\r\nConnection: close\r\n\r\nthrough the door\r\n");
        }
    });
    // An HTTPS API on the host's loopback with a credential set at the
    // door: its test authority goes into the container for the door to
    // trust (tools.exec.upstreamCaFile).
    let api_dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(api_dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let (api_port, api_ca, mut api) =
        oxibot_tests::fake_https::echoing_https_api(api_dir.path()).expect("openssl and python3 for the HTTPS API");
    c.ok(&format!(
        "cat > /etc/oxibot/upstream-ca.pem <<'EOF'\n{}EOF\nchmod 644 /etc/oxibot/upstream-ca.pem",
        std::fs::read_to_string(&api_ca).unwrap()
    ));
    let config = json!({
        "supervise": false,
        "agents": {"defaults": {"workspace": "/var/lib/oxibot/workspace", "model": "gpt-test", "provider": "openai"}},
        "providers": {"openai": {"apiBase": format!("{}/v1", llm.base_url)}},
        "channels": {"telegram": {"enabled": true, "apiBase": tg.base_url, "allowedUsers": ["1001"]}},
        "tools": {
            "sandbox": "on",
            "exec": {
                "timeout": 30,
                "allowedHosts": [format!("127.0.0.1:{upstream_port}"), format!("127.0.0.1:{api_port}")],
                "upstreamCaFile": "/etc/oxibot/upstream-ca.pem",
                "credentials": {"api": {"hosts": [format!("127.0.0.1:{api_port}")]}}
            },
            "web": {"allowPrivate": ["127.0.0.1"]}
        },
        "health": {"enabled": true, "port": HEALTH_PORT}
    });
    c.ok(&format!("cat > /etc/oxibot/config.json <<'EOF'\n{config}\nEOF"));
    let set = |name: &str, value: &str| {
        let out = c.sh_with_input(
            &format!("oxibotctl secrets set {name} 2>&1; echo rc=$?"),
            Some(&format!("{value}\n")),
        );
        assert!(out.contains("rc=0"), "{out}");
        out
    };
    set("providers.openai.apiKey", KEY_1);
    set("channels.telegram.token", TELEGRAM_TOKEN);
    set("tools.exec.credentials.api.secret", API_SECRET);
    c.ok("systemctl enable --now oxibot.target oxibot-channeld@telegram.service");

    // A Telegram message, answered through the packaged daemons.
    wait_for("telegram connected", BOOT, || {
        c.sh("oxibotctl --json status")
            .contains(r#""connected":true"#)
            .then_some(())
    });
    tg.send_text(1001, "hello, packaged bot");
    let sent = tg.wait_sent(1, BOOT);
    assert_eq!(sent[0]["text"], "the packaged bot answers", "{}", c.journal());
    assert_eq!(
        llm.requests()[0].header("authorization"),
        Some(format!("Bearer {KEY_1}").as_str())
    );

    // The health endpoint, served by the broker's unprivileged child from
    // the port the broker bound, under the packaged unit's sandbox.
    let broker_pid = c.main_pid("oxibot-broker.service");
    let healthd = wait_for("the health daemon", BOOT, || {
        let kids = c.sh(&format!("cat /proc/{broker_pid}/task/*/children"));
        kids.split_whitespace()
            .filter_map(|p| p.parse::<u32>().ok())
            .find(|p| c.sh(&format!("cat /proc/{p}/comm")).trim() == "oxibot-healthd")
    });
    let ready = c.ok(&format!("curl -sS http://127.0.0.1:{HEALTH_PORT}/readyz"));
    assert!(ready.starts_with("ready"), "{ready}");
    let metrics = c.ok(&format!("curl -sS http://127.0.0.1:{HEALTH_PORT}/metrics"));
    assert!(metrics.contains("oxibot_up 1"), "{metrics}");

    // A jailed command reaches the allowed host through the egress door:
    // toold's unit, the door's socket unit and oxibot-egressd (its own unit
    // and user) together. The first tries may come before the daemon's
    // link is up (the command then runs without the network).
    let through = wait_for("the egress door", BOOT, || {
        let out = c.sh(&format!(
            "oxibotctl tool exec -- curl -sS --max-time 10 http://127.0.0.1:{upstream_port}/ 2>&1"
        ));
        out.contains("through the door").then_some(out)
    });
    eprintln!("egress: {}", through.trim());
    let refused = c.sh("oxibotctl tool exec -- curl -sS --max-time 10 http://127.0.0.1:9/ 2>&1");
    assert!(refused.contains("is not in tools.exec.allowedHosts"), "{refused}");
    // With the credential: the packaged door answers the jail's TLS with
    // its own authority (toold's unit gave the command the bundle), sets
    // the header, checks the API's certificate against the configured
    // authority, and scrubs the echo.
    let injected = c.sh(&format!(
        "oxibotctl tool exec -- curl -sS --max-time 10 https://127.0.0.1:{api_port}/plain 2>&1"
    ));
    api.kill();
    let masked = "*".repeat("Bearer ".len() + API_SECRET.len());
    assert!(
        injected.contains(&format!("{{\"you_sent\": \"{masked}\"}}")),
        "{injected}\n{}",
        c.journal()
    );
    let seen_by_api = std::fs::read_to_string(api_dir.path().join("seen.log")).unwrap_or_default();
    assert!(
        seen_by_api.contains(&format!("/plain Bearer {API_SECRET}")),
        "{seen_by_api}"
    );
    let in_journal = c.sh(&format!("journalctl --no-pager -u 'oxibot*' | grep -c '{API_SECRET}'"));
    assert_eq!(in_journal.trim(), "0", "the credential reached the journal");

    // Each daemon: its own user, no capabilities, no_new_privs, seccomp —
    // toold twice: the process systemd started, and its jail's pid 1 (the
    // one that runs the commands); healthd, the broker's child.
    let toold = c.main_pid("oxibot-toold.service");
    let jail = c
        .sh(&format!("cat /proc/{toold}/task/{toold}/children"))
        .trim()
        .to_string();
    let jail: u32 = jail.split_whitespace().next().and_then(|p| p.parse().ok()).unwrap_or(0);
    // The commands are capped as a group: the jail (and every command it
    // forks) stays in toold's own cgroup, which carries the unit's
    // MemoryMax= and TasksMax= (RLIMIT_AS and RLIMIT_NPROC are per process
    // and per uid; the cgroup is what caps memory for all commands at once).
    let cgroup = c.sh(&format!("cat /proc/{jail}/cgroup"));
    assert!(
        cgroup
            .lines()
            .any(|l| l.starts_with("0::") && l.ends_with("/system.slice/oxibot-toold.service")),
        "the jail left toold's cgroup: {cgroup}"
    );
    let limits = c.sh("systemctl show oxibot-toold -p MemoryMax -p TasksMax");
    assert!(
        limits.contains("MemoryMax=2147483648") && limits.contains("TasksMax=512"),
        "{limits}"
    );
    let group = "/sys/fs/cgroup/system.slice/oxibot-toold.service";
    match c
        .sh(&format!("cat {group}/memory.max {group}/pids.max 2>/dev/null"))
        .trim()
    {
        "" => eprintln!(
            "cgroup: this host gives the container no cgroup v2 memory/pids controllers; \
             checked the unit's limits and the jail's membership, not the kernel's enforcement"
        ),
        enforced => assert_eq!(enforced.split_whitespace().collect::<Vec<_>>(), ["2147483648", "512"]),
    }
    for (unit, user, pid) in [
        ("oxibot-broker.service", "oxibot", c.main_pid("oxibot-broker.service")),
        ("oxibot-toold.service", "oxibot-tool", toold),
        ("oxibot-toold.service (jail)", "oxibot-tool", jail),
        (
            "oxibot-channeld@telegram.service",
            "oxibot-telegram",
            c.main_pid("oxibot-channeld@telegram.service"),
        ),
        ("oxibot-broker.service (healthd)", "oxibot", healthd),
        (
            "oxibot-egressd.service",
            "oxibot-egress",
            c.main_pid("oxibot-egressd.service"),
        ),
    ] {
        assert!(pid > 0, "{unit} has no main pid\n{}", c.journal());
        let status = c.status_of(pid);
        let uid = c.sh(&format!("id -u {user}")).trim().to_string();
        assert!(
            field(&status, "Uid:").split_whitespace().all(|u| u == uid),
            "{unit}: {status}"
        );
        assert_eq!(field(&status, "CapEff:"), "0000000000000000", "{unit}");
        assert_eq!(field(&status, "CapPrm:"), "0000000000000000", "{unit}");
        assert_eq!(field(&status, "NoNewPrivs:"), "1", "{unit}");
        assert_eq!(field(&status, "Seccomp:"), "2", "{unit}");
        eprintln!("{unit}: user {user}, CapEff 0, NoNewPrivs 1, Seccomp 2");
    }

    // The admin's tools on the real installation: everything is up, and
    // doctor finds the files, users, sockets, units and the jail in order.
    assert_eq!(
        c.sh("oxibotctl status >/dev/null; echo rc=$?").trim(),
        "rc=0",
        "{}",
        c.sh("oxibotctl status")
    );
    let doctor: Value = serde_json::from_str(&c.sh("oxibotctl --json doctor 2>/dev/null")).unwrap_or(Value::Null);
    let findings = doctor["findings"].as_array().cloned().unwrap_or_default();
    assert!(findings.len() > 20, "{doctor}");
    for f in &findings {
        let area = f["area"].as_str().unwrap_or("");
        if ["files", "users", "sockets", "units", "broker", "jail", "settings"].contains(&area) {
            assert!(f["level"] == "ok" || f["level"] == "skip", "doctor: {f}");
        }
    }
    let exposure: Vec<String> = findings
        .iter()
        .filter(|f| f["area"] == "units")
        .map(|f| format!("{} {}", f["check"], f["seen"]))
        .collect();
    assert_eq!(exposure.len(), 4, "{exposure:?}");
    eprintln!("doctor: {} findings, units {exposure:?}", findings.len());

    // A rotated key, used by the next request with no restart.
    let broker = c.main_pid("oxibot-broker.service");
    let said = set("providers.openai.apiKey", KEY_2);
    assert!(said.contains("reloaded"), "{said}");
    tg.send_text(1001, "again");
    assert_eq!(tg.wait_sent(2, BOOT)[1]["text"], "answered with the rotated key");
    assert_eq!(
        llm.requests()[1].header("authorization"),
        Some(format!("Bearer {KEY_2}").as_str())
    );
    assert_eq!(c.main_pid("oxibot-broker.service"), broker, "the broker restarted");

    // An upgrade restarts the units (and keeps the configuration).
    c.ok(&format!("dpkg -i {}", deb.display()));
    let upgraded = c.main_pid("oxibot-broker.service");
    assert!(upgraded != broker && upgraded > 0, "not restarted: {upgraded}");
    assert!(c.ok("cat /etc/oxibot/config.json").contains("gpt-test"));
    wait_for("telegram reconnected", BOOT, || {
        c.sh("oxibotctl --json status")
            .contains(r#""connected":true"#)
            .then_some(())
    });
    tg.send_text(1001, "after the upgrade");
    assert_eq!(tg.wait_sent(3, BOOT)[2]["text"], "answered after the upgrade");

    // A channel disabled and enabled again by oxibotctl: its unit stops and
    // starts, the broker restarts, and messages flow again.
    let said = c.ok("oxibotctl channels disable telegram");
    assert!(said.contains("disabled and stopped"), "{said}");
    assert!(c
        .sh("systemctl is-active oxibot-channeld@telegram.service")
        .contains("inactive"));
    assert!(c.ok("cat /etc/oxibot/config.json").contains(r#""enabled": false"#));
    c.ok("oxibotctl channels enable telegram");
    wait_for("telegram back", BOOT, || {
        c.sh("oxibotctl --json status")
            .contains(r#""connected":true"#)
            .then_some(())
    });
    tg.send_text(1001, "are you back?");
    assert_eq!(tg.wait_sent(4, BOOT)[3]["text"], "answered after channels enable");

    // A purge removes the configuration, the secrets and the state.
    c.ok("dpkg --purge oxibot");
    let left = c.sh(
        "ls -d /etc/oxibot /var/lib/oxibot /usr/bin/oxibot-broker /usr/lib/systemd/system/oxibot-broker.service 2>&1",
    );
    assert_eq!(left.matches("No such file").count(), 4, "{left}");
    assert!(
        !c.sh("systemctl is-active oxibot-broker.service").contains("active\n")
            || c.sh("systemctl is-active oxibot-broker.service").contains("inactive")
    );
    eprintln!("install test done in {:?}", started.elapsed());
    let _ = Path::new("/");
}
