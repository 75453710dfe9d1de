//! The OxiBot broker: holds every secret, runs the agent loop, owns the
//! durable state and supervises the unprivileged daemons.

// Running: start-up and shutdown, the service manager, what each mode
// separates, reloads, and the daemons the broker starts itself.
pub mod broker;
pub mod live;
pub mod reload;
pub mod separation;
pub mod service;
pub mod supervise;

// The rooms every piece of work is handed, as one value (`Services`): the
// audit room (redaction and audit writes), the channel hub (links and
// statuses, the console's chat clients), per-session locks and stop signals.
pub mod audit;
pub mod console;
pub mod hub;
pub mod services;
pub mod sessions;

// Connections: one module per peer, each over its own socket, each
// believing only what the broker itself established about the peer.
pub mod channels;
pub mod ctl;
pub mod egress;
pub mod health;
pub mod sockets;
pub mod toolclient;

// Who may talk: allow-lists, pairing and group policy for channel messages.
pub mod access;

// The turn: from a message to the answer — chat commands, the prompt, the
// model, the tools (in the jail through `toolclient`, or the broker's own),
// and the bounded history with its lasting memory.
pub mod agent;
pub mod commands;

// The owner stays in charge: approvals before what runs, budgets before
// what is spent.
pub mod approval;
pub mod budgets;
pub mod mcp;
pub mod memory;
pub mod prompt;
pub mod prompt_files;
pub mod providers;
pub mod skills;
pub mod tools;
pub mod turn;
pub mod web;

// Turns nobody typed: scheduled jobs, the heartbeat, background tasks, and
// messages the assistant sends on its own.
pub mod cron;
pub mod heartbeat;
pub mod message;
pub mod subagents;

// State: SQLite (sessions, inbound queue, outbox, audit, jobs), the files
// users send, and the counters.
pub mod metrics;
pub mod store;
pub mod uploads;

pub use oxibot_config::access as access_settings;
pub use oxibot_config::{abilities, config, cron_import, import, secret, secrets_file};
