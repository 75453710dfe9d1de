//! `exec`: `/bin/sh -c` in the workspace with a minimal environment, its own
//! session (and so its own process group), a timeout that kills the whole
//! group, and capped output. With a key to the egress door, its processes'
//! connections to the jail's proxy are this exec's (see `door`), and it
//! gets the proxy variables that curl, git, pip, npm and gh read.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

/// The `PATH` of every command (and of a skill's requirement check).
pub const PATH: &str = "/usr/local/bin:/usr/bin:/bin";
/// The only environment variables a command sees (set below), besides the
/// proxy's when the exec may reach the network.
pub const ENV_NAMES: &[&str] = &["PATH", "HOME", "LANG", "TERM"];

/// The proxy variables, upper and lower case: each program reads one or
/// the other.
const PROXY_NAMES: &[&str] = &["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"];

/// With the network (and perhaps a credential set at the door), a command
/// must not run what an earlier command planted for it: the workspace and
/// /tmp are every command's to write, and the model that wrote them may
/// have been steered by another chat or a web page. So its HOME is an
/// empty directory no command can write (no `.curlrc`, `.gitconfig`,
/// `.netrc`, `.npmrc`, Python `usercustomize`), git reads no system or
/// global file, and the settings of a repository's own `.git/config` that
/// run a program unasked are overridden (fsmonitor, hooks, pager,
/// credential helper, `ext::` transport). What a repository can still
/// run — a filter or diff driver it names, a project's npm scripts — runs
/// only when asked for; SECURITY.md says so.
fn ignore_planted_settings(cmd: &mut Command) {
    let home = crate::trust::HOME;
    cmd.env("HOME", home)
        .env("CURL_HOME", home)
        .env("XDG_CONFIG_HOME", home)
        .env("PYTHONNOUSERSITE", "1")
        .env("npm_config_cache", "/tmp/.npm")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        // Wins over a repository's core.sshCommand (and ssh has no way out).
        .env("GIT_SSH_COMMAND", "false")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0");
    let overrides = [
        ("core.fsmonitor", "false"),
        ("core.hooksPath", "/dev/null"),
        ("core.pager", "cat"),
        ("credential.helper", ""),
        ("protocol.ext.allow", "never"),
    ];
    cmd.env("GIT_CONFIG_COUNT", overrides.len().to_string());
    for (i, (key, value)) in overrides.iter().enumerate() {
        cmd.env(format!("GIT_CONFIG_KEY_{i}"), key)
            .env(format!("GIT_CONFIG_VALUE_{i}"), value);
    }
}

/// What a variable a credential stands behind is set to (`GH_TOKEN`): not
/// a secret, and no use outside the jail.
pub const PLACEHOLDER: &str = "set-by-the-oxibot-egress-door";

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;

use crate::text::HeadTail;

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_timeout_secs: u32,
    pub max_output: usize,
    /// Inside the jail: the per-command limits, and toold is pid 1.
    pub jailed: Option<crate::jail::ResourceLimits>,
}

/// After the shell exits, how long we keep reading pipes that a leftover
/// background process may still hold open.
const DRAIN_GRACE: Duration = Duration::from_millis(500);

pub async fn run(
    command: &str,
    working_dir: Option<&str>,
    timeout_secs: u32,
    workspace: &Path,
    limits: Limits,
    egress: Option<oxibot_proto::messages::ExecEgress>,
) -> Result<String, String> {
    let cwd = match working_dir {
        Some(d) if !d.is_empty() => crate::files::resolve_existing(workspace, d)?,
        _ => workspace.to_path_buf(),
    };
    let timeout = Duration::from_secs(u64::from(timeout_secs.clamp(1, limits.max_timeout_secs)));
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(command)
        // Nothing of ours (least of all a secret) reaches the command.
        .env_clear()
        .env("PATH", PATH)
        .env("HOME", workspace)
        .env("LANG", "C.UTF-8")
        .env("TERM", "dumb")
        .current_dir(&cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    // Through the door only inside the jail, where its port is toold's.
    let egress = egress.filter(|_| limits.jailed.is_some() && crate::jail::is_jailed());
    if let Some(egress) = &egress {
        through_the_door(&mut cmd, egress);
        ignore_planted_settings(&mut cmd);
    }
    // SAFETY: the closure runs between fork and exec and only calls setsid,
    // which is async-signal-safe; it allocates nothing.
    unsafe {
        // Its own session (so its own process group, which the timeout
        // kills): the door tells execs apart by session, and no process can
        // join another's.
        cmd.pre_exec(|| nix::unistd::setsid().map(|_| ()).map_err(std::io::Error::from));
    }
    if let Some(domain) = exec_domain().filter(|_| limits.jailed.is_some()) {
        // SAFETY: the closure runs between fork and exec and makes one raw
        // syscall on a descriptor number copied into it; it allocates
        // nothing and takes no lock.
        unsafe {
            cmd.pre_exec(move || enter_domain(domain));
        }
    }
    if let Some(jail) = limits.jailed {
        let (cpu, memory) = (jail.max_cpu_secs, jail.max_memory);
        // SAFETY: the closure runs between fork and exec and only calls
        // setrlimit, which is async-signal-safe; it allocates nothing.
        unsafe {
            cmd.pre_exec(move || {
                set_limit(libc::RLIMIT_CPU, cpu)?;
                set_limit(libc::RLIMIT_AS, memory)
            });
        }
    }
    let mut child = match spawn_counted(&mut cmd) {
        // The process limit is full: of what no running command or server
        // keeps (nothing else would ever sweep it), then once more.
        Err(e) if e.raw_os_error() == Some(libc::EAGAIN) && limits.jailed.is_some() => {
            crate::sweep::off_thread(crate::sweep::kill_strays).await;
            spawn_counted(&mut cmd)
        }
        other => other,
    }
    .map_err(|e| format!("cannot start /bin/sh: {e}"))?;
    let pgid = child.id().map(|p| Pid::from_raw(p as i32));
    let session = pgid.map(|p| p.as_raw());
    if let (Some(session), Some(egress)) = (session, egress) {
        crate::door::open_for(session, egress.key);
    }
    let half = limits.max_output / 2;
    let stdout = child.stdout.take().map(|s| tokio::spawn(capture(s, half)));
    let stderr = child.stderr.take().map(|s| tokio::spawn(capture(s, half)));

    let status = tokio::time::timeout(timeout, child.wait()).await;
    // Whether it finished or timed out, nothing of this command may outlive
    // it: kill what is left of its process group.
    if let Some(session) = session {
        crate::door::close_for(session);
    }
    if let Some(pg) = pgid {
        let _ = killpg(pg, Signal::SIGKILL);
    }
    let status = match status {
        Ok(s) => Some(s.map_err(|e| format!("waiting for the command failed: {e}"))?),
        Err(_) => {
            let _ = child.wait().await;
            None
        }
    };
    let out = collect(stdout).await;
    let err = collect(stderr).await;
    // Sweeping waits on the kernel (rounds of stopping, reaping): off the
    // (single) runtime thread, which serves every other call meanwhile.
    let jailed = limits.jailed.is_some();
    crate::sweep::off_thread(move || finish_command(session.unwrap_or(0), jailed)).await;

    let mut text = out;
    if !err.is_empty() {
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str("[stderr]\n");
        text.push_str(&err);
    }
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    match status {
        None => text.push_str(&format!(
            "[timed out after {} s; the command and its process group were killed]",
            timeout.as_secs()
        )),
        Some(s) => match s.code() {
            Some(code) => text.push_str(&format!("[exit code: {code}]")),
            None => text.push_str(&format!("[killed by {s}]")),
        },
    }
    Ok(text)
}

/// What a program with a key to the egress door (an exec's commands, an
/// MCP server) is given: the proxy, the authority to trust, placeholders.
pub fn through_the_door(cmd: &mut Command, egress: &oxibot_proto::messages::ExecEgress) {
    let proxy = format!("http://127.0.0.1:{}", crate::jail::net::PROXY_PORT);
    for name in PROXY_NAMES {
        cmd.env(name, &proxy).env(name.to_ascii_lowercase(), &proxy);
    }
    // Nothing is exempt: the jail's loopback has no other service (a
    // command may not listen on TCP), and a loopback address in
    // tools.exec.allowedHosts means the host's, reached through the door.
    cmd.env("NO_PROXY", "").env("no_proxy", "");
    // The door answers TLS for hosts with a credential: the program
    // trusts its authority besides the system's.
    match egress.trust.as_deref() {
        Some(authority) => {
            if let Err(e) = crate::trust::install(authority) {
                tracing::warn!("{e}");
            }
        }
        None => crate::trust::repair_modes(),
    }
    crate::trust::point_to_bundle(cmd);
    // A tool that wants a token before it calls gets a stand-in; the
    // door sets the real one on the way out.
    for name in &egress.placeholders {
        cmd.env(name, PLACEHOLDER);
    }
}

/// Starts the command and counts it as running (by its session: the
/// shell's pid), under the lock the end of the last command takes.
fn spawn_counted(cmd: &mut Command) -> std::io::Result<tokio::process::Child> {
    let mut running = crate::running::lock();
    let child = cmd.spawn()?;
    running.commands.push(child.id().map_or(0, |p| p as i32));
    Ok(child)
}

/// The ruleset each exec enters (see `jail::landlock::exec_domain`).
static EXEC_DOMAIN: std::sync::OnceLock<std::os::fd::OwnedFd> = std::sync::OnceLock::new();

pub fn set_exec_domain(ruleset: std::os::fd::OwnedFd) {
    let _ = EXEC_DOMAIN.set(ruleset);
}

fn exec_domain() -> Option<std::os::fd::RawFd> {
    EXEC_DOMAIN.get().map(std::os::fd::AsRawFd::as_raw_fd)
}

/// `landlock_restrict_self(ruleset, 0)` for the command about to exec: a
/// domain of its own. A failure stops the command (it would share its
/// domain with every other exec).
pub fn enter_domain(ruleset: std::os::fd::RawFd) -> std::io::Result<()> {
    // SAFETY: a plain syscall on an open descriptor; no memory is passed.
    if unsafe { libc::syscall(libc::SYS_landlock_restrict_self, ruleset, 0) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// setrlimit for the command about to exec; both limits equal, so the
/// command cannot raise them.
pub fn set_limit(resource: libc::__rlimit_resource_t, value: u64) -> std::io::Result<()> {
    let lim = libc::rlimit {
        rlim_cur: value,
        rlim_max: value,
    };
    // SAFETY: a plain syscall on a stack value.
    if unsafe { libc::setrlimit(resource, &lim) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Counts a command as finished. Inside the jail, when none is left
/// running, kills everything but toold itself and the MCP servers'
/// sessions, and reaps it: as pid 1 of the jail's pid namespace, toold
/// sees exactly the jail's processes, and the orphans it inherited are its
/// to reap. (Every process left behind — `setsid`, `nohup`, `&` — goes.)
fn finish_command(session: i32, jailed: bool) {
    let mut running = crate::running::lock();
    crate::running::Running::forget(&mut running.commands, session);
    if !running.commands.is_empty() || !jailed || !crate::jail::is_jailed() {
        return;
    }
    if running.servers.is_empty() {
        let _ = nix::sys::signal::kill(Pid::from_raw(-1), Signal::SIGKILL);
        for _ in 0..200 {
            match nix::sys::wait::waitpid(Pid::from_raw(-1), Some(nix::sys::wait::WaitPidFlag::WNOHANG)) {
                Ok(nix::sys::wait::WaitStatus::StillAlive) => std::thread::sleep(Duration::from_millis(5)),
                Ok(_) => {}
                Err(_) => break, // ECHILD: nothing left
            }
        }
        return;
    }
    // A server runs: its main process is waited for by its own task, so
    // only the others are stopped, killed and reaped.
    let left = crate::sweep::freeze_and_kill(|p| !running.keeps(p.session));
    drop(running);
    crate::sweep::reap(&left);
}

async fn capture(mut r: impl AsyncRead + Unpin, cap: usize) -> String {
    let mut keep = HeadTail::new(cap);
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => keep.push(&buf[..n]),
        }
    }
    keep.finish()
}

async fn collect(task: Option<tokio::task::JoinHandle<String>>) -> String {
    let Some(mut task) = task else { return String::new() };
    match tokio::time::timeout(DRAIN_GRACE, &mut task).await {
        Ok(Ok(s)) => s,
        _ => {
            // A process that escaped the group (setsid) still holds the pipe.
            task.abort();
            "[output cut: a background process kept the output open]".into()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_timeout_secs: 600,
        max_output: 1024,
        jailed: None,
    };

    #[tokio::test]
    async fn runs_in_the_workspace_with_a_minimal_environment() {
        let d = tempfile::tempdir().unwrap();
        std::env::set_var("OXIBOT_TEST_SECRET", "should-not-leak");
        let out = run("pwd; env | sort", None, 10, d.path(), LIMITS, None).await.unwrap();
        assert!(out.contains(&d.path().display().to_string()), "{out}");
        assert!(!out.contains("should-not-leak"), "{out}");
        assert!(out.contains("HOME="), "{out}");
        assert!(out.ends_with("[exit code: 0]"), "{out}");
    }

    #[tokio::test]
    async fn timeout_kills_the_process_group() {
        let d = tempfile::tempdir().unwrap();
        let marker = d.path().join("survived");
        let cmd = format!("(sleep 3; touch {}) & sleep 30", marker.display());
        let started = std::time::Instant::now();
        let out = run(&cmd, None, 1, d.path(), LIMITS, None).await.unwrap();
        assert!(out.contains("timed out after 1 s"), "{out}");
        assert!(started.elapsed() < Duration::from_secs(10));
        tokio::time::sleep(Duration::from_secs(4)).await;
        assert!(!marker.exists(), "a background child outlived the timeout");
    }

    #[tokio::test]
    async fn output_is_capped_head_and_tail() {
        let d = tempfile::tempdir().unwrap();
        let out = run("seq 1 100000", None, 10, d.path(), LIMITS, None).await.unwrap();
        assert!(out.starts_with("1\n2\n"), "{out}");
        assert!(out.contains("bytes omitted"));
        assert!(out.contains("100000\n[exit code: 0]"), "{out}");
        assert!(out.len() < 1200);
    }
}
