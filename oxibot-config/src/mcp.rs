//! `tools.mcpServers`: MCP servers, in nanobot's shape. A server is either
//! a program that speaks MCP on its standard input and output (`command`,
//! `args`, `env`), which OxiBot runs inside the jail, or a Streamable HTTP
//! endpoint (`url`, `headers`), reached from outside it through the SSRF
//! guard. The values of `env` and `headers` are secrets: they belong in the
//! secrets file, at the same path (`tools.mcpServers.<name>.env.<VAR>`).
//!
//! Checked here: the shape, names that make valid tool names
//! (`mcp_<server>_<tool>` within the 64 characters providers accept), and
//! limits. Running the servers is the broker's and toold's.

use std::collections::BTreeMap;

use oxibot_proto::settings::HostPattern;
use serde::Deserialize;

use crate::secret::Secret;

/// The longest server name: `mcp_` + name + `_` + a tool name must fit the
/// 64 characters a function name may have, with room for the tool's.
pub const MAX_SERVER_NAME: usize = 24;
/// The longest `toolTimeout`, seconds.
pub const MAX_TOOL_TIMEOUT: u32 = 600;

/// One `tools.mcpServers.<name>`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct McpServer {
    /// A stdio server: the program (inside the jail: on its PATH, or
    /// absolute) and its arguments.
    pub command: Option<String>,
    #[serde(default)]
    pub args: Vec<String>,
    /// Its environment (from the secrets file).
    #[serde(default)]
    pub env: BTreeMap<String, Secret>,
    /// An HTTP server (Streamable HTTP), and the headers sent to it (from
    /// the secrets file).
    pub url: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
    /// The tools offered to the model (`["*"]` or unset: all of them).
    pub enabled_tools: Option<Vec<String>>,
    /// Seconds one call may take.
    #[serde(default = "default_tool_timeout")]
    pub tool_timeout: u32,
    /// Where a stdio server may connect, through the egress door (as
    /// `tools.exec.allowedHosts`, but its own).
    #[serde(default)]
    pub allowed_hosts: Vec<HostPattern>,
}

fn default_tool_timeout() -> u32 {
    30
}

/// How a server is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Started inside the jail, spoken to on its stdin and stdout.
    Stdio,
    /// Reached from outside the jail, through the SSRF guard.
    Http,
}

impl McpServer {
    pub fn transport(&self) -> Transport {
        match self.command {
            Some(_) => Transport::Stdio,
            None => Transport::Http,
        }
    }

    /// Whether the model is offered the server's tool `tool`.
    pub fn offers(&self, tool: &str) -> bool {
        self.enabled_tools
            .as_ref()
            .is_none_or(|list| list.iter().any(|t| t == "*" || t == tool))
    }
}

/// Where the jail's commands write.
const COMMANDS_WRITE: [&str; 4] = ["/workspace", "/tmp", "/var/tmp", "/dev"];
/// The devices a server may name (`--log=/dev/null`).
const DEVICES: [&str; 5] = ["/dev/null", "/dev/zero", "/dev/random", "/dev/urandom", "/dev/tty"];

/// Whether an argument or an environment value may make a server load
/// what the jail's commands write: it names a place under their trees
/// anywhere in its text (a path, `--flag=PATH`, a `PATH`-like list, an
/// option such as `-I/workspace/lib`, a line of code), a path that climbs
/// there from the server's own directory (`tmp/../../workspace`, `..`
/// resolved as the kernel would), or `/proc` (`/proc/self/root/…`,
/// `/proc/self/cwd/…` lead anywhere).
fn writable_by_commands(arg: &str) -> bool {
    if arg.contains("/proc") {
        return true;
    }
    let named = |text: &str| {
        COMMANDS_WRITE.iter().any(|root| {
            text.match_indices(root).any(|(at, _)| {
                let rest = &text[at..];
                // A device a server may write is not a place to load from.
                !DEVICES.iter().any(|d| {
                    rest.starts_with(d) && !rest[d.len()..].starts_with(|c: char| c.is_alphanumeric() || c == '/')
                })
            })
        })
    };
    if named(arg) {
        return true;
    }
    // Relative pieces, from the server's own directory (`/mcp/<n>`).
    arg.split([':', '=', ' ', ',', ';', '"', '\'']).any(|piece| {
        if piece.is_empty() || piece.starts_with('/') {
            return false;
        }
        let mut resolved = std::path::PathBuf::from("/mcp/0");
        for part in std::path::Path::new(piece).components() {
            match part {
                std::path::Component::ParentDir => {
                    resolved.pop();
                }
                std::path::Component::Normal(name) => resolved.push(name),
                _ => {}
            }
        }
        !resolved.starts_with("/mcp/0") && named(&resolved.to_string_lossy())
    })
}

/// What is wrong with one server's settings, in words for the admin.
pub fn check(name: &str, server: &McpServer) -> Result<(), String> {
    let name_ok = !name.is_empty()
        && name.len() <= MAX_SERVER_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !name_ok {
        return Err(format!(
            "the name must be 1 to {MAX_SERVER_NAME} lowercase letters, digits or '-' (its tools are named \
             mcp_<name>_<tool>)"
        ));
    }
    match (&server.command, &server.url) {
        (Some(_), Some(_)) => return Err("has both command and url; a server is one or the other".into()),
        (None, None) => return Err("needs a command (a stdio server) or a url (an HTTP server)".into()),
        (Some(command), None) => {
            if command.trim().is_empty() {
                return Err("command is empty".into());
            }
            if !server.headers.is_empty() {
                return Err("headers are for an HTTP server (url); a stdio server takes env".into());
            }
            // A server is code every turn trusts: what runs must be out of
            // the commands' reach, which write /workspace and /tmp.
            if let Some(path) = std::iter::once(command.as_str())
                .chain(server.args.iter().map(String::as_str))
                .chain(server.env.values().map(Secret::expose))
                .find(|a| writable_by_commands(a))
            {
                // An env value is a secret: not quoted.
                let shown = if server.env.values().any(|v| v.expose() == path) {
                    "an env value".to_string()
                } else {
                    format!("{path:?}")
                };
                return Err(format!(
                    "{shown} names a place the jail's commands write (/workspace, /tmp, /dev): a server's \
                     program, scripts and the paths its environment loads from must be out of their reach; \
                     install it under /usr or /opt, or run it with npx or uvx"
                ));
            }
        }
        (None, Some(url)) => {
            let parsed = url::Url::parse(url).map_err(|e| format!("url {url:?} does not parse: {e}"))?;
            if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
                return Err(format!("url {url:?} must be an http:// or https:// address"));
            }
            if !server.env.is_empty() || !server.args.is_empty() {
                return Err("env and args are for a stdio server (command); an HTTP server takes headers".into());
            }
            if !server.allowed_hosts.is_empty() {
                return Err(
                    "allowedHosts is for a stdio server, which runs in the jail; an HTTP server is reached \
                     from outside it (tools.web.allowPrivate decides private addresses)"
                        .into(),
                );
            }
        }
    }
    use oxibot_proto::messages::{MAX_MCP_ARGS, MAX_PATH};
    if server.args.len() > MAX_MCP_ARGS || server.env.len() > MAX_MCP_ARGS {
        return Err(format!("at most {MAX_MCP_ARGS} args and {MAX_MCP_ARGS} env variables"));
    }
    if let Some(long) = server
        .args
        .iter()
        .chain(server.command.iter())
        .map(String::as_str)
        .chain(server.env.values().map(Secret::expose))
        .find(|a| a.len() > MAX_PATH)
    {
        return Err(format!(
            "an argument or env value is {} bytes, over the {MAX_PATH} a server is started with; put a \
             long script in a file under /usr/local or /opt",
            long.len()
        ));
    }
    if server.tool_timeout == 0 || server.tool_timeout > MAX_TOOL_TIMEOUT {
        return Err(format!("toolTimeout must be between 1 and {MAX_TOOL_TIMEOUT} seconds"));
    }
    if let Some(bad) = server
        .env
        .keys()
        .find(|k| k.is_empty() || !k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
    {
        return Err(format!("env: {bad:?} is not an environment variable name"));
    }
    let printable = |t: &str| t.bytes().all(|b| b == b'\t' || (0x20..0x7f).contains(&b));
    for (header, value) in &server.headers {
        let token = !header.is_empty() && header.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b));
        if !token || !printable(value.expose()) {
            return Err(format!(
                "headers: {header:?} must be a header name with a printable value (no line breaks)"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(json: &str) -> McpServer {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn nanobots_shape_is_read_and_checked() {
        let stdio = server(
            r#"{"command": "npx", "args": ["-y", "@modelcontextprotocol/server-github"],
                "env": {"GITHUB_TOKEN": "ghp_x"}, "enabledTools": ["search_issues"], "toolTimeout": 20,
                "allowedHosts": ["api.github.com"]}"#,
        );
        assert_eq!(stdio.transport(), Transport::Stdio);
        assert!(check("github", &stdio).is_ok());
        // Paths of its own directory, the system's, a device to write to.
        let own = server(
            r#"{"command": "/opt/srv/bin/srv", "args": ["./cache", "--log=/dev/null", "--data", "tmp/x"],
                "env": {"PYTHONPATH": "/usr/lib/python3/dist-packages"}}"#,
        );
        assert_eq!(check("own", &own), Ok(()));
        assert!(stdio.offers("search_issues") && !stdio.offers("delete_repo"));
        assert!(!format!("{stdio:?}").contains("ghp_x"));
        let http = server(r#"{"url": "https://mcp.example.com/mcp", "headers": {"Authorization": "Bearer t"}}"#);
        assert_eq!(http.transport(), Transport::Http);
        assert!(check("remote", &http).is_ok());
        assert!(http.offers("anything"));
        assert_eq!(http.tool_timeout, 30);
    }

    #[test]
    fn what_cannot_work_is_refused_with_the_reason() {
        let stdio = r#"{"command": "srv"}"#;
        for (name, json, why) in [
            ("Has_Caps", stdio, "lowercase"),
            ("a-name-far-too-long-for-a-tool", stdio, "lowercase"),
            (
                "both",
                r#"{"command": "x", "url": "https://a.test"}"#,
                "one or the other",
            ),
            ("none", r#"{"args": ["x"]}"#, "needs a command"),
            ("ftp", r#"{"url": "ftp://a.test/"}"#, "http:// or https://"),
            ("slow", r#"{"command": "x", "toolTimeout": 0}"#, "toolTimeout"),
            (
                "envname",
                r#"{"command": "x", "env": {"A B": "v"}}"#,
                "environment variable name",
            ),
            (
                "hdr",
                r#"{"url": "https://a.test", "headers": {"X": "a\r\nHost: b"}}"#,
                "no line breaks",
            ),
            (
                "mixed",
                r#"{"url": "https://a.test", "env": {"A": "v"}}"#,
                "stdio server",
            ),
            (
                "planted",
                r#"{"command": "/workspace/server.py"}"#,
                "out of their reach",
            ),
            (
                "script",
                r#"{"command": "python3", "args": ["/tmp/x/server.py"]}"#,
                "out of their reach",
            ),
            (
                "relative",
                r#"{"command": "node", "args": ["../../workspace/server.js"]}"#,
                "out of their reach",
            ),
            (
                "climbing",
                r#"{"command": "python3", "args": ["/opt/../workspace/g.py"]}"#,
                "out of their reach",
            ),
            (
                "loader",
                r#"{"command": "python3", "env": {"PYTHONPATH": "/usr/lib/x:/workspace/lib"}}"#,
                "an env value names",
            ),
            (
                "preload",
                r#"{"command": "node", "env": {"NODE_OPTIONS": "--require /dev/shm/x.js"}}"#,
                "an env value names",
            ),
            (
                "fromcwd",
                r#"{"command": "python3", "args": ["tmp/../../../workspace/evil.py"]}"#,
                "out of their reach",
            ),
            (
                "procroot",
                r#"{"command": "python3", "args": ["/proc/self/root/workspace/evil.py"]}"#,
                "out of their reach",
            ),
            (
                "include",
                r#"{"command": "perl", "args": ["-I/workspace/lib", "s.pl"]}"#,
                "out of their reach",
            ),
            (
                "code",
                r#"{"command": "python3", "args": ["-c", "exec(open('/workspace/x.py').read())"]}"#,
                "out of their reach",
            ),
            (
                "hosts",
                r#"{"url": "https://a.test", "allowedHosts": ["a.test"]}"#,
                "allowedHosts",
            ),
        ] {
            let err = check(name, &server(json)).unwrap_err();
            assert!(err.contains(why), "{name}: {err}");
        }
        assert!(serde_json::from_str::<McpServer>(r#"{"command": "x", "comand": "y"}"#).is_err());
    }
}
