//! The health daemon's connection. It parses the HTTP of whoever connects
//! to the monitoring port, so it gets the least: one question with no
//! arguments, and the figures it may show.

use serde::{Deserialize, Serialize};

use super::*;

/// Health daemon → broker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum HealthRequest {
    /// What `/readyz` and `/metrics` show, as of now.
    Snapshot,
}

/// Broker → health daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum HealthReply {
    Snapshot {
        /// Why the broker is not ready (empty: ready), one line each.
        #[serde(with = "limit::not_ready")]
        not_ready: Vec<String>,
        /// The Prometheus text of `/metrics`.
        #[serde(with = "limit::text")]
        metrics: String,
    },
}

/// How many reasons for not being ready one answer carries.
pub const MAX_NOT_READY: usize = 256;

impl Message for HealthRequest {}

impl Message for HealthReply {}
