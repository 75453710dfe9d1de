//! `exec`: `/bin/sh -c` in the workspace with a minimal environment, its own
//! process group, a timeout that kills the whole group, and capped output.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;

use crate::text::HeadTail;

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_timeout_secs: u32,
    pub max_output: usize,
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
) -> Result<String, String> {
    let cwd = match working_dir {
        Some(d) if !d.is_empty() => crate::files::resolve_existing(workspace, d)?,
        _ => workspace.to_path_buf(),
    };
    let timeout = Duration::from_secs(u64::from(timeout_secs.clamp(1, limits.max_timeout_secs)));
    let mut child = Command::new("/bin/sh")
        .arg("-c")
        .arg(command)
        // Nothing of ours (least of all a secret) reaches the command.
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", workspace)
        .env("LANG", "C.UTF-8")
        .env("TERM", "dumb")
        .current_dir(&cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so that the timeout kills every descendant.
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start /bin/sh: {e}"))?;
    let pgid = child.id().map(|p| Pid::from_raw(p as i32));
    let half = limits.max_output / 2;
    let stdout = child.stdout.take().map(|s| tokio::spawn(capture(s, half)));
    let stderr = child.stderr.take().map(|s| tokio::spawn(capture(s, half)));

    let status = tokio::time::timeout(timeout, child.wait()).await;
    // Whether it finished or timed out, nothing of this command may outlive
    // it: kill what is left of its process group.
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
    };

    #[tokio::test]
    async fn runs_in_the_workspace_with_a_minimal_environment() {
        let d = tempfile::tempdir().unwrap();
        std::env::set_var("OXIBOT_TEST_SECRET", "should-not-leak");
        let out = run("pwd; env | sort", None, 10, d.path(), LIMITS).await.unwrap();
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
        let out = run(&cmd, None, 1, d.path(), LIMITS).await.unwrap();
        assert!(out.contains("timed out after 1 s"), "{out}");
        assert!(started.elapsed() < Duration::from_secs(10));
        tokio::time::sleep(Duration::from_secs(4)).await;
        assert!(!marker.exists(), "a background child outlived the timeout");
    }

    #[tokio::test]
    async fn output_is_capped_head_and_tail() {
        let d = tempfile::tempdir().unwrap();
        let out = run("seq 1 100000", None, 10, d.path(), LIMITS).await.unwrap();
        assert!(out.starts_with("1\n2\n"), "{out}");
        assert!(out.contains("bytes omitted"));
        assert!(out.contains("100000\n[exit code: 0]"), "{out}");
        assert!(out.len() < 1200);
    }
}
