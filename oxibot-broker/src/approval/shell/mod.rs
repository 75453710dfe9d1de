//! What a shell command line runs: the programs and their words, found by
//! reading it as `sh` would, split at `;`, `&&`, `||`, `|`, `&`, newlines
//! and subshells, with command substitutions read as commands of their
//! own and wrappers (`sh -c`, `env`, `timeout`, `xargs`, …) unwrapped.
//!
//! This is a *subset* of the shell grammar, on purpose: whatever it does
//! not read with certainty (a keyword, a here-document, arithmetic, a
//! variable or a substitution where the program goes, `eval`, a function
//! definition) makes the command unresolved, and an unresolved command is
//! asked, never allowed by a pattern. A full grammar would read more, but
//! every construct it read would be one more place where the gate and the
//! shell could disagree; this reader's rule is that it understands what it
//! accepts, and refuses the rest. It reads what dash (Debian's /bin/sh)
//! and bash (/bin/sh on Fedora and RHEL, and `bash -c`) both read the same
//! way; bash's own forms are refused.

/// One word as the shell will pass it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Word {
    /// The text with quotes removed (what runs, when `literal`).
    pub text: String,
    /// False when the shell changes it before running (a variable, a glob,
    /// a substitution, `~`): such a word can become any words, so only a
    /// pattern's `*` matches it.
    pub literal: bool,
}

/// One program the command line runs, with its words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// The program first.
    pub words: Vec<Word>,
    /// Environment assignments come with it (`PATH=… ls`, `env X=1 ls`):
    /// they can change what the program does or which program runs.
    pub assigns: bool,
    /// It gets more words than written (`xargs`).
    pub more_args: bool,
}

impl Part {
    pub fn program(&self) -> &Word {
        &self.words[0]
    }
}

/// What a command line runs, and what could not be read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Analysis {
    pub parts: Vec<Part>,
    /// Why the reading is incomplete; empty when every program is known.
    pub unresolved: Vec<String>,
    /// The files its redirections write (`> f`, `>> f`, `>| f`, `<> f`,
    /// `>& f`): a file change like `write_file`'s.
    pub writes: Vec<Word>,
}

impl Analysis {
    pub fn resolved(&self) -> bool {
        self.unresolved.is_empty()
    }
}

/// Deeper nesting (substitutions, subshells, `sh -c` in `sh -c`) than
/// this is not read.
const MAX_DEPTH: usize = 16;

pub fn analyze(command: &str) -> Analysis {
    let mut out = Analysis::default();
    read_line(command, 0, &mut out);
    out
}

/// Reads a whole command line (a `sh -c` string, say) into `out`.
pub(super) fn read_line(text: &str, depth: usize, out: &mut Analysis) {
    if depth > MAX_DEPTH {
        out.unresolved.push("nested too deeply to read".into());
        return;
    }
    if text.contains("\\\n") {
        // dash removes a line continuation before it reads anything, in
        // places this reader would read differently (after `$`, inside a
        // name, between a descriptor and `>`): not read at all.
        out.unresolved.push("a line continuation (backslash-newline)".into());
        return;
    }
    let chars: Vec<char> = text.chars().collect();
    let mut r = Reader {
        chars: &chars,
        pos: 0,
        depth,
        out,
    };
    if r.list(false).is_err() {
        return;
    }
    if r.pos < chars.len() {
        r.out.unresolved.push(format!("unexpected {:?}", chars[r.pos]));
    }
}

/// Stop reading: the reason is already in `unresolved`.
struct Stop;

struct Reader<'a, 'o> {
    chars: &'a [char],
    pos: usize,
    depth: usize,
    out: &'o mut Analysis,
}

/// A word being read, with what happened in it.
struct RawWord {
    text: String,
    literal: bool,
    /// It began with an unquoted `NAME=`.
    assignment: bool,
    /// Any part of it was quoted.
    quoted: bool,
}

const KEYWORDS: &[&str] = &[
    "if", "then", "elif", "else", "fi", "case", "esac", "for", "select", "while", "until", "do", "done", "function",
    "{", "}", "[[", "]]", "!", "time", "coproc", "in",
];

impl Reader<'_, '_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }
    fn peek_at(&self, n: usize) -> Option<char> {
        self.chars.get(self.pos + n).copied()
    }
    fn give_up(&mut self, why: impl Into<String>) -> Result<(), Stop> {
        self.out.unresolved.push(why.into());
        Err(Stop)
    }

    fn skip_blanks(&mut self) {
        loop {
            match self.peek() {
                Some(' ' | '\t') => self.pos += 1,
                // A line continuation.
                Some('\\') if self.peek_at(1) == Some('\n') => self.pos += 2,
                Some('#') => {
                    // A comment runs to the end of the line.
                    while self.peek().is_some_and(|c| c != '\n') {
                        self.pos += 1;
                    }
                }
                _ => return,
            }
        }
    }

    /// A list of commands, up to the end (or, `nested`, a closing `)`).
    fn list(&mut self, nested: bool) -> Result<(), Stop> {
        loop {
            self.skip_blanks();
            match self.peek() {
                None => {
                    if nested {
                        return self.give_up("a parenthesis is not closed");
                    }
                    return Ok(());
                }
                Some(')') if nested => {
                    self.pos += 1;
                    return Ok(());
                }
                Some(')') => return self.give_up("a closing parenthesis without its opening one"),
                Some(';' | '&' | '|' | '\n') => {
                    // Separators: `;`, `&`, `&&`, `||`, `|`, `|&`, `;;`.
                    if self.peek() == Some(';') && self.peek_at(1) == Some(';') {
                        return self.give_up("`;;` outside a case");
                    }
                    self.pos += 1;
                }
                Some('(') => {
                    if self.peek_at(1) == Some('(') {
                        return self.give_up("arithmetic `((…))`");
                    }
                    self.pos += 1;
                    self.nest()?;
                    self.list(true)?;
                    self.depth -= 1;
                    self.redirections_after_group()?;
                }
                Some(_) => self.simple()?,
            }
        }
    }

    fn nest(&mut self) -> Result<(), Stop> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return self.give_up("nested too deeply to read");
        }
        Ok(())
    }

    /// `(…) > file`: only redirections may follow a subshell.
    fn redirections_after_group(&mut self) -> Result<(), Stop> {
        loop {
            self.skip_blanks();
            match self.peek() {
                Some('<' | '>') => self.redirection()?,
                Some(c) if c.is_ascii_digit() && self.fd_redirection_ahead() => self.redirection()?,
                None | Some(';' | '&' | '|' | '\n' | ')') => return Ok(()),
                Some(_) => return self.give_up("words after a subshell"),
            }
        }
    }

    /// Digits followed directly by `<` or `>` (`2>&1`). Only one digit
    /// is a descriptor to dash (`10>x` is the word 10, then `>x`), while
    /// bash takes any number: more than one is given up in `redirection`.
    fn fd_redirection_ahead(&self) -> bool {
        let mut n = 0;
        while self.peek_at(n).is_some_and(|c| c.is_ascii_digit()) {
            n += 1;
        }
        n > 0 && matches!(self.peek_at(n), Some('<' | '>'))
    }

    /// A simple command: assignments, words and redirections.
    fn simple(&mut self) -> Result<(), Stop> {
        let mut words: Vec<Word> = Vec::new();
        let mut assigns = false;
        loop {
            self.skip_blanks();
            match self.peek() {
                None | Some(';' | '&' | '|' | '\n' | ')') => break,
                Some('(') => return self.give_up("a parenthesis inside a command (a function definition?)"),
                Some('<' | '>') => self.redirection()?,
                Some(c) if c.is_ascii_digit() && self.fd_redirection_ahead() => self.redirection()?,
                Some(_) => {
                    let w = self.word()?;
                    if w.text.ends_with('}') && matches!(self.peek(), Some('<' | '>')) {
                        // bash's `{NAME}>file` sets the variable NAME.
                        return self.give_up("bash's `{NAME}>` redirection, which sets a variable");
                    }
                    if words.is_empty() && w.assignment {
                        assigns = true;
                        continue;
                    }
                    if words.is_empty() && !w.quoted && KEYWORDS.contains(&w.text.as_str()) {
                        return self.give_up(format!("the shell keyword `{}`", w.text));
                    }
                    words.push(Word {
                        text: w.text,
                        literal: w.literal,
                    });
                }
            }
        }
        if words.is_empty() {
            if assigns {
                // `PATH=/workspace; ls`: a shell variable that every later
                // command of the line sees.
                return self.give_up("a shell variable is set for the commands after it");
            }
            // Only redirections: nothing runs.
            return Ok(());
        }
        let part = Part {
            words,
            assigns,
            more_args: false,
        };
        let depth = self.depth;
        wrappers::unwrap(part, depth, self.out);
        Ok(())
    }

    /// `<`, `>`, `>>`, `>|`, `<>`, `>&`, `<&`, `&>` with an optional fd
    /// before it, and its target word. Here-documents and here-strings
    /// are not read.
    fn redirection(&mut self) -> Result<(), Stop> {
        let mut digits = 0;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.pos += 1;
            digits += 1;
        }
        if digits > 1 {
            return self.give_up("a descriptor number of more than one digit (dash and bash read it differently)");
        }
        let op = self.peek();
        self.pos += 1;
        // Whether it opens its target for writing, and whether the target
        // may be a descriptor (`>&2`, `<&0`).
        let (writes, duplicates) = match (op, self.peek()) {
            (Some('<'), Some('<')) => return self.give_up("a here-document or here-string"),
            (Some('<' | '>'), Some('(')) => return self.give_up("process substitution"),
            (Some('>'), Some('&')) => {
                self.pos += 1;
                (true, true)
            }
            (Some('>'), Some('>' | '|')) | (Some('<'), Some('>')) => {
                self.pos += 1;
                (true, false)
            }
            (Some('<'), Some('&')) => {
                self.pos += 1;
                (false, true)
            }
            (Some('>'), _) => (true, false),
            _ => (false, false),
        };
        self.skip_blanks();
        match self.peek() {
            None | Some(';' | '&' | '|' | '\n' | ')' | '<' | '>' | '(') => {
                self.give_up("a redirection without its target")
            }
            Some(_) => {
                let target = self.word()?;
                if target.text.contains("/dev/tcp") || target.text.contains("/dev/udp") {
                    // bash opens a socket there; dash a file.
                    return self.give_up("a redirection to bash's /dev/tcp or /dev/udp");
                }
                let descriptor = duplicates
                    && target.literal
                    && (target.text == "-" || target.text.bytes().all(|b| b.is_ascii_digit()));
                if writes && !descriptor {
                    self.out.writes.push(Word {
                        text: target.text,
                        literal: target.literal,
                    });
                }
                Ok(())
            }
        }
    }

    /// One word, with quotes and escapes removed. Substitutions in it are
    /// read as commands of their own.
    fn word(&mut self) -> Result<RawWord, Stop> {
        let mut w = RawWord {
            text: String::new(),
            literal: true,
            assignment: false,
            quoted: false,
        };
        let start = self.pos;
        // An unquoted `NAME=` at the start makes an assignment.
        let mut name_so_far = true;
        while let Some(c) = self.peek() {
            match c {
                ' ' | '\t' | '\n' | ';' | '&' | '|' | '<' | '>' | '(' | ')' => break,
                '\'' => {
                    name_so_far = false;
                    w.quoted = true;
                    self.pos += 1;
                    loop {
                        match self.peek() {
                            None => return self.give_up("an unclosed single quote").map(|_| w),
                            Some('\'') => {
                                self.pos += 1;
                                break;
                            }
                            Some(q) => {
                                w.text.push(q);
                                self.pos += 1;
                            }
                        }
                    }
                }
                '"' => {
                    name_so_far = false;
                    w.quoted = true;
                    self.pos += 1;
                    self.double_quoted(&mut w)?;
                }
                '\\' => {
                    name_so_far = false;
                    self.pos += 1;
                    match self.peek() {
                        None => break,
                        Some('\n') => self.pos += 1,
                        Some(e) => {
                            w.quoted = true;
                            w.text.push(e);
                            self.pos += 1;
                        }
                    }
                }
                '$' => {
                    name_so_far = false;
                    self.dollar(&mut w)?;
                }
                '`' => {
                    name_so_far = false;
                    self.backquoted()?;
                    w.literal = false;
                }
                '=' if name_so_far && self.pos > start => {
                    w.assignment = true;
                    name_so_far = false;
                    w.text.push(c);
                    self.pos += 1;
                }
                '+' if name_so_far && self.pos > start && self.peek_at(1) == Some('=') => {
                    w.assignment = true;
                    name_so_far = false;
                    w.text.push_str("+=");
                    self.pos += 2;
                }
                _ => {
                    if matches!(c, '*' | '?' | '[' | '{' | ']' | '}') || (c == '~' && self.pos == start) {
                        // Globs, brace expansion, tilde: the shell makes
                        // other words of it.
                        w.literal = false;
                    }
                    let starts_name = c.is_ascii_alphabetic() || c == '_';
                    if name_so_far && !(starts_name || (self.pos > start && c.is_ascii_digit())) {
                        name_so_far = false;
                    }
                    w.text.push(c);
                    self.pos += 1;
                }
            }
        }
        if w.assignment {
            // What it assigns is not a word that runs.
            w.literal = true;
        }
        Ok(w)
    }

    /// The inside of "…", up to and past its closing quote.
    fn double_quoted(&mut self, w: &mut RawWord) -> Result<(), Stop> {
        loop {
            match self.peek() {
                None => return self.give_up("an unclosed double quote"),
                Some('"') => {
                    self.pos += 1;
                    return Ok(());
                }
                Some('\\') => {
                    self.pos += 1;
                    match self.peek() {
                        Some(e @ ('$' | '`' | '"' | '\\')) => {
                            w.text.push(e);
                            self.pos += 1;
                        }
                        Some('\n') => self.pos += 1,
                        _ => w.text.push('\\'),
                    }
                }
                Some('$') => self.dollar(w)?,
                Some('`') => {
                    self.backquoted()?;
                    w.literal = false;
                }
                Some(c) => {
                    w.text.push(c);
                    self.pos += 1;
                }
            }
        }
    }

    /// `$(…)` (read as commands), `$name`, `${…}`; `$((…))` and `$'…'` are
    /// not read.
    fn dollar(&mut self, w: &mut RawWord) -> Result<(), Stop> {
        self.pos += 1;
        match self.peek() {
            Some('(') if self.peek_at(1) == Some('(') => self.give_up("arithmetic `$((…))`"),
            Some('[') => self.give_up("bash's arithmetic `$[…]`"),
            Some('(') => {
                self.pos += 1;
                w.literal = false;
                self.out.unresolved.push("a command substitution `$(…)`".into());
                self.nest()?;
                self.list(true)?;
                self.depth -= 1;
                Ok(())
            }
            Some('{') => {
                w.literal = false;
                self.pos += 1;
                // Only `${NAME}`, `${#NAME}` and `${NAME<op>text}` with the
                // POSIX operators and plain text, up to the first `}` (as
                // dash ends it). bash reads more into the rest (`${!x}`,
                // `${x@P}`, `${x[…]}`, `${x:offset}` evaluate, assign or run):
                // not read.
                let start = self.pos;
                while let Some(c) = self.peek() {
                    self.pos += 1;
                    if c == '}' {
                        let inside: String = self.chars[start..self.pos - 1].iter().collect();
                        return match plain_parameter(&inside) {
                            true => Ok(()),
                            false => {
                                self.give_up(format!("the expansion `${{{inside}}}`, which bash may read as code"))
                            }
                        };
                    }
                    if matches!(c, '{' | '$' | '`' | '\'' | '"' | '\\') {
                        return self.give_up("braces, quotes or substitutions inside `${…}`");
                    }
                }
                self.give_up("an unclosed `${`")
            }
            Some('\'') => self.give_up("ANSI-C quoting `$'…'`"),
            // bash drops the `$` of `$"…"` (a translated string); dash keeps it.
            Some('"') => self.give_up("bash's translated string `$\"…\"`"),
            Some(c) if c.is_ascii_alphanumeric() || c == '_' => {
                w.literal = false;
                if c.is_ascii_digit() {
                    self.pos += 1;
                } else {
                    while self.peek().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
                        self.pos += 1;
                    }
                }
                Ok(())
            }
            Some('@' | '*' | '#' | '?' | '-' | '$' | '!') => {
                w.literal = false;
                self.pos += 1;
                Ok(())
            }
            // A lone `$` is itself.
            _ => {
                w.text.push('$');
                Ok(())
            }
        }
    }

    /// `` `…` ``: the inside, unescaped, read as a command line.
    fn backquoted(&mut self) -> Result<(), Stop> {
        self.pos += 1;
        let mut inner = String::new();
        loop {
            match self.peek() {
                None => return self.give_up("an unclosed backquote"),
                Some('`') => {
                    self.pos += 1;
                    break;
                }
                Some('\\') => {
                    self.pos += 1;
                    match self.peek() {
                        Some(e @ ('`' | '\\' | '$')) => {
                            inner.push(e);
                            self.pos += 1;
                        }
                        _ => inner.push('\\'),
                    }
                }
                Some(c) => {
                    inner.push(c);
                    self.pos += 1;
                }
            }
        }
        self.out.unresolved.push("a command substitution in backquotes".into());
        read_line(&inner, self.depth + 1, self.out);
        Ok(())
    }
}

/// Whether the inside of `${…}` is a plain parameter expansion: a name (or
/// one digit, or `#` before either), then nothing or a POSIX operator and
/// plain text.
fn plain_parameter(inside: &str) -> bool {
    let rest = inside.strip_prefix('#').filter(|r| !r.is_empty()).unwrap_or(inside);
    let name_len = if rest.starts_with(|c: char| c.is_ascii_digit()) {
        1
    } else {
        rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len())
    };
    if name_len == 0 {
        return false;
    }
    let (name, tail) = rest.split_at(name_len);
    if name.starts_with(|c: char| c.is_ascii_digit()) && name.len() > 1 {
        return false;
    }
    if tail.is_empty() {
        return true;
    }
    if inside.starts_with('#') {
        return false;
    }
    const OPERATORS: &[&str] = &[":-", ":=", ":?", ":+", "##", "%%", "-", "=", "?", "+", "#", "%"];
    let Some(op) = OPERATORS.iter().find(|op| tail.starts_with(**op)) else {
        return false;
    };
    tail[op.len()..]
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || " _-./,:=+@%^~*?".contains(c))
}

/// The base name of a program word: `/usr/bin/env` → `env`.
pub fn base_name(program: &str) -> &str {
    program.rsplit('/').next().unwrap_or(program)
}

/// Whether a program word names a system program: a bare name (looked up
/// on the jail's fixed PATH, all under the read-only /usr) or an absolute
/// path in a system directory. Not `./tool` or `bin/tool`: those are
/// files in the workspace, which the model writes.
pub fn is_system_program(program: &str) -> bool {
    if !program.contains('/') {
        return true;
    }
    const DIRS: &[&str] = &["/usr/local/bin/", "/usr/bin/", "/bin/", "/usr/sbin/", "/sbin/"];
    DIRS.iter().any(|d| {
        program
            .strip_prefix(d)
            .is_some_and(|rest| !rest.is_empty() && !rest.contains('/'))
    }) && !program.split('/').any(|c| c == ".." || c == ".")
}

mod wrappers;

#[cfg(test)]
mod tests;
