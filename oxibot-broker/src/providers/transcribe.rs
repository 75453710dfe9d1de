//! Voice messages to text: `POST {base}/audio/transcriptions` (the
//! OpenAI/Whisper multipart form that Groq and others also serve), with the
//! configured provider's key and the same retry rules as chat.

use std::time::Duration;

use serde_json::Value;

use super::registry::{self, ApiStyle};
use super::{http_error, network_error, Endpoint, ProviderError, SetupError, MAX_RETRY_WAIT};
use crate::config::Config;

pub struct Transcriber {
    http: reqwest::Client,
    ep: Endpoint,
    max_retries: u32,
    base_delay: Duration,
}

impl Transcriber {
    /// None when no transcription model is configured.
    pub fn new(config: &Config) -> Result<Option<Transcriber>, SetupError> {
        let t = &config.transcription;
        let Some(model) = t.model.as_deref().filter(|m| !m.is_empty()) else {
            return Ok(None);
        };
        let spec = match &t.provider {
            Some(p) => registry::find(&p.0),
            None => registry::guess_from_model(model).filter(|p| model.starts_with(&format!("{}/", p.name))),
        }
        .ok_or_else(|| SetupError::NoTranscriptionProvider(model.to_string()))?;
        if spec.style != ApiStyle::OpenAi {
            return Err(SetupError::NoTranscriptionApi(spec.name));
        }
        let d = &config.agents.defaults;
        Ok(Some(Transcriber {
            http: super::http_client(config)?,
            ep: Endpoint::new(config, spec, model)?,
            max_retries: d.max_retries,
            base_delay: Duration::from_millis(d.retry_base_delay_ms),
        }))
    }

    /// The text spoken in `audio`.
    pub async fn transcribe(&self, file_name: &str, mime: &str, audio: &[u8]) -> Result<String, ProviderError> {
        let mut attempt = 0;
        loop {
            match self.once(file_name, mime, audio).await {
                Ok(text) => return Ok(text),
                Err(e) if e.retryable() && attempt < self.max_retries => {
                    let backoff = self.base_delay.saturating_mul(1u32 << attempt.min(16));
                    let wait = e.retry_after().unwrap_or(backoff).min(MAX_RETRY_WAIT);
                    tracing::info!(provider = self.ep.provider, attempt, error = %e, "retrying transcription");
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn once(&self, file_name: &str, mime: &str, audio: &[u8]) -> Result<String, ProviderError> {
        let ep = &self.ep;
        let decode = |message: String| ProviderError::Decode {
            provider: ep.provider,
            message,
        };
        let file = reqwest::multipart::Part::bytes(audio.to_vec())
            .file_name(file_name.to_string())
            .mime_str(mime)
            .or_else(|_| reqwest::multipart::Part::bytes(audio.to_vec()).mime_str("application/octet-stream"))
            .map_err(|e| decode(e.to_string()))?;
        let form = reqwest::multipart::Form::new()
            .part("file", file)
            .text("model", ep.model.clone())
            .text("response_format", "json");
        let mut rb = self
            .http
            .post(format!("{}/audio/transcriptions", ep.base))
            .multipart(form);
        if let Some(key) = &ep.key {
            rb = rb.bearer_auth(key.expose());
        }
        let resp = super::apply_headers(rb, ep)
            .send()
            .await
            .map_err(|e| network_error(ep.provider, e))?;
        if !resp.status().is_success() {
            return Err(http_error(ep, resp).await);
        }
        let v: Value = resp.json().await.map_err(|e| decode(e.to_string()))?;
        v.get("text")
            .and_then(Value::as_str)
            .map(|t| t.trim().to_string())
            .ok_or_else(|| decode("no \"text\" in the transcription".into()))
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::path::{Path, PathBuf};

    use super::*;

    fn minimal(dir: &Path, extra: &str) -> PathBuf {
        let secrets = dir.join("secrets.json");
        std::fs::write(&secrets, r#"{"providers":{"openai":{"apiKey":"sk-test-123456"}}}"#).unwrap();
        std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o600)).unwrap();
        let config = dir.join("config.json");
        let text = format!(
            r#"{{"secretsFile": "{}", "agents": {{"defaults": {{"model": "gpt-4o"}}}}{extra}}}"#,
            secrets.display()
        );
        std::fs::write(&config, text).unwrap();
        config
    }

    #[test]
    fn transcription_needs_an_openai_style_provider() {
        let d = tempfile::tempdir().unwrap();
        let load = |extra: &str| Config::load_with_env(&minimal(d.path(), extra), Vec::new()).unwrap().0;
        let none = load("");
        assert!(Transcriber::new(&none).unwrap().is_none());
        let groq = load(r#", "transcription": {"provider": "groq", "model": "whisper-large-v3-turbo"}"#);
        assert!(Transcriber::new(&groq).unwrap().is_some());
        let prefixed = load(r#", "transcription": {"model": "groq/whisper-large-v3"}"#);
        assert!(Transcriber::new(&prefixed).unwrap().is_some());
        let anthropic = load(r#", "transcription": {"provider": "anthropic", "model": "x"}"#);
        let err = Transcriber::new(&anthropic)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("no OpenAI-compatible /audio/transcriptions"), "{err}");
        let unnamed = load(r#", "transcription": {"model": "whisper-1"}"#);
        let err = Transcriber::new(&unnamed)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("transcription.provider is not set"), "{err}");
    }
}
