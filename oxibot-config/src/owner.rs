//! What keeps the owner in charge: `tools.approval` (which commands and
//! tools run without asking) and `budgets` (how much each chat may spend).
//! The settings and the pattern words are here, shared by the broker and
//! `oxibotctl`; what a command *is* (the shell parse) and the gate itself
//! are the broker's.
//!
//! Both live in the admin's `config.json`, outside the workspace: no tool
//! writes them, so the model cannot change its own policy.

use std::collections::BTreeMap;

use serde::Deserialize;

/// `tools.approval`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ApprovalSettings {
    pub mode: ApprovalMode,
    /// Patterns of commands that run without asking (mode `on-miss`).
    pub allow: Vec<String>,
    /// Patterns of commands refused without asking, in every mode: a
    /// command that starts with a deny pattern's words.
    pub deny: Vec<String>,
    /// No answer in this time means no.
    pub timeout_secs: u32,
    /// MCP tools that run without asking, as the model calls them
    /// (`mcp_github_search`), or a prefix ending in `*` (`mcp_github_*`).
    pub allow_tools: Vec<String>,
    /// Workspace paths the file tools (`write_file`, `edit_file`,
    /// `apply_patch`) change without asking: a directory covers what is
    /// under it; `.` covers the whole workspace (the default).
    pub write_paths: Vec<String>,
}

impl Default for ApprovalSettings {
    fn default() -> Self {
        ApprovalSettings {
            mode: ApprovalMode::Off,
            allow: Vec::new(),
            deny: Vec::new(),
            timeout_secs: 300,
            allow_tools: Vec::new(),
            write_paths: vec![".".into()],
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ApprovalMode {
    /// Nothing is asked (deny patterns still refuse).
    #[default]
    Off,
    /// What `allow` matches runs; anything else is asked.
    OnMiss,
    /// Every command is asked.
    Always,
}

impl ApprovalMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalMode::Off => "off",
            ApprovalMode::OnMiss => "on-miss",
            ApprovalMode::Always => "always",
        }
    }
}

/// One word of a pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PatternWord {
    /// `*`: any words, none included.
    Any,
    Literal(String),
}

/// A command pattern: the program (a base name such as `git`, or a full
/// path such as `/usr/bin/python3`) and its argument words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    pub program: String,
    pub args: Vec<PatternWord>,
}

impl Pattern {
    /// `git status`, `ls *`, `/usr/bin/python3 -m pytest *`. Words are split
    /// at blanks; single or double quotes keep a word with blanks whole
    /// (`grep "two words" *`); `*` alone is any words.
    pub fn parse(text: &str) -> Result<Pattern, String> {
        let words = split_words(text)?;
        let mut words = words.into_iter();
        let Some((program, quoted)) = words.next() else {
            return Err("is empty".into());
        };
        if program == "*" && !quoted {
            return Err("must name its program (\"ls *\", not \"*\")".into());
        }
        if program.is_empty() || program.contains(char::is_whitespace) {
            return Err(format!("{program:?} is not a program name"));
        }
        if program.contains('/') && !program.starts_with('/') {
            return Err(format!(
                "{program}: a program's path must be absolute (or give its name alone)"
            ));
        }
        let args = words
            .map(|(w, quoted)| match (w.as_str(), quoted) {
                ("*", false) => PatternWord::Any,
                _ => PatternWord::Literal(w),
            })
            .collect();
        Ok(Pattern { program, args })
    }

    /// The pattern as it would be written.
    pub fn render(&self) -> String {
        std::iter::once(quote_word(&self.program))
            .chain(self.args.iter().map(|w| match w {
                PatternWord::Any => "*".to_string(),
                PatternWord::Literal(s) if s == "*" => "'*'".to_string(),
                PatternWord::Literal(s) => quote_word(s),
            }))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// A word as a shell would read it back: bare when it holds only plain
/// characters, else in single quotes.
pub fn quote_word(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./,:=+@%^".contains(&b));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// Blank-separated words with quotes; (word, whether any of it was quoted).
fn split_words(text: &str) -> Result<Vec<(String, bool)>, String> {
    let mut words = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let Some(_) = chars.peek() else { break };
        let mut word = String::new();
        let mut quoted = false;
        while let Some(&c) = chars.peek() {
            if c.is_whitespace() {
                break;
            }
            chars.next();
            match c {
                '\'' | '"' => {
                    quoted = true;
                    loop {
                        match chars.next() {
                            Some(q) if q == c => break,
                            Some(other) => word.push(other),
                            None => return Err(format!("has an unclosed {c}")),
                        }
                    }
                }
                _ => word.push(c),
            }
        }
        words.push((word, quoted));
    }
    Ok(words)
}

/// `budgets`: limits per chat (`<channel>:<chat id>`), with overrides per
/// channel. Unset: no limit.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Budgets {
    #[serde(flatten)]
    pub limits: BudgetLimits,
    /// Per channel: each key set here replaces the one above.
    pub channels: BTreeMap<String, BudgetLimits>,
    /// USD per million tokens, per model (for `costPerDayUsd`).
    pub prices: BTreeMap<String, Price>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct BudgetLimits {
    /// Tokens the provider reported (prompt and completion), per day.
    pub tokens_per_day: Option<u64>,
    /// Tool calls per clock hour.
    pub tool_calls_per_hour: Option<u64>,
    /// Turns started or waiting for one chat at once.
    pub concurrent_turns: Option<u32>,
    /// Spend per day, from the provider's usage and `prices`.
    pub cost_per_day_usd: Option<f64>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Price {
    pub input_per_m_tok: f64,
    pub output_per_m_tok: f64,
}

impl Budgets {
    /// The limits in force for one channel.
    pub fn for_channel(&self, channel: &str) -> BudgetLimits {
        let base = &self.limits;
        match self.channels.get(channel) {
            None => base.clone(),
            Some(o) => BudgetLimits {
                tokens_per_day: o.tokens_per_day.or(base.tokens_per_day),
                tool_calls_per_hour: o.tool_calls_per_hour.or(base.tool_calls_per_hour),
                concurrent_turns: o.concurrent_turns.or(base.concurrent_turns),
                cost_per_day_usd: o.cost_per_day_usd.or(base.cost_per_day_usd),
            },
        }
    }

    /// Whether any limit is set anywhere.
    pub fn any(&self) -> bool {
        std::iter::once(&self.limits).chain(self.channels.values()).any(|l| {
            l.tokens_per_day.is_some()
                || l.tool_calls_per_hour.is_some()
                || l.concurrent_turns.is_some()
                || l.cost_per_day_usd.is_some()
        })
    }

    pub fn wants_cost(&self) -> bool {
        std::iter::once(&self.limits)
            .chain(self.channels.values())
            .any(|l| l.cost_per_day_usd.is_some())
    }
}

/// The checks of both, for `Config::validate`: (key, what is wrong).
pub fn check(approval: &ApprovalSettings, budgets: &Budgets, models: &[&str]) -> Result<(), (String, String)> {
    for (list, key) in [(&approval.allow, "allow"), (&approval.deny, "deny")] {
        for p in list.iter() {
            Pattern::parse(p).map_err(|why| (format!("tools.approval.{key}"), format!("\"{p}\" {why}")))?;
        }
    }
    if approval.timeout_secs == 0 || approval.timeout_secs > 86_400 {
        return Err((
            "tools.approval.timeoutSecs".into(),
            "must be between 1 and 86400 seconds".into(),
        ));
    }
    for p in &approval.write_paths {
        if p.is_empty() || p.starts_with('/') || p.split('/').any(|c| c == "..") {
            return Err((
                "tools.approval.writePaths".into(),
                format!("\"{p}\" must be a path inside the workspace, relative to it (\".\" for all of it)"),
            ));
        }
    }
    for (name, l) in std::iter::once(("", &budgets.limits)).chain(budgets.channels.iter().map(|(n, l)| (n.as_str(), l)))
    {
        let key = if name.is_empty() {
            "budgets".to_string()
        } else {
            format!("budgets.channels.{name}")
        };
        if l.tokens_per_day == Some(0) || l.tool_calls_per_hour == Some(0) || l.concurrent_turns == Some(0) {
            return Err((key, "a limit of 0 stops everything; remove the key for no limit".into()));
        }
        if l.cost_per_day_usd.is_some_and(|c| !(c.is_finite() && c > 0.0)) {
            return Err((format!("{key}.costPerDayUsd"), "must be a positive number".into()));
        }
    }
    for (model, p) in &budgets.prices {
        let ok = |v: f64| v.is_finite() && v >= 0.0;
        if !ok(p.input_per_m_tok) || !ok(p.output_per_m_tok) {
            return Err((format!("budgets.prices.{model}"), "prices must be 0 or more".into()));
        }
    }
    if budgets.wants_cost() {
        if let Some(m) = models.iter().find(|m| !budgets.prices.contains_key(**m)) {
            return Err((
                format!("budgets.prices.{m}"),
                format!(
                    "costPerDayUsd is set but model {m} has no price: add \"budgets\": {{\"prices\": {{\"{m}\": \
                     {{\"inputPerMTok\": …, \"outputPerMTok\": …}}}}}}"
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_parse_into_program_and_words() {
        let p = Pattern::parse("/usr/bin/python3 -m pytest *").unwrap();
        assert_eq!(p.program, "/usr/bin/python3");
        assert_eq!(
            p.args,
            vec![
                PatternWord::Literal("-m".into()),
                PatternWord::Literal("pytest".into()),
                PatternWord::Any
            ]
        );
        assert_eq!(
            Pattern::parse("grep 'two words' *").unwrap().args[0],
            PatternWord::Literal("two words".into())
        );
        assert_eq!(
            Pattern::parse("echo '*'").unwrap().args[0],
            PatternWord::Literal("*".into())
        );
        assert!(Pattern::parse("*").is_err());
        assert!(Pattern::parse("  ").is_err());
        assert!(Pattern::parse("bin/tool").is_err());
        assert!(Pattern::parse("echo 'open").is_err());
        assert_eq!(Pattern::parse("git  status  *").unwrap().render(), "git status *");
        assert_eq!(Pattern::parse("echo '*' \"a b\"").unwrap().render(), "echo '*' 'a b'");
    }

    #[test]
    fn channel_limits_override_key_by_key() {
        let b: Budgets = serde_json::from_value(serde_json::json!({
            "tokensPerDay": 1000, "toolCallsPerHour": 10,
            "channels": {"telegram": {"tokensPerDay": 50}}
        }))
        .unwrap();
        let t = b.for_channel("telegram");
        assert_eq!((t.tokens_per_day, t.tool_calls_per_hour), (Some(50), Some(10)));
        assert_eq!(b.for_channel("slack").tokens_per_day, Some(1000));
        assert!(b.any());
        assert!(!Budgets::default().any());
    }

    #[test]
    fn checks_name_the_key_at_fault() {
        let a = ApprovalSettings {
            allow: vec!["*".into()],
            ..Default::default()
        };
        assert_eq!(
            check(&a, &Budgets::default(), &[]).unwrap_err().0,
            "tools.approval.allow"
        );
        let b: Budgets = serde_json::from_value(serde_json::json!({"costPerDayUsd": 1.5})).unwrap();
        let err = check(&ApprovalSettings::default(), &b, &["gpt-x"]).unwrap_err();
        assert_eq!(err.0, "budgets.prices.gpt-x");
        let b: Budgets = serde_json::from_value(serde_json::json!({"tokensPerDay": 0})).unwrap();
        assert_eq!(check(&ApprovalSettings::default(), &b, &[]).unwrap_err().0, "budgets");
        let a = ApprovalSettings {
            write_paths: vec!["../etc".into()],
            ..Default::default()
        };
        assert!(check(&a, &Budgets::default(), &[]).is_err());
    }
}
