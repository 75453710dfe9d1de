//! oxibotctl: the admin's window into a running broker, over ctl.sock.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use oxibot_broker::config::Config;
use oxibot_proto::messages::{CtlReply, CtlRequest, StatusReport};
use oxibot_proto::{connect_handshake, Conn, Role};
use serde_json::json;

#[derive(Parser)]
#[command(name = "oxibotctl", version, about = "Control a running OxiBot broker")]
struct Cli {
    /// The broker's control socket.
    #[arg(
        long,
        env = "OXIBOT_CTL_SOCKET",
        default_value = "/run/oxibot/ctl.sock",
        global = true
    )]
    socket: PathBuf,
    /// Print machine-readable JSON.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Processes, channels, queues, providers and the last error.
    Status,
    /// Send one message and print the answer.
    Agent {
        #[arg(short, long)]
        message: String,
        /// Conversation to continue.
        #[arg(long, default_value = "cli:default")]
        session: String,
    },
    /// An interactive conversation (console channel) until EOF or /quit.
    Chat {
        #[arg(long, default_value = "console:default")]
        session: String,
    },
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Admin diagnostics through the same tool daemon the agent uses.
    #[command(subcommand)]
    Tool(ToolCommand),
    /// Report each jail property as measured from inside the jail.
    Doctor,
    /// Pairing requests from unknown chat users (dmPolicy "pairing").
    #[command(subcommand)]
    Pairing(PairingCommand),
    /// Re-read the configuration and secrets without a restart.
    Reload,
    /// The secrets file: names, and setting one value.
    #[command(subcommand)]
    Secrets(SecretsCommand),
}

#[derive(Subcommand)]
enum SecretsCommand {
    /// Set one value (read from standard input), then reload the broker.
    Set {
        /// Dotted name, e.g. providers.openai.apiKey or channels.telegram.token.
        name: String,
        #[arg(long, default_value = "/etc/oxibot/config.json")]
        config: PathBuf,
    },
    /// The names of the values in the secrets file (never the values).
    List {
        #[arg(long, default_value = "/etc/oxibot/config.json")]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
enum PairingCommand {
    /// Pending and decided pairing requests.
    List,
    /// Let the user with this code talk to the assistant.
    Approve { code: String },
    /// Refuse the user with this code.
    Deny { code: String },
}

#[derive(Subcommand)]
enum ToolCommand {
    /// Run a shell command in the jail: `oxibotctl tool exec -- ls -la`.
    Exec {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        command: Vec<String>,
    },
    /// Run one tool with JSON arguments: `oxibotctl tool run read_file '{"path":"a.txt"}'`.
    Run { name: String, arguments: String },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Load and validate a configuration without starting anything.
    Check {
        #[arg(long, default_value = "/etc/oxibot/config.json")]
        config: PathBuf,
    },
    /// Split an OxiBot/nanobot config.json into config + secrets files.
    Import {
        path: PathBuf,
        #[arg(long, default_value = "/etc/oxibot/config.json")]
        config_out: PathBuf,
        #[arg(long, default_value = "/etc/oxibot/secrets.json")]
        secrets_out: PathBuf,
        /// Overwrite existing output files.
        #[arg(long)]
        force: bool,
    },
}

type CtlConn = Conn<CtlReply, CtlRequest>;

/// Text that a peer or the model wrote (a pairing name, a reply, tool
/// output, a platform's error), made safe for the admin's terminal.
fn shown(text: &str) -> String {
    oxibot_proto::printable::printable(text)
}

/// As [`shown`], for a one-line field.
fn shown_line(text: &str) -> String {
    oxibot_proto::printable::printable_line(text)
}

fn main() -> ExitCode {
    // For the packages: its manual (roff) and shell completions.
    match std::env::args().nth(1).as_deref() {
        Some("--man-page") => {
            let man = clap_mangen::Man::new(<Cli as clap::CommandFactory>::command()).section("8");
            return ExitCode::from(u8::from(man.render(&mut std::io::stdout()).is_err()));
        }
        Some("--completions") => {
            let shell = std::env::args()
                .nth(2)
                .and_then(|s| s.parse::<clap_complete::Shell>().ok());
            let Some(shell) = shell else {
                eprintln!("oxibotctl --completions bash|zsh|fish");
                return ExitCode::from(2);
            };
            clap_complete::generate(
                shell,
                &mut <Cli as clap::CommandFactory>::command(),
                "oxibotctl",
                &mut std::io::stdout(),
            );
            return ExitCode::SUCCESS;
        }
        _ => {}
    }
    let cli = Cli::parse();
    let json = cli.json;
    let result = match cli.command {
        Command::Config(ConfigCommand::Check { config }) => config_check(&config, json),
        Command::Config(ConfigCommand::Import {
            path,
            config_out,
            secrets_out,
            force,
        }) => match oxibot_broker::import::import(&path, &config_out, &secrets_out, force) {
            Ok(s) => {
                if json {
                    println!(
                        "{}",
                        json!({"config": config_out, "secrets": secrets_out, "moved": s.moved})
                    );
                } else {
                    println!(
                        "wrote {} and {} (mode 0600)",
                        config_out.display(),
                        secrets_out.display()
                    );
                    for k in s.moved {
                        println!("  moved {k} to the secrets file");
                    }
                }
                Ok(())
            }
            Err(e) => Err(e),
        },
        Command::Secrets(SecretsCommand::List { config }) => secrets_list(&config, json),
        Command::Secrets(SecretsCommand::Set { name, config }) => secrets_set(&cli.socket, &config, &name, json),
        other => online(cli.socket, json, other),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if json {
                println!("{}", json!({"error": e}));
            } else {
                eprintln!("oxibotctl: {}", shown(&e));
            }
            ExitCode::FAILURE
        }
    }
}

fn config_check(path: &std::path::Path, json: bool) -> Result<(), String> {
    let (config, report) = Config::load(path).map_err(|e| e.to_string())?;
    // What the broker builds at start-up, so that its errors show here too.
    oxibot_broker::providers::LlmClient::new(&config)?;
    oxibot_broker::providers::Transcriber::new(&config)?;
    let model = &config.agents.defaults.model;
    let provider = config.resolve_provider(model).map(|p| p.name).unwrap_or("?");
    if json {
        println!(
            "{}",
            json!({"ok": true, "model": model, "provider": provider, "warnings": report.warnings,
                   "channels": config.enabled_channels(), "sandbox": config.tools.sandbox.as_arg()})
        );
    } else {
        for w in &report.warnings {
            println!("warning: {w}");
        }
        println!(
            "configuration OK: model {model} via {provider}; channels: {:?}",
            config.enabled_channels()
        );
    }
    Ok(())
}

fn secrets_list(config: &std::path::Path, json: bool) -> Result<(), String> {
    let path = oxibot_broker::secrets_file::locate(config)?;
    let names = oxibot_broker::secrets_file::names(&path)?;
    if json {
        println!("{}", json!({"file": path, "names": names}));
    } else {
        for n in names {
            println!("{n}");
        }
    }
    Ok(())
}

/// Sets one secret from standard input (the first line), then asks the
/// broker to reload. The value never appears in argv or the environment.
fn secrets_set(socket: &std::path::Path, config: &std::path::Path, name: &str, json: bool) -> Result<(), String> {
    let path = oxibot_broker::secrets_file::locate(config)?;
    let mut value = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut value)
        .map_err(|e| format!("cannot read the value from standard input: {e}"))?;
    let value = zeroize::Zeroizing::new(value.trim_end_matches(['\n', '\r']).to_string());
    oxibot_broker::secrets_file::set(&path, name, &value)?;
    let reloaded = reload_broker(socket);
    let message = match &reloaded {
        Ok(m) => format!("{name} set in {}; {m}", path.display()),
        Err(e) => format!(
            "{name} set in {}; the broker did not reload ({e}): it uses the new value from its next start or reload",
            path.display()
        ),
    };
    if json {
        println!(
            "{}",
            json!({"ok": true, "reloaded": reloaded.is_ok(), "message": message})
        );
    } else {
        println!("{}", shown(&message));
    }
    Ok(())
}

fn reload_broker(socket: &std::path::Path) -> Result<String, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async {
        let mut conn = connect(socket).await?;
        match request(&mut conn, CtlRequest::Reload).await? {
            CtlReply::Done { message } => Ok(message),
            CtlReply::Error { message } => Err(message),
            other => Err(format!("unexpected reply: {other:?}")),
        }
    })
}

fn online(socket: PathBuf, json: bool, command: Command) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async move {
        let mut conn = connect(&socket).await?;
        match command {
            Command::Status => {
                let status = match request(&mut conn, CtlRequest::Status).await? {
                    CtlReply::Status(s) => s,
                    other => return Err(format!("unexpected reply: {other:?}")),
                };
                print_status(&status, json);
                Ok(())
            }
            Command::Agent { message, session } => {
                let text = agent(&mut conn, &session, &message).await?;
                if json {
                    println!("{}", json!({"session": session, "reply": text}));
                } else {
                    println!("{}", shown(&text));
                }
                Ok(())
            }
            Command::Chat { session } => chat(&mut conn, &session, json).await,
            Command::Tool(ToolCommand::Exec { command }) => {
                let args = json!({"command": command.join(" ")}).to_string();
                run_tool(&mut conn, "exec", &args, json).await
            }
            Command::Tool(ToolCommand::Run { name, arguments }) => run_tool(&mut conn, &name, &arguments, json).await,
            Command::Doctor => doctor(&mut conn, json).await,
            Command::Pairing(PairingCommand::List) => match request(&mut conn, CtlRequest::PairingList).await? {
                CtlReply::Pairings(list) => {
                    if json {
                        let items: Vec<_> = list
                            .iter()
                            .map(|p| json!({"code": p.code, "channel": p.channel, "sender": p.sender, "status": p.status, "ageSecs": p.age_secs}))
                            .collect();
                        println!("{}", json!({"pairings": items}));
                    } else if list.is_empty() {
                        println!("no pairing requests");
                    } else {
                        for p in list {
                            println!(
                                "{}  {:<10} {:<24} {:<9} {}s ago",
                                shown_line(&p.code),
                                shown_line(&p.channel),
                                shown_line(&p.sender),
                                shown_line(&p.status),
                                p.age_secs
                            );
                        }
                    }
                    Ok(())
                }
                CtlReply::Error { message } => Err(message),
                other => Err(format!("unexpected reply: {other:?}")),
            },
            Command::Pairing(PairingCommand::Approve { code }) => decide(&mut conn, code, true, json).await,
            Command::Pairing(PairingCommand::Deny { code }) => decide(&mut conn, code, false, json).await,
            Command::Reload => match request(&mut conn, CtlRequest::Reload).await? {
                CtlReply::Done { message } => {
                    if json {
                        println!("{}", json!({"ok": true, "message": message}));
                    } else {
                        println!("{}", shown(&message));
                    }
                    Ok(())
                }
                CtlReply::Error { message } => Err(message),
                other => Err(format!("unexpected reply: {other:?}")),
            },
            Command::Config(_) | Command::Secrets(_) => unreachable_config(),
        }
    })
}

async fn tool_result(conn: &mut CtlConn, name: &str, arguments: &str) -> Result<(bool, String), String> {
    match request(
        conn,
        CtlRequest::RunTool {
            name: name.into(),
            arguments_json: arguments.into(),
        },
    )
    .await?
    {
        CtlReply::ToolResult { ok, output } => Ok((ok, output)),
        CtlReply::Error { message } => Err(message),
        other => Err(format!("unexpected reply: {other:?}")),
    }
}

async fn run_tool(conn: &mut CtlConn, name: &str, arguments: &str, json: bool) -> Result<(), String> {
    let (ok, output) = tool_result(conn, name, arguments).await?;
    if json {
        println!("{}", json!({"ok": ok, "output": output}));
        if !ok {
            // The JSON above already says what failed; just set the status.
            std::process::exit(1);
        }
        return Ok(());
    }
    println!("{}", shown(&output));
    if ok {
        Ok(())
    } else {
        Err(format!("{name} failed"))
    }
}

async fn decide(conn: &mut CtlConn, code: String, approve: bool, json: bool) -> Result<(), String> {
    match request(conn, CtlRequest::PairingDecide { code, approve }).await? {
        CtlReply::Done { message } => {
            if json {
                println!("{}", json!({"ok": true, "message": message}));
            } else {
                println!("{}", shown(&message));
            }
            Ok(())
        }
        CtlReply::Error { message } => Err(message),
        other => Err(format!("unexpected reply: {other:?}")),
    }
}

async fn doctor(conn: &mut CtlConn, json: bool) -> Result<(), String> {
    let notes = match request(conn, CtlRequest::Status).await? {
        CtlReply::Status(s) => s.notes,
        _ => Vec::new(),
    };
    let args = json!({"command": oxibot_broker::doctor::SCRIPT}).to_string();
    let (ok, output) = tool_result(conn, "exec", &args).await?;
    if !ok {
        return Err(format!("cannot run the checks in the tool daemon: {output}"));
    }
    let checks = oxibot_broker::doctor::judge(&output);
    let failed = checks.iter().filter(|c| !c.ok).count();
    if json {
        let list: Vec<_> = checks
            .iter()
            .map(|c| json!({"check": c.name, "ok": c.ok, "seen": c.seen}))
            .collect();
        println!("{}", json!({"checks": list, "failed": failed, "notes": notes}));
    } else {
        for c in &checks {
            println!(
                "{} {:<48} {}",
                if c.ok { "ok  " } else { "FAIL" },
                c.name,
                shown_line(&c.seen)
            );
        }
        for note in &notes {
            println!("note {note}");
        }
        if nix::unistd::geteuid().is_root() {
            println!("note: oxibotctl runs as root; that says nothing about the broker's own user");
        }
    }
    if failed > 0 {
        return Err(format!("{failed} jail check(s) failed; is tools.sandbox \"off\"?"));
    }
    Ok(())
}

fn unreachable_config() -> Result<(), String> {
    Err("config commands run offline".into())
}

async fn connect(socket: &std::path::Path) -> Result<CtlConn, String> {
    let stream = tokio::net::UnixStream::connect(socket).await.map_err(|e| {
        format!(
            "cannot connect to {}: {e}. Is the broker running? Are you root or in group oxibot-admin? \
             (--socket or OXIBOT_CTL_SOCKET select another socket)",
            socket.display()
        )
    })?;
    connect_handshake(stream, Role::Ctl, Role::Broker).await.map_err(|e| {
        format!("the broker closed the connection during the handshake ({e}); you may not be allowed to use it")
    })
}

async fn request(conn: &mut CtlConn, req: CtlRequest) -> Result<CtlReply, String> {
    conn.send(&req)
        .await
        .map_err(|e| format!("cannot send to the broker: {e}"))?;
    conn.recv().await.map_err(|e| format!("no answer from the broker: {e}"))
}

async fn agent(conn: &mut CtlConn, session: &str, message: &str) -> Result<String, String> {
    match request(
        conn,
        CtlRequest::Agent {
            session: session.into(),
            message: message.into(),
        },
    )
    .await?
    {
        CtlReply::AgentReply { text } => Ok(text),
        CtlReply::Error { message } => Err(message),
        other => Err(format!("unexpected reply: {other:?}")),
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
            Ok(text) if json => println!("{}", json!({"reply": text})),
            Ok(text) => println!("oxibot> {}", shown(&text)),
            Err(e) if json => println!("{}", json!({"error": e})),
            Err(e) => eprintln!("error: {}", shown(&e)),
        }
    }
}

fn print_status(s: &StatusReport, json: bool) {
    if json {
        let processes: Vec<_> = s
            .processes
            .iter()
            .map(|p| json!({"name": p.name, "pid": p.pid, "uptimeSecs": p.uptime_secs, "restarts": p.restarts, "lastExit": p.last_exit}))
            .collect();
        let channels: Vec<_> = s
            .channels
            .iter()
            .map(|c| {
                let n = &c.counters;
                json!({"name": c.name, "connected": c.connected, "lastError": c.last_error,
                       "counters": {"received": n.received, "refused": n.refused, "sent": n.sent,
                                    "sendFailures": n.send_failures, "disconnects": n.disconnects}})
            })
            .collect();
        let providers: Vec<_> = s
            .providers
            .iter()
            .map(|p| json!({"name": p.name, "apiBase": p.api_base, "hasKey": p.has_key, "models": p.models}))
            .collect();
        println!(
            "{}",
            json!({
                "brokerPid": s.broker_pid, "uptimeSecs": s.uptime_secs, "processes": processes,
                "channels": channels, "toolConnected": s.tool_connected,
                "queues": {"inboundPending": s.queues.inbound_pending, "outboxPending": s.queues.outbox_pending},
                "providers": providers, "lastError": s.last_error, "notes": s.notes,
            })
        );
        return;
    }
    println!("broker pid {} up {}s", s.broker_pid, s.uptime_secs);
    println!("processes:");
    for p in &s.processes {
        let pid = p.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into());
        let up = p.uptime_secs.map(|u| format!("{u}s")).unwrap_or_else(|| "-".into());
        let exit = p
            .last_exit
            .as_deref()
            .map(|e| format!(", last exit: {}", shown_line(e)))
            .unwrap_or_default();
        println!("  {:<20} pid {pid:<8} up {up:<8} restarts {}{exit}", p.name, p.restarts);
    }
    println!(
        "tool daemon: {}",
        if s.tool_connected { "connected" } else { "NOT connected" }
    );
    println!("channels:");
    for c in &s.channels {
        let err = c
            .last_error
            .as_deref()
            .map(|e| format!(" ({})", shown_line(e)))
            .unwrap_or_default();
        let n = &c.counters;
        println!(
            "  {:<12} {}{err}\n  {:<12} received {}, refused {}, sent {}, send failures {}, disconnects {}",
            c.name,
            if c.connected { "connected" } else { "disconnected" },
            "",
            n.received,
            n.refused,
            n.sent,
            n.send_failures,
            n.disconnects
        );
    }
    println!(
        "queues: {} inbound pending, {} outbound pending",
        s.queues.inbound_pending, s.queues.outbox_pending
    );
    println!("providers:");
    for p in &s.providers {
        println!(
            "  {:<12} {} key: {} models: {}",
            p.name,
            p.api_base,
            if p.has_key { "yes" } else { "no" },
            p.models.join(", ")
        );
    }
    if let Some(e) = &s.last_error {
        println!("last error: {}", shown_line(e));
    }
    for note in &s.notes {
        println!("note: {note}");
    }
}
