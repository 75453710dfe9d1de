//! The OxiBot broker: holds every secret, runs the agent loop, owns the
//! durable state and supervises the unprivileged daemons.

pub mod access;
pub mod agent;
pub mod broker;
pub mod channels;
pub mod commands;
pub mod config;
pub mod ctl;
pub mod doctor;
pub mod import;
pub mod prompt;
pub mod providers;
pub mod reload;
pub mod secret;
pub mod secrets_file;
pub mod separation;
pub mod service;
pub mod sockets;
pub mod store;
pub mod supervise;
pub mod toolclient;
pub mod tools;
pub mod uploads;
