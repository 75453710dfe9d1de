//! `ReadTexts`: the workspace files the broker needs for itself (the
//! bootstrap files, memory, skills). The broker never opens a workspace
//! path on the host — the workspace is the jail's, and a hostile model
//! decides what is in it — so it asks here, and gets only regular files,
//! never through a symlink, each capped.

use oxibot_proto::messages::{TextFile, MAX_TEXTS_TOTAL, MAX_TEXT_FILES};

use crate::beneath;

/// All files of one answer together stay well below the frame cap.
const MAX_TOTAL: usize = MAX_TEXTS_TOTAL;
/// A NUL byte in what was read means binary: left out.
fn is_binary(data: &[u8]) -> bool {
    data.contains(&0)
}

pub fn read_texts(workspace: &std::path::Path, patterns: &[String], max_bytes: usize) -> Result<Vec<TextFile>, String> {
    let root = beneath::open_root(workspace).map_err(|e| format!("cannot open the workspace: {e}"))?;
    let mut files = Vec::new();
    let mut total = 0;
    for pattern in patterns {
        for path in expand(&root, pattern) {
            if files.len() >= MAX_TEXT_FILES || total >= MAX_TOTAL {
                return Ok(files);
            }
            let Ok(file) = beneath::open_regular(&root, &path) else {
                continue;
            };
            let Ok((data, mut truncated)) = beneath::read_capped(file, max_bytes.min(MAX_TOTAL - total)) else {
                continue;
            };
            if is_binary(&data) {
                continue;
            }
            // Counted after decoding: an invalid byte becomes a three-byte
            // U+FFFD, so the text can be three times the bytes read.
            let mut text = String::from_utf8_lossy(&data).into_owned();
            let room = MAX_TOTAL - total;
            if text.len() > room {
                let mut cut = room;
                while !text.is_char_boundary(cut) {
                    cut -= 1;
                }
                text.truncate(cut);
                truncated = true;
            }
            total += text.len();
            files.push(TextFile { path, text, truncated });
        }
    }
    Ok(files)
}

/// The paths a pattern names: `*` components stand for every name in that
/// directory (hidden ones included), in name order. Nothing is followed
/// through a symlink, and `..`, `.` and empty components match nothing.
fn expand(root: &std::os::fd::OwnedFd, pattern: &str) -> Vec<String> {
    let mut paths = vec![String::new()];
    for component in pattern.split('/') {
        if component.is_empty() || component == "." || component == ".." {
            return Vec::new();
        }
        let mut next = Vec::new();
        for base in &paths {
            let join = |name: &str| {
                if base.is_empty() {
                    name.to_string()
                } else {
                    format!("{base}/{name}")
                }
            };
            if component == "*" {
                for name in beneath::list(root, base).unwrap_or_default() {
                    next.push(join(&name));
                }
            } else {
                next.push(join(component));
            }
            if next.len() > MAX_TEXT_FILES {
                next.truncate(MAX_TEXT_FILES);
                break;
            }
        }
        paths = next;
    }
    paths
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_answer_stays_within_its_budget_after_decoding() {
        // Bytes that are not UTF-8 each decode to a three-byte U+FFFD.
        let d = tempfile::tempdir().unwrap();
        let patterns: Vec<String> = (0..40).map(|i| format!("f{i}.md")).collect();
        for p in &patterns {
            std::fs::write(d.path().join(p), vec![0xffu8; 32 * 1024]).unwrap();
        }
        let files = read_texts(d.path(), &patterns, 32 * 1024).unwrap();
        let total: usize = files.iter().map(|f| f.text.len()).sum();
        assert!(total <= MAX_TOTAL, "{total} bytes of text");
        assert!(
            files.len() < patterns.len(),
            "{} files: the budget stops the rest",
            files.len()
        );
    }

    #[test]
    fn reads_patterns_in_order_and_skips_what_is_not_a_plain_text_file() {
        let d = tempfile::tempdir().unwrap();
        let w = d.path();
        std::fs::write(w.join("SOUL.md"), "Be kind.").unwrap();
        std::fs::create_dir_all(w.join("skills/b")).unwrap();
        std::fs::create_dir_all(w.join("skills/a")).unwrap();
        std::fs::write(w.join("skills/a/SKILL.md"), "description: first").unwrap();
        std::fs::write(w.join("skills/b/SKILL.md"), "description: second").unwrap();
        std::fs::write(w.join("big.md"), "x".repeat(100)).unwrap();
        std::fs::write(w.join("bin.md"), b"\x00\x01").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", w.join("AGENTS.md")).unwrap();
        std::os::unix::fs::symlink(w.join("skills"), w.join("linked")).unwrap();
        let patterns: Vec<String> = [
            "AGENTS.md",
            "SOUL.md",
            "missing.md",
            "skills/*/SKILL.md",
            "linked/*/SKILL.md",
            "big.md",
            "bin.md",
            "../x",
            "/etc/passwd",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let files = read_texts(w, &patterns, 10).unwrap();
        let got: Vec<(&str, &str, bool)> = files
            .iter()
            .map(|f| (f.path.as_str(), f.text.as_str(), f.truncated))
            .collect();
        assert_eq!(
            got,
            [
                ("SOUL.md", "Be kind.", false),
                ("skills/a/SKILL.md", "descriptio", true),
                ("skills/b/SKILL.md", "descriptio", true),
                ("big.md", "xxxxxxxxxx", true),
            ]
        );
    }
}
