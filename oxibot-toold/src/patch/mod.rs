//! `apply_patch`: a unified diff over one or more files, applied whole or
//! not at all. Every hunk of every file is checked in memory before the
//! first file is written.

use std::path::{Path, PathBuf};

pub(crate) mod diff;

enum Change {
    Write(PathBuf, String),
    Delete(PathBuf),
}

pub fn apply_patch(workspace: &Path, patch: &str) -> Result<String, String> {
    let files = diff::split_files(patch);
    if files.is_empty() {
        return Err("no file headers (--- a/… / +++ b/…) in the patch".into());
    }
    let mut changes = Vec::new();
    let mut summary = Vec::new();
    for (i, text) in files.iter().enumerate() {
        let diff::FilePatch {
            old,
            new,
            patch: parsed,
        } = diff::parse(text, i)?;
        match (old, new) {
            (_, Some(new)) => {
                let target = crate::files::resolve_for_write(workspace, &new)?;
                let base = if target.exists() {
                    crate::files::read_file(workspace, &new)?
                } else {
                    String::new()
                };
                let result = diff::apply(&base, &parsed)
                    .map_err(|e| format!("{new}: {e}; nothing was changed, re-read the file and redo the patch"))?;
                summary.push(format!("patched {new}"));
                changes.push(Change::Write(target, result));
            }
            (Some(old), None) => {
                let target = crate::files::resolve_existing(workspace, &old)?;
                summary.push(format!("deleted {old}"));
                changes.push(Change::Delete(target));
            }
            (None, None) => return Err(format!("file {} of the patch names no file", i + 1)),
        }
    }
    for change in changes {
        match change {
            Change::Write(path, text) => {
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", path.display()))?;
                }
                std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?
            }
            Change::Delete(path) => std::fs::remove_file(&path).map_err(|e| format!("{}: {e}", path.display()))?,
        }
    }
    Ok(summary.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applies_multi_file_patches_all_or_nothing() {
        let d = tempfile::tempdir().unwrap();
        let w = d.path().canonicalize().unwrap();
        std::fs::write(w.join("a.txt"), "one\ntwo\nthree\n").unwrap();
        std::fs::write(w.join("b.txt"), "alpha\nbeta\n").unwrap();
        let good = "--- a/a.txt\n+++ b/a.txt\n@@ -1,3 +1,3 @@\n one\n-two\n+TWO\n three\n\
                    --- /dev/null\n+++ b/new/c.txt\n@@ -0,0 +1 @@\n+fresh\n";
        let out = apply_patch(&w, good).unwrap();
        assert_eq!(out, "patched a.txt\npatched new/c.txt");
        assert_eq!(std::fs::read_to_string(w.join("a.txt")).unwrap(), "one\nTWO\nthree\n");
        assert_eq!(std::fs::read_to_string(w.join("new/c.txt")).unwrap(), "fresh\n");

        // The second hunk does not apply: the first file must stay untouched.
        let bad = "--- a/b.txt\n+++ b/b.txt\n@@ -1,2 +1,2 @@\n-alpha\n+ALPHA\n beta\n\
                   --- a/a.txt\n+++ b/a.txt\n@@ -1,3 +1,3 @@\n one\n-nope\n+x\n three\n";
        assert!(apply_patch(&w, bad).unwrap_err().contains("nothing was changed"));
        assert_eq!(std::fs::read_to_string(w.join("b.txt")).unwrap(), "alpha\nbeta\n");
        assert!(apply_patch(&w, "--- a/../x\n+++ b/../x\n@@ -0,0 +1 @@\n+x\n").is_err());
    }
}
