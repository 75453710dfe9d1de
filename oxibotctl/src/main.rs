//! oxibotctl: the admin's window into a running broker (over ctl.sock,
//! root and group oxibot-admin only), and the tool for its files.
//! Exit status: 0 done, 1 error, 2 usage, 3 degraded (see `cli`).

mod admin;
mod chat;
mod cli;
mod client;
mod cron;
mod doctor;
mod mcp;
mod offline;
mod owner;
mod prompt;
mod show;
mod status;

use std::io::{BufRead, Write};
use std::process::ExitCode;

use clap::Parser;
use cli::{
    ApprovalsCommand, AuditCommand, BudgetsCommand, ChannelsCommand, Cli, Command, ConfigCommand, CronCommand,
    McpCommand, PairingCommand, PromptCommand, SecretsCommand, SessionsCommand, ToolCommand, UsersCommand,
};
use client::{ask, online, CtlConn};
use oxibot_proto::messages::{CronRequest, CtlReply, CtlRequest};
use serde_json::json;
use show::{emit, shown};

/// How a command ended, beyond plain success.
pub(crate) enum Outcome {
    Done,
    /// Something is down, or doctor found something: exit 3.
    Degraded,
    /// It failed, and its output already says why: exit 1, nothing more.
    Failed,
    /// A command run in the jail ended with this status (`tool exec`).
    Exited(u8),
}

fn main() -> ExitCode {
    // For the packages: its manual (roff) and shell completions.
    match std::env::args().nth(1).as_deref() {
        Some("--man-page") => {
            let man = clap_mangen::Man::new(<Cli as clap::CommandFactory>::command()).section("8");
            return ExitCode::from(u8::from(man.render(&mut std::io::stdout()).is_err()));
        }
        Some("--completions") => {
            let Some(shell) = std::env::args()
                .nth(2)
                .and_then(|s| s.parse::<clap_complete::Shell>().ok())
            else {
                eprintln!("oxibotctl --completions bash|zsh|fish");
                return ExitCode::from(2);
            };
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut command, "oxibotctl", &mut std::io::stdout());
            return ExitCode::SUCCESS;
        }
        _ => {}
    }
    // clap exits with 2 on a usage error.
    let cli = Cli::parse();
    let json = cli.json;
    match run(cli) {
        Ok(Outcome::Done) => ExitCode::SUCCESS,
        Ok(Outcome::Degraded) => ExitCode::from(3),
        Ok(Outcome::Failed) => ExitCode::FAILURE,
        Ok(Outcome::Exited(code)) => ExitCode::from(code),
        Err(e) => {
            if json {
                crate::show::print_json(&json!({"error": e}));
            } else {
                eprintln!("oxibotctl: {}", shown(&e));
            }
            ExitCode::FAILURE
        }
    }
}

fn degraded_if(found: bool) -> Outcome {
    if found {
        Outcome::Degraded
    } else {
        Outcome::Done
    }
}

fn run(cli: Cli) -> Result<Outcome, String> {
    let Cli {
        socket,
        config,
        json,
        command,
    } = cli;
    let done = |r: Result<(), String>| r.map(|()| Outcome::Done);
    match command {
        Command::Config(ConfigCommand::Check) => offline::config_check(&config, json),
        Command::Config(ConfigCommand::Import {
            path,
            config_out,
            secrets_out,
            force,
            broker_user,
        }) => done(offline::config_import(
            &path,
            &config_out,
            &secrets_out,
            force,
            &broker_user,
            json,
        )),
        Command::Secrets(SecretsCommand::List) => done(offline::secrets_list(&config, json)),
        Command::Secrets(SecretsCommand::Set { name }) => done(offline::secrets_set(&socket, &config, &name, json)),
        Command::Channels(ChannelsCommand::Enable { channel }) => {
            done(offline::channel_enable(&config, &channel, true, json))
        }
        Command::Channels(ChannelsCommand::Disable { channel }) => {
            done(offline::channel_enable(&config, &channel, false, json))
        }
        Command::Doctor => doctor::run(&config, &socket, json).map(|n| degraded_if(n > 0)),
        Command::Status => online(&socket, async |conn| match ask(conn, CtlRequest::Status).await? {
            CtlReply::Status(s) => Ok(degraded_if(!status::print(&s, json).is_empty())),
            other => Err(client::unexpected(&other)),
        }),
        Command::Channels(ChannelsCommand::List) => online(&socket, async |conn| {
            admin::channels_list(conn, json)
                .await
                .map(|down| degraded_if(!down.is_empty()))
        }),
        Command::Channels(ChannelsCommand::Restart { channel }) => done(online(&socket, async |conn| {
            admin::simple(conn, CtlRequest::ChannelRestart { channel }, json).await
        })),
        Command::Sessions(SessionsCommand::List) => {
            done(online(&socket, async |conn| admin::sessions_list(conn, json).await))
        }
        Command::Sessions(SessionsCommand::Show { session, limit }) => done(online(&socket, async |conn| {
            admin::sessions_show(conn, session, limit, json).await
        })),
        Command::Sessions(SessionsCommand::Reset { session }) => done(online(&socket, async |conn| {
            admin::simple(conn, CtlRequest::SessionReset { session }, json).await
        })),
        Command::Audit(AuditCommand::Tail { filter, lines }) => done(online(&socket, async |conn| {
            admin::audit(conn, &filter, lines, false, json).await
        })),
        Command::Audit(AuditCommand::Follow { filter, lines }) => done(online(&socket, async |conn| {
            admin::audit(conn, &filter, lines, true, json).await
        })),
        Command::Users(UsersCommand::Allow { channel, id }) => done(online(&socket, async |conn| {
            let request = CtlRequest::UserDecide {
                channel,
                user: id,
                allow: true,
            };
            admin::simple(conn, request, json).await
        })),
        Command::Users(UsersCommand::Deny { channel, id }) => done(online(&socket, async |conn| {
            let request = CtlRequest::UserDecide {
                channel,
                user: id,
                allow: false,
            };
            admin::simple(conn, request, json).await
        })),
        Command::Pairing(PairingCommand::List) => {
            done(online(&socket, async |conn| admin::pairing_list(conn, json).await))
        }
        Command::Pairing(PairingCommand::Approve { code }) => done(online(&socket, async |conn| {
            admin::simple(conn, CtlRequest::PairingDecide { code, approve: true }, json).await
        })),
        Command::Pairing(PairingCommand::Deny { code }) => done(online(&socket, async |conn| {
            admin::simple(conn, CtlRequest::PairingDecide { code, approve: false }, json).await
        })),
        Command::Cron(CronCommand::List) => done(online(&socket, async |conn| cron::list(conn, json).await)),
        Command::Cron(CronCommand::Add {
            channel,
            chat,
            schedule,
            tz,
            message,
            name,
        }) => done(online(&socket, async |conn| {
            let chat_id = match chat {
                Some(chat) => chat,
                None if channel == "console" => "default".to_string(),
                None => return Err(format!("which chat of {channel}? Give --chat (its id on {channel})")),
            };
            let spec = oxibot_proto::messages::CronJobSpec {
                name: name.unwrap_or_else(|| message.chars().take(40).collect()),
                channel,
                chat_id,
                schedule,
                tz,
                message,
            };
            admin::simple(conn, CtlRequest::Cron(CronRequest::Add(spec)), json).await
        })),
        Command::Cron(CronCommand::Remove { id }) => done(online(&socket, async |conn| {
            admin::simple(conn, CtlRequest::Cron(CronRequest::Remove { id }), json).await
        })),
        Command::Cron(CronCommand::Enable { id }) => done(online(&socket, async |conn| {
            admin::simple(conn, CtlRequest::Cron(CronRequest::Enable { id, enabled: true }), json).await
        })),
        Command::Cron(CronCommand::Disable { id }) => done(online(&socket, async |conn| {
            admin::simple(conn, CtlRequest::Cron(CronRequest::Enable { id, enabled: false }), json).await
        })),
        Command::Cron(CronCommand::Run { id }) => done(online(&socket, async |conn| {
            admin::simple(conn, CtlRequest::Cron(CronRequest::Run { id }), json).await
        })),
        Command::Mcp(McpCommand::List) => done(online(&socket, async |conn| mcp::list(conn, json).await)),
        Command::Approvals(ApprovalsCommand::List) => {
            done(online(&socket, async |conn| owner::approvals_list(conn, json).await))
        }
        Command::Approvals(ApprovalsCommand::Approve { id, always }) => done(online(&socket, async |conn| {
            admin::simple(
                conn,
                CtlRequest::ApprovalDecide {
                    id,
                    approve: true,
                    always,
                },
                json,
            )
            .await
        })),
        Command::Approvals(ApprovalsCommand::Deny { id }) => done(online(&socket, async |conn| {
            let request = CtlRequest::ApprovalDecide {
                id,
                approve: false,
                always: false,
            };
            admin::simple(conn, request, json).await
        })),
        Command::Approvals(ApprovalsCommand::Forget { pattern }) => done(online(&socket, async |conn| {
            admin::simple(conn, CtlRequest::ApprovalForget { pattern }, json).await
        })),
        Command::Budgets {
            command: None | Some(BudgetsCommand::List),
        } => done(online(&socket, async |conn| owner::budgets_list(conn, json).await)),
        Command::Budgets {
            command: Some(BudgetsCommand::Reset { chat }),
        } => done(online(&socket, async |conn| {
            admin::simple(conn, CtlRequest::BudgetReset { chat }, json).await
        })),
        Command::Prompt(PromptCommand::List) => done(online(&socket, async |conn| prompt::list(conn, json).await)),
        Command::Prompt(PromptCommand::Diff { file }) => {
            done(online(&socket, async |conn| prompt::diff(conn, file, json).await))
        }
        Command::Prompt(PromptCommand::Accept { file, all: _, sha }) => done(online(&socket, async |conn| {
            admin::simple(conn, CtlRequest::PromptAccept { path: file, sha }, json).await
        })),
        Command::Reload => done(online(&socket, async |conn| {
            admin::simple(conn, CtlRequest::Reload, json).await
        })),
        Command::Agent { message, session } => done(online(&socket, async |conn| {
            let message = match message.as_str() {
                "-" => read_stdin()?,
                _ => message,
            };
            let text = agent(conn, &session, &message).await?;
            emit(json, json!({"session": session, "reply": text}), || shown(&text));
            Ok(())
        })),
        // Scripts get one JSON answer per line; people get the chat client.
        Command::Chat { session, .. } if json => done(online(&socket, async |conn| chat(conn, &session, json).await)),
        Command::Chat { session, raw } => done(chat::run(&socket, &session, raw)),
        Command::Tool(ToolCommand::Exec { command }) => {
            let args = json!({"command": command_line(&command)}).to_string();
            online(&socket, async |conn| run_tool(conn, "exec", &args, json).await)
        }
        Command::Tool(ToolCommand::Run { name, arguments }) => {
            online(&socket, async |conn| run_tool(conn, &name, &arguments, json).await)
        }
    }
}

async fn run_tool(conn: &mut CtlConn, name: &str, arguments: &str, json: bool) -> Result<Outcome, String> {
    let request = CtlRequest::RunTool {
        name: name.into(),
        arguments_json: arguments.into(),
    };
    let (ok, output) = match ask(conn, request).await? {
        CtlReply::ToolResult { ok, output } => (ok, output),
        other => return Err(client::unexpected(&other)),
    };
    // A command's own status is `tool exec`'s.
    let status = (ok && name == "exec").then(|| exit_status(&output)).flatten();
    if json {
        crate::show::print_json(&json!({"ok": ok, "output": output}));
        // The JSON above already says whether it failed.
        return Ok(match (ok, status) {
            (true, Some(code)) => Outcome::Exited(code),
            (true, None) => Outcome::Done,
            (false, _) => Outcome::Failed,
        });
    }
    println!("{}", shown(&output));
    match (ok, status) {
        (true, Some(code)) => Ok(Outcome::Exited(code)),
        (true, None) => Ok(Outcome::Done),
        (false, _) => Err(format!("{name} failed")),
    }
}

/// The words after `tool exec --`: one word is a command line as a shell
/// reads it (`'ls -la | wc -l'`); several are the program and its
/// arguments, each passed as given (quoted for the jail's shell).
fn command_line(words: &[String]) -> String {
    match words {
        [line] => line.clone(),
        words => words
            .iter()
            .map(|w| oxibot_config::owner::quote_word(w))
            .collect::<Vec<_>>()
            .join(" "),
    }
}

/// The exit status an `exec` output ends with: None for 0, the code
/// otherwise (124 when it timed out, as timeout(1) says; 1 when a signal
/// ended it, or the status is out of range).
fn exit_status(output: &str) -> Option<u8> {
    let last = output.lines().last().unwrap_or_default();
    if let Some(code) = last.strip_prefix("[exit code: ").and_then(|r| r.strip_suffix(']')) {
        return match code.trim().parse::<i64>() {
            Ok(0) => None,
            Ok(c) => Some(u8::try_from(c).ok().filter(|c| *c != 0).unwrap_or(1)),
            Err(_) => Some(1),
        };
    }
    if last.starts_with("[timed out") {
        return Some(124);
    }
    last.starts_with("[killed by").then_some(1)
}

/// `agent -m -`: the message is the whole of standard input.
fn read_stdin() -> Result<String, String> {
    let mut text = String::new();
    std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
        .map_err(|e| format!("cannot read the message from standard input: {e}"))?;
    if text.trim().is_empty() {
        return Err("the message on standard input is empty".into());
    }
    Ok(text)
}

async fn agent(conn: &mut CtlConn, session: &str, message: &str) -> Result<String, String> {
    let request = CtlRequest::Agent {
        session: session.into(),
        message: message.into(),
    };
    match ask(conn, request).await? {
        CtlReply::AgentReply { text } => Ok(text),
        other => Err(client::unexpected(&other)),
    }
}

async fn chat(conn: &mut CtlConn, session: &str, json: bool) -> Result<(), String> {
    let stdin = std::io::stdin();
    if !json {
        eprintln!("OxiBot chat (session {session}). Type /quit or press Ctrl-D to leave.");
    }
    loop {
        if !json {
            eprint!("you> ");
            let _ = std::io::stderr().flush();
        }
        let mut line = String::new();
        if stdin.lock().read_line(&mut line).map_err(|e| e.to_string())? == 0 {
            return Ok(());
        }
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if line == "/quit" || line == "/exit" {
            return Ok(());
        }
        match agent(conn, session, line).await {
            Ok(text) if json => crate::show::print_json(&json!({"reply": text})),
            Ok(text) => println!("oxibot> {}", shown(&text)),
            Err(e) if json => crate::show::print_json(&json!({"error": e})),
            Err(e) => eprintln!("error: {}", shown(&e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_exec_keeps_its_words_and_its_status() {
        let words = |w: &[&str]| w.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            command_line(&words(&["sh", "-c", "echo one; echo two"])),
            "sh -c 'echo one; echo two'"
        );
        assert_eq!(command_line(&words(&["ls -la | wc -l"])), "ls -la | wc -l");
        assert_eq!(command_line(&words(&["echo", "it's"])), r"echo 'it'\''s'");
        assert_eq!(exit_status("x\n[exit code: 0]"), None);
        assert_eq!(exit_status("[exit code: 7]"), Some(7));
        assert_eq!(exit_status("[exit code: 300]"), Some(1));
        assert_eq!(
            exit_status("[timed out after 5 s; the command and its process group were killed]"),
            Some(124)
        );
        assert_eq!(exit_status("[killed by signal: 9 (SIGKILL)]"), Some(1));
        assert_eq!(exit_status("no status"), None);
    }
}
