//! File tools. Paths are relative to the workspace; `/workspace/…` (the
//! jail's view) is accepted too. With the jail on, the kernel confines every
//! path; without it, paths are still refused when they leave the workspace,
//! after resolving `..` and symlinks.

use std::fmt::Write as _;
use std::path::{Component, Path, PathBuf};

/// Files larger than this are not read whole into a reply.
const MAX_READ: u64 = 256 * 1024;
/// A NUL byte in the first 8 KiB means binary.
const BINARY_SNIFF: usize = 8 * 1024;
const MAX_LIST: usize = 1000;

/// Maps a tool path to a host path inside the workspace, lexically.
fn lexical(workspace: &Path, path: &str) -> Result<PathBuf, String> {
    if path.is_empty() {
        return Err("path is empty".into());
    }
    let rel = path
        .strip_prefix("/workspace")
        .filter(|r| r.is_empty() || r.starts_with('/'))
        .unwrap_or(path);
    let rel = Path::new(rel);
    if rel.is_absolute() && path.starts_with('/') && !path.starts_with("/workspace") {
        return Err(format!(
            "{path}: outside the workspace; use a path relative to the workspace"
        ));
    }
    let mut out = workspace.to_path_buf();
    for c in rel.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir => {
                if out == workspace {
                    return Err(format!("{path}: leaves the workspace"));
                }
                out.pop();
            }
            Component::Prefix(_) => return Err(format!("{path}: not a valid path")),
        }
    }
    Ok(out)
}

/// Resolves an existing path, following symlinks, and insists that the
/// result is still inside the workspace.
pub fn resolve_existing(workspace: &Path, path: &str) -> Result<PathBuf, String> {
    let p = lexical(workspace, path)?;
    let real = p.canonicalize().map_err(|e| format!("{path}: {e}"))?;
    if !real.starts_with(workspace) {
        return Err(format!("{path}: resolves outside the workspace"));
    }
    Ok(real)
}

/// Resolves a path that may not exist yet: its deepest existing ancestor
/// must resolve inside the workspace, and it must not be a symlink.
pub fn resolve_for_write(workspace: &Path, path: &str) -> Result<PathBuf, String> {
    let p = lexical(workspace, path)?;
    if p == workspace {
        return Err(format!("{path}: is the workspace itself"));
    }
    let mut ancestor = p.as_path();
    while !ancestor.exists() {
        ancestor = ancestor.parent().ok_or_else(|| format!("{path}: no existing parent"))?;
    }
    let real = ancestor.canonicalize().map_err(|e| format!("{path}: {e}"))?;
    if !real.starts_with(workspace) {
        return Err(format!("{path}: resolves outside the workspace"));
    }
    if p.symlink_metadata().is_ok_and(|m| m.file_type().is_symlink()) {
        let target = p.canonicalize().map_err(|e| format!("{path}: {e}"))?;
        if !target.starts_with(workspace) {
            return Err(format!("{path}: is a symlink leading outside the workspace"));
        }
    }
    Ok(p)
}

pub fn read_file(workspace: &Path, path: &str) -> Result<String, String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let p = resolve_existing(workspace, path)?;
    // Non-blocking, then checked on the descriptor: a FIFO or a device
    // must not stall the daemon.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(&p)
        .map_err(|e| format!("{path}: {e}"))?;
    let meta = file.metadata().map_err(|e| format!("{path}: {e}"))?;
    if meta.is_dir() {
        return Err(format!("{path}: is a directory; use list_dir"));
    }
    if !meta.is_file() {
        return Err(format!(
            "{path}: is not a regular file (a FIFO, socket or device); not read"
        ));
    }
    if meta.len() > MAX_READ {
        return Err(format!(
            "{path}: {} bytes is larger than the {MAX_READ}-byte read limit; use exec with head, tail or grep",
            meta.len()
        ));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(MAX_READ)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("{path}: {e}"))?;
    if bytes[..bytes.len().min(BINARY_SNIFF)].contains(&0) {
        return Err(format!(
            "{path}: looks like a binary file ({} bytes); not shown",
            bytes.len()
        ));
    }
    String::from_utf8(bytes).map_err(|_| format!("{path}: is not valid UTF-8 text"))
}

pub fn write_file(workspace: &Path, path: &str, content: &str) -> Result<String, String> {
    let p = resolve_for_write(workspace, path)?;
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).map_err(|e| format!("{path}: cannot create its directory: {e}"))?;
    }
    std::fs::write(&p, content).map_err(|e| format!("{path}: {e}"))?;
    Ok(format!("wrote {} bytes to {path}", content.len()))
}

/// Appends `content`, creating the file and its directories when missing.
/// The file must be a regular file if it exists; a symlink is refused
/// (O_NOFOLLOW), so an append never lands outside what the path names.
pub fn append_file(workspace: &Path, path: &str, content: &str) -> Result<String, String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let p = resolve_for_write(workspace, path)?;
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).map_err(|e| format!("{path}: cannot create its directory: {e}"))?;
    }
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(&p)
        .map_err(|e| format!("{path}: {e}"))?;
    let meta = file.metadata().map_err(|e| format!("{path}: {e}"))?;
    if !meta.is_file() {
        return Err(format!("{path}: is not a regular file; not appended to"));
    }
    file.write_all(content.as_bytes()).map_err(|e| format!("{path}: {e}"))?;
    Ok(format!("appended {} bytes to {path}", content.len()))
}

/// Saves a file a user sent, a piece at a time. The piece at offset 0
/// creates the file and never overwrites: when `path` exists it tries
/// `name-1.ext`, `name-2.ext`, … and returns the workspace-relative path
/// used. Later pieces append to that path, which must hold exactly `offset`
/// bytes (pieces come in order, and nothing else writes there).
pub fn save_upload(workspace: &Path, path: &str, data: &[u8], offset: u64) -> Result<String, String> {
    use std::io::Write;
    if offset > 0 {
        use std::os::unix::fs::OpenOptionsExt;
        let p = resolve_for_write(workspace, path)?;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&p)
            .map_err(|e| format!("{path}: {e}"))?;
        let len = f.metadata().map_err(|e| format!("{path}: {e}"))?.len();
        if len != offset {
            return Err(format!("{path}: holds {len} bytes, the next piece starts at {offset}"));
        }
        f.write_all(data).map_err(|e| format!("{path}: {e}"))?;
        return Ok(path.to_string());
    }
    let (stem, ext) = match path.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() && !ext.contains('/') => (stem, format!(".{ext}")),
        _ => (path, String::new()),
    };
    for n in 0..100 {
        let candidate = if n == 0 {
            path.to_string()
        } else {
            format!("{stem}-{n}{ext}")
        };
        let p = match resolve_for_write(workspace, &candidate) {
            Ok(p) => p,
            // Something (a dangling symlink, say) already has the name.
            Err(_) if lexical(workspace, &candidate).is_ok_and(|p| p.symlink_metadata().is_ok()) => continue,
            Err(e) => return Err(e),
        };
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("{candidate}: cannot create its directory: {e}"))?;
        }
        // create_new: O_EXCL, so neither an existing file nor a planted
        // symlink is ever written through.
        match std::fs::OpenOptions::new().write(true).create_new(true).open(&p) {
            Ok(mut f) => {
                f.write_all(data).map_err(|e| format!("{candidate}: {e}"))?;
                return Ok(candidate);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(format!("{candidate}: {e}")),
        }
    }
    Err(format!("{path}: 100 files of that name already exist"))
}

pub fn edit_file(workspace: &Path, path: &str, old_text: &str, new_text: &str) -> Result<String, String> {
    if old_text.is_empty() {
        return Err("old_text is empty; give the exact text to replace".into());
    }
    let text = read_file(workspace, path)?;
    match text.matches(old_text).count() {
        0 => Err(format!(
            "{path}: old_text was not found; read the file and copy the text exactly"
        )),
        1 => {
            let p = resolve_existing(workspace, path)?;
            std::fs::write(&p, text.replacen(old_text, new_text, 1)).map_err(|e| format!("{path}: {e}"))?;
            Ok(format!("edited {path}"))
        }
        n => Err(format!(
            "{path}: old_text occurs {n} times; include more context so it matches exactly once"
        )),
    }
}

pub fn list_dir(workspace: &Path, path: &str) -> Result<String, String> {
    let path = if path.is_empty() { "." } else { path };
    let p = resolve_existing(workspace, path)?;
    let mut entries: Vec<(String, String)> = std::fs::read_dir(&p)
        .map_err(|e| format!("{path}: {e}"))?
        .filter_map(Result::ok)
        .map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let kind = match e.file_type() {
                Ok(t) if t.is_dir() => "dir".to_string(),
                Ok(t) if t.is_symlink() => "link".to_string(),
                _ => e.metadata().map(|m| format!("{} bytes", m.len())).unwrap_or_default(),
            };
            (name, kind)
        })
        .collect();
    entries.sort();
    if entries.is_empty() {
        return Ok(format!("{path} is empty"));
    }
    let mut out = String::new();
    for (name, kind) in entries.iter().take(MAX_LIST) {
        let _ = writeln!(out, "{name}\t{kind}");
    }
    if entries.len() > MAX_LIST {
        let _ = writeln!(out, "... and {} more", entries.len() - MAX_LIST);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ws() -> (tempfile::TempDir, PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let w = d.path().join("ws");
        std::fs::create_dir(&w).unwrap();
        let w = w.canonicalize().unwrap();
        (d, w)
    }

    #[test]
    fn write_read_edit_list() {
        let (_d, w) = ws();
        write_file(&w, "notes/a.txt", "hello world").unwrap();
        assert_eq!(read_file(&w, "/workspace/notes/a.txt").unwrap(), "hello world");
        edit_file(&w, "notes/a.txt", "world", "there").unwrap();
        assert_eq!(read_file(&w, "notes/a.txt").unwrap(), "hello there");
        assert!(list_dir(&w, "notes").unwrap().contains("a.txt\t11 bytes"));
    }

    #[test]
    fn uploads_never_overwrite_and_never_follow_symlinks() {
        let (d, w) = ws();
        assert_eq!(save_upload(&w, "inbox/r.pdf", b"one", 0).unwrap(), "inbox/r.pdf");
        assert_eq!(save_upload(&w, "inbox/r.pdf", b"two", 0).unwrap(), "inbox/r-1.pdf");
        assert_eq!(std::fs::read(w.join("inbox/r.pdf")).unwrap(), b"one");
        assert_eq!(std::fs::read(w.join("inbox/r-1.pdf")).unwrap(), b"two");
        // A symlink planted under the name is skipped, not written through.
        let outside = d.path().join("outside");
        std::os::unix::fs::symlink(&outside, w.join("inbox/x")).unwrap();
        assert_eq!(save_upload(&w, "inbox/x", b"data", 0).unwrap(), "inbox/x-1");
        assert!(!outside.exists());
        assert!(save_upload(&w, "../escape", b"x", 0).is_err());
        // Nor does a later piece go through the symlink.
        assert!(save_upload(&w, "inbox/x", b"more", 4).is_err());
        assert!(!outside.exists());
    }

    #[test]
    fn uploads_come_in_ordered_pieces() {
        let (_d, w) = ws();
        let path = save_upload(&w, "inbox/big.bin", b"abc", 0).unwrap();
        assert_eq!(save_upload(&w, &path, b"def", 3).unwrap(), path);
        assert_eq!(std::fs::read(w.join(&path)).unwrap(), b"abcdef");
        let err = save_upload(&w, &path, b"ghi", 3).unwrap_err();
        assert!(err.contains("holds 6 bytes, the next piece starts at 3"), "{err}");
        assert!(save_upload(&w, "inbox/missing.bin", b"x", 5).is_err());
    }

    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let (_d, w) = ws();
        nix::unistd::mkfifo(&w.join("pipe"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        let err = read_file(&w, "pipe").unwrap_err();
        assert!(err.contains("not a regular file"), "{err}");
    }

    #[test]
    fn edit_needs_exactly_one_match() {
        let (_d, w) = ws();
        write_file(&w, "a.txt", "x x").unwrap();
        assert!(edit_file(&w, "a.txt", "x", "y").unwrap_err().contains("2 times"));
        assert!(edit_file(&w, "a.txt", "z", "y").unwrap_err().contains("not found"));
    }

    #[test]
    fn escapes_are_refused() {
        let (d, w) = ws();
        std::fs::write(d.path().join("outside.txt"), "secret").unwrap();
        std::os::unix::fs::symlink(d.path().join("outside.txt"), w.join("link")).unwrap();
        assert!(read_file(&w, "../outside.txt")
            .unwrap_err()
            .contains("leaves the workspace"));
        assert!(read_file(&w, "/etc/passwd")
            .unwrap_err()
            .contains("outside the workspace"));
        assert!(read_file(&w, "link").unwrap_err().contains("outside the workspace"));
        assert!(write_file(&w, "link", "x")
            .unwrap_err()
            .contains("outside the workspace"));
        assert_eq!(std::fs::read_to_string(d.path().join("outside.txt")).unwrap(), "secret");
    }

    #[test]
    fn binary_and_huge_files_are_refused() {
        let (_d, w) = ws();
        std::fs::write(w.join("bin"), [0u8, 1, 2]).unwrap();
        assert!(read_file(&w, "bin").unwrap_err().contains("binary"));
        std::fs::write(w.join("big"), vec![b'a'; MAX_READ as usize + 1]).unwrap();
        assert!(read_file(&w, "big").unwrap_err().contains("read limit"));
    }
}
