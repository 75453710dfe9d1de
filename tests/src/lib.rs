//! Support for OxiBot's end-to-end tests: a fake LLM server that speaks the
//! OpenAI and Anthropic wire formats, and a harness that runs the real
//! broker, toold and oxibotctl binaries against it; for the channel tests,
//! fake chat platforms and [`run::Run`], the one set-up they share.

pub mod assistant;
pub mod bench;
pub mod consts;
pub mod fake_discord;
pub mod fake_https;
pub mod fake_llm;
pub mod fake_slack;
pub mod fake_telegram;
pub mod fake_web;
pub mod fake_whatsapp;
pub mod harness;
pub mod mail;
pub mod platform;
pub mod poll;
pub mod run;
pub mod serve;
pub mod upstream;
