//! `oxibotctl secrets`: the secrets file, edited in place by the admin —
//! names listed (never values), one value set at a time, written
//! atomically with the file's owner and mode kept, so that the broker never
//! reads half a file and nobody else ever can.

use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

/// Where the secrets file is: `secretsFile` in the configuration, or the
/// default. Reads config.json only (no secret is in it).
pub fn locate(config_path: &Path) -> Result<PathBuf, String> {
    let text =
        std::fs::read_to_string(config_path).map_err(|e| format!("cannot read {}: {e}", config_path.display()))?;
    let config: Value =
        serde_json::from_str(&text).map_err(|e| format!("{} is not valid JSON: {e}", config_path.display()))?;
    Ok(match config.get("secretsFile").and_then(Value::as_str) {
        Some(p) => crate::config::expand_home(p),
        None => PathBuf::from("/etc/oxibot/secrets.json"),
    })
}

fn read(path: &Path) -> Result<Value, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text).map_err(|e| format!("{} is not valid JSON: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Value::Object(Map::new())),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Err(format!(
            "cannot read {}: permission denied; run this as root",
            path.display()
        )),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// The dotted names of every value in the file (`providers.openai.apiKey`).
pub fn names(path: &Path) -> Result<Vec<String>, String> {
    fn walk(v: &Value, at: &str, out: &mut Vec<String>) {
        match v {
            Value::Object(map) => {
                for (k, child) in map {
                    let name = if at.is_empty() { k.clone() } else { format!("{at}.{k}") };
                    walk(child, &name, out);
                }
            }
            _ => out.push(at.to_string()),
        }
    }
    let mut out = Vec::new();
    walk(&read(path)?, "", &mut out);
    Ok(out)
}

/// Sets `name` (dotted, e.g. `channels.telegram.token`) to `value`.
pub fn set(path: &Path, name: &str, value: &str) -> Result<(), String> {
    let segments: Vec<&str> = name.split('.').collect();
    if name.is_empty() || segments.iter().any(|s| s.is_empty()) {
        return Err(format!("\"{name}\" is not a name like providers.openai.apiKey"));
    }
    if value.is_empty() {
        return Err("the value is empty: give it on standard input".into());
    }
    if let Some(Value::Object(_)) = segments.iter().try_fold(&read(path)?, |v, s| v.get(s)) {
        return Err(format!(
            "{name} holds several values; name one of them, e.g. {name}.apiKey (see oxibotctl secrets list)"
        ));
    }
    write_value(path, name, Value::String(value.to_string()), SECRETS_MODE)
}

/// The most a secrets file may allow: its owner reads and writes, its
/// group (the broker's, when root owns it) reads, nobody else anything.
const SECRETS_MODE: u32 = 0o640;
/// The most a config file may allow: no one but its owner writes.
const CONFIG_MODE: u32 = 0o644;

/// Sets `name` (dotted) to any JSON value in a JSON file (the secrets file,
/// or config.json for `oxibotctl channels enable`), atomically, keeping
/// the file's owner and mode.
pub fn set_value(path: &Path, name: &str, value: Value) -> Result<(), String> {
    write_value(path, name, value, CONFIG_MODE)
}

fn write_value(path: &Path, name: &str, value: Value, most: u32) -> Result<(), String> {
    let segments: Vec<&str> = name.split('.').collect();
    if name.is_empty() || segments.iter().any(|s| s.is_empty()) {
        return Err(format!(
            "\"{name}\" is not a dotted name like channels.telegram.enabled"
        ));
    }
    let mut doc = read(path)?;
    let mut at = &mut doc;
    for (i, segment) in segments.iter().enumerate() {
        let Value::Object(map) = at else {
            return Err(format!(
                "{} is not an object in {}",
                segments[..i].join("."),
                path.display()
            ));
        };
        at = map
            .entry(segment.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    *at = value;
    let text = serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?;
    write_atomically(path, text.as_bytes(), most)
}

/// Writes a sibling temporary file with the old file's owner and mode (at
/// most `most`; 0600 and the caller's for a new one), syncs it, and
/// renames it over. Refuses a directory that someone other than root or
/// the caller could change: they could swap the file for their own.
fn write_atomically(path: &Path, data: &[u8], most: u32) -> Result<(), String> {
    if let Some(why) = crate::paths::untrusted_directory(path, Some(nix::unistd::getuid().as_raw())) {
        return Err(format!(
            "refusing to write {}: {why}. Keep it in a directory only root can change, such as /etc/oxibot",
            path.display()
        ));
    }
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let old = std::fs::symlink_metadata(path).ok();
    if old.as_ref().is_some_and(|m| !m.file_type().is_file()) {
        return Err(format!(
            "{} is not a regular file; refusing to replace it",
            path.display()
        ));
    }
    let mode = old.as_ref().map(|m| m.mode() & most).unwrap_or(0o600);
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("secrets.json"),
        std::process::id()
    ));
    let err = |what: &str, e: std::io::Error| format!("cannot {what} {}: {e}", tmp.display());
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(&tmp)
        .map_err(|e| err("create", e))?;
    let result = (|| {
        if let Some(m) = &old {
            std::os::unix::fs::fchown(&file, Some(m.uid()), Some(m.gid())).map_err(|e| err("chown", e))?;
        }
        file.set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(|e| err("chmod", e))?;
        file.write_all(data).map_err(|e| err("write", e))?;
        file.sync_all().map_err(|e| err("sync", e))?;
        std::fs::rename(&tmp, path).map_err(|e| err("rename", e))?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_a_value_keeping_owner_and_mode_and_lists_names_only() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("secrets.json");
        std::fs::write(&p, r#"{"providers": {"openai": {"apiKey": "old-key-123"}}}"#).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        set(&p, "providers.openai.apiKey", "new-key-456").unwrap();
        set(&p, "channels.telegram.token", "123:abc").unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.contains("new-key-456") && !text.contains("old-key-123"), "{text}");
        assert_eq!(std::fs::metadata(&p).unwrap().mode() & 0o777, 0o640);
        assert_eq!(
            names(&p).unwrap(),
            ["channels.telegram.token", "providers.openai.apiKey"]
        );
        assert!(set(&p, "providers..x", "v").is_err());
        assert!(
            set(&p, "providers.openai.apiKey.deeper", "v").is_err(),
            "a value is not an object"
        );
        assert!(set(&p, "providers.groq.apiKey", "").is_err());
        let whole = set(&p, "providers.openai", "sk-in-the-wrong-place").unwrap_err();
        assert!(whole.contains("several values"), "{whole}");
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_readable_secrets_file_is_closed_and_an_open_directory_refused() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("secrets.json");
        std::fs::write(&p, "{}").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o666)).unwrap();
        set(&p, "providers.openai.apiKey", "sk-new-123456").unwrap();
        assert_eq!(
            std::fs::metadata(&p).unwrap().mode() & 0o777,
            0o640,
            "never readable by others"
        );
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let why = set(&p, "providers.openai.apiKey", "sk-newer-123456").unwrap_err();
        assert!(why.contains("can be changed by someone other than root"), "{why}");
        assert!(!std::fs::read_to_string(&p).unwrap().contains("sk-newer"));
    }
}
