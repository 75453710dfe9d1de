//! `oxibotctl config import`: splits an OxiBot or nanobot single-file
//! `config.json` into a non-secret config and a 0600 secrets file.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use serde_json::{Map, Value};

use crate::config::SECRET_KEYS;

#[derive(Debug)]
pub struct ImportSummary {
    /// Key paths moved to the secrets file (never their values).
    pub moved: Vec<String>,
}

pub fn import(src: &Path, config_out: &Path, secrets_out: &Path, force: bool) -> Result<ImportSummary, String> {
    let text = std::fs::read_to_string(src).map_err(|e| format!("cannot read {}: {e}", src.display()))?;
    let mut config: Value =
        serde_json::from_str(&text).map_err(|e| format!("{} is not valid JSON: {e}", src.display()))?;
    if !config.is_object() {
        return Err(format!("{}: the top level must be a JSON object", src.display()));
    }
    let mut secrets = Value::Object(Map::new());
    let mut moved = Vec::new();
    split(&mut config, &mut secrets, "", &mut moved);
    if let Value::Object(map) = &mut config {
        map.insert("secretsFile".into(), Value::String(secrets_out.display().to_string()));
    }
    for out in [config_out, secrets_out] {
        if out.exists() && !force {
            return Err(format!("{} exists; pass --force to overwrite it", out.display()));
        }
    }
    write(config_out, &config, 0o644)?;
    write(secrets_out, &secrets, 0o600)?;
    Ok(ImportSummary { moved })
}

/// Moves every non-empty credential from `config` to the same path in
/// `secrets`; empty credential strings are dropped from the config.
fn split(config: &mut Value, secrets: &mut Value, at: &str, moved: &mut Vec<String>) {
    let Value::Object(map) = config else { return };
    let keys: Vec<String> = map.keys().cloned().collect();
    for k in keys {
        let path = if at.is_empty() { k.clone() } else { format!("{at}.{k}") };
        let is_secret = SECRET_KEYS.contains(&k.as_str()) && map.get(&k).is_some_and(Value::is_string);
        if is_secret {
            if let Some(Value::String(v)) = map.remove(&k) {
                if !v.is_empty() {
                    if let Value::Object(s) = secrets {
                        s.insert(k, Value::String(v));
                    }
                    moved.push(path);
                }
            }
            continue;
        }
        if let Some(child) = map.get_mut(&k) {
            if child.is_object() {
                let mut sub = Value::Object(Map::new());
                split(child, &mut sub, &path, moved);
                if sub.as_object().is_some_and(|m| !m.is_empty()) {
                    if let Value::Object(s) = secrets {
                        s.insert(k, sub);
                    }
                }
            }
        }
    }
}

fn write(path: &Path, value: &Value, mode: u32) -> Result<(), String> {
    let text = serde_json::to_string_pretty(value).map_err(|e| e.to_string())?;
    // Write to a temporary file created with the final mode, then rename:
    // the secrets never exist in a file others could read, even briefly.
    let tmp = path.with_extension("json.tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|e| format!("cannot create {}: {e}", tmp.display()))?;
    f.write_all(text.as_bytes())
        .and_then(|_| f.write_all(b"\n"))
        .and_then(|_| f.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("cannot move {} into place: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn splits_a_nanobot_config() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("old.json");
        std::fs::write(
            &src,
            r#"{"agents":{"defaults":{"model":"anthropic/claude-sonnet-4"}},
                "providers":{"anthropic":{"apiKey":"sk-ant-XYZ12345"},"openai":{"apiKey":""}},
                "channels":{"telegram":{"enabled":true,"token":"123:ABCDEF","allowedUsers":["42"]}},
                "tools":{"web":{"search":{"apiKey":"BSA-987654"}}}}"#,
        )
        .unwrap();
        let (c, s) = (d.path().join("config.json"), d.path().join("secrets.json"));
        let summary = import(&src, &c, &s, false).unwrap();
        assert_eq!(summary.moved.len(), 3);
        let config = std::fs::read_to_string(&c).unwrap();
        let secrets = std::fs::read_to_string(&s).unwrap();
        for secret in ["sk-ant-XYZ12345", "123:ABCDEF", "BSA-987654"] {
            assert!(!config.contains(secret), "{secret} left in config");
            assert!(secrets.contains(secret), "{secret} missing from secrets");
        }
        assert!(config.contains("allowedUsers"));
        assert_eq!(std::fs::metadata(&s).unwrap().permissions().mode() & 0o777, 0o600);
        // The result loads, with the key in place.
        let (cfg, report) = crate::config::Config::load_with_env(&c, Vec::new()).unwrap();
        assert!(report.warnings.is_empty(), "{:?}", report.warnings);
        assert_eq!(cfg.all_secrets().len(), 3);
        // A second import refuses to overwrite without --force.
        assert!(import(&src, &c, &s, false).unwrap_err().contains("--force"));
    }
}
