//! `oxibotctl secrets`: the secrets file, edited in place by the admin —
//! names listed (never values), one value set at a time, written
//! atomically with the file's owner and mode kept, so that the broker never
//! reads half a file and nobody else ever can.

use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags};
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
    update(path, SECRETS_MODE, |doc| {
        if let Some(Value::Object(_)) = segments.iter().try_fold(&*doc, |v, s| v.get(s)) {
            return Err(format!(
                "{name} holds several values; name one of them, e.g. {name}.apiKey (see oxibotctl secrets list)"
            ));
        }
        put(doc, path, name, Value::String(value.to_string()))
    })
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
    update(path, CONFIG_MODE, |doc| put(doc, path, name, value))
}

/// Puts `value` at the dotted `name` in `doc`, making objects on the way.
fn put(doc: &mut Value, path: &Path, name: &str, value: Value) -> Result<(), String> {
    let segments: Vec<&str> = name.split('.').collect();
    if name.is_empty() || segments.iter().any(|s| s.is_empty()) {
        return Err(format!(
            "\"{name}\" is not a dotted name like channels.telegram.enabled"
        ));
    }
    let mut at = doc;
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
    Ok(())
}

/// Changes a JSON file in place, atomically: reads it, lets `change` edit
/// the document, writes a sibling temporary file with the old file's owner
/// and mode (at most `most`; 0600 and the caller's for a new one), syncs
/// it, and renames it over.
///
/// Run as root on a path from the configuration, so every step is made
/// safe against whoever else can reach the path:
/// - the directory must be one only root or the caller can change (no
///   other owner, no write by group or others, no ACL, no link of theirs
///   on the way): else they could swap the file between our steps;
/// - it is opened once, and everything after goes through that
///   descriptor, so the directory checked is the directory written;
/// - the old file is opened once without following a link, and its
///   content, owner and mode all come from that one descriptor.
fn update(path: &Path, most: u32, change: impl FnOnce(&mut Value) -> Result<(), String>) -> Result<(), String> {
    if let Some(why) = crate::paths::untrusted_directory(path, Some(nix::unistd::getuid().as_raw())) {
        return Err(format!(
            "refusing to write {}: {why}. Keep it in a directory only root can change, such as /etc/oxibot",
            path.display()
        ));
    }
    let name = path
        .file_name()
        .ok_or_else(|| format!("{} names no file", path.display()))?;
    let dir_path = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let dir = rustix::fs::open(
        dir_path,
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| format!("cannot open {}: {e}", dir_path.display()))?;

    let old = match rustix::fs::openat(
        &dir,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => Some(std::fs::File::from(fd)),
        Err(rustix::io::Errno::NOENT) => None,
        Err(rustix::io::Errno::LOOP) => {
            return Err(format!(
                "{} is a link; refusing to follow or replace it",
                path.display()
            ))
        }
        Err(rustix::io::Errno::ACCESS) => {
            return Err(format!(
                "cannot read {}: permission denied; run this as root",
                path.display()
            ))
        }
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let (mut doc, owner) = match old {
        Some(mut file) => {
            let meta = file
                .metadata()
                .map_err(|e| format!("cannot stat {}: {e}", path.display()))?;
            if !meta.file_type().is_file() {
                return Err(format!(
                    "{} is not a regular file; refusing to replace it",
                    path.display()
                ));
            }
            let mut text = String::new();
            file.read_to_string(&mut text)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let doc = serde_json::from_str(&text).map_err(|e| format!("{} is not valid JSON: {e}", path.display()))?;
            (doc, Some((meta.uid(), meta.gid(), meta.mode() & most)))
        }
        None => (Value::Object(Map::new()), None),
    };
    change(&mut doc)?;
    let text = serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?;

    let tmp = format!(".{}.{}.tmp", name.to_string_lossy(), std::process::id());
    let err = |what: &str, e: &dyn std::fmt::Display| format!("cannot {what} {}: {e}", dir_path.join(&tmp).display());
    let fd = rustix::fs::openat(
        &dir,
        tmp.as_str(),
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )
    .map_err(|e| err("create", &e))?;
    let mut file = std::fs::File::from(fd);
    let result = (|| {
        let mode = match owner {
            Some((uid, gid, mode)) => {
                std::os::unix::fs::fchown(&file, Some(uid), Some(gid)).map_err(|e| err("chown", &e))?;
                mode
            }
            None => 0o600,
        };
        file.set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(|e| err("chmod", &e))?;
        file.write_all(text.as_bytes()).map_err(|e| err("write", &e))?;
        file.sync_all().map_err(|e| err("sync", &e))?;
        rustix::fs::renameat(&dir, tmp.as_str(), &dir, name).map_err(|e| err("rename", &e))?;
        let _ = rustix::fs::fsync(&dir);
        Ok(())
    })();
    if result.is_err() {
        let _ = rustix::fs::unlinkat(&dir, tmp.as_str(), rustix::fs::AtFlags::empty());
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

    /// A stranger who can make files in the secrets file's directory
    /// (sticky or not) could have made the file before us, owned by them:
    /// `secrets set` would then write the key into their file.
    #[test]
    fn a_file_a_stranger_could_have_made_is_not_written() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("secrets.json");
        std::fs::write(&p, "{}").unwrap();
        if nix::unistd::getuid().is_root() {
            nix::unistd::chown(&p, Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
        }
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o1777)).unwrap();
        let why = set(&p, "providers.openai.apiKey", "sk-stranger-123456").unwrap_err();
        assert!(why.contains("can be changed by someone other than root"), "{why}");
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "{}");
        // A link in its place is neither followed nor replaced.
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        let target = d.path().join("elsewhere.json");
        std::fs::write(&target, "{}").unwrap();
        std::fs::remove_file(&p).unwrap();
        std::os::unix::fs::symlink(&target, &p).unwrap();
        let why = set(&p, "providers.openai.apiKey", "sk-linked-123456").unwrap_err();
        assert!(why.contains("is a link"), "{why}");
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "{}");
    }
}
