//! Runs the real OxiBot binaries in a temporary directory.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use crate::consts::CONNECT;
use crate::poll::{self, POLL, POLL_COSTLY};

/// `target/debug` (or wherever this test binary was built): the tests run
/// the binaries that `cargo build --workspace` put next to it.
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    // Test binaries live in target/debug/deps, bench binaries in target/debug.
    let mut dir = exe.parent().expect("target dir").to_path_buf();
    if !dir.join("oxibot-toold").exists() {
        dir = dir.parent().map(Path::to_path_buf).unwrap_or(dir);
    }
    assert!(
        dir.join("oxibot-toold").exists(),
        "{} has no oxibot-toold: run `cargo build --workspace` before the tests",
        dir.display()
    );
    dir
}

pub fn bin(name: &str) -> PathBuf {
    bin_dir().join(name)
}

pub struct Broker {
    pub dir: tempfile::TempDir,
    pub child: Child,
    pub runtime: PathBuf,
    pub state: PathBuf,
    pub workspace: PathBuf,
    pub log: PathBuf,
    /// Daemons the test started itself (no supervise mode), by name.
    pub daemons: Vec<(String, Child)>,
}

/// Deep-merges `over` into `base`, as the broker lays the secrets over the config.
pub use oxibot_config::config::merge;

/// The secrets file of a test broker: the fake LLM's key, with `more`
/// merged over it (a channel's credential, a search key). Every test file
/// builds its secrets here.
pub fn secrets(more: Value) -> Value {
    let mut secrets = json!({"providers": {"openai": {"apiKey": crate::consts::LLM_KEY}}});
    merge(&mut secrets, more);
    secrets
}

/// The resident set of a process, KiB (0 when it is gone): for the benches.
pub fn rss_kib(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// A test that cannot run here says why and passes, except under CI
/// (`CI` set), where every test must really run.
pub fn skip(why: &str) {
    if std::env::var_os("CI").is_some_and(|v| !v.is_empty()) {
        panic!("this test cannot run here, and CI is set: {why}");
    }
    eprintln!("SKIPPED: {why}");
}

/// The non-root account CI creates to run the broker unprivileged
/// (scripts/test.sh creates it when run as root).
pub const CI_USER: &str = "oxibot-ci";

/// Two tests from `fn NAME(mode: Mode)`: `NAME::root_started` and
/// `NAME::unprivileged`, one for each way toold gets its jail.
#[macro_export]
macro_rules! in_both_modes {
    ($test:ident) => {
        mod $test {
            #[test]
            fn root_started() {
                super::$test($crate::harness::Mode::RootStarted)
            }
            #[test]
            fn unprivileged() {
                super::$test($crate::harness::Mode::Unprivileged)
            }
        }
    };
}

/// How toold gets its jail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The broker runs as root; toold builds the jail as root and becomes
    /// `oxibot-tool` (the packaged, systemd way).
    RootStarted,
    /// The broker and toold run as an ordinary user; toold builds the jail
    /// inside a user namespace.
    Unprivileged,
}

impl Mode {
    /// The (uid, gid) to run the broker as, None for "as this process", or
    /// Err with the reason the mode cannot run here.
    pub fn run_as(self) -> Result<Option<(u32, u32)>, String> {
        let root = nix::unistd::geteuid().is_root();
        match (self, root) {
            (Mode::RootStarted, true) => Ok(None),
            (Mode::RootStarted, false) => Err("root-started mode needs root (CI runs as root)".into()),
            (Mode::Unprivileged, false) => Ok(None),
            (Mode::Unprivileged, true) => match nix::unistd::User::from_name(CI_USER) {
                Ok(Some(u)) => Ok(Some((u.uid.as_raw(), u.gid.as_raw()))),
                _ => panic!("user {CI_USER} does not exist; create it (scripts/test.sh does: useradd {CI_USER})"),
            },
        }
    }
}

/// A command that runs `program` as `run_as` (uid, gid) with that user's
/// supplementary groups, as systemd's `User=` does (std's `Command::uid`
/// clears them), or as this process when None.
pub fn as_user(run_as: Option<(u32, u32)>, program: &Path) -> Command {
    match run_as {
        Some((uid, gid)) => {
            let mut c = Command::new("setpriv");
            c.args([
                format!("--reuid={uid}"),
                format!("--regid={gid}"),
                "--init-groups".into(),
                "--".into(),
            ])
            .arg(program);
            c
        }
        None => Command::new(program),
    }
}

/// A fresh, world-readable directory for one broker.
pub fn new_dir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new().prefix("oxibot-e2e-").tempdir().unwrap();
    // Other users (nobody, in the uid tests) must be able to reach the sockets.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// How to start a broker.
#[derive(Default)]
pub struct Launch {
    /// (uid, gid) to run as.
    pub run_as: Option<(u32, u32)>,
    /// A command that runs the broker's command line appended to it
    /// (`unshare -m sh -c '…; exec "$@"' sh`): the broker then lives in
    /// whatever the wrapper set up.
    pub wrapper: Option<Vec<String>>,
    /// More environment for the broker (what systemd would set).
    pub env: Vec<(String, String)>,
}

/// The programs other users run in the tests.
const SHARED_BINARIES: [&str; 6] = [
    "oxibot-broker",
    "oxibot-toold",
    "oxibot-channeld",
    "oxibotctl",
    "rogue-channel",
    "compromised-channeld",
];

/// A directory holding the daemons that any user can reach. The build tree
/// may sit under a private home (/root); then the binaries are hard-linked
/// (or copied) once per build into /tmp.
pub fn bin_dir_for_others() -> PathBuf {
    use std::os::unix::fs::MetadataExt;
    let dir = bin_dir();
    let reachable = dir
        .ancestors()
        .all(|a| std::fs::metadata(a).map(|m| m.mode() & 0o001 != 0).unwrap_or(false));
    if reachable {
        return dir;
    }
    // Any rebuilt binary makes a new copy: the newest modification time
    // of them all names it.
    let stamp = SHARED_BINARIES
        .iter()
        .filter_map(|name| std::fs::metadata(dir.join(name)).ok())
        .map(|m| m.mtime() * 1_000_000_000 + m.mtime_nsec())
        .max()
        .unwrap_or(0);
    let shared = std::env::temp_dir().join(format!("oxibot-test-bins-{stamp}"));
    if shared.exists() {
        return shared;
    }
    let staging = std::env::temp_dir().join(format!("oxibot-test-bins-{stamp}.{}", std::process::id()));
    std::fs::create_dir_all(&staging).unwrap();
    for name in SHARED_BINARIES {
        let (from, to) = (dir.join(name), staging.join(name));
        if std::fs::hard_link(&from, &to).is_err() {
            std::fs::copy(&from, &to).unwrap();
        }
    }
    std::fs::set_permissions(&staging, std::fs::Permissions::from_mode(0o755)).unwrap();
    // Another test may have won the race; either copy is good.
    if std::fs::rename(&staging, &shared).is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    shared
}

fn chown_tree(path: &Path, uid: u32, gid: u32) {
    let (u, g) = (
        Some(nix::unistd::Uid::from_raw(uid)),
        Some(nix::unistd::Gid::from_raw(gid)),
    );
    nix::unistd::chown(path, u, g).unwrap();
    if path.is_dir() {
        for e in std::fs::read_dir(path).unwrap() {
            chown_tree(&e.unwrap().path(), uid, gid);
        }
    }
}

impl Broker {
    /// Starts a broker in supervise mode (with toold in its jail) using
    /// `llm_base` as the OpenAI-compatible endpoint, then waits until toold
    /// is connected. `patch` is merged into the config, `secrets` is the
    /// secrets file.
    pub fn start(llm_base: &str, patch: Value, secrets: Value) -> Broker {
        Self::start_as(llm_base, patch, secrets, None)
    }

    /// As [`Broker::start`], with the broker running as `run_as` (uid, gid).
    pub fn start_as(llm_base: &str, patch: Value, secrets: Value, run_as: Option<(u32, u32)>) -> Broker {
        let broker = Self::launch(llm_base, patch, secrets, run_as);
        broker.wait_tool_connected();
        broker
    }

    /// Starts the broker and returns at once: for a broker that must not
    /// start, or one whose daemons the test starts itself.
    pub fn launch(llm_base: &str, patch: Value, secrets: Value, run_as: Option<(u32, u32)>) -> Broker {
        Self::launch_in(
            new_dir(),
            llm_base,
            patch,
            secrets,
            Launch {
                run_as,
                ..Launch::default()
            },
        )
    }

    /// As [`Broker::launch_in`], then waits for toold.
    pub fn start_in(dir: tempfile::TempDir, llm_base: &str, patch: Value, secrets: Value, how: Launch) -> Broker {
        let broker = Self::launch_in(dir, llm_base, patch, secrets, how);
        broker.wait_tool_connected();
        broker
    }

    /// As [`Broker::launch`], in `dir` (made by [`new_dir`], so that a test
    /// knows its paths beforehand: `secrets.json`, `state/oxibot.db`,
    /// `run/ctl.sock`, `workspace/`), and with `how`.
    pub fn launch_in(dir: tempfile::TempDir, llm_base: &str, patch: Value, secrets: Value, how: Launch) -> Broker {
        let run_as = how.run_as;
        let runtime = dir.path().join("run");
        let state = dir.path().join("state");
        let workspace = dir.path().join("workspace");
        std::fs::create_dir_all(&workspace).unwrap();
        // Whatever the umask: toold hands the tool user no directory that
        // others may write.
        std::fs::set_permissions(&workspace, std::fs::Permissions::from_mode(0o755)).unwrap();
        let secrets_file = dir.path().join("secrets.json");
        std::fs::write(&secrets_file, secrets.to_string()).unwrap();
        std::fs::set_permissions(&secrets_file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let mut config = json!({
            "runtimeDir": runtime, "stateDir": state, "secretsFile": secrets_file,
            "supervise": true,
            "agents": {"defaults": {
                "workspace": workspace, "model": "gpt-test", "provider": "openai",
                "maxRetries": 2, "retryBaseDelayMs": 50, "requestTimeoutSecs": 30,
                "temperature": 0.0, "maxTokens": 512
            }},
            "providers": {"openai": {"apiBase": format!("{llm_base}/v1")}},
            "tools": {"sandbox": "on", "exec": {"timeout": 30}}
        });
        // scripts/measure-syscalls.sh runs the daemons under strace.
        if let Ok(bin) = std::env::var("OXIBOT_TEST_BIN_DIR") {
            config["binDir"] = json!(bin);
        }
        merge(&mut config, patch);
        let config_path = dir.path().join("config.json");
        std::fs::write(&config_path, serde_json::to_string_pretty(&config).unwrap()).unwrap();
        let log = dir.path().join("broker.log");
        // The broker starts its daemons from its own directory, and as root
        // it runs them as other users (oxibot-tool, oxibot-chan): they must be
        // able to execute them, wherever the build tree lives.
        let others_run_them = run_as.is_some() || nix::unistd::geteuid().is_root();
        let program = if others_run_them {
            bin_dir_for_others()
        } else {
            bin_dir()
        }
        .join("oxibot-broker");
        let mut cmd = match &how.wrapper {
            // The wrapper takes the broker's command line at its end, and
            // becomes run_as itself (it may need root first).
            Some(wrapper) => {
                let mut c = Command::new(&wrapper[0]);
                c.args(&wrapper[1..]);
                if let Some((uid, gid)) = run_as {
                    c.args([
                        "setpriv".to_string(),
                        format!("--reuid={uid}"),
                        format!("--regid={gid}"),
                        "--clear-groups".into(),
                        "--".into(),
                    ]);
                }
                c.arg(program);
                c
            }
            None => Command::new(program),
        };
        cmd.arg("--config")
            .arg(&config_path)
            .envs(how.env.iter().cloned())
            .env("OXIBOT_LOG", "info")
            .stdin(Stdio::null())
            // Into the log too: a daemon that wrote to the broker's stdout
            // would show there (it gets /dev/null; `admin.rs` checks).
            .stdout(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&log)
                    .unwrap(),
            )
            // Append: the daemons a test starts itself log here too.
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&log)
                    .unwrap(),
            );
        if let Some((uid, gid)) = run_as {
            use std::os::unix::process::CommandExt;
            chown_tree(dir.path(), uid, gid);
            if how.wrapper.is_none() {
                cmd.uid(uid).gid(gid);
            }
        }
        let child = cmd.spawn().unwrap();
        Broker {
            dir,
            child,
            runtime,
            state,
            workspace,
            log,
            daemons: Vec::new(),
        }
    }

    /// A broker without supervise mode, as under systemd: it binds
    /// `channel.sock` and `tool.sock`, and the test starts the daemons
    /// ([`Broker::spawn_daemon`]). Needs root: the daemon sockets admit only
    /// the daemons' own users.
    pub fn start_unsupervised(llm_base: &str, mut patch: Value, secrets: Value) -> Broker {
        merge(&mut patch, json!({"supervise": false}));
        let broker = Self::launch(llm_base, patch, secrets, None);
        broker.wait_until("the broker to answer", CONNECT, |s| s["brokerPid"].is_number());
        broker
    }

    /// Starts toold the way its systemd unit does (as root, building its
    /// jail, then becoming `oxibot-tool`), connected to `tool.sock`.
    pub fn spawn_toold(&mut self) {
        let args = [
            "--socket".to_string(),
            self.runtime.join("tool.sock").display().to_string(),
            "--workspace".into(),
            self.workspace.display().to_string(),
            "--sandbox".into(),
            "on".into(),
        ];
        self.spawn_daemon("toold", "oxibot-toold", &args, None);
        self.wait_tool_connected();
    }

    /// Starts `program` (one of the shared binaries) with `args`, as
    /// `run_as` (uid, gid) or as this process; stopped when the broker is.
    pub fn spawn_daemon(&mut self, name: &str, program: &str, args: &[String], run_as: Option<(u32, u32)>) -> u32 {
        let mut cmd = as_user(run_as, &bin_dir_for_others().join(program));
        cmd.args(args)
            .env("OXIBOT_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::OpenOptions::new().append(true).open(&self.log).unwrap());
        let child = cmd.spawn().unwrap();
        let pid = child.id();
        self.daemons.push((name.to_string(), child));
        pid
    }

    /// SIGKILLs the broker (its supervised daemons see their links end
    /// and exit), then starts it again on the same config, state and
    /// workspace, as systemd's Restart= would; waits for toold.
    pub fn kill9_and_restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Its children lose their socketpairs and exit; give them a moment,
        // so the new broker's daemons do not meet the old ones' sockets.
        std::thread::sleep(Duration::from_millis(300));
        let program = if nix::unistd::geteuid().is_root() {
            bin_dir_for_others()
        } else {
            bin_dir()
        }
        .join("oxibot-broker");
        self.child = Command::new(program)
            .arg("--config")
            .arg(self.config_path())
            .env("OXIBOT_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::OpenOptions::new().append(true).open(&self.log).unwrap())
            .spawn()
            .unwrap();
        self.wait_until("toold connected after the restart", CONNECT, |s| {
            s["toolConnected"] == true
        });
    }

    /// SIGKILLs a daemon the test started.
    pub fn kill_daemon(&mut self, name: &str) {
        if let Some(i) = self.daemons.iter().position(|(n, _)| n == name) {
            let (_, mut child) = self.daemons.remove(i);
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits for the broker to exit (a refused start), returning its status.
    pub fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        poll::until(timeout, POLL, || self.child.try_wait().ok().flatten())
            .unwrap_or_else(|| panic!("the broker did not exit within {timeout:?}; log:\n{}", self.log_text()))
    }

    /// The config file the broker was started with.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("config.json")
    }

    pub fn ctl_socket(&self) -> PathBuf {
        self.runtime.join("ctl.sock")
    }

    pub fn ctl_command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin("oxibotctl"));
        c.arg("--socket")
            .arg(self.ctl_socket())
            .env("OXIBOT_CONFIG", self.config_path())
            .args(args)
            .stdin(Stdio::null());
        c
    }

    pub fn ctl(&self, args: &[&str]) -> Output {
        self.ctl_command(args).output().unwrap()
    }

    /// `oxibotctl agent -m MSG --session S --json`, returning the reply.
    pub fn agent(&self, session: &str, message: &str) -> Result<String, String> {
        let out = self.ctl(&["--json", "agent", "--session", session, "-m", message]);
        let v: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|_| panic!("oxibotctl printed no JSON: {}", String::from_utf8_lossy(&out.stderr)));
        match v["reply"].as_str() {
            Some(r) if out.status.success() => Ok(r.to_string()),
            _ => Err(v["error"].as_str().unwrap_or_default().to_string()),
        }
    }

    pub fn status(&self) -> Value {
        let out = self.ctl(&["--json", "status"]);
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
    }

    /// Polls `oxibotctl status` until `cond` holds; panics after `timeout`
    /// with the last status and the broker log.
    pub fn wait_until(&self, what: &str, timeout: Duration, cond: impl Fn(&Value) -> bool) -> Value {
        let mut last = Value::Null;
        poll::until(timeout, POLL_COSTLY, || {
            let s = self.status();
            if cond(&s) {
                return Some(s);
            }
            last = s;
            None
        })
        .unwrap_or_else(|| {
            panic!(
                "timed out waiting for {what}; last status {last}\nbroker log:\n{}",
                self.log_text()
            )
        })
    }

    /// Waits until the tool daemon is linked to the broker.
    pub fn wait_tool_connected(&self) -> Value {
        self.wait_until("toold connected", CONNECT, |s| s["toolConnected"] == true)
    }

    /// Waits until the broker reports `channel` connected to its platform:
    /// before that, a message sent may find no one listening. The one wait
    /// every test that needs a channel uses.
    pub fn wait_channel_connected(&self, channel: &str, timeout: Duration) -> Value {
        self.wait_until(&format!("{channel} connected"), timeout, |s| {
            s["channels"]
                .as_array()
                .is_some_and(|c| c.iter().any(|c| c["name"] == channel && c["connected"] == true))
        })
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn db(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(self.state.join("oxibot.db")).unwrap()
    }

    /// Audit entries of one kind, oldest first.
    pub fn audit(&self, kind: &str) -> Vec<String> {
        let db = self.db();
        let mut stmt = db
            .prepare("SELECT detail FROM audit WHERE kind = ?1 ORDER BY id")
            .unwrap();
        let rows = stmt.query_map([kind], |r| r.get::<_, String>(0)).unwrap();
        rows.map(Result::unwrap).collect()
    }

    /// Waits for at least one audit entry of `kind` containing `needle`.
    pub fn wait_audit(&self, kind: &str, needle: &str) -> String {
        poll::until(Duration::from_secs(10), POLL_COSTLY, || {
            self.audit(kind).into_iter().find(|d| d.contains(needle))
        })
        .unwrap_or_else(|| panic!("no {kind} audit entry containing {needle:?}: {:?}", self.audit(kind)))
    }

    /// (role, content, tool_calls JSON, tool_call_id) of a stored session.
    pub fn messages(&self, session: &str) -> Vec<(String, String, Option<String>, Option<String>)> {
        let db = self.db();
        let mut stmt = db
            .prepare("SELECT role, content, tool_calls, tool_call_id FROM messages WHERE session_id = ?1 ORDER BY id")
            .unwrap();
        let rows = stmt
            .query_map([session], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap();
        rows.map(Result::unwrap).collect()
    }

    pub fn process_pid(&self, name: &str) -> Option<i32> {
        let s = self.status();
        s["processes"].as_array()?.iter().find(|p| p["name"] == name)?["pid"]
            .as_i64()
            .map(|p| p as i32)
    }

    /// Runs one tool through the broker (`oxibotctl tool run`): (ok, output).
    pub fn tool(&self, name: &str, args: Value) -> (bool, String) {
        let out = self.ctl(&["--json", "tool", "run", name, &args.to_string()]);
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
            panic!(
                "oxibotctl printed no JSON: {}\n{}",
                String::from_utf8_lossy(&out.stderr),
                self.log_text()
            )
        });
        match (v["ok"].as_bool(), v["output"].as_str()) {
            (Some(ok), Some(output)) => (ok, output.to_string()),
            _ => (false, v["error"].as_str().unwrap_or_default().to_string()),
        }
    }

    /// `oxibotctl prompt diff`, then `prompt accept --all`: the admin takes every waiting
    /// prompt file change (what a test wrote into the workspace after the
    /// broker's first start). Nothing waiting is fine too.
    pub fn accept_prompt_files(&self) {
        // As an admin would: look first (a read of the workspace), then take.
        let seen = self.ctl(&["prompt", "diff"]);
        assert!(seen.status.success(), "{}", String::from_utf8_lossy(&seen.stderr));
        let out = self.ctl(&["prompt", "accept", "--all"]);
        let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() || text.contains("no prompt file change waits"),
            "prompt accept failed: {text}"
        );
    }

    /// `exec` in the tool daemon; returns the output (exit code included).
    pub fn exec(&self, command: &str) -> String {
        let (ok, out) = self.tool("exec", json!({"command": command}));
        assert!(ok, "exec itself failed: {out}");
        out
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        for (_, d) in &mut self.daemons {
            let _ = d.kill();
            let _ = d.wait();
        }
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        if poll::until(Duration::from_secs(8), POLL, || self.child.try_wait().ok().flatten()).is_some() {
            return;
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
