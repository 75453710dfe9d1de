//! The jail's tools, with the names OxiBot and nanobot prompts and skills
//! already use: each entry's arguments become one tool-daemon request.

use oxibot_proto::messages::ToolCall;
use serde::Deserialize;
use serde_json::json;

use super::{parse, Runs, Tool};
use crate::config::Config;
use crate::turn::TurnKind;

/// The jail's tools are offered to every turn: they touch only the jail.
fn always(_: TurnKind, _: &Config) -> bool {
    true
}

pub const EXEC: Tool = Tool {
    name: "exec",
    description: "Run a shell command (/bin/sh -c) in the workspace and return its output and exit code.",
    parameters: || {
        json!({
            "type": "object",
            "properties": {
                "command": {"type": "string", "description": "The shell command to run"},
                "working_dir": {"type": "string", "description": "Directory to run in, relative to the workspace"}
            },
            "required": ["command"]
        })
    },
    offered: always,
    runs: Runs::Jail(|args, timeout_secs| {
        let a: ExecArgs = parse("exec", args)?;
        Ok(ToolCall::Exec {
            command: a.command,
            working_dir: a.working_dir,
            timeout_secs,
            // The broker sets it when the exec runs (see `tools::run`).
            egress: None,
        })
    }),
};

pub const READ_FILE: Tool = Tool {
    name: "read_file",
    description: "Read a text file from the workspace.",
    parameters: || {
        json!({
            "type": "object",
            "properties": {"path": {"type": "string", "description": "File path, relative to the workspace"}},
            "required": ["path"]
        })
    },
    offered: always,
    runs: Runs::Jail(|args, _| {
        let a: PathArgs = parse("read_file", args)?;
        Ok(ToolCall::ReadFile { path: a.path })
    }),
};

pub const WRITE_FILE: Tool = Tool {
    name: "write_file",
    description: "Create or overwrite a file in the workspace with the given content.",
    parameters: || {
        json!({
            "type": "object",
            "properties": {
                "path": {"type": "string", "description": "File path, relative to the workspace"},
                "content": {"type": "string", "description": "The full new content"}
            },
            "required": ["path", "content"]
        })
    },
    offered: always,
    runs: Runs::Jail(|args, _| {
        let a: WriteArgs = parse("write_file", args)?;
        Ok(ToolCall::WriteFile {
            path: a.path,
            content: a.content,
        })
    }),
};

pub const EDIT_FILE: Tool = Tool {
    name: "edit_file",
    description: "Replace exactly one occurrence of old_text with new_text in a file.",
    parameters: || {
        json!({
            "type": "object",
            "properties": {
                "path": {"type": "string"},
                "old_text": {"type": "string", "description": "Text to find; must occur exactly once"},
                "new_text": {"type": "string", "description": "Replacement text"}
            },
            "required": ["path", "old_text", "new_text"]
        })
    },
    offered: always,
    runs: Runs::Jail(|args, _| {
        let a: EditArgs = parse("edit_file", args)?;
        Ok(ToolCall::EditFile {
            path: a.path,
            old_text: a.old_text,
            new_text: a.new_text,
        })
    }),
};

pub const LIST_DIR: Tool = Tool {
    name: "list_dir",
    description: "List the entries of a directory in the workspace.",
    parameters: || {
        json!({
            "type": "object",
            "properties": {"path": {"type": "string", "description": "Directory, relative to the workspace"}},
            "required": ["path"]
        })
    },
    offered: always,
    runs: Runs::Jail(|args, _| {
        let a: PathArgs = parse("list_dir", args)?;
        Ok(ToolCall::ListDir { path: a.path })
    }),
};

pub const FIND_FILES: Tool = Tool {
    name: "find_files",
    description: "Find files in the workspace whose path matches a glob such as **/*.rs.",
    parameters: || {
        json!({
            "type": "object",
            "properties": {
                "pattern": {"type": "string", "description": "Glob, e.g. **/*.py or *.md"},
                "path": {"type": "string", "description": "Directory to search, relative to the workspace (default: all)"}
            },
            "required": ["pattern"]
        })
    },
    offered: always,
    runs: Runs::Jail(|args, _| {
        let a: FindArgs = parse("find_files", args)?;
        Ok(ToolCall::FindFiles {
            pattern: a.pattern,
            path: a.path,
        })
    }),
};

pub const GREP: Tool = Tool {
    name: "grep",
    description: "Search file contents in the workspace for a regular expression; prints file:line: text.",
    parameters: || {
        json!({
            "type": "object",
            "properties": {
                "pattern": {"type": "string", "description": "Regular expression"},
                "path": {"type": "string", "description": "Directory or file to search (default: the workspace)"},
                "include": {"type": "string", "description": "Only files whose name matches this glob"},
                "case_insensitive": {"type": "boolean"}
            },
            "required": ["pattern"]
        })
    },
    offered: always,
    runs: Runs::Jail(|args, _| {
        let a: GrepArgs = parse("grep", args)?;
        Ok(ToolCall::Grep {
            pattern: a.pattern,
            path: a.path,
            include: a.include,
            case_insensitive: a.case_insensitive,
        })
    }),
};

pub const APPLY_PATCH: Tool = Tool {
    name: "apply_patch",
    description: "Apply a unified diff (--- a/file, +++ b/file, @@ hunks) to one or more files. \
                  If any hunk does not apply, nothing is changed.",
    parameters: || {
        json!({
            "type": "object",
            "properties": {"patch": {"type": "string", "description": "The unified diff"}},
            "required": ["patch"]
        })
    },
    offered: always,
    runs: Runs::Jail(|args, _| {
        let a: PatchArgs = parse("apply_patch", args)?;
        Ok(ToolCall::ApplyPatch { patch: a.patch })
    }),
};

#[derive(Deserialize)]
struct ExecArgs {
    command: String,
    working_dir: Option<String>,
}
#[derive(Deserialize)]
struct PathArgs {
    path: String,
}
#[derive(Deserialize)]
struct WriteArgs {
    path: String,
    content: String,
}
#[derive(Deserialize)]
struct FindArgs {
    pattern: String,
    #[serde(default)]
    path: String,
}
#[derive(Deserialize)]
struct GrepArgs {
    pattern: String,
    #[serde(default)]
    path: String,
    include: Option<String>,
    #[serde(default)]
    case_insensitive: bool,
}
#[derive(Deserialize)]
struct PatchArgs {
    patch: String,
}
#[derive(Deserialize)]
struct EditArgs {
    path: String,
    old_text: String,
    new_text: String,
}

#[cfg(test)]
mod tests {
    use super::super::to_request;
    use super::*;

    #[test]
    fn translates_and_reports_bad_arguments() {
        assert_eq!(
            to_request("write_file", r#"{"path":"a.txt","content":"x"}"#, 5).unwrap(),
            ToolCall::WriteFile {
                path: "a.txt".into(),
                content: "x".into()
            }
        );
        assert!(to_request("write_file", r#"{"path":"a.txt"}"#, 5)
            .unwrap_err()
            .contains("content"));
        assert!(to_request("rm_rf", "{}", 5).unwrap_err().contains("unknown tool"));
        match to_request("exec", r#"{"command":"ls"}"#, 7).unwrap() {
            ToolCall::Exec { timeout_secs, .. } => assert_eq!(timeout_secs, 7),
            other => panic!("{other:?}"),
        }
    }

    mod property {
        use super::super::super::to_request;
        use oxibot_proto::messages::{Message, ToolRequest};
        use proptest::prelude::*;

        /// Strings around the limits: short, a path's limit, far over it.
        fn text() -> impl Strategy<Value = String> {
            prop_oneof![
                any::<String>(),
                (0usize..6000).prop_map(|n| "p".repeat(n)),
                (0usize..1_200_000).prop_map(|n| "é".repeat(n / 2)),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(64))]
            /// Whatever the model asks, the request either becomes a tool
            /// error here or is one toold accepts: nothing the broker
            /// sends can make toold refuse it.
            #[test]
            fn any_model_request_is_valid_or_a_tool_error(
                tool in 0usize..9,
                a in text(),
                b in text(),
                c in text(),
            ) {
                let name = ["exec", "read_file", "list_dir", "write_file", "edit_file", "find_files", "grep", "apply_patch", "nope"][tool];
                let args = serde_json::json!({
                    "command": a, "path": a, "pattern": b, "content": b, "old_text": b, "new_text": c,
                    "working_dir": c, "include": c, "patch": a,
                })
                .to_string();
                let sent = to_request(name, &args, 60).and_then(|call| crate::toolclient::prepare(1, call).map_err(|e| e.to_string()));
                if let Ok(checked) = sent {
                    let req: ToolRequest = oxibot_proto::decode(checked.bytes()).unwrap();
                    prop_assert!(checked.bytes().len() <= oxibot_proto::MAX_FRAME);
                    prop_assert_eq!(req.validate(), Ok(()));
                }
            }
        }
    }
}
