use super::*;
use crate::approval::shell::analyze;

fn settings(mode: ApprovalMode, allow: &[&str], deny: &[&str]) -> ApprovalSettings {
    ApprovalSettings {
        mode,
        allow: allow.iter().map(|s| s.to_string()).collect(),
        deny: deny.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn verdict(s: &ApprovalSettings, cmd: &str) -> Verdict {
    judge(s, &[], &analyze(cmd), None)
}

fn is_ask(v: &Verdict) -> bool {
    matches!(v, Verdict::Ask(_))
}

/// The bypasses other assistants' gates fell to, facing a policy that
/// allows `ls`, `ls *`, `git status` and `cat *`: each is asked, none runs
/// unasked.
#[test]
fn wrappers_chains_substitutions_and_variables_are_asked() {
    let s = settings(
        ApprovalMode::OnMiss,
        &["ls", "ls *", "git status", "cat *", "echo *"],
        &[],
    );
    for cmd in [
        "ls; rm -rf x",
        "ls && rm -rf x",
        "ls || rm -rf x",
        "ls | rm -rf x",
        "ls & rm -rf x",
        "ls\nrm -rf x",
        "(ls; rm -rf x)",
        "ls $(rm -rf x)",
        "ls `rm -rf x`",
        "ls \"$(rm -rf x)\"",
        "$(echo ls)",
        "`echo ls`",
        "$CMD",
        "${CMD}",
        "eval ls",
        "eval 'rm -rf x'",
        "sh -c 'ls; rm -rf x'",
        "bash -lc ls",
        "zsh -c ls",
        "bash -c \"$X\"",
        "env rm -rf x",
        "env PATH=/workspace ls",
        "PATH=/workspace ls",
        "PATH=/workspace; ls",
        "LD_PRELOAD=/workspace/x.so ls",
        "nice rm -rf x",
        "nohup rm -rf x",
        "timeout 5 rm -rf x",
        "xargs rm -rf",
        "sudo rm -rf x",
        "command rm -rf x",
        "exec rm -rf x",
        "busybox rm -rf x",
        "cat <<< 'rm -rf x' | sh",
        "sh <<EOF\nrm -rf x\nEOF",
        "./ls",
        "/workspace/ls",
        "bin/ls",
        "/usr/bin/../../workspace/ls",
        "l?",
        "l*",
        "ls\\;rm -rf x; rm -rf y",
        "git status; git push",
        "git status --porcelain",
        "git $(echo status)",
        "for f in a; do rm $f; done",
        "if true; then rm x; fi",
        "f() { rm x; }; f",
        "alias ls=rm; ls",
        "export PATH=/workspace; ls",
        "read PATH < p; ls",
        ". ./script",
        "source ./script",
        "diff <(ls) <(rm x)",
        "echo $((1))",
        "ls > /dev/null; `rm x`",
        // The third review's: an emptied environment (bash then looks in
        // `.`), bash's expansions that run or assign, xargs's long options.
        "env -i bash -c 'rg x'",
        "env -u PATH bash -c 'ls'",
        "env -i ls",
        "bash -c 'echo ${1@P}' x '$(touch pwned)'",
        "bash -c 'echo ${!1}' x 'a[$(touch pwned)]'",
        "bash -c 'echo ${HOME:_}'",
        "bash -c 'echo ${HOME[_]}'",
        "bash -c 'echo ${HOME:PATH=0}; ls'",
        "bash -c 'echo ${BASH_CMDS[ls]=./rg}; ls'",
        "echo touch | xargs --max-procs 1 -I ls env ls pwned",
    ] {
        let v = verdict(&s, cmd);
        assert!(is_ask(&v), "{cmd:?} was not asked: {v:?}");
    }
    // The legitimate path: what the patterns say runs without asking.
    for cmd in [
        "ls",
        "ls -la /tmp",
        "/usr/bin/ls -la",
        "/bin/ls",
        "git status",
        "ls | cat -n",
        "(ls; git status) > out 2>&1",
        "sh -c 'ls -l; git status'",
        "timeout 10 ls",
        "ls *.txt",
        "ls $HOME",
        "echo 'a;b' \"$(ls)\" | cat",
    ] {
        let v = verdict(&s, cmd);
        if cmd.contains("$(") {
            assert!(is_ask(&v), "{cmd:?}: {v:?}");
        } else {
            assert_eq!(v, Verdict::Allow, "{cmd:?}");
        }
    }
}

#[test]
fn deny_sees_through_paths_wrappers_and_options() {
    let s = settings(ApprovalMode::OnMiss, &["rm *", "git *"], &["rm", "git push"]);
    for cmd in [
        "rm x",
        "/usr/bin/rm -rf x",
        "/bin/rm x",
        "./rm x",
        "r\\m x",
        "'rm' x",
        "sh -c 'rm x'",
        "env -i rm x",
        "timeout 1 rm x",
        "xargs rm",
        "ls; rm x",
        "git -C dir push --force",
        "git push",
        "ls $(rm x)",
    ] {
        assert!(
            matches!(verdict(&s, cmd), Verdict::Deny(_)),
            "{cmd:?}: {:?}",
            verdict(&s, cmd)
        );
    }
    // Wrappers the reader does not unwrap, given the denied program: asked
    // (refused when nobody can be asked).
    for cmd in [
        "ionice rm victim",
        "/usr/bin/time rm victim",
        "find . -exec rm {} +",
        "flock f rm x",
        "ionice sh -c 'rm victim'",
        "nice -n1 ionice bash -c 'ls;rm x'",
    ] {
        assert!(is_ask(&verdict(&s, cmd)), "{cmd:?}: {:?}", verdict(&s, cmd));
        let off = settings(ApprovalMode::Off, &["*"], &["rm"]);
        assert!(matches!(verdict(&off, cmd), Verdict::Deny(_)), "{cmd:?}");
    }
    // A changing word where the pattern has "push": asked, not allowed.
    assert!(is_ask(&verdict(&s, "git $X")));
    assert!(is_ask(&verdict(&s, "git p*")));
    assert_eq!(verdict(&s, "git status"), Verdict::Allow);
    // Mode off still refuses by the deny list, and refuses what it cannot read.
    let off = settings(ApprovalMode::Off, &[], &["rm"]);
    assert!(matches!(verdict(&off, "/usr/bin/rm x"), Verdict::Deny(_)));
    assert!(matches!(verdict(&off, "$(echo rm) x"), Verdict::Deny(_)));
    assert_eq!(verdict(&off, "ls -la"), Verdict::Allow);
    assert_eq!(
        verdict(&settings(ApprovalMode::Off, &[], &[]), "$(anything)"),
        Verdict::Allow
    );
}

#[test]
fn always_asks_everything_and_full_paths_match_their_file() {
    let s = settings(ApprovalMode::Always, &["ls *"], &[]);
    assert!(is_ask(&verdict(&s, "ls")));
    let s = settings(ApprovalMode::OnMiss, &["/usr/bin/ls *"], &[]);
    assert_eq!(verdict(&s, "/usr/bin/ls -l"), Verdict::Allow);
    // A bare name runs what the jail's PATH finds: the same file.
    assert_eq!(verdict(&s, "ls -l"), Verdict::Allow);
    assert!(is_ask(&verdict(&s, "cat x")));
    // Another name of the same file is another program (vim as rview).
    if let (Ok(a), Ok(b)) = (
        std::fs::canonicalize("/usr/bin/xz"),
        std::fs::canonicalize("/usr/bin/unxz"),
    ) {
        assert_eq!(a, b, "the test needs unxz to be a link to xz");
        let s = settings(ApprovalMode::OnMiss, &["/usr/bin/xz *"], &[]);
        assert!(is_ask(&verdict(&s, "unxz a.xz")));
        assert!(is_ask(&verdict(&s, "/usr/bin/unxz a.xz")));
        assert_eq!(verdict(&s, "xz -d a.xz"), Verdict::Allow);
    }
    // The pattern's words: * is any words, fixed words are fixed.
    let s = settings(ApprovalMode::OnMiss, &["git log * --oneline"], &[]);
    assert_eq!(verdict(&s, "git log --oneline"), Verdict::Allow);
    assert_eq!(verdict(&s, "git log -n 3 --oneline"), Verdict::Allow);
    assert!(is_ask(&verdict(&s, "git log -n 3")));
    assert!(is_ask(&verdict(&s, "git log $X")));
}

#[test]
fn approve_always_never_allows_a_shell_or_interpreter() {
    let part = |cmd: &str| analyze(cmd).parts.remove(0);
    // A program whose options can run code is allowed exactly as approved.
    assert_eq!(
        always_pattern(&part("git commit -m x")).unwrap().render(),
        "git commit -m x"
    );
    assert_eq!(always_pattern(&part("git status")).unwrap().render(), "git status");
    assert_eq!(
        always_pattern(&part("/usr/bin/cargo test")).unwrap().render(),
        "/usr/bin/cargo test"
    );
    assert!(always_pattern(&part("sort $X")).is_err());
    // One that runs nothing it is given, with any words.
    assert_eq!(always_pattern(&part("ls -la")).unwrap().render(), "ls *");
    assert_eq!(always_pattern(&part("grep -rn todo src")).unwrap().render(), "grep *");
    for cmd in [
        "sh x.sh",
        "bash",
        "python3 -m pytest",
        "python3.11 x.py",
        "node x.js",
        "env",
        "perl -e 1",
        "timeout",
        "./tool",
        "FOO=1 make",
        "find . -exec rm {} ;",
    ] {
        assert!(always_pattern(&part(cmd)).is_err(), "{cmd}");
    }
}

#[test]
fn redirections_are_file_changes_that_write_paths_cover() {
    let s = ApprovalSettings {
        mode: ApprovalMode::OnMiss,
        allow: vec!["echo *".into(), "cat *".into(), "git status".into(), "cd *".into()],
        write_paths: vec!["notes".into()],
        ..Default::default()
    };
    let v = |cmd: &str, dir: Option<&str>| judge(&s, &[], &analyze(cmd), dir);
    for cmd in [
        "echo '[core] fsmonitor = x' >> .git/config; git status",
        "cat notes/x >> .gitconfig",
        "echo x > notes/../AGENTS.md",
        "echo x >| .profile",
        "echo x <> .profile",
        "echo x >& .profile",
        "echo x > $F",
        "echo x > /proc/self/cwd/.git/config",
        "(echo x) > .profile",
        "cd ..; echo x > notes/a.md",
    ] {
        assert!(is_ask(&v(cmd, None)), "{cmd:?}: {:?}", v(cmd, None));
    }
    for cmd in [
        "echo x > notes/a.md",
        "echo x >> /workspace/notes/a",
        "cat notes/a > /dev/null 2>&1",
        "echo x >&2",
    ] {
        assert_eq!(v(cmd, None), Verdict::Allow, "{cmd:?}");
    }
    // A relative target is in the working directory.
    assert_eq!(v("echo x > a.md", Some("notes")), Verdict::Allow);
    assert!(is_ask(&v("echo x > a.md", Some("src"))));
    // With the whole workspace listed (the default), redirections are free.
    let all = ApprovalSettings {
        write_paths: vec![".".into()],
        ..s.clone()
    };
    assert_eq!(judge(&all, &[], &analyze("echo x > .profile"), None), Verdict::Allow);
}

#[test]
fn write_paths_are_lexical_and_never_climb() {
    let s = ApprovalSettings {
        write_paths: vec!["docs".into(), "src/app".into()],
        ..Default::default()
    };
    assert!(write_covered(&s, "docs/a.md"));
    assert!(write_covered(&s, "/workspace/docs/a.md"));
    assert!(write_covered(&s, "./src/app/x.rs"));
    assert!(!write_covered(&s, "src/other.rs"));
    assert!(!write_covered(&s, "docs/../AGENTS.md"));
    assert!(!write_covered(&s, "/etc/passwd"));
    assert!(!write_covered(&s, "docsX/a"));
    assert!(write_covered(&ApprovalSettings::default(), "anything/at/all"));
    assert_eq!(
        patch_paths("--- a/docs/x\n+++ b/docs/x\n@@ -1 +1 @@\n-a\n+b\n--- /dev/null\n+++ b/AGENTS.md\n"),
        Some(vec!["docs/x".to_string(), "docs/x".into(), "AGENTS.md".into()])
    );
    assert_eq!(patch_paths("--- \"a/x y\"\n+++ \"b/x y\"\n"), None);
}
