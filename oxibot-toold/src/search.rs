//! `find_files` (glob) and `grep` (regex), with result caps. Both walk the
//! workspace without following symlinks, so a link cannot lead them out.

use std::fmt::Write as _;
use std::path::Path;

use walkdir::WalkDir;

const MAX_FILES: usize = 500;
const MAX_MATCHES: usize = 200;
const MAX_LINE: usize = 300;
/// Files larger than this are not searched.
const MAX_GREP_FILE: u64 = 4 << 20;

fn glob(pattern: &str) -> Result<globset::GlobMatcher, String> {
    globset::GlobBuilder::new(pattern)
        .literal_separator(false)
        .build()
        .map(|g| g.compile_matcher())
        .map_err(|e| format!("invalid glob \"{pattern}\": {e}"))
}

fn relative<'a>(workspace: &Path, p: &'a Path) -> std::borrow::Cow<'a, str> {
    p.strip_prefix(workspace).unwrap_or(p).to_string_lossy()
}

pub fn find_files(workspace: &Path, pattern: &str, path: &str) -> Result<String, String> {
    let root = crate::files::resolve_existing(workspace, if path.is_empty() { "." } else { path })?;
    let matcher = glob(pattern)?;
    let mut hits = Vec::new();
    let mut more = false;
    for entry in WalkDir::new(&root)
        .follow_links(false)
        .into_iter()
        .filter_map(Result::ok)
    {
        if !entry.file_type().is_file() {
            continue;
        }
        let rel = relative(workspace, entry.path());
        let name = entry.file_name().to_string_lossy();
        if matcher.is_match(rel.as_ref()) || matcher.is_match(name.as_ref()) {
            if hits.len() == MAX_FILES {
                more = true;
                break;
            }
            hits.push(rel.into_owned());
        }
    }
    hits.sort();
    if hits.is_empty() {
        return Ok(format!("no files match {pattern}"));
    }
    let mut out = hits.join("\n");
    if more {
        let _ = write!(out, "\n... more than {MAX_FILES} files match; narrow the pattern");
    }
    Ok(out)
}

pub fn grep(
    workspace: &Path,
    pattern: &str,
    path: &str,
    include: Option<&str>,
    case_insensitive: bool,
) -> Result<String, String> {
    let re = regex::RegexBuilder::new(pattern)
        .case_insensitive(case_insensitive)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| format!("invalid regex: {e}"))?;
    let include = include.map(glob).transpose()?;
    let root = crate::files::resolve_existing(workspace, if path.is_empty() { "." } else { path })?;
    let mut out = String::new();
    let mut count = 0;
    for entry in WalkDir::new(&root)
        .follow_links(false)
        .into_iter()
        .filter_map(Result::ok)
    {
        if !entry.file_type().is_file() || entry.metadata().map(|m| m.len() > MAX_GREP_FILE).unwrap_or(true) {
            continue;
        }
        if let Some(inc) = &include {
            if !inc.is_match(entry.file_name().to_string_lossy().as_ref()) {
                continue;
            }
        }
        let Ok(text) = std::fs::read_to_string(entry.path()) else {
            continue;
        }; // binary or unreadable
        for (n, line) in text.lines().enumerate() {
            if re.is_match(line) {
                count += 1;
                if count > MAX_MATCHES {
                    let _ = write!(
                        out,
                        "... more than {MAX_MATCHES} matches; narrow the pattern or the path"
                    );
                    return Ok(out);
                }
                let shown = crate::text::truncate_chars(line, MAX_LINE);
                let _ = writeln!(out, "{}:{}: {shown}", relative(workspace, entry.path()), n + 1);
            }
        }
    }
    if count == 0 {
        return Ok(format!("no matches for /{pattern}/"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_and_greps_with_caps() {
        let d = tempfile::tempdir().unwrap();
        let w = d.path().canonicalize().unwrap();
        std::fs::create_dir_all(w.join("src/a")).unwrap();
        std::fs::write(w.join("src/a/x.rs"), "fn main() {}\n// TODO: fix\n").unwrap();
        std::fs::write(w.join("README.md"), "todo list\n").unwrap();
        assert_eq!(find_files(&w, "**/*.rs", ".").unwrap(), "src/a/x.rs");
        assert_eq!(find_files(&w, "*.md", "").unwrap(), "README.md");
        let g = grep(&w, "todo", ".", None, true).unwrap();
        assert!(
            g.contains("src/a/x.rs:2: // TODO: fix") && g.contains("README.md:1: todo list"),
            "{g}"
        );
        let g = grep(&w, "todo", ".", Some("*.rs"), false).unwrap();
        assert_eq!(g, "no matches for /todo/");
        assert!(grep(&w, "(", ".", None, false).unwrap_err().contains("invalid regex"));
        std::os::unix::fs::symlink("/etc", w.join("etc-link")).unwrap();
        assert!(!find_files(&w, "passwd", ".").unwrap().contains("passwd\n"));
    }
}
