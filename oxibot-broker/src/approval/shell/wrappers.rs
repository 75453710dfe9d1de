//! Wrappers and builtins: what a part really runs once the programs that
//! run other programs (`env`, `timeout`, `xargs`, `sudo`, `exec`, `sh -c`…)
//! are looked through, and the builtins whose words set variables or run
//! code. Kept apart from the reader of the line (`mod.rs`), which hands
//! each part it read here.

use super::{base_name, is_system_program, read_line, Analysis, Part, Word, MAX_DEPTH};

/// Builtins that run text as commands, or change how later names resolve.
const OPAQUE: &[&str] = &[
    "eval",
    "compopt",
    "compgen",
    "complete",
    "bind",
    ".",
    "source",
    "trap",
    "alias",
    "builtin",
    "enable",
    "fc",
    "hash",
    "unalias",
    "declare",
    "typeset",
    "local",
    "export",
    "readonly",
    "set",
    "shopt",
    "let",
    "read",
    "getopts",
    "mapfile",
    "readarray",
    "unset",
];

const SHELLS: &[&str] = &["sh", "bash", "dash", "zsh", "ksh", "ash", "mksh", "yash", "posh"];

/// Records a part, after looking through wrappers: a wrapper's own words
/// are dropped and what it runs is recorded in its place (and read, for a
/// shell's `-c` string).
pub(super) fn unwrap(part: Part, depth: usize, out: &mut Analysis) {
    if depth > MAX_DEPTH {
        out.unresolved.push("nested too deeply to read".into());
        return;
    }
    let program = part.program().clone();
    if !program.literal {
        out.unresolved
            .push(format!("the program is not a fixed name (`{}`)", program.text));
        out.parts.push(part);
        return;
    }
    let name = base_name(&program.text);
    if OPAQUE.contains(&name) && !program.text.contains('/') {
        out.unresolved
            .push(format!("`{name}` runs or changes commands the reader cannot see"));
        out.parts.push(part);
        return;
    }
    // Builtins that set variables or run code from their words under
    // bash: `printf -v` (or a changing first word that becomes it), `test
    // -v 'a[$(cmd)]'` (a subscript is evaluated), `jobs -x` (runs one).
    let any_changes = part.words[1..].iter().any(|w| !w.literal);
    let bash_trap = match name {
        // bash's `%n` stores into the variable named by its argument.
        "printf" => {
            any_changes
                || part
                    .words
                    .iter()
                    .any(|w| w.text.starts_with("-v") || has_percent_n(&w.text))
        }
        "test" | "[" => any_changes || part.words.iter().any(|w| w.text == "-v" || w.text == "-R"),
        "jobs" => part.words.iter().any(|w| w.text.starts_with("-x") || !w.literal),
        // `wait -p NAME` sets NAME.
        "wait" => part.words.iter().any(|w| w.text.starts_with("-p") || !w.literal),
        _ => false,
    };
    if bash_trap && !program.text.contains('/') {
        out.unresolved.push(format!(
            "`{name}` with these words can set variables or run code under bash"
        ));
        out.parts.push(part);
        return;
    }
    // A wrapper named by a workspace path is the workspace's program, not
    // the wrapper: recorded as it is (it cannot match an allow pattern).
    if !is_system_program(&program.text) {
        out.parts.push(part);
        return;
    }
    let words = &part.words[1..];
    let inner = match name {
        "env" => wrapped_env(words),
        "nice" => skip_options(words, &["-n", "--adjustment"], &[], true),
        "nohup" => skip_options(words, &[], &[], false),
        "timeout" => skip_options(
            words,
            &["-s", "--signal", "-k", "--kill-after"],
            &["--foreground", "--preserve-status", "-v", "--verbose"],
            false,
        )
        .and_then(|rest| match rest {
            // The duration comes first.
            Inner::Runs(w, a) if !w.is_empty() => Inner::Runs(w[1..].to_vec(), a),
            other => other,
        }),
        // `-I X` puts each input line in place of X in the words it runs,
        // the program's own included once unwrapped: not read.
        "xargs" if xargs_replaces(words) => Inner::Unknown("`-I` replaces words of what it runs with its input".into()),
        "xargs" => skip_options(words, XARGS_WITH_VALUE, XARGS_FLAGS, false).map_more_args(),
        "sudo" | "doas" => wrapped_sudo(words),
        "command" => match words.first().map(|w| w.text.as_str()) {
            // `command -v x` only looks x up.
            Some("-v" | "-V") => Inner::Itself,
            _ => skip_options(words, &[], &["-p"], false),
        },
        // `exec -a -sh sh` or `exec -l sh` make a login shell, which reads
        // start-up files in the workspace: exec's options are not read.
        "exec" => match words.first() {
            Some(w) if w.text.starts_with('-') && w.text != "--" => {
                Inner::Unknown(format!("the option `{}` (it can make a login shell)", w.text))
            }
            _ => skip_options(words, &[], &[], false),
        },
        "busybox" => match words.first() {
            Some(w) if !w.text.starts_with('-') => Inner::Runs(words.to_vec(), false),
            _ => Inner::Itself,
        },
        "setsid" => skip_options(words, &[], &["-c", "--ctty", "-f", "--fork", "-w", "--wait"], false),
        "stdbuf" => skip_options(words, &["-i", "--input", "-o", "--output", "-e", "--error"], &[], false),
        shell if SHELLS.contains(&shell) => return unwrap_shell(part, shell, depth, out),
        _ => Inner::Itself,
    };
    match inner {
        Inner::Itself => out.parts.push(part),
        Inner::Unknown(why) => {
            out.unresolved.push(format!("`{name}`: {why}"));
            out.parts.push(part);
        }
        Inner::Runs(words, more_args) if words.is_empty() => {
            // `env` alone prints; `exec` alone only redirects; `xargs`
            // alone runs echo.
            if name == "xargs" {
                out.parts.push(Part {
                    words: vec![Word {
                        text: "echo".into(),
                        literal: true,
                    }],
                    assigns: part.assigns,
                    more_args,
                });
            } else if name != "exec" {
                out.parts.push(part);
            }
        }
        Inner::Runs(words, more_args) => unwrap(
            Part {
                words,
                assigns: part.assigns,
                more_args: part.more_args || more_args,
            },
            depth + 1,
            out,
        ),
        Inner::RunsWithAssignments(words) => unwrap(
            Part {
                words,
                assigns: true,
                more_args: part.more_args,
            },
            depth + 1,
            out,
        ),
    }
}

/// Whether xargs's own options (up to its command) include `-I`, `-i`
/// or `--replace`. Options that take a value skip it.
fn xargs_replaces(words: &[Word]) -> bool {
    match skip_options(words, XARGS_WITH_VALUE, XARGS_FLAGS, false) {
        Inner::Runs(rest, _) => words[..words.len() - rest.len()]
            .iter()
            .any(|w| w.text.starts_with("-I") || w.text.starts_with("-i") || w.text.starts_with("--replace")),
        // An option the reader does not know (`-i`) is not read anyway.
        _ => true,
    }
}

/// xargs's options that take a value (`-I` among them: `xargs_replaces`
/// refuses it), and those that take none. One list for both readers.
const XARGS_WITH_VALUE: &[&str] = &[
    "-a",
    "--arg-file",
    "-d",
    "--delimiter",
    "-E",
    "-I",
    "-L",
    "--max-lines",
    "-n",
    "--max-args",
    "-P",
    "--max-procs",
    "-s",
    "--max-chars",
];
const XARGS_FLAGS: &[&str] = &[
    "-0",
    "--null",
    "-r",
    "--no-run-if-empty",
    "-t",
    "--verbose",
    "-x",
    "--exit",
    "-p",
    "--interactive",
    "--open-tty",
    "-o",
];

/// What a wrapper runs.
enum Inner {
    /// Nothing: the wrapper itself is the program.
    Itself,
    /// These words (program first); whether it adds words of its own.
    Runs(Vec<Word>, bool),
    /// These words, with environment assignments.
    RunsWithAssignments(Vec<Word>),
    /// An option the reader does not know.
    Unknown(String),
}

impl Inner {
    fn and_then(self, f: impl FnOnce(Inner) -> Inner) -> Inner {
        f(self)
    }
    fn map_more_args(self) -> Inner {
        match self {
            Inner::Runs(w, _) => Inner::Runs(w, true),
            other => other,
        }
    }
}

/// Skips a wrapper's options: `with_value` take the next word (or
/// `--opt=value`, `-ovalue`); `flags` take none; `numeric`: `-10` is an
/// option (nice). Any other option is unknown.
fn skip_options(words: &[Word], with_value: &[&str], flags: &[&str], numeric: bool) -> Inner {
    let mut i = 0;
    while let Some(w) = words.get(i) {
        if !w.literal {
            return Inner::Unknown(format!("a changing word `{}` among its options", w.text));
        }
        let t = w.text.as_str();
        if t == "--" {
            i += 1;
            break;
        }
        if !t.starts_with('-') || t == "-" {
            break;
        }
        if flags.contains(&t) || (numeric && t[1..].bytes().all(|b| b.is_ascii_digit()) && t.len() > 1) {
            i += 1;
            continue;
        }
        if with_value.contains(&t) {
            i += 2;
            continue;
        }
        let joined = with_value.iter().any(|o| {
            (o.starts_with("--") && t.starts_with(&format!("{o}=")))
                || (o.len() == 2 && !o.starts_with("--") && t.starts_with(o) && t.len() > 2)
        });
        if joined {
            i += 1;
            continue;
        }
        return Inner::Unknown(format!("the option `{t}` is not one the reader knows"));
    }
    Inner::Runs(words.get(i..).unwrap_or_default().to_vec(), false)
}

/// `env [-i] [-u NAME] [NAME=VALUE]… [COMMAND…]`.
fn wrapped_env(words: &[Word]) -> Inner {
    let mut i = 0;
    let mut assigns = false;
    while let Some(w) = words.get(i) {
        if !w.literal {
            return Inner::Unknown(format!("a changing word `{}`", w.text));
        }
        let t = w.text.as_str();
        match t {
            // An emptied or changed environment or directory changes what
            // runs (bash without PATH looks in `.`): like an assignment.
            "-i" | "--ignore-environment" | "-" => {
                assigns = true;
                i += 1
            }
            "-0" | "--null" | "-v" | "--debug" => i += 1,
            "-u" | "--unset" | "-C" | "--chdir" => {
                assigns = true;
                i += 2
            }
            "--" => {
                i += 1;
                break;
            }
            _ if t.starts_with("--unset=")
                || t.starts_with("--chdir=")
                || (t.starts_with("-u") && t.len() > 2)
                || (t.starts_with("-C") && t.len() > 2) =>
            {
                assigns = true;
                i += 1
            }
            _ if t.starts_with('-') => return Inner::Unknown(format!("the option `{t}` is not one the reader knows")),
            _ if is_assignment(t) => {
                assigns = true;
                i += 1;
            }
            _ => break,
        }
    }
    // Assignments after `--` too.
    while words.get(i).is_some_and(|w| w.literal && is_assignment(&w.text)) {
        assigns = true;
        i += 1;
    }
    let rest = words.get(i..).unwrap_or_default().to_vec();
    match (assigns, rest.is_empty()) {
        (_, true) => Inner::Itself,
        (true, false) => Inner::RunsWithAssignments(rest),
        (false, false) => Inner::Runs(rest, false),
    }
}

fn is_assignment(t: &str) -> bool {
    t.split_once('=').is_some_and(|(name, _)| {
        !name.is_empty()
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            && !name.as_bytes()[0].is_ascii_digit()
    })
}

/// `sudo [options] [NAME=VALUE]… COMMAND…`; `-i` and `-s` run a shell.
fn wrapped_sudo(words: &[Word]) -> Inner {
    match skip_options(
        words,
        &[
            "-u", "--user", "-g", "--group", "-C", "-D", "--chdir", "-h", "--host", "-p", "--prompt", "-r", "-t", "-T",
            "-U",
        ],
        &[
            "-E",
            "-H",
            "-n",
            "-P",
            "-S",
            "-b",
            "-k",
            "--preserve-env",
            "--non-interactive",
            "--set-home",
            "--",
        ],
        false,
    ) {
        Inner::Runs(rest, more) => {
            let assigned = rest.iter().take_while(|w| w.literal && is_assignment(&w.text)).count();
            let rest = rest[assigned..].to_vec();
            match (assigned, rest.is_empty()) {
                (_, true) => Inner::Itself,
                (0, false) => Inner::Runs(rest, more),
                (_, false) => Inner::RunsWithAssignments(rest),
            }
        }
        other => other,
    }
}

/// `sh [options] -c STRING [NAME [ARGS…]]`: the string is read as a
/// command line. A shell that reads its start-up files (`-l`, `-i`,
/// `--login`, and zsh always) runs files in the home directory, which is
/// the workspace: what it runs cannot be seen here.
fn unwrap_shell(part: Part, shell: &str, depth: usize, out: &mut Analysis) {
    let words = &part.words[1..];
    // What the shell's own environment or added words do to its string
    // (`PATH=. sh -c ls`, `BASH_ENV=x bash -c ls`, `xargs sh -c "ls %"`)
    // is not in the string: read for the deny list, never allowed.
    if part.assigns {
        out.unresolved.push(format!(
            "`{shell}` gets environment assignments that change what its commands run"
        ));
    }
    if part.more_args {
        out.unresolved.push(format!("`{shell}` gets words added by xargs"));
    }
    let mut command_mode = false;
    let mut reads_stdin = false;
    let mut startup_files = shell == "zsh";
    let mut i = 0;
    while let Some(w) = words.get(i) {
        if !w.literal {
            out.unresolved
                .push(format!("`{shell}`: a changing word `{}` among its options", w.text));
            out.parts.push(part);
            return;
        }
        let t = w.text.as_str();
        if t == "--" || t == "-" {
            i += 1;
            break;
        }
        if t == "--login" || t == "--interactive" {
            startup_files = true;
            i += 1;
            continue;
        }
        if t == "--norc" || t == "--noprofile" || t == "--posix" || t == "--noediting" {
            i += 1;
            continue;
        }
        if t.starts_with("--") {
            out.unresolved
                .push(format!("`{shell}`: the option `{t}` is not one the reader knows"));
            out.parts.push(part);
            return;
        }
        if t.starts_with('+') {
            out.unresolved
                .push(format!("`{shell}`: the option `{t}` is not one the reader knows"));
            out.parts.push(part);
            return;
        }
        if t.starts_with('-') && t.len() > 1 {
            let letters = &t[1..];
            // Only options that change nothing about which programs run:
            // not `-k` (later words become environment), `-o`/`-O` (take
            // values), `-a`, `-f`…
            if let Some(other) = letters.chars().find(|c| !"ceuxvlis".contains(*c)) {
                out.unresolved
                    .push(format!("`{shell}`: the option `-{other}` is not one the reader knows"));
                out.parts.push(part);
                return;
            }
            if letters.contains('c') {
                command_mode = true;
            }
            if letters.contains('l') || letters.contains('i') {
                startup_files = true;
            }
            if letters.contains('s') {
                reads_stdin = true;
            }
            i += 1;
            continue;
        }
        break;
    }
    if reads_stdin && command_mode {
        // dash runs the string, then standard input (a workspace file).
        out.unresolved
            .push(format!("`{shell} -s` also runs commands from its standard input"));
    }
    if startup_files {
        out.unresolved.push(format!(
            "`{shell}` reads start-up files in the home directory (the workspace), which the commands can write"
        ));
    }
    if !command_mode {
        // A script file, or commands from standard input: the shell itself
        // is the program, matched as it is written.
        out.parts.push(part);
        return;
    }
    match words.get(i) {
        Some(script) if script.literal => read_line(&script.text, depth + 1, out),
        Some(script) => {
            out.unresolved
                .push(format!("`{shell} -c` runs a changing string `{}`", script.text));
            out.parts.push(part);
        }
        None => {
            out.unresolved.push(format!("`{shell} -c` without its string"));
            out.parts.push(part);
        }
    }
}

/// Whether a printf format holds a `%…n` directive (flags, width,
/// precision and length between): bash stores a count through it.
fn has_percent_n(format: &str) -> bool {
    let bytes = format.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let mut j = i + 1;
            if bytes.get(j) == Some(&b'%') {
                i = j + 1;
                continue;
            }
            while j < bytes.len() && (b"-+ #0'.*123456789hlLqjzt".contains(&bytes[j])) {
                j += 1;
            }
            if bytes.get(j) == Some(&b'n') {
                return true;
            }
            i = j;
        } else {
            i += 1;
        }
    }
    false
}
