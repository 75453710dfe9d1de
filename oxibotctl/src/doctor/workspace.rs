//! The jail's workspace, checked from outside: no setuid or setgid file or
//! directory in it. The jail's seccomp filter refuses those bits (a setuid
//! program the jail left there would run as the jail's user for anyone on
//! the host, and in unprivileged supervise mode that user is the
//! broker's); one found here was made before that, or by someone outside.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::{Finding, Level};

/// The walk stops after this many entries (a workspace may be huge).
const MAX_ENTRIES: usize = 200_000;
/// At most this many are named in the finding.
const SHOWN: usize = 10;

/// Paths under `root` (never through a symlink) with S_ISUID or S_ISGID,
/// and whether the walk stopped early.
pub fn setid_paths(root: &Path) -> (Vec<PathBuf>, bool) {
    let mut found = Vec::new();
    let mut queue = vec![root.to_path_buf()];
    let mut seen = 0;
    while let Some(dir) = queue.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            seen += 1;
            if seen > MAX_ENTRIES {
                return (found, true);
            }
            let Ok(m) = entry.path().symlink_metadata() else {
                continue;
            };
            if m.mode() & 0o6000 != 0 {
                found.push(entry.path());
            }
            if m.file_type().is_dir() {
                queue.push(entry.path());
            }
        }
    }
    found.sort();
    (found, false)
}

pub fn check(workspace: &Path) -> Finding {
    let check = format!("no setuid/setgid files in the workspace {}", workspace.display());
    if !workspace.exists() {
        return Finding::new("files", check, Level::Ok, "no workspace yet");
    }
    let (found, cut) = setid_paths(workspace);
    let partial = if cut {
        format!(" (only the first {MAX_ENTRIES} entries were looked at)")
    } else {
        String::new()
    };
    if found.is_empty() {
        return Finding::new("files", check, Level::Ok, format!("none{partial}"));
    }
    let names: Vec<String> = found.iter().take(SHOWN).map(|p| p.display().to_string()).collect();
    let more = found.len().saturating_sub(SHOWN);
    let listed = if more > 0 {
        format!("{} and {more} more", names.join(", "))
    } else {
        names.join(", ")
    };
    Finding::new("files", check, Level::Fail, format!("{listed}{partial}")).fix(format!(
        "anyone on the host may run such a file as its owner: chmod -R u-s,g-s {} (the jail refuses these bits, \
         so they were made before that, or from outside)",
        workspace.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn setuid_and_setgid_entries_are_found_and_links_not_followed() {
        let d = tempfile::tempdir().unwrap();
        let ws = d.path().join("ws");
        std::fs::create_dir_all(ws.join("a/b")).unwrap();
        std::fs::write(ws.join("a/b/sh"), "x").unwrap();
        std::fs::set_permissions(ws.join("a/b/sh"), std::fs::Permissions::from_mode(0o4755)).unwrap();
        std::fs::create_dir(ws.join("g")).unwrap();
        std::fs::set_permissions(ws.join("g"), std::fs::Permissions::from_mode(0o2755)).unwrap();
        std::fs::write(ws.join("plain"), "x").unwrap();
        // A link to a setuid file elsewhere is the link's business, not a
        // file in the workspace; the walk does not follow it.
        let outside = d.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("su"), "x").unwrap();
        std::fs::set_permissions(outside.join("su"), std::fs::Permissions::from_mode(0o4755)).unwrap();
        std::os::unix::fs::symlink(&outside, ws.join("link")).unwrap();
        let (found, cut) = setid_paths(&ws);
        assert!(!cut);
        assert_eq!(found, [ws.join("a/b/sh"), ws.join("g")]);
        let f = check(&ws);
        assert_eq!(f.level, Level::Fail);
        assert!(f.seen.contains("a/b/sh"), "{}", f.seen);

        std::fs::set_permissions(ws.join("a/b/sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(ws.join("g"), std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(check(&ws).level, Level::Ok);
    }
}
