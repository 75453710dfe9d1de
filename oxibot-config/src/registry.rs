//! The providers OxiBot knows, their API style and default base URL.
//!
//! A provider's key is only ever sent to that provider's own base URL (or
//! the `apiBase` the admin configured for it). There is deliberately no
//! "fall back to api.openai.com": a provider without a default base URL and
//! without `apiBase` is a configuration error.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiStyle {
    OpenAi,
    Anthropic,
}

#[derive(Debug)]
pub struct ProviderSpec {
    pub name: &'static str,
    pub style: ApiStyle,
    /// None: the admin must set `providers.<name>.apiBase`.
    pub default_base: Option<&'static str>,
    /// Substrings of a model name that select this provider when no explicit
    /// `provider` is configured, e.g. "claude" or "deepseek".
    pub model_keywords: &'static [&'static str],
    /// Whether a key is needed (local servers need none).
    pub needs_key: bool,
}

pub const PROVIDERS: &[ProviderSpec] = &[
    spec(
        "openrouter",
        ApiStyle::OpenAi,
        Some("https://openrouter.ai/api/v1"),
        &["openrouter"],
        true,
    ),
    spec(
        "aihubmix",
        ApiStyle::OpenAi,
        Some("https://aihubmix.com/v1"),
        &["aihubmix"],
        true,
    ),
    spec(
        "anthropic",
        ApiStyle::Anthropic,
        Some("https://api.anthropic.com"),
        &["anthropic", "claude"],
        true,
    ),
    spec(
        "openai",
        ApiStyle::OpenAi,
        Some("https://api.openai.com/v1"),
        &["openai", "gpt", "o1", "o3", "o4"],
        true,
    ),
    spec(
        "deepseek",
        ApiStyle::OpenAi,
        Some("https://api.deepseek.com/v1"),
        &["deepseek"],
        true,
    ),
    spec(
        "groq",
        ApiStyle::OpenAi,
        Some("https://api.groq.com/openai/v1"),
        &["groq"],
        true,
    ),
    spec(
        "gemini",
        ApiStyle::OpenAi,
        Some("https://generativelanguage.googleapis.com/v1beta/openai"),
        &["gemini"],
        true,
    ),
    spec(
        "moonshot",
        ApiStyle::OpenAi,
        Some("https://api.moonshot.cn/v1"),
        &["moonshot", "kimi"],
        true,
    ),
    spec(
        "zhipu",
        ApiStyle::OpenAi,
        Some("https://open.bigmodel.cn/api/paas/v4"),
        &["zhipu", "glm"],
        true,
    ),
    spec(
        "dashscope",
        ApiStyle::OpenAi,
        Some("https://dashscope.aliyuncs.com/compatible-mode/v1"),
        &["dashscope", "qwen"],
        true,
    ),
    spec(
        "minimax",
        ApiStyle::OpenAi,
        Some("https://api.minimax.io/v1"),
        &["minimax"],
        true,
    ),
    spec(
        "ollama",
        ApiStyle::OpenAi,
        Some("http://127.0.0.1:11434/v1"),
        &["ollama"],
        false,
    ),
    spec("vllm", ApiStyle::OpenAi, None, &["vllm", "hosted_vllm"], false),
    spec("custom", ApiStyle::OpenAi, None, &[], false),
];

const fn spec(
    name: &'static str,
    style: ApiStyle,
    default_base: Option<&'static str>,
    model_keywords: &'static [&'static str],
    needs_key: bool,
) -> ProviderSpec {
    ProviderSpec {
        name,
        style,
        default_base,
        model_keywords,
        needs_key,
    }
}

pub fn find(name: &str) -> Option<&'static ProviderSpec> {
    PROVIDERS.iter().find(|p| p.name == name)
}

pub fn known_names() -> String {
    PROVIDERS.iter().map(|p| p.name).collect::<Vec<_>>().join(", ")
}

/// Guesses the provider from a model name such as "anthropic/claude-x" or
/// "deepseek-chat": first an explicit "<provider>/" prefix, then keywords.
/// Gateways (openrouter, aihubmix) come first in the table so that a
/// configured gateway wins for "openrouter/anthropic/claude".
pub fn guess_from_model(model: &str) -> Option<&'static ProviderSpec> {
    let lower = model.to_ascii_lowercase();
    if let Some((prefix, _)) = lower.split_once('/') {
        if let Some(p) = find(prefix) {
            return Some(p);
        }
    }
    PROVIDERS
        .iter()
        .find(|p| p.model_keywords.iter().any(|k| lower.contains(k)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guesses_by_prefix_then_keyword() {
        assert_eq!(guess_from_model("anthropic/claude-sonnet-4").unwrap().name, "anthropic");
        assert_eq!(guess_from_model("deepseek-chat").unwrap().name, "deepseek");
        assert_eq!(
            guess_from_model("openrouter/anthropic/claude").unwrap().name,
            "openrouter"
        );
        assert!(guess_from_model("mystery-model").is_none());
    }

    #[test]
    fn only_local_providers_lack_a_default_base() {
        for p in PROVIDERS {
            if p.default_base.is_none() {
                assert!(!p.needs_key, "{} would have nowhere safe to send its key", p.name);
            }
        }
    }
}
