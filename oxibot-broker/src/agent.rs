//! The agent loop: one user turn → model → tools → model … → final answer.
//!
//! Locks are per session, so two chats never wait on each other. Each model
//! step is stored with its tool results in one transaction, so a history
//! never holds a tool result without its call.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use crate::broker::Broker;
use crate::config::Config;
use crate::providers::{ChatMessage, ChatRequest, Image, LlmClient, Role, Usage};
use crate::secret::Scrubber;
use crate::store::Store;
use crate::toolclient::ToolClient;
use crate::tools;

/// An identical tool call (same name and arguments) this many times in one
/// turn means the model is stuck.
const MAX_IDENTICAL_CALLS: usize = 3;

/// A chat on a channel: where a turn's answers, messages and scheduled
/// jobs go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatRef {
    pub channel: String,
    pub chat_id: String,
}

impl ChatRef {
    /// The session of this chat's conversation.
    pub fn session(&self) -> String {
        format!("{}:{}", self.channel, self.chat_id)
    }
}

/// Who asked for a turn; it decides which of the broker's tools it gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TurnKind {
    /// A person wrote (on a channel, or through `oxibotctl agent`).
    Chat,
    /// A scheduled job ran.
    Scheduled,
    /// The heartbeat looked at HEARTBEAT.md.
    Heartbeat,
    /// A background task started by `spawn`.
    Subagent,
}

/// One turn's identity: its session, the chat it speaks for (none for an
/// `oxibotctl` session that names no chat), and its kind.
#[derive(Debug, Clone)]
pub struct Turn {
    pub session: String,
    pub origin: Option<ChatRef>,
    pub kind: TurnKind,
    /// Overrides agents.defaults.maxToolIterations (subagents).
    pub max_iterations: Option<u32>,
}

impl Turn {
    /// A person's turn in their chat.
    pub fn chat(origin: ChatRef) -> Turn {
        Turn {
            session: origin.session(),
            origin: Some(origin),
            kind: TurnKind::Chat,
            max_iterations: None,
        }
    }

    /// An `oxibotctl agent` turn: a session named "<channel>:<chat>" for a
    /// configured channel speaks for that chat (the admin may); any other
    /// name is a console session without a chat.
    pub fn console(config: &Config, session: &str) -> Turn {
        let origin = session
            .split_once(':')
            .filter(|(channel, chat)| !chat.is_empty() && config.channels.contains_key(*channel))
            .map(|(channel, chat)| ChatRef {
                channel: channel.to_string(),
                chat_id: chat.to_string(),
            });
        Turn {
            session: session.to_string(),
            origin,
            kind: TurnKind::Chat,
            max_iterations: None,
        }
    }
}

pub struct Agent {
    store: Store,
    tools: Arc<ToolClient>,
    /// What a reload replaces; a turn keeps the one it started with.
    settings: RwLock<Arc<Settings>>,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// The agent's part of the configuration: providers (with their keys), the
/// secrets to scrub, and the limits of a turn.
pub struct Settings {
    llm: LlmClient,
    scrubber: Scrubber,
    max_tokens: u32,
    temperature: f64,
    max_iterations: u32,
    exec_timeout_secs: u32,
    history_budget: usize,
}

impl Settings {
    pub fn new(config: &Config) -> Result<Self, String> {
        let d = &config.agents.defaults;
        Ok(Settings {
            llm: LlmClient::new(config)?,
            scrubber: Scrubber::new(&config.all_secrets()),
            max_tokens: d.max_tokens,
            temperature: d.temperature,
            max_iterations: d.max_tool_iterations,
            exec_timeout_secs: config.tools.exec.timeout,
            history_budget: d.history_budget_tokens as usize,
        })
    }

    pub fn llm(&self) -> &LlmClient {
        &self.llm
    }

    pub fn max_tokens(&self) -> u32 {
        self.max_tokens
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("the model could not answer: {0}")]
    Llm(String),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

impl Agent {
    pub fn new(config: &Config, store: Store, tools: Arc<ToolClient>) -> Result<Self, String> {
        Ok(Agent {
            store,
            tools,
            settings: RwLock::new(Arc::new(Settings::new(config)?)),
            locks: Mutex::new(HashMap::new()),
        })
    }

    /// The settings now in force.
    pub fn settings(&self) -> Arc<Settings> {
        self.settings.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Puts new settings in force (a reload); turns already running finish
    /// with the ones they started with.
    pub fn replace_settings(&self, settings: Settings) {
        *self.settings.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(settings);
    }

    fn session_lock(&self, session: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.entry(session.to_string()).or_default().clone()
    }

    /// Scrubs secrets from text leaving the broker, auditing each redaction.
    pub fn scrub(&self, text: &str, what: &str) -> String {
        let (clean, hits) = self.settings().scrubber.scrub(text);
        if hits > 0 {
            self.store.audit(
                "secret_redacted",
                &format!("{hits} secret occurrence(s) redacted from {what}"),
            );
        }
        clean
    }

    /// Runs one turn and returns the final answer (already scrubbed).
    #[tracing::instrument(name = "turn", skip_all, fields(channel = turn.session.split(':').next().unwrap_or(""), session = turn.session))]
    pub async fn run_turn(
        &self,
        broker: &Arc<Broker>,
        turn: &Turn,
        user_text: &str,
        images: Vec<Image>,
    ) -> Result<String, AgentError> {
        let session = turn.session.as_str();
        let lock = self.session_lock(session);
        let _guard = lock.lock().await;
        let settings = self.settings();
        let config = broker.config();
        let mut tool_defs = tools::definitions();
        tool_defs.extend(crate::own_tools::definitions(
            turn.kind,
            crate::web::search_configured(&config),
        ));

        let mut prompt = crate::prompt::system_prompt(broker, turn).await;
        let past = crate::memory::bounded_history(self, broker, session, settings.history_budget).await?;
        prompt.push_str(&past.prompt_note());
        let mut messages = vec![ChatMessage::text(
            Role::System,
            self.scrub(&prompt, "the system prompt"),
        )];
        messages.extend(past.messages);
        let user = ChatMessage::text(Role::User, self.scrub(user_text, "a user message"));
        // The model sees the images on this turn; the history keeps the text,
        // which says where they were saved.
        messages.push(ChatMessage { images, ..user.clone() });
        // Stored messages of this turn not yet committed.
        let mut unsaved = vec![user];
        let mut seen_calls: HashMap<(String, String), usize> = HashMap::new();

        let max_iterations = turn.max_iterations.unwrap_or(settings.max_iterations);
        for _ in 0..max_iterations {
            let req = ChatRequest {
                messages: &messages,
                tools: &tool_defs,
                max_tokens: settings.max_tokens,
                temperature: settings.temperature,
            };
            let resp = match settings.llm.complete(&req).await {
                Ok(r) => r,
                Err(e) => {
                    self.store.append(session, &unsaved, &Usage::default())?;
                    return Err(AgentError::Llm(self.scrub(&e, "an LLM error")));
                }
            };
            if resp.tool_calls.is_empty() {
                let answer = self.scrub(&resp.content, "the model's reply");
                unsaved.push(ChatMessage::text(Role::Assistant, answer.clone()));
                self.store.append(session, &unsaved, &resp.usage)?;
                return Ok(answer);
            }

            // What the model wrote is stored and sent back on every later
            // turn: scrubbed, arguments included.
            let tool_calls: Vec<_> = resp
                .tool_calls
                .iter()
                .map(|c| crate::providers::ToolCallRequest {
                    arguments: self.scrub(&c.arguments, "tool call arguments"),
                    ..c.clone()
                })
                .collect();
            let call_msg = ChatMessage {
                role: Role::Assistant,
                content: self.scrub(&resp.content, "the model's reply"),
                tool_calls: tool_calls.clone(),
                tool_call_id: None,
                images: Vec::new(),
            };
            messages.push(call_msg.clone());
            unsaved.push(call_msg);
            let mut stuck = false;
            for call in &tool_calls {
                let count = seen_calls
                    .entry((call.name.clone(), call.arguments.clone()))
                    .or_default();
                *count += 1;
                let output = if *count >= MAX_IDENTICAL_CALLS {
                    stuck = true;
                    format!(
                        "Error: {} was called {count} times with identical arguments; not running it again",
                        call.name
                    )
                } else {
                    self.run_tool(broker, turn, &call.name, &call.arguments).await
                };
                let result = ChatMessage {
                    role: Role::Tool,
                    // run_tool scrubbed it already.
                    content: output,
                    tool_calls: Vec::new(),
                    tool_call_id: Some(call.id.clone()),
                    images: Vec::new(),
                };
                messages.push(result.clone());
                unsaved.push(result);
            }
            self.store.append(session, &std::mem::take(&mut unsaved), &resp.usage)?;
            if stuck {
                let answer = "I stopped because I kept repeating the same tool call without making progress. \
                              Please rephrase the request or give more detail."
                    .to_string();
                self.store.append(
                    session,
                    &[ChatMessage::text(Role::Assistant, answer.clone())],
                    &Usage::default(),
                )?;
                return Ok(answer);
            }
        }
        let answer = format!(
            "I stopped after {max_iterations} tool steps (agents.defaults.maxToolIterations) without finishing. \
             Ask me to continue, or raise the limit."
        );
        self.store.append(
            session,
            &[ChatMessage::text(Role::Assistant, answer.clone())],
            &Usage::default(),
        )?;
        Ok(answer)
    }

    async fn run_tool(&self, broker: &Arc<Broker>, turn: &Turn, name: &str, arguments: &str) -> String {
        match self.run_tool_checked(broker, turn, name, arguments).await {
            Ok(output) => output,
            Err(e) => format!("Error: {e}"),
        }
    }

    /// Runs one tool: the broker's own (web, message, cron, spawn), or
    /// through toold; the output (or error) is scrubbed of secrets. Every
    /// call is audited: session, tool, a digest of the arguments (not the
    /// arguments: they may hold the user's data) and the outcome.
    pub async fn run_tool_checked(
        &self,
        broker: &Arc<Broker>,
        turn: &Turn,
        name: &str,
        arguments: &str,
    ) -> Result<String, String> {
        let session = turn.session.as_str();
        let digest = arguments_digest(arguments);
        let result = match crate::own_tools::run(broker, turn, name, arguments).await {
            Some(Ok(output)) => Ok(self.scrub(&output, &format!("{name} output"))),
            Some(Err(e)) => Err(self.scrub(&e, &format!("{name} error"))),
            None => self.run_tool_unaudited(name, arguments).await,
        };
        let outcome = match &result {
            Ok(output) => format!("ok, {} bytes", output.len()),
            Err(e) => format!("error: {}", crate::providers::shorten(e, 160)),
        };
        crate::metrics::tool_call(name, result.is_ok());
        tracing::info!(session, tool = name, ok = result.is_ok(), "tool call");
        // Sessions are "<channel>:<chat>"; the audit entry is filed under it.
        let channel = session.split_once(':').map(|(c, _)| c);
        self.store.audit_about(
            "tool_call",
            channel,
            None,
            &format!("session {session}: {name} (arguments sha256:{digest}) → {outcome}"),
        );
        result
    }

    async fn run_tool_unaudited(&self, name: &str, arguments: &str) -> Result<String, String> {
        let timeout = self.settings().exec_timeout_secs;
        let request = tools::to_request(name, arguments, timeout)?;
        // The daemon enforces the exec timeout itself; allow it time to
        // kill the process group and answer.
        let wait = Duration::from_secs(u64::from(timeout) + 15);
        match self.tools.call(request, wait).await {
            Ok(output) => Ok(self.scrub(&output, &format!("{name} output"))),
            Err(e) => Err(self.scrub(&e, &format!("{name} error"))),
        }
    }

    /// The store, for the modules that keep a turn's state (memory).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The tool daemon's client, for reads and writes the broker makes in
    /// the workspace (memory notes).
    pub fn toolclient(&self) -> &Arc<ToolClient> {
        &self.tools
    }

    pub fn reset(&self, session: &str) -> Result<(), AgentError> {
        Ok(self.store.clear_session(session)?)
    }
}

/// The first 16 hex digits of the SHA-256 of a tool call's arguments: enough
/// to match an audit row to a stored call, without the arguments themselves.
fn arguments_digest(arguments: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(arguments.as_bytes())
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}
