//! The pure half of `apply_patch`: a multi-file unified diff split at its
//! file headers, each file's diff parsed, and a diff applied to text in
//! memory. No file system here (that is `mod.rs`, inside the jail's
//! checks), so the fuzz target in `fuzz/` runs exactly this code on the
//! model's hostile diffs.

/// One file's part of the diff: the paths its headers name (None for
/// /dev/null) and its hunks.
pub struct FilePatch<'a> {
    pub old: Option<String>,
    pub new: Option<String>,
    pub patch: diffy::Patch<'a, str>,
}

/// Splits a multi-file diff at its `--- ` / `+++ ` header pairs.
pub fn split_files(patch: &str) -> Vec<String> {
    let lines: Vec<&str> = patch.split_inclusive('\n').collect();
    let mut files = Vec::new();
    let mut current = String::new();
    for (i, line) in lines.iter().enumerate() {
        let starts_file = line.starts_with("--- ") && lines.get(i + 1).is_some_and(|n| n.starts_with("+++ "));
        if starts_file && current.contains("@@") {
            files.push(std::mem::take(&mut current));
        }
        if starts_file || !current.is_empty() {
            current.push_str(line);
        }
    }
    if !current.is_empty() {
        files.push(current);
    }
    files
}

/// "a/src/x.rs" → "src/x.rs"; "/dev/null" → None.
fn header_path(name: Option<&str>) -> Option<String> {
    let name = name?.split('\t').next()?.trim();
    if name == "/dev/null" {
        return None;
    }
    Some(
        name.strip_prefix("a/")
            .or_else(|| name.strip_prefix("b/"))
            .unwrap_or(name)
            .to_string(),
    )
}

/// Parses the `index`th file of a diff.
pub fn parse(text: &str, index: usize) -> Result<FilePatch<'_>, String> {
    let patch = diffy::Patch::from_str(text).map_err(|e| format!("file {} of the patch: {e}", index + 1))?;
    Ok(FilePatch {
        old: header_path(patch.original()),
        new: header_path(patch.modified()),
        patch,
    })
}

/// The file's new text; Err when a hunk does not match `base`.
pub fn apply(base: &str, patch: &diffy::Patch<'_, str>) -> Result<String, diffy::ApplyError> {
    diffy::apply(base, patch)
}
