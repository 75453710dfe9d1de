//! Skills: instructions the assistant reads before a task. Bundled ones
//! ship in the binary; the user's live in `workspace/skills/<name>/SKILL.md`
//! (a workspace skill of the same name wins). Everything is read through
//! toold, and a skill's `requires` (programs, environment variables) is
//! checked inside the jail, where its commands would run: a skill is
//! offered only where it can work.
//!
//! Bundled skills are written to `.oxibot/skills/<name>/SKILL.md` in the
//! workspace (through toold) so that the agent reads them with `read_file`
//! like any other; they are rewritten whenever they differ from this
//! binary's. The prompt takes their text from this binary, never back from
//! the workspace, and the workspace's own skills in their accepted version
//! (`prompt_files`).

use std::time::Duration;

use oxibot_proto::messages::{TextFile, ToolCall};

use crate::toolclient::ToolClient;

/// Where bundled skills are written (the user's: `prompt_files::SKILLS_PATTERN`).
pub const BUNDLED_DIR: &str = ".oxibot/skills";
pub const BUNDLED_PATTERN: &str = ".oxibot/skills/*/SKILL.md";

const WAIT: Duration = Duration::from_secs(20);

pub const BUNDLED: &[(&str, &str)] = &[
    ("cron", include_str!("../skills/cron/SKILL.md")),
    ("github", include_str!("../skills/github/SKILL.md")),
    ("skill-creator", include_str!("../skills/skill-creator/SKILL.md")),
    ("summarize", include_str!("../skills/summarize/SKILL.md")),
    ("tmux", include_str!("../skills/tmux/SKILL.md")),
    ("weather", include_str!("../skills/weather/SKILL.md")),
];

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Skill {
    pub name: String,
    pub description: String,
    pub always: bool,
    pub bins: Vec<String>,
    pub env: Vec<String>,
    /// The text after the front matter.
    pub body: String,
    /// Workspace-relative, for read_file.
    pub path: String,
}

/// Reads a SKILL.md: `name`, `description`, `always`, and `requires` with
/// `bins` and `env` (inline `[a, b]` or `- a` lists). nanobot's
/// `metadata: {"nanobot": {"requires": …}}` JSON is read too.
pub fn parse(text: &str, dir_name: &str, path: &str) -> Skill {
    let mut skill = Skill {
        name: dir_name.to_string(),
        path: path.to_string(),
        ..Skill::default()
    };
    let mut lines = text.lines();
    if lines.next().map(str::trim) != Some("---") {
        skill.body = text.trim().to_string();
        return skill;
    }
    let mut front = Vec::new();
    let mut body = Vec::new();
    let mut in_front = true;
    for line in lines {
        if in_front && line.trim() == "---" {
            in_front = false;
            continue;
        }
        if in_front {
            front.push(line);
        } else {
            body.push(line);
        }
    }
    skill.body = body.join("\n").trim().to_string();
    let mut list: Option<&str> = None;
    for line in front {
        let indented = line.starts_with([' ', '\t']);
        let trimmed = line.trim();
        if let (Some(key), true) = (list, trimmed.starts_with("- ")) {
            push(&mut skill, key, unquote(&trimmed[2..]));
            continue;
        }
        let Some((key, value)) = trimmed.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match (indented, key.trim()) {
            (false, "name") if !value.is_empty() => skill.name = unquote(value),
            (false, "description") => skill.description = unquote(value),
            (false, "always") => skill.always = value == "true",
            (false, "metadata") => metadata_requires(&mut skill, value),
            (true, k @ ("bins" | "env")) => {
                list = Some(if k == "bins" { "bins" } else { "env" });
                if let Some(inner) = value.strip_prefix('[').and_then(|v| v.strip_suffix(']')) {
                    for item in inner.split(',').map(unquote).filter(|i| !i.is_empty()) {
                        push(&mut skill, k, item);
                    }
                }
            }
            _ => list = None,
        }
    }
    skill
}

fn push(skill: &mut Skill, key: &str, item: String) {
    if item.is_empty() {
        return;
    }
    match key {
        "bins" => skill.bins.push(item),
        _ => skill.env.push(item),
    }
}

fn unquote(v: &str) -> String {
    v.trim().trim_matches(|c| c == '"' || c == '\'').to_string()
}

fn metadata_requires(skill: &mut Skill, json: &str) {
    let Ok(value) = serde_json::from_str::<serde_json::Value>(json) else {
        return;
    };
    let Some(requires) = value
        .as_object()
        .into_iter()
        .flat_map(|o| o.values())
        .find_map(|v| v.get("requires"))
        .or_else(|| value.get("requires"))
    else {
        return;
    };
    for (key, out) in [("bins", &mut skill.bins), ("env", &mut skill.env)] {
        for item in requires[key].as_array().into_iter().flatten() {
            if let Some(s) = item.as_str() {
                out.push(s.to_string());
            }
        }
    }
    if skill.always {
        return;
    }
    skill.always = value
        .as_object()
        .into_iter()
        .flat_map(|o| o.values())
        .any(|v| v.get("always") == Some(&serde_json::Value::Bool(true)));
}

/// The skills: the workspace's (from the accepted prompt files) first,
/// then the bundled ones of other names, from this binary.
pub fn collect(files: &[TextFile]) -> Vec<Skill> {
    let mut skills: Vec<Skill> = Vec::new();
    for f in files {
        let Some(dir) = f.path.strip_prefix("skills/").and_then(|p| p.strip_suffix("/SKILL.md")) else {
            continue;
        };
        skills.push(parse(&f.text, dir, &f.path));
    }
    for (name, text) in BUNDLED {
        let skill = parse(text, name, &format!("{BUNDLED_DIR}/{name}/SKILL.md"));
        if !skills.iter().any(|s| s.name == skill.name) {
            skills.push(skill);
        }
    }
    skills
}

/// Writes the bundled skills that are missing or differ in the workspace
/// (`read` is what toold found there).
pub async fn ensure_bundled(tools: &ToolClient, read: &[TextFile]) {
    for (name, text) in BUNDLED {
        let path = format!("{BUNDLED_DIR}/{name}/SKILL.md");
        if read.iter().any(|f| f.path == path && f.text == *text) {
            continue;
        }
        let write = ToolCall::WriteFile {
            path: path.clone(),
            content: text.to_string(),
        };
        if let Err(e) = tools.call(write, WAIT).await {
            tracing::warn!(skill = name, "cannot write a bundled skill into the workspace: {e}");
        }
    }
}

/// The prompt's skills section: always-skills inline, the others listed
/// with their path, and the ones whose requirements the jail lacks named
/// with what is missing. `provided`: environment variables this turn's
/// commands get from a credential at the egress door (`GH_TOKEN` for the
/// github skill), which count as set.
pub async fn section(tools: &ToolClient, skills: Vec<Skill>, provided: &[String]) -> String {
    if skills.is_empty() {
        return String::new();
    }
    let asked = requirements(&skills);
    let (mut missing_bins, mut missing_env) = if asked.bins.is_empty() && asked.env.is_empty() {
        (Vec::new(), Vec::new())
    } else {
        match tools.probe(asked.bins.clone(), asked.env.clone(), WAIT).await {
            Ok(m) => m,
            // Unknown: treat every requirement as missing rather than offer
            // a skill that may not work.
            Err(e) => {
                tracing::warn!("cannot check skill requirements in the jail: {e}");
                (asked.bins, asked.env)
            }
        }
    };
    // What could not be asked counts as missing.
    missing_bins.extend(asked.unchecked_bins);
    missing_env.extend(asked.unchecked_env);
    missing_env.retain(|name| !provided.contains(name));
    render(&skills, &missing_bins, &missing_env)
}

/// The names one `Probe` asks about, within the limits toold enforces
/// (`MAX_ID` bytes a name, `MAX_PROBE_NAMES` names a list): a skill file
/// is workspace text, so a 300-byte or a thousandth name is not sent but
/// kept aside, and its skill is then not offered.
#[derive(Debug, Default)]
pub struct Requirements {
    pub bins: Vec<String>,
    pub env: Vec<String>,
    pub unchecked_bins: Vec<String>,
    pub unchecked_env: Vec<String>,
}

pub fn requirements(skills: &[Skill]) -> Requirements {
    use oxibot_proto::messages::{MAX_ID, MAX_PROBE_NAMES};
    let split = |names: Vec<String>| -> (Vec<String>, Vec<String>) {
        let (mut asked, mut unchecked) = (Vec::new(), Vec::new());
        for n in names {
            if n.len() <= MAX_ID && asked.len() < MAX_PROBE_NAMES {
                asked.push(n);
            } else {
                unchecked.push(n);
            }
        }
        (asked, unchecked)
    };
    let (bins, unchecked_bins) = split(unique(skills.iter().take(MAX_SKILLS).flat_map(|s| s.bins.clone())));
    let (env, unchecked_env) = split(unique(skills.iter().take(MAX_SKILLS).flat_map(|s| s.env.clone())));
    Requirements {
        bins,
        env,
        unchecked_bins,
        unchecked_env,
    }
}

/// In first-seen order; linear, since a skill file may list thousands.
fn unique(items: impl Iterator<Item = String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    items.filter(|i| seen.insert(i.clone())).collect()
}

/// The skills section is bounded, whatever the workspace holds: so many
/// skills, descriptions of so many bytes, inlined bodies of so many bytes
/// in all (later always-skills are listed instead).
const MAX_SKILLS: usize = 40;
const MAX_DESCRIPTION: usize = 200;
const MAX_INLINE: usize = 12 * 1024;

pub fn render(skills: &[Skill], missing_bins: &[String], missing_env: &[String]) -> String {
    let mut inline = String::new();
    let mut listed = String::new();
    let mut unavailable = Vec::new();
    if skills.len() > MAX_SKILLS {
        unavailable.push(format!(
            "{} more skills (only {MAX_SKILLS} are offered)",
            skills.len() - MAX_SKILLS
        ));
    }
    for s in skills.iter().take(MAX_SKILLS) {
        let description = crate::providers::shorten(&s.description.replace('\n', " "), MAX_DESCRIPTION);
        let missing: Vec<String> = s
            .bins
            .iter()
            .filter(|b| missing_bins.contains(b))
            .chain(s.env.iter().filter(|e| missing_env.contains(e)))
            .map(|name| crate::providers::shorten(name, 40))
            .collect();
        if !missing.is_empty() {
            unavailable.push(format!("{} (needs {})", s.name, missing.join(", ")));
        } else if s.always && inline.len() + s.body.len() <= MAX_INLINE {
            inline.push_str(&format!("\n### Skill: {}\n\n{}\n", s.name, s.body));
        } else {
            listed.push_str(&format!("- {}: {description} ({})\n", s.name, s.path));
        }
    }
    let mut out = String::from("\n## Skills\n");
    out.push_str(&inline);
    if !listed.is_empty() {
        out.push_str("\nMore skills; read a skill's file with read_file before using it:\n");
        out.push_str(&listed);
    }
    if !unavailable.is_empty() {
        out.push_str(&format!(
            "\nNot available in this sandbox: {}.\n",
            unavailable.join("; ")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn front_matter_in_both_styles() {
        let s = parse(
            "---\nname: gh\ndescription: \"GitHub\"\nalways: false\nrequires:\n  bins: [gh, git]\n  env:\n    - GH_TOKEN\n---\n# Body\n",
            "github",
            "skills/github/SKILL.md",
        );
        assert_eq!(s.name, "gh");
        assert_eq!(s.description, "GitHub");
        assert_eq!(s.bins, ["gh", "git"]);
        assert_eq!(s.env, ["GH_TOKEN"]);
        assert_eq!(s.body, "# Body");
        let n = parse(
            "---\nname: x\ndescription: d\nmetadata: {\"nanobot\":{\"requires\":{\"bins\":[\"jq\"]},\"always\":true}}\n---\nbody",
            "x",
            "p",
        );
        assert_eq!(n.bins, ["jq"]);
        assert!(n.always);
        let plain = parse("no front matter", "dir", "p");
        assert_eq!((plain.name.as_str(), plain.body.as_str()), ("dir", "no front matter"));
    }

    #[test]
    fn every_bundled_skill_parses_and_requirements_decide_what_is_offered() {
        // A turn rewrote the bundled copy in the workspace: not used.
        let files: Vec<TextFile> = [
            TextFile {
                path: format!("{BUNDLED_DIR}/cron/SKILL.md"),
                text: "---\nname: cron\nalways: true\n---\nTAMPERED".into(),
                truncated: false,
            },
            TextFile {
                path: "skills/weather/SKILL.md".into(),
                text: "---\nname: weather\ndescription: My own weather\n---\n".into(),
                truncated: false,
            },
        ]
        .to_vec();
        let skills = collect(&files);
        assert_eq!(skills.len(), 6);
        assert!(skills.iter().all(|s| !s.description.is_empty()), "{skills:?}");
        let text = render(&skills, &["gh".into(), "tmux".into()], &["GH_TOKEN".into()]);
        assert!(text.contains("### Skill: cron"), "{text}");
        assert!(!text.contains("TAMPERED"), "{text}");
        assert!(
            text.contains("- weather: My own weather (skills/weather/SKILL.md)"),
            "{text}"
        );
        assert!(text.contains("- summarize:"), "{text}");
        assert!(text.contains("github (needs gh, GH_TOKEN)"), "{text}");
        assert!(text.contains("tmux (needs tmux)"), "{text}");
        assert!(!text.contains("- tmux:") && !text.contains("- github:"), "{text}");
    }

    #[test]
    fn the_section_is_bounded_whatever_the_workspace_holds() {
        let big = |i: usize| Skill {
            name: format!("s{i}"),
            description: "d".repeat(40_000),
            always: true,
            body: "b".repeat(30_000),
            path: format!("skills/s{i}/SKILL.md"),
            ..Skill::default()
        };
        let skills: Vec<Skill> = (0..100).map(big).collect();
        let text = render(&skills, &[], &[]);
        assert!(
            text.len() < MAX_INLINE + MAX_SKILLS * (MAX_DESCRIPTION + 64) + 1024,
            "{}",
            text.len()
        );
        assert!(text.contains("60 more skills"), "{}", &text[text.len() - 200..]);
    }
}

#[cfg(test)]
mod limits {
    use super::*;
    use oxibot_proto::messages::{ToolCall, ToolRequest};
    use proptest::prelude::*;

    /// The attack as seen: a SKILL.md with a 300-byte `bins` entry killed
    /// toold at the start of every turn. The name is kept aside, the skill
    /// is not offered, and the probe stays within toold's limits.
    #[test]
    fn an_overlong_or_endless_requirement_list_is_kept_aside() {
        let long = "b".repeat(300);
        let text = format!("---\nname: evil\ndescription: d\nrequires:\n  bins: [{long}, sh]\n---\n");
        let mut skills = vec![parse(&text, "evil", "skills/evil/SKILL.md")];
        let many: String = (0..500).map(|i| format!("    - bin{i}\n")).collect();
        skills.push(parse(
            &format!("---\nname: many\ndescription: d\nrequires:\n  bins:\n{many}---\n"),
            "many",
            "skills/many/SKILL.md",
        ));
        let r = requirements(&skills);
        assert_eq!(
            r.unchecked_bins.len(),
            1 + 500 + 1 - oxibot_proto::messages::MAX_PROBE_NAMES
        );
        assert!(r.unchecked_bins.contains(&long));
        let probe = ToolRequest::Call {
            id: 1,
            call: ToolCall::Probe {
                bins: r.bins,
                env: r.env,
            },
        };
        assert!(oxibot_proto::Checked::new(&probe).is_ok());
        let text = render(&skills, &r.unchecked_bins, &[]);
        assert!(text.contains("evil (needs bbbb"), "{text}");
        assert!(text.contains("many (needs bin"), "{text}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Whatever the workspace's skill files say, the probe they lead to
        /// is one toold accepts.
        #[test]
        fn any_skill_files_give_a_probe_toold_accepts(
            texts in proptest::collection::vec(
                (proptest::collection::vec("[ -~]{0,400}", 0..80), any::<bool>()), 0..50)
        ) {
            let skills: Vec<Skill> = texts
                .iter()
                .enumerate()
                .map(|(i, (names, nanobot))| {
                    let text = if *nanobot {
                        format!("---\nname: s\nmetadata: {}\n---\n", serde_json::json!({"nanobot": {"requires": {"bins": names, "env": names}}}))
                    } else {
                        format!("---\nname: s\nrequires:\n  bins: [{}]\n  env:\n{}---\n", names.join(", "),
                                names.iter().map(|n| format!("    - {n}\n")).collect::<String>())
                    };
                    parse(&text, &format!("s{i}"), "p")
                })
                .collect();
            let r = requirements(&skills);
            let probe = ToolRequest::Call { id: 1, call: ToolCall::Probe { bins: r.bins, env: r.env } };
            prop_assert!(oxibot_proto::Checked::new(&probe).is_ok());
        }
    }
}
