use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::load::camel_case;
use super::*;

fn write(dir: &Path, name: &str, text: &str, mode: u32) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    p
}

fn minimal(dir: &Path, extra: &str) -> PathBuf {
    let secrets = write(
        dir,
        "secrets.json",
        r#"{"providers":{"openai":{"apiKey":"sk-test-123456"}}}"#,
        0o600,
    );
    let text = format!(
        r#"{{
  "secretsFile": "{}",
  "agents": {{"defaults": {{"model": "gpt-4o"}}}}{extra}
}}"#,
        secrets.display()
    );
    write(dir, "config.json", &text, 0o644)
}

fn no_env() -> Vec<(String, String)> {
    Vec::new()
}

#[test]
fn loads_and_merges_secrets() {
    let d = tempfile::tempdir().unwrap();
    let (cfg, report) = Config::load_with_env(&minimal(d.path(), ""), no_env()).unwrap();
    let key = cfg.providers[&ProviderName("openai".into())].api_key.as_ref().unwrap();
    assert_eq!(key.expose(), "sk-test-123456");
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    assert_eq!(cfg.agents.defaults.max_tool_iterations, 20);
}

#[test]
fn env_overrides_reach_every_key() {
    let d = tempfile::tempdir().unwrap();
    let env = vec![
        (
            "OXIBOT_AGENTS__DEFAULTS__MAX_TOOL_ITERATIONS".to_string(),
            "7".to_string(),
        ),
        (
            "OXIBOT_AGENTS__DEFAULTS__MODEL".to_string(),
            "deepseek-chat".to_string(),
        ),
        (
            "OXIBOT_PROVIDERS__DEEPSEEK__API_KEY".to_string(),
            "sk-deep-999999".to_string(),
        ),
        ("OXIBOT_TOOLS__EXEC__TIMEOUT".to_string(), "9".to_string()),
        ("OXIBOT_SUPERVISE".to_string(), "true".to_string()),
        ("OXIBOT_CTL_SOCKET".to_string(), "/x".to_string()),
    ];
    let (cfg, report) = Config::load_with_env(&minimal(d.path(), ""), env).unwrap();
    assert_eq!(cfg.agents.defaults.max_tool_iterations, 7);
    assert_eq!(cfg.agents.defaults.model, "deepseek-chat");
    assert_eq!(cfg.tools.exec.timeout, 9);
    assert!(cfg.supervise);
    let key = cfg.providers[&ProviderName("deepseek".into())]
        .api_key
        .as_ref()
        .unwrap();
    assert_eq!(key.expose(), "sk-deep-999999");
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
}

#[test]
fn syntax_error_names_file_and_line() {
    let d = tempfile::tempdir().unwrap();
    let p = write(
        d.path(),
        "config.json",
        "{\n  \"agents\": {\n    \"defaults\": { \"model\": }\n  }\n}",
        0o644,
    );
    let err = Config::load_with_env(&p, no_env()).unwrap_err().to_string();
    assert!(err.contains("config.json"), "{err}");
    assert!(err.contains("line 3"), "{err}");
}

#[test]
fn unknown_provider_names_key_and_line() {
    let d = tempfile::tempdir().unwrap();
    let p = minimal(d.path(), ",\n  \"providers\": {\"nosuch\": {}}");
    let err = Config::load_with_env(&p, no_env()).unwrap_err().to_string();
    assert!(err.contains("unknown provider \"nosuch\""), "{err}");
    assert!(err.contains("line 4"), "{err}");
    assert!(err.contains("providers"), "{err}");
}

#[test]
fn missing_model_names_the_key() {
    let d = tempfile::tempdir().unwrap();
    let p = write(d.path(), "config.json", "{\n \"agents\": {\"defaults\": {}}\n}", 0o644);
    let err = Config::load_with_env(&p, no_env()).unwrap_err().to_string();
    assert!(err.contains("agents.defaults"), "{err}");
    assert!(err.contains("missing field `model`"), "{err}");
    assert!(err.contains("line 2"), "{err}");
}

#[test]
fn wrong_type_names_key_and_line() {
    let d = tempfile::tempdir().unwrap();
    let p = minimal(d.path(), ",\n  \"tools\": {\"exec\": {\"timeout\": \"soon\"}}");
    let err = Config::load_with_env(&p, no_env()).unwrap_err().to_string();
    assert!(err.contains("tools.exec.timeout"), "{err}");
    assert!(err.contains("line 4"), "{err}");
}

#[test]
fn readable_secrets_file_stops_the_start() {
    let d = tempfile::tempdir().unwrap();
    let p = minimal(d.path(), "");
    std::fs::set_permissions(d.path().join("secrets.json"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = Config::load_with_env(&p, no_env()).unwrap_err().to_string();
    assert!(err.contains("chmod 600"), "{err}");
    assert!(err.contains("chown"), "{err}");
    assert!(!err.contains("sk-test"), "the error must not show the secret: {err}");
}

#[test]
fn a_secret_quoted_by_a_type_error_is_redacted() {
    let d = tempfile::tempdir().unwrap();
    let p = minimal(d.path(), "");
    // A key where an object belongs: serde quotes the value it choked on.
    write(
        d.path(),
        "secrets.json",
        r#"{"providers":{"openrouter":"sk-or-v1-SECRETSECRET0123456789"}}"#,
        0o600,
    );
    let err = Config::load_with_env(&p, no_env()).unwrap_err().to_string();
    assert!(err.contains("providers.openrouter"), "{err}");
    assert!(!err.contains("SECRETSECRET"), "{err}");
}

#[test]
fn a_numeric_looking_key_from_the_environment_stays_text() {
    let d = tempfile::tempdir().unwrap();
    let p = minimal(d.path(), "");
    let env = vec![(
        "OXIBOT_PROVIDERS__OPENAI__API_KEY".to_string(),
        "31415926535897932384".to_string(),
    )];
    let (cfg, _) = Config::load_with_env(&p, env).unwrap();
    let key = cfg.providers[&ProviderName("openai".into())].api_key.as_ref().unwrap();
    assert_eq!(key.expose(), "31415926535897932384");
}

#[test]
fn numeric_credentials_and_extra_headers_are_secrets() {
    let d = tempfile::tempdir().unwrap();
    let p = minimal(
        d.path(),
        r#", "providers": {"openai": {"extraHeaders": {"x-extra-key": "hdr-secret-0123"}}},
            "channels": {"email": {"imapPassword": 31415926535}}"#,
    );
    let (cfg, _) = Config::load_with_env(&p, no_env()).unwrap();
    let all: Vec<String> = cfg.all_secrets().iter().map(|s| s.expose().to_string()).collect();
    assert!(all.contains(&"31415926535".to_string()), "{all:?}");
    assert!(all.contains(&"hdr-secret-0123".to_string()), "{all:?}");
}

#[test]
fn a_secrets_file_that_is_a_link_is_not_followed() {
    let d = tempfile::tempdir().unwrap();
    let p = minimal(d.path(), "");
    // The real file elsewhere, the configured name a link to it.
    std::fs::rename(d.path().join("secrets.json"), d.path().join("real.json")).unwrap();
    std::os::unix::fs::symlink(d.path().join("real.json"), d.path().join("secrets.json")).unwrap();
    let err = Config::load_with_env(&p, no_env()).unwrap_err().to_string();
    assert!(err.contains("symbolic link"), "{err}");
}

#[test]
fn a_secrets_file_owned_by_someone_else_is_refused() {
    if !nix::unistd::geteuid().is_root() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let p = minimal(d.path(), "");
    // Root may give it away; the broker (root here) must then refuse it.
    nix::unistd::chown(
        &d.path().join("secrets.json"),
        Some(nix::unistd::Uid::from_raw(65534)),
        None,
    )
    .unwrap();
    let err = Config::load_with_env(&p, no_env()).unwrap_err().to_string();
    assert!(err.contains("owned by uid 65534"), "{err}");
    // Group-readable is fine only for root:<our group> 0640.
    nix::unistd::chown(
        &d.path().join("secrets.json"),
        Some(nix::unistd::Uid::from_raw(0)),
        Some(nix::unistd::getegid()),
    )
    .unwrap();
    std::fs::set_permissions(d.path().join("secrets.json"), std::fs::Permissions::from_mode(0o640)).unwrap();
    assert!(Config::load_with_env(&p, no_env()).is_ok());
    nix::unistd::chown(
        &d.path().join("secrets.json"),
        None,
        Some(nix::unistd::Gid::from_raw(65534)),
    )
    .unwrap();
    let err = Config::load_with_env(&p, no_env()).unwrap_err().to_string();
    assert!(err.contains("chmod 600"), "{err}");
}

#[test]
fn provider_without_base_url_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let p = minimal(d.path(), ",\n \"providers\": {\"vllm\": {}}");
    let env = vec![("OXIBOT_AGENTS__DEFAULTS__MODEL".to_string(), "vllm/llama".to_string())];
    let err = Config::load_with_env(&p, env).unwrap_err().to_string();
    assert!(err.contains("providers.vllm.apiBase"), "{err}");
}

#[test]
fn inline_secret_is_accepted_with_a_warning() {
    let d = tempfile::tempdir().unwrap();
    let p = minimal(
        d.path(),
        ",\n \"providers\": {\"groq\": {\"apiKey\": \"gsk-inline-1234\"}}",
    );
    let (cfg, report) = Config::load_with_env(&p, no_env()).unwrap();
    assert!(
        report.warnings.iter().any(|w| w.contains("providers.groq.apiKey")),
        "{:?}",
        report.warnings
    );
    assert!(
        !report.warnings.iter().any(|w| w.contains("gsk-inline")),
        "a warning leaked the secret"
    );
    assert_eq!(cfg.all_secrets().len(), 2);
}

#[test]
fn explicit_provider_beats_the_model_name() {
    let d = tempfile::tempdir().unwrap();
    let p = minimal(d.path(), "");
    let env = vec![(
        "OXIBOT_AGENTS__DEFAULTS__PROVIDER".to_string(),
        "openrouter".to_string(),
    )];
    let (cfg, _) = Config::load_with_env(&p, env).unwrap();
    assert_eq!(cfg.resolve_provider("gpt-4o").unwrap().name, "openrouter");
}

#[test]
fn camel_case_of_env_segments() {
    assert_eq!(camel_case("MAX_TOOL_ITERATIONS"), "maxToolIterations");
    assert_eq!(camel_case("MODEL"), "model");
}

#[test]
fn a_file_variable_gives_the_value_of_its_file() {
    let d = tempfile::tempdir().unwrap();
    let p = minimal(d.path(), "");
    let key = write(d.path(), "openai-key", "sk-from-a-file-123\n", 0o400);
    let env = vec![(
        "OXIBOT_PROVIDERS__OPENAI__API_KEY_FILE".to_string(),
        key.display().to_string(),
    )];
    let (cfg, report) = Config::load_with_env(&p, env.clone()).unwrap();
    let got = cfg.providers[&ProviderName("openai".into())].api_key.as_ref().unwrap();
    assert_eq!(got.expose(), "sk-from-a-file-123");
    assert!(
        !report.warnings.iter().any(|w| w.contains("everybody")),
        "{:?}",
        report.warnings
    );
    // A key file everybody may read: used, and said.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o444)).unwrap();
    let (_, report) = Config::load_with_env(&p, env).unwrap();
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.contains("everybody on this machine may read")),
        "{:?}",
        report.warnings
    );
    let missing = vec![(
        "OXIBOT_PROVIDERS__OPENAI__API_KEY_FILE".to_string(),
        "/nonexistent/key".to_string(),
    )];
    let err = Config::load_with_env(&p, missing).unwrap_err().to_string();
    assert!(
        err.contains("OXIBOT_PROVIDERS__OPENAI__API_KEY_FILE") && err.contains("/nonexistent/key"),
        "{err}"
    );
}

#[test]
fn message_targets_are_per_chat_and_the_global_list_is_refused_with_the_new_shape() {
    let d = tempfile::tempdir().unwrap();
    let old = minimal(
        d.path(),
        r#", "tools": {"message": {"allowedTargets": ["telegram:555"]}}"#,
    );
    let e = Config::load_with_env(&old, no_env()).unwrap_err().to_string();
    assert!(
        e.contains("is now per chat") && e.contains(r#"{"telegram:111": ["telegram:555"]}"#),
        "{e}"
    );
    let new = minimal(
        d.path(),
        r#", "tools": {"message": {"allowedTargets": {"telegram:111": ["telegram:555"], "console": ["telegram:1"]}}}"#,
    );
    let (cfg, _) = Config::load_with_env(&new, no_env()).unwrap();
    let t = &cfg.tools.message.allowed_targets;
    assert!(t.allows("telegram:111", "telegram:555"));
    assert!(!t.allows("telegram:222", "telegram:555"));
    assert!(t.allows("console", "telegram:1"));
    let bad = minimal(
        d.path(),
        r#", "tools": {"message": {"allowedTargets": {"telegram:111": ["nochat"]}}}"#,
    );
    assert!(Config::load_with_env(&bad, no_env())
        .unwrap_err()
        .to_string()
        .contains("\"nochat\""));
}

#[test]
fn a_bad_access_setting_stops_the_load_with_its_key_and_line() {
    let d = tempfile::tempdir().unwrap();
    let p = minimal(
        d.path(),
        ",\n  \"channels\": {\"telegram\": {\"enabled\": true,\n    \"dmPolicy\": \"everyone\"}}",
    );
    let err = Config::load_with_env(&p, no_env()).unwrap_err().to_string();
    assert!(err.contains("channels.telegram.dmPolicy"), "{err}");
    assert!(err.contains("unknown variant `everyone`"), "{err}");
    assert!(err.contains("line 5"), "{err}");
    // Through the environment: the key, and where the value came from.
    let p = minimal(d.path(), ",\n  \"channels\": {\"slack\": {\"enabled\": true}}");
    let env = vec![("OXIBOT_CHANNELS__SLACK__GROUP_POLICY".to_string(), "loud".to_string())];
    let err = Config::load_with_env(&p, env).unwrap_err().to_string();
    assert!(err.contains("channels.slack.groupPolicy"), "{err}");
    assert!(err.contains("environment"), "{err}");
    // The legitimate settings load.
    let p = minimal(
        d.path(),
        ",\n  \"channels\": {\"telegram\": {\"enabled\": true, \"dmPolicy\": \"pairing\", \"allowedUsers\": [42]}}",
    );
    assert!(Config::load_with_env(&p, no_env()).is_ok());
}

#[test]
fn a_platform_setting_its_daemon_would_refuse_stops_the_load_with_its_key_and_line() {
    let d = tempfile::tempdir().unwrap();
    let p = minimal(
        d.path(),
        ",\n  \"channels\": {\"email\": {\"enabled\": true,\n    \"imapPort\": \"nine-nine-three\"}}",
    );
    let err = Config::load_with_env(&p, no_env()).unwrap_err().to_string();
    assert!(err.contains("channels.email.imapPort"), "{err}");
    assert!(err.contains("line 5"), "{err}");
    let p = minimal(
        d.path(),
        ",\n  \"channels\": {\"telegram\": {\"enabled\": true, \"apiBase\": 7}}",
    );
    let err = Config::load_with_env(&p, no_env()).unwrap_err().to_string();
    assert!(err.contains("channels.telegram.apiBase"), "{err}");
    let p = minimal(d.path(), ",\n  \"channels\": {\"whatsapp\": {\"enabled\": true}}");
    let env = vec![("OXIBOT_CHANNELS__WHATSAPP__BRIDGE_URL".to_string(), "[1]".to_string())];
    let err = Config::load_with_env(&p, env).unwrap_err().to_string();
    assert!(
        err.contains("channels.whatsapp.bridgeUrl") && err.contains("environment"),
        "{err}"
    );
    // The legitimate settings load, unknown platforms untouched.
    let p = minimal(
        d.path(),
        ",\n  \"channels\": {\"email\": {\"enabled\": true, \"imapPort\": 993, \"tlsCaFile\": \"/x.pem\"}, \"matrix\": {\"x\": [1]}}",
    );
    assert!(Config::load_with_env(&p, no_env()).is_ok());
}

/// The attack review of typed credentials: values OxiBot does not read
/// (an old `botToken`, a nested password, nanobot's `gateway.token`) are
/// still secrets wherever they sit: in the secrets file, in config.json,
/// in the environment.
#[test]
fn every_secrets_file_value_and_every_credential_named_key_is_redacted() {
    let d = tempfile::tempdir().unwrap();
    let p = minimal(
        d.path(),
        r#", "gateway": {"token": "GW-INLINE-4444"}, "channels": {"slack": {"token": "xoxp-INLINE-777"}}"#,
    );
    write(
        d.path(),
        "secrets.json",
        r#"{"providers":{"openai":{"apiKey":"sk-test-123456"}},
            "channels":{"telegram":{"botToken":"123456:TG-BOTTOKEN-333"},"email":{"password":"EMAIL-PW-555"},
                        "discord":{"proxy":{"password":"PROXY-PW-000"}}}}"#,
        0o600,
    );
    let env = vec![(
        "OXIBOT_PROVIDERS__OPENAI__EXTRA_HEADERS".to_string(),
        r#"{"Authorization":"Bearer ENV-HDR-999"}"#.to_string(),
    )];
    let (cfg, report) = Config::load_with_env(&p, env).unwrap();
    // The environment's header object is still read as an object.
    let headers = &cfg.providers[&ProviderName("openai".into())].extra_headers;
    assert_eq!(
        headers.get("Authorization").map(String::as_str),
        Some("Bearer ENV-HDR-999")
    );
    let all: Vec<String> = cfg.all_secrets().iter().map(|s| s.expose().to_string()).collect();
    for secret in [
        "123456:TG-BOTTOKEN-333",
        "EMAIL-PW-555",
        "PROXY-PW-000",
        "GW-INLINE-4444",
        "xoxp-INLINE-777",
        "Bearer ENV-HDR-999",
    ] {
        assert!(all.iter().any(|s| s == secret), "{secret} is not redacted: {all:?}");
    }
    // And config.json's are warned about by their keys.
    for key in ["gateway.token", "channels.slack.token"] {
        assert!(
            report.warnings.iter().any(|w| w.contains(key)),
            "{key}: {:?}",
            report.warnings
        );
    }
}

#[test]
fn a_channel_name_in_another_case_is_not_a_channel() {
    let d = tempfile::tempdir().unwrap();
    let p = minimal(d.path(), r#", "channels": {"Slack": {"enabled": true}}"#);
    let (_, report) = Config::load_with_env(&p, no_env()).unwrap();
    assert!(
        report.warnings.iter().any(|w| w.contains("no channel `Slack`")),
        "{:?}",
        report.warnings
    );
}

#[test]
fn an_exec_credential_takes_its_secret_from_the_secrets_file_only() {
    let d = tempfile::tempdir().unwrap();
    let with = |config: &str, secrets: &str| {
        let secrets = write(d.path(), "secrets.json", secrets, 0o600);
        let text = format!(
            r#"{{"secretsFile": "{}", "agents": {{"defaults": {{"model": "gpt-4o"}}}}, "tools": {{"exec": {config}}}}}"#,
            secrets.display()
        );
        Config::load_with_env(&write(d.path(), "config.json", &text, 0o644), no_env())
    };
    let credential = r#"{"allowedHosts": ["api.github.com"], "credentials": {"github": {"hosts": ["api.github.com"], "env": ["GH_TOKEN"]}}}"#;
    let secrets = r#"{"providers": {"openai": {"apiKey": "sk-test-123456"}}, "tools": {"exec": {"credentials": {"github": {"secret": "ghp_from_the_secrets_file"}}}}}"#;
    let (cfg, _) = with(credential, secrets).unwrap();
    let github = &cfg.tools.exec.credentials["github"];
    assert_eq!(github.secret.as_ref().unwrap().expose(), "ghp_from_the_secrets_file");
    assert_eq!(
        (github.header.as_str(), github.prefix.as_str()),
        ("Authorization", "Bearer ")
    );
    assert!(!github.background && github.chats.is_none() && !github.plain_http);
    // Scrubbed like every secret, and never shown.
    assert!(cfg
        .all_secrets()
        .iter()
        .any(|s| s.expose() == "ghp_from_the_secrets_file"));
    assert!(!format!("{github:?}").contains("ghp_from"));
    // Without its secret: what to set, and where.
    let err = with(credential, r#"{"providers": {"openai": {"apiKey": "sk-test-123456"}}}"#)
        .unwrap_err()
        .to_string();
    assert!(err.contains("tools.exec.credentials.github.secret"), "{err}");
    // In config.json: warned about, as every inline credential is.
    let inline = r#"{"allowedHosts": ["api.github.com"], "credentials": {"github": {"hosts": ["api.github.com"], "secret": "ghp_inline_value"}}}"#;
    let (_, report) = with(inline, secrets).unwrap();
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.contains("tools.exec.credentials.github.secret") && w.contains("secrets file")),
        "{:?}",
        report.warnings
    );
    assert!(!report.warnings.iter().any(|w| w.contains("ghp_inline_value")));
    // A host commands could never reach.
    let unreachable = r#"{"allowedHosts": ["pypi.org"], "credentials": {"github": {"hosts": ["api.github.com"]}}}"#;
    let err = with(unreachable, secrets).unwrap_err().to_string();
    assert!(err.contains("not in tools.exec.allowedHosts"), "{err}");
    // A line break would forge a header.
    let forged = r#"{"providers": {"openai": {"apiKey": "sk-test-123456"}}, "tools": {"exec": {"credentials": {"github": {"secret": "x\r\nHost: evil.test"}}}}}"#;
    let err = with(credential, forged).unwrap_err().to_string();
    assert!(err.contains("without line breaks"), "{err}");
}
