//! The OxiBot broker: holds every secret, runs the agent loop, owns the
//! durable state and supervises the unprivileged daemons.

pub mod access;
pub mod agent;
pub mod broker;
pub mod channels;
pub mod commands;
pub mod cron;
pub use oxibot_config::{abilities, config, cron_import, import, secret, secrets_file};
pub mod ctl;
pub mod health;
pub mod heartbeat;
pub mod memory;
pub mod message;
pub mod metrics;
pub mod own_tools;
pub mod prompt;
pub mod providers;
pub mod reload;
pub mod separation;
pub mod service;
pub mod skills;
pub mod sockets;
pub mod store;
pub mod subagents;
pub mod supervise;
pub mod toolclient;
pub mod tools;
pub mod uploads;
pub mod web;
