//! The request loop: each call runs in its own task; replies share one writer.

use std::path::PathBuf;
use std::sync::Arc;

use oxibot_proto::messages::{ToolCall, ToolOutcome, ToolReply, ToolRequest};
use oxibot_proto::{connect_handshake, FrameError, Role};
use tokio::sync::mpsc;

use crate::exec::Limits;

pub async fn serve(stream: std::os::unix::net::UnixStream, workspace: PathBuf, limits: Limits) -> Result<(), String> {
    stream.set_nonblocking(true).map_err(|e| e.to_string())?;
    let stream = tokio::net::UnixStream::from_std(stream).map_err(|e| e.to_string())?;
    let conn = connect_handshake::<ToolRequest, ToolReply>(stream, Role::Tool, Role::Broker)
        .await
        .map_err(|e| format!("handshake with the broker failed: {e}"))?;
    let (mut reader, mut writer) = conn.split();
    tracing::info!(workspace = %workspace.display(), "connected to the broker; serving tool requests");

    let (tx, mut rx) = mpsc::channel::<ToolReply>(64);
    let writer_task = tokio::spawn(async move {
        while let Some(reply) = rx.recv().await {
            if let Err(e) = writer.send(&fit(reply)).await {
                tracing::error!("cannot answer the broker: {e}");
                break;
            }
        }
    });
    let workspace = Arc::new(workspace);
    let result = loop {
        match reader.recv_judged().await {
            // The broker is the trusted side: a request over the limits is
            // its bug (it checks before sending), answered as a failed call.
            // Exiting would kill every chat's running command.
            Ok((ToolRequest::Call { id, .. }, Err(e))) => {
                tracing::error!(id, "the broker sent a request over the limits; refused: {e}");
                let outcome = ToolOutcome::Failed {
                    message: format!("the tool daemon refused this request: {e}"),
                };
                if tx.send(ToolReply::Result { id, outcome }).await.is_err() {
                    break Err("the reply writer stopped; exiting".to_string());
                }
            }
            Ok((ToolRequest::Call { id, call }, Ok(()))) => {
                let tx = tx.clone();
                let workspace = workspace.clone();
                tokio::spawn(async move {
                    // In a task of its own: a call that panics (tokio does
                    // when the process limit leaves it no thread) is
                    // answered as failed, not left without an answer.
                    let replies = tx.clone();
                    let running = tokio::spawn(async move { run(call, &workspace, limits, &replies).await });
                    let outcome = running.await.unwrap_or_else(|e| ToolOutcome::Failed {
                        message: format!("the tool daemon could not run this call: {e}; try again shortly"),
                    });
                    let _ = tx.send(ToolReply::Result { id, outcome }).await;
                });
            }
            // Fail-stop: toold never reconnects; its supervisor restarts it.
            Err(FrameError::Closed) => break Err("the broker closed the connection; exiting".to_string()),
            // An undecodable frame: the stream itself is broken.
            Err(e) => break Err(format!("bad frame from the broker, exiting: {e}")),
        }
    };
    writer_task.abort();
    result
}

/// The one dispatch: every request, to what answers it.
async fn run(
    call: ToolCall,
    workspace: &std::path::Path,
    limits: Limits,
    replies: &mpsc::Sender<ToolReply>,
) -> ToolOutcome {
    let output = match call {
        ToolCall::Exec {
            command,
            working_dir,
            timeout_secs,
            egress,
        } => {
            crate::exec::run(
                &command,
                working_dir.as_deref(),
                timeout_secs,
                workspace,
                limits,
                egress,
            )
            .await
        }
        ToolCall::ReadFile { path } => crate::files::read_file(workspace, &path),
        ToolCall::WriteFile { path, content } => crate::files::write_file(workspace, &path, &content),
        ToolCall::EditFile {
            path,
            old_text,
            new_text,
        } => crate::files::edit_file(workspace, &path, &old_text, &new_text),
        ToolCall::ListDir { path } => crate::files::list_dir(workspace, &path),
        ToolCall::SaveUpload { path, data, offset } => crate::files::save_upload(workspace, &path, &data, offset),
        // Walking a large tree can take a while: off the (single) runtime
        // thread, so that other requests keep flowing.
        ToolCall::FindFiles { pattern, path } => {
            blocking(workspace, move |ws| crate::search::find_files(ws, &pattern, &path)).await
        }
        ToolCall::Grep {
            pattern,
            path,
            include,
            case_insensitive,
        } => {
            blocking(workspace, move |ws| {
                crate::search::grep(ws, &pattern, &path, include.as_deref(), case_insensitive)
            })
            .await
        }
        ToolCall::ApplyPatch { patch } => blocking(workspace, move |ws| crate::patch::apply_patch(ws, &patch)).await,
        ToolCall::AppendFile { path, content } => crate::files::append_file(workspace, &path, &content),
        ToolCall::McpStart { launch } => crate::mcp::start(launch, replies.clone(), limits).await,
        ToolCall::McpInput { server, data } => crate::mcp::input(&server, &data).await,
        ToolCall::McpStop { server } => Ok(crate::mcp::stop(&server)),
        // Answered with data, not output.
        ToolCall::ReadTexts { patterns, max_bytes } => {
            let ws = workspace.to_path_buf();
            let texts =
                tokio::task::spawn_blocking(move || crate::texts::read_texts(&ws, &patterns, max_bytes as usize))
                    .await
                    .unwrap_or_else(|e| Err(format!("the tool failed unexpectedly: {e}")));
            return match texts {
                Ok(files) => ToolOutcome::Texts { files },
                Err(message) => ToolOutcome::Failed { message },
            };
        }
        ToolCall::Probe { bins, env } => {
            let (missing_bins, missing_env) = crate::probe::missing(&bins, &env);
            return ToolOutcome::Probed {
                missing_bins,
                missing_env,
            };
        }
    };
    match output {
        Ok(output) => ToolOutcome::Ok { output },
        Err(message) => ToolOutcome::Failed { message },
    }
}

async fn blocking(
    workspace: &std::path::Path,
    f: impl FnOnce(&std::path::Path) -> Result<String, String> + Send + 'static,
) -> Result<String, String> {
    let ws = workspace.to_path_buf();
    tokio::task::spawn_blocking(move || f(&ws))
        .await
        .unwrap_or_else(|e| Err(format!("the tool failed unexpectedly: {e}")))
}

/// Every reply within the protocol's bounds, whatever a tool produced: an
/// answer the broker would refuse (or that would not fit a frame) would
/// cost the connection, and with it every call in flight. Text is cut at a
/// character boundary with a note; file lists keep what fits.
fn fit(reply: ToolReply) -> ToolReply {
    const ROOM: usize = oxibot_proto::messages::MAX_TEXT - 1024;
    let (id, outcome) = match reply {
        ToolReply::Result { id, outcome } => (id, outcome),
        // What a server wrote to stderr, made text: invalid bytes become
        // three each, so its end may be longer than the tail kept. A reply
        // that cannot be encoded would stop every reply after it.
        ToolReply::McpEnded { server, message } => {
            const ENDED_ROOM: usize = oxibot_proto::messages::MAX_PATH - 64;
            return ToolReply::McpEnded {
                server,
                message: crate::text::truncate_chars(&message, ENDED_ROOM / 4),
            };
        }
        // Pieces of a read, made within their bound.
        other => return other,
    };
    let cut = |text: String| -> String {
        if text.len() <= ROOM {
            return text;
        }
        let mut end = ROOM;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        format!(
            "{}\n[… output cut: {} bytes in all; narrow the request]",
            &text[..end],
            text.len()
        )
    };
    let outcome = match outcome {
        ToolOutcome::Ok { output } => ToolOutcome::Ok { output: cut(output) },
        ToolOutcome::Failed { message } => ToolOutcome::Failed { message: cut(message) },
        probed @ ToolOutcome::Probed { .. } => probed,
        ToolOutcome::Texts { mut files } => {
            let mut total = 0;
            files.retain(|f| {
                total += f.text.len() + f.path.len();
                total <= ROOM
            });
            ToolOutcome::Texts { files }
        }
    };
    ToolReply::Result { id, outcome }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oxibot_proto::messages::Message;

    #[test]
    fn a_servers_end_in_bytes_that_are_not_text_still_fits() {
        let tail = String::from_utf8_lossy(&[0xff; 2048]).into_owned();
        let reply = fit(ToolReply::McpEnded {
            server: "evil".into(),
            message: format!("exited with code 1; the end of its standard error: {tail}"),
        });
        assert!(reply.validate().is_ok());
        assert!(oxibot_proto::encode(&reply).is_ok());
    }

    #[test]
    fn a_huge_answer_is_cut_to_what_the_broker_accepts() {
        let huge = "é".repeat(700 * 1024);
        let reply = fit(ToolReply::Result {
            id: 1,
            outcome: ToolOutcome::Ok { output: huge },
        });
        assert!(reply.validate().is_ok());
        assert!(oxibot_proto::encode(&reply).is_ok_and(|b| b.len() < oxibot_proto::MAX_FRAME));
        let ToolReply::Result {
            outcome: ToolOutcome::Ok { output },
            ..
        } = reply
        else {
            panic!("not Ok")
        };
        assert!(
            output.ends_with("narrow the request]"),
            "{}",
            &output[output.len() - 80..]
        );
    }
}
