//! The tool daemon's connection: what the broker asks, what toold answers.

use serde::{Deserialize, Serialize};

use super::*;

/// Broker → tool daemon.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ToolRequest {
    Call { id: u64, call: ToolCall },
}

/// The operations toold performs. Paths are relative to the workspace (or
/// absolute inside the jail); toold resolves them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ToolCall {
    Exec {
        command: String,
        working_dir: Option<String>,
        timeout_secs: u32,
    },
    ReadFile {
        path: String,
    },
    WriteFile {
        path: String,
        content: String,
    },
    EditFile {
        path: String,
        old_text: String,
        new_text: String,
    },
    ListDir {
        path: String,
    },
    /// Files under `path` whose workspace-relative path matches a glob.
    FindFiles {
        pattern: String,
        path: String,
    },
    /// Lines matching a regex in files under `path` (optionally only files
    /// matching the `include` glob).
    Grep {
        pattern: String,
        path: String,
        include: Option<String>,
        case_insensitive: bool,
    },
    /// A unified diff (one or more files), applied whole or not at all.
    ApplyPatch {
        patch: String,
    },
    /// A file a user sent through a channel, saved for them (never asked for
    /// by the model). An existing file is never overwritten: toold picks a
    /// free name and reports it.
    /// Sent in pieces: the piece at offset 0 creates the file (the reply
    /// is the path used); later pieces append to that path at `offset`.
    SaveUpload {
        path: String,
        data: Vec<u8>,
        offset: u64,
    },
    /// Workspace files the broker needs for itself (bootstrap files,
    /// memory, skills), never asked for by the model. Each pattern is a
    /// workspace-relative path whose components may be `*` (any one
    /// name). Only regular files are read, never through a symlink, each
    /// capped at `max_bytes`; missing files are left out.
    ReadTexts {
        patterns: Vec<String>,
        max_bytes: u32,
    },
    /// Appends to a workspace file, creating it (and its directories) when
    /// missing: the broker's memory notes. Never through a symlink.
    AppendFile {
        path: String,
        content: String,
    },
    /// Which of these programs the jail's commands can run (on the `PATH`
    /// that `Exec` uses) and which environment variables they see: a
    /// skill's requirements, checked where the skill would run.
    Probe {
        bins: Vec<String>,
        env: Vec<String>,
    },
}

/// How many names one `Probe` may ask about.
pub const MAX_PROBE_NAMES: usize = 64;

/// Tool daemon → broker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ToolReply {
    Result { id: u64, outcome: ToolOutcome },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ToolOutcome {
    Ok {
        output: String,
    },
    Failed {
        message: String,
    },
    /// The answer to `ReadTexts`, in pattern order (and name order within a pattern).
    Texts {
        files: Vec<TextFile>,
    },
    /// The answer to `Probe`: what the jail lacks.
    Probed {
        missing_bins: Vec<String>,
        missing_env: Vec<String>,
    },
}

/// One file of a `ReadTexts` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextFile {
    /// Workspace-relative.
    pub path: String,
    /// Lossily decoded UTF-8, at most the requested bytes.
    pub text: String,
    /// The file was longer than the cap.
    pub truncated: bool,
}

impl Message for ToolRequest {
    fn validate(&self) -> Result<(), String> {
        let ToolRequest::Call { call, .. } = self;
        match call {
            ToolCall::Exec {
                command, working_dir, ..
            } => {
                bounded("command", command, MAX_TEXT)?;
                bounded("working_dir", working_dir.as_deref().unwrap_or(""), MAX_PATH)
            }
            ToolCall::ReadFile { path } | ToolCall::ListDir { path } => bounded("path", path, MAX_PATH),
            ToolCall::FindFiles { pattern, path } => {
                bounded("pattern", pattern, MAX_PATH)?;
                bounded("path", path, MAX_PATH)
            }
            ToolCall::Grep {
                pattern, path, include, ..
            } => {
                bounded("pattern", pattern, MAX_PATH)?;
                bounded("path", path, MAX_PATH)?;
                bounded("include", include.as_deref().unwrap_or(""), MAX_PATH)
            }
            ToolCall::ApplyPatch { patch } => bounded("patch", patch, MAX_TEXT),
            ToolCall::SaveUpload { path, data, offset } => {
                bounded("path", path, MAX_PATH)?;
                bytes_bounded("data", data, MAX_PART)?;
                if *offset > MAX_FILE_BYTES as u64 {
                    return Err(format!("offset {offset} is past the {MAX_FILE_BYTES}-byte limit"));
                }
                Ok(())
            }
            ToolCall::WriteFile { path, content } => {
                bounded("path", path, MAX_PATH)?;
                bounded("content", content, MAX_TEXT)
            }
            ToolCall::ReadTexts { patterns, max_bytes } => {
                if patterns.len() > MAX_TEXT_FILES {
                    return Err(format!("{} patterns, the limit is {MAX_TEXT_FILES}", patterns.len()));
                }
                patterns.iter().try_for_each(|p| bounded("pattern", p, MAX_PATH))?;
                if *max_bytes as usize > MAX_PART {
                    return Err(format!("max_bytes {max_bytes} is over {MAX_PART}"));
                }
                Ok(())
            }
            ToolCall::EditFile {
                path,
                old_text,
                new_text,
            } => {
                bounded("path", path, MAX_PATH)?;
                bounded("old_text", old_text, MAX_TEXT)?;
                bounded("new_text", new_text, MAX_TEXT)
            }
            ToolCall::AppendFile { path, content } => {
                bounded("path", path, MAX_PATH)?;
                bounded("content", content, MAX_TEXT)
            }
            ToolCall::Probe { bins, env } => names(bins).and_then(|()| names(env)),
        }
    }
}

impl Message for ToolReply {
    fn validate(&self) -> Result<(), String> {
        let ToolReply::Result { outcome, .. } = self;
        match outcome {
            ToolOutcome::Ok { output } => bounded("output", output, MAX_TEXT),
            ToolOutcome::Failed { message } => bounded("message", message, MAX_TEXT),
            ToolOutcome::Texts { files } => {
                if files.len() > MAX_TEXT_FILES {
                    return Err(format!("{} files, the limit is {MAX_TEXT_FILES}", files.len()));
                }
                files.iter().try_for_each(|f| {
                    bounded("path", &f.path, MAX_PATH)?;
                    bounded("text", &f.text, MAX_TEXT)
                })
            }
            ToolOutcome::Probed {
                missing_bins,
                missing_env,
            } => names(missing_bins).and_then(|()| names(missing_env)),
        }
    }
}

/// A `Probe`'s list: bounded in count and length.
fn names(list: &[String]) -> Result<(), String> {
    if list.len() > MAX_PROBE_NAMES {
        return Err(format!("{} names, the limit is {MAX_PROBE_NAMES}", list.len()));
    }
    list.iter().try_for_each(|n| bounded("name", n, MAX_ID))
}
