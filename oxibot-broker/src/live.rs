//! What a reload replaces: the configuration in force, the model clients
//! and a turn's limits built from it, and the transcriber. A turn takes one
//! snapshot when it starts and finishes with it, whatever a reload does
//! meanwhile.

use std::sync::{Arc, RwLock};

use crate::config::Config;
use crate::providers::{LlmClient, SetupError, Transcriber};

pub struct Live {
    config: RwLock<Arc<Config>>,
    settings: RwLock<Arc<Settings>>,
    transcriber: RwLock<Option<Arc<Transcriber>>>,
}

/// The turn's part of the configuration: the providers (with their keys)
/// and the limits of a turn.
pub struct Settings {
    llm: LlmClient,
    pub max_tokens: u32,
    pub temperature: f64,
    pub max_iterations: u32,
    pub exec_timeout_secs: u32,
    pub history_budget: usize,
}

impl Settings {
    pub fn new(config: &Config) -> Result<Self, SetupError> {
        let d = &config.agents.defaults;
        Ok(Settings {
            llm: LlmClient::new(config)?,
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
}

/// Everything a reload builds, checked before any of it is put in force.
pub struct Loaded {
    pub config: Config,
    pub settings: Settings,
    pub transcriber: Option<Transcriber>,
}

impl Loaded {
    /// Builds every client of `config`; an error names what is wrong.
    pub fn build(config: Config) -> Result<Loaded, SetupError> {
        Ok(Loaded {
            settings: Settings::new(&config)?,
            transcriber: Transcriber::new(&config)?,
            config,
        })
    }
}

impl Live {
    pub fn new(loaded: Loaded) -> Live {
        Live {
            config: RwLock::new(Arc::new(loaded.config)),
            settings: RwLock::new(Arc::new(loaded.settings)),
            transcriber: RwLock::new(loaded.transcriber.map(Arc::new)),
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> Arc<Config> {
        self.config.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The turn settings in force.
    pub fn settings(&self) -> Arc<Settings> {
        self.settings.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The transcriber in force, if voice messages are transcribed.
    pub fn transcriber(&self) -> Option<Arc<Transcriber>> {
        self.transcriber.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Puts a reload in force; turns already running keep what they took.
    pub fn replace(&self, loaded: Loaded) {
        *self.transcriber.write().unwrap_or_else(|p| p.into_inner()) = loaded.transcriber.map(Arc::new);
        *self.settings.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(loaded.settings);
        *self.config.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(loaded.config);
    }
}
