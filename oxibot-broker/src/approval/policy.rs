//! The decision over a read command line: refused by a deny pattern,
//! allowed because every part matches an allow pattern, or asked.
//!
//! Allow is strict: a part matches only when its program is a system
//! program (not a file in the workspace), no environment assignment comes
//! with it, and each of its words is matched; a word the shell changes
//! (a variable, a glob) is matched only by `*`. Deny is broad: the program
//! by its base name wherever it lives (`/usr/bin/rm`, `./rm`), and the
//! pattern's words anywhere among the command's, in order. A command
//! that a deny pattern *could* match (a changing word where the pattern
//! has a fixed one, or a program it does not unwrap given the denied
//! program's name as a word) is asked, never allowed.

use std::path::{Path, PathBuf};

use oxibot_config::owner::{ApprovalMode, ApprovalSettings, Pattern, PatternWord};

use super::shell::{base_name, is_system_program, Analysis, Part, Word};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    /// Why it must be asked (for the owner and the audit log).
    Ask(String),
    /// Refused: the deny pattern (or why it could not be checked).
    Deny(String),
}

/// Where the jail's commands look programs up (toold's fixed PATH).
const JAIL_PATH: &[&str] = &["/usr/local/bin", "/usr/bin", "/bin"];

/// `working_dir`: where the command runs, relative to the workspace (its
/// redirections' relative targets are there).
pub fn judge(settings: &ApprovalSettings, learned: &[Pattern], a: &Analysis, working_dir: Option<&str>) -> Verdict {
    let deny: Vec<Pattern> = settings.deny.iter().filter_map(|p| Pattern::parse(p).ok()).collect();
    let mut maybe_denied = None;
    for part in &a.parts {
        for d in &deny {
            match deny_match(d, part) {
                Match::Yes => return Verdict::Deny(format!("matches tools.approval.deny \"{}\"", d.render())),
                Match::Maybe => maybe_denied = Some(d.render()),
                Match::No => {}
            }
        }
    }
    if settings.mode == ApprovalMode::Off {
        // Nobody to ask: what cannot be checked against the deny list is refused.
        if deny.is_empty() {
            return Verdict::Allow;
        }
        if let Some(d) = maybe_denied {
            return Verdict::Deny(format!("could match tools.approval.deny \"{d}\""));
        }
        if !a.resolved() {
            return Verdict::Deny(format!(
                "cannot be checked against tools.approval.deny ({}); set tools.approval.mode to \"on-miss\" to be asked instead",
                a.unresolved.join("; ")
            ));
        }
        return Verdict::Allow;
    }
    if let Some(d) = maybe_denied {
        return Verdict::Ask(format!("it could run what tools.approval.deny \"{d}\" refuses"));
    }
    if !a.resolved() {
        return Verdict::Ask(format!("it cannot be read with certainty: {}", a.unresolved.join("; ")));
    }
    // After `cd`, a relative target is somewhere else than it reads.
    let moves = a
        .parts
        .iter()
        .any(|p| matches!(base_name(&p.program().text), "cd" | "pushd" | "popd"));
    if let Some(w) = a.writes.iter().find(|w| {
        !redirect_covered(settings, working_dir, w) || (moves && !w.text.starts_with('/') && !covers_all(settings))
    }) {
        return Verdict::Ask(format!(
            "it writes `{}` outside tools.approval.writePaths",
            if w.literal {
                w.text.clone()
            } else {
                format!("{}⟨changes⟩", w.text)
            }
        ));
    }
    if settings.mode == ApprovalMode::Always {
        return Verdict::Ask("tools.approval.mode is \"always\"".into());
    }
    let allow: Vec<Pattern> = settings
        .allow
        .iter()
        .filter_map(|p| Pattern::parse(p).ok())
        .chain(learned.iter().cloned())
        .collect();
    for part in &a.parts {
        if !allow.iter().any(|p| allow_match(p, part)) {
            return Verdict::Ask(format!("`{}` matches no allow pattern", render_part(part)));
        }
    }
    if a.parts.is_empty() {
        // Nothing runs (only redirections), which still touches files.
        return Verdict::Ask("it runs no program, only redirections".into());
    }
    Verdict::Allow
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Match {
    No,
    Maybe,
    Yes,
}

/// The words of a part that its arguments are matched against: with
/// `xargs`, one changing word more.
fn arguments(part: &Part) -> Vec<Word> {
    let mut words = part.words[1..].to_vec();
    if part.more_args {
        words.push(Word {
            text: "…".into(),
            literal: false,
        });
    }
    words
}

fn deny_match(d: &Pattern, part: &Part) -> Match {
    let program = part.program();
    if !program.literal {
        return Match::Maybe;
    }
    if base_name(&program.text) != base_name(&d.program) {
        // A program this reader does not unwrap can still run it
        // (`ionice rm x`, `/usr/bin/time rm x`, `find -exec rm`): a word
        // naming it makes the command one the deny list could match.
        // A word naming it whole, or as one of its blank-separated words
        // (`ionice sh -c 'rm x'`).
        let denied = base_name(&d.program);
        let named = part.words[1..].iter().any(|w| {
            w.literal
                && (base_name(&w.text) == denied
                    || w.text
                        .split(|c: char| c.is_whitespace() || ";&|()`".contains(c))
                        .any(|t| base_name(t) == denied))
        });
        return if named { Match::Maybe } else { Match::No };
    }
    // The pattern's fixed words, in order, anywhere among the command's.
    let wanted: Vec<&str> = d
        .args
        .iter()
        .filter_map(|w| match w {
            PatternWord::Literal(s) => Some(s.as_str()),
            PatternWord::Any => None,
        })
        .collect();
    let words = arguments(part);
    let mut next = 0;
    for w in &words {
        if next < wanted.len() && w.literal && w.text == wanted[next] {
            next += 1;
        }
    }
    if next == wanted.len() {
        Match::Yes
    } else if words.iter().any(|w| !w.literal) {
        Match::Maybe
    } else {
        Match::No
    }
}

fn allow_match(p: &Pattern, part: &Part) -> bool {
    let program = part.program();
    if part.assigns || !program.literal || !is_system_program(&program.text) {
        return false;
    }
    // A file with several names (vim as rview, xz as xzcat) does what
    // the name it is called by says: the name must be the pattern's too.
    let same_program = if p.program.starts_with('/') {
        base_name(&program.text) == base_name(&p.program) && same_file(&program.text, &p.program)
    } else {
        base_name(&program.text) == p.program
    };
    same_program && words_match(&p.args, &arguments(part))
}

/// Whether a command's program (a name on the jail's PATH, or a system
/// path) is the pattern's program file.
fn same_file(program: &str, pattern_program: &str) -> bool {
    if program == pattern_program {
        return true;
    }
    let found = if program.contains('/') {
        Some(PathBuf::from(program))
    } else {
        resolve_on_path(program)
    };
    match (
        found.and_then(|f| f.canonicalize().ok()),
        Path::new(pattern_program).canonicalize(),
    ) {
        (Some(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// The file a bare name runs in the jail: its PATH is fixed and lies
/// under the read-only /usr, the same files the broker sees.
fn resolve_on_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    JAIL_PATH.iter().map(|d| Path::new(d).join(name)).find(|p| {
        std::fs::metadata(p)
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    })
}

/// `*` matches any words (none too); a fixed word only the same fixed word.
fn words_match(pattern: &[PatternWord], words: &[Word]) -> bool {
    // reach[j]: the first j words are matched by the pattern so far.
    let mut reach = vec![false; words.len() + 1];
    reach[0] = true;
    for p in pattern {
        let mut next = vec![false; words.len() + 1];
        match p {
            PatternWord::Any => {
                let mut any = false;
                for j in 0..=words.len() {
                    any |= reach[j];
                    next[j] = any;
                }
            }
            PatternWord::Literal(s) => {
                for j in 0..words.len() {
                    if reach[j] && words[j].literal && words[j].text == *s {
                        next[j + 1] = true;
                    }
                }
            }
        }
        reach = next;
    }
    reach[words.len()]
}

/// Programs that "approve always" never allows by name: what they run is
/// given to them as text or taken from other files (shells, interpreters,
/// wrappers, and tools with an exec of their own).
fn never_always(name: &str) -> bool {
    const NAMES: &[&str] = &[
        "sh",
        "bash",
        "dash",
        "zsh",
        "ksh",
        "ash",
        "mksh",
        "yash",
        "posh",
        "fish",
        "csh",
        "tcsh",
        "busybox",
        "env",
        "sudo",
        "doas",
        "su",
        "runuser",
        "xargs",
        "nice",
        "nohup",
        "timeout",
        "command",
        "exec",
        "setsid",
        "stdbuf",
        "watch",
        "script",
        "flock",
        "chroot",
        "unshare",
        "nsenter",
        "strace",
        "ltrace",
        "gdb",
        "time",
        "parallel",
        "find",
        "awk",
        "gawk",
        "mawk",
        "nawk",
        "sed",
        "deno",
        "bun",
        "tclsh",
        "wish",
        "Rscript",
        "R",
        "julia",
        "java",
        "jshell",
        "expect",
        "eval",
        "source",
        ".",
        "ssh",
        "git-shell",
        "make",
        "vim",
        "vi",
        "nvim",
        "emacs",
        "less",
        "more",
        "man",
    ];
    const PREFIXES: &[&str] = &["python", "pypy", "node", "perl", "ruby", "php", "lua", "irb"];
    NAMES.contains(&name) || PREFIXES.iter().any(|p| name.starts_with(p))
}

/// Programs whose options and arguments run nothing: "approve always"
/// allows them with any words.
const GENERALIZES: &[&str] = &[
    "ls",
    "cat",
    "head",
    "tail",
    "wc",
    "grep",
    "egrep",
    "fgrep",
    "echo",
    "pwd",
    "date",
    "du",
    "df",
    "stat",
    "file",
    "tree",
    "which",
    "whoami",
    "id",
    "uname",
    "basename",
    "dirname",
    "realpath",
    "readlink",
    "cut",
    "tr",
    "uniq",
    "nl",
    "od",
    "hexdump",
    "md5sum",
    "sha1sum",
    "sha256sum",
    "sha512sum",
    "cmp",
    "true",
    "false",
    "sleep",
    "seq",
    "printenv",
    "hostname",
    "nproc",
    "free",
    "uptime",
    "mkdir",
    "touch",
];

/// The pattern "approve always" adds for one part: for a program that runs
/// nothing it is given (`GENERALIZES`), the program as written, up to two
/// leading sub-command words, and `*` when more words follow; for any other,
/// the exact words approved. None (with why) for what is never allowed by a
/// pattern: a shell or interpreter, a workspace program, assignments.
pub fn always_pattern(part: &Part) -> Result<Pattern, String> {
    let program = part.program();
    if !program.literal || !is_system_program(&program.text) {
        return Err(format!("`{}` is not a system program", program.text));
    }
    let name = base_name(&program.text);
    if never_always(name) {
        return Err(format!(
            "`{name}` runs whatever it is given, so it is never approved always"
        ));
    }
    if part.assigns {
        return Err("it sets environment variables".into());
    }
    let rest = arguments(part);
    // Most programs have options that run code (`sort
    // --compress-program`, `tar --to-command`, `git -c alias.x=!…`,
    // `rsync -e`): "always" allows those exactly as they were approved.
    // Only programs that run nothing they are given get `*`.
    if !GENERALIZES.contains(&name) {
        if rest.iter().any(|w| !w.literal) {
            return Err("it has words the shell changes, so it can only be approved once".into());
        }
        return Ok(Pattern {
            program: program.text.clone(),
            args: rest.iter().map(|w| PatternWord::Literal(w.text.clone())).collect(),
        });
    }
    let sub_command = |w: &Word| {
        w.literal
            && w.text
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            && w.text
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
    };
    let lead: Vec<PatternWord> = rest
        .iter()
        .take(2)
        .take_while(|w| sub_command(w))
        .map(|w| PatternWord::Literal(w.text.clone()))
        .collect();
    let mut args = lead.clone();
    if rest.len() > lead.len() {
        args.push(PatternWord::Any);
    }
    Ok(Pattern {
        program: program.text.clone(),
        args,
    })
}

/// A part as the owner reads it.
pub fn render_part(part: &Part) -> String {
    let mut s: Vec<String> = part
        .words
        .iter()
        .map(|w| {
            if w.literal {
                oxibot_config::owner::quote_word(&w.text)
            } else {
                format!("{}⟨changes⟩", w.text)
            }
        })
        .collect();
    if part.more_args {
        s.push("⟨more words⟩".into());
    }
    let prefix = if part.assigns { "⟨with env⟩ " } else { "" };
    format!("{prefix}{}", s.join(" "))
}

/// Whether a redirection may write its target unasked: anything when
/// `writePaths` covers the whole workspace (`.`); otherwise the terminal
/// devices, and workspace paths it covers (a relative target is in the
/// command's working directory). Another absolute path may lead back into
/// the workspace (`/proc/self/cwd/…`): asked.
fn redirect_covered(settings: &ApprovalSettings, working_dir: Option<&str>, target: &Word) -> bool {
    if covers_all(settings) {
        return true;
    }
    if !target.literal {
        return false;
    }
    if matches!(target.text.as_str(), "/dev/null" | "/dev/stdout" | "/dev/stderr") {
        return true;
    }
    let path = match working_dir.filter(|d| !d.is_empty() && !target.text.starts_with('/')) {
        Some(dir) => format!("{}/{}", dir.trim_end_matches('/'), target.text),
        None => target.text.clone(),
    };
    (!path.starts_with('/') || path.starts_with("/workspace/")) && write_covered(settings, &path)
}

/// Whether `writePaths` lists the whole workspace (`.`).
fn covers_all(settings: &ApprovalSettings) -> bool {
    settings
        .write_paths
        .iter()
        .any(|p| p.split('/').all(|c| c.is_empty() || c == "."))
}

/// Whether a workspace path is one `tools.approval.writePaths` covers.
/// A path that climbs (`..`) or leaves the workspace is never covered.
pub fn write_covered(settings: &ApprovalSettings, path: &str) -> bool {
    let path = path.strip_prefix("/workspace/").unwrap_or(path);
    if path.starts_with('/') || path.split('/').any(|c| c == "..") {
        return false;
    }
    let parts: Vec<&str> = path.split('/').filter(|c| !c.is_empty() && *c != ".").collect();
    settings.write_paths.iter().any(|w| {
        let allowed: Vec<&str> = w.split('/').filter(|c| !c.is_empty() && *c != ".").collect();
        parts.len() >= allowed.len() && parts[..allowed.len()] == allowed[..]
    })
}

/// Every file path a unified diff may touch, as toold reads its `--- ` /
/// `+++ ` headers. None when a header is quoted or escaped (read
/// differently by different tools).
pub fn patch_paths(patch: &str) -> Option<Vec<String>> {
    let mut paths = Vec::new();
    for line in patch.lines() {
        let Some(name) = line.strip_prefix("--- ").or_else(|| line.strip_prefix("+++ ")) else {
            continue;
        };
        let name = name.split('\t').next().unwrap_or("").trim();
        if name.contains('"') || name.contains('\\') {
            return None;
        }
        if name == "/dev/null" {
            continue;
        }
        let name = name
            .strip_prefix("a/")
            .or_else(|| name.strip_prefix("b/"))
            .unwrap_or(name);
        paths.push(name.to_string());
    }
    Some(paths)
}

#[cfg(test)]
mod tests;
