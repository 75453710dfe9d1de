use super::*;

fn programs(cmd: &str) -> (Vec<String>, bool) {
    let a = analyze(cmd);
    (a.parts.iter().map(|p| p.program().text.clone()).collect(), a.resolved())
}

fn words(cmd: &str) -> Vec<Vec<String>> {
    analyze(cmd)
        .parts
        .iter()
        .map(|p| p.words.iter().map(|w| w.text.clone()).collect())
        .collect()
}

#[test]
fn lists_and_pipes_split_into_parts() {
    assert_eq!(programs("ls -la"), (vec!["ls".into()], true));
    assert_eq!(
        programs("ls; rm -rf x && echo a || cat b | wc -l & true\nfalse"),
        (
            ["ls", "rm", "echo", "cat", "wc", "true", "false"]
                .map(String::from)
                .to_vec(),
            true
        )
    );
    assert_eq!(
        programs("(cd x; rm y) > out 2>&1"),
        (vec!["cd".into(), "rm".into()], true)
    );
    assert_eq!(
        words("echo 'a b' \"c d\" e\\ f"),
        vec![vec!["echo", "a b", "c d", "e f"]]
    );
    assert_eq!(words("ls # ; rm -rf x"), vec![vec!["ls"]]);
    assert_eq!(words("ls ';' rm"), vec![vec!["ls", ";", "rm"]]);
}

#[test]
fn substitutions_are_read_and_make_it_unresolved() {
    let (p, resolved) = programs("ls $(rm -rf x)");
    assert_eq!(p, vec!["rm", "ls"]);
    assert!(!resolved);
    let (p, resolved) = programs("echo \"`rm -rf x`\"");
    assert_eq!(p, vec!["rm", "echo"]);
    assert!(!resolved);
    assert!(!analyze("$(echo rm) -rf x").resolved());
    assert!(!analyze("$CMD x").resolved());
    assert!(!analyze("eval 'rm -rf x'").resolved());
    assert!(!analyze("cat <<< 'rm -rf x' | sh").resolved());
    assert!(!analyze("sh <<EOF\nrm -rf x\nEOF").resolved());
    assert!(!analyze("for f in *; do rm $f; done").resolved());
    assert!(!analyze("f() { rm -rf x; }; f").resolved());
    assert!(!analyze("diff <(ls) <(rm x)").resolved());
    assert!(!analyze("echo $((1+2))").resolved());
    assert!(!analyze("l?").resolved());
    assert!(!analyze("~/bin/tool").resolved());
    assert!(!analyze("ls 'unclosed").resolved());
    assert!(!analyze("ls )").resolved());
    // Variables that later commands see.
    assert!(!analyze("PATH=/workspace/bin; ls").resolved());
    assert!(!analyze("export PATH=/workspace/bin; ls").resolved());
    assert!(!analyze("read PATH < f; ls").resolved());
    assert!(!analyze("printf -v PATH /x; ls").resolved());
}

#[test]
fn wrappers_are_unwrapped() {
    assert_eq!(words("sh -c 'rm -rf x'"), vec![vec!["rm", "-rf", "x"]]);
    assert_eq!(words("bash -ec \"ls; rm x\""), vec![vec!["ls"], vec!["rm", "x"]]);
    assert_eq!(
        words("env FOO=1 nice -n 5 nohup timeout -s KILL 10 xargs -0 rm"),
        vec![vec!["rm"]]
    );
    let a = analyze("env FOO=1 ls");
    assert!(a.parts[0].assigns);
    assert!(analyze("PATH=/workspace ls").parts[0].assigns);
    assert!(analyze("xargs rm").parts[0].more_args);
    assert_eq!(words("/usr/bin/env -i /bin/rm x"), vec![vec!["/bin/rm", "x"]]);
    assert_eq!(words("command -p exec busybox rm x"), vec![vec!["rm", "x"]]);
    assert_eq!(words("sudo -u root rm x"), vec![vec!["rm", "x"]]);
    assert_eq!(words("command -v rm"), vec![vec!["command", "-v", "rm"]]);
    assert_eq!(words("sh -c 'sh -c \"rm x\"'"), vec![vec!["rm", "x"]]);
    // A shell that reads start-up files from the workspace.
    let a = analyze("bash -lc ls");
    assert_eq!(a.parts[0].words[0].text, "ls");
    assert!(!a.resolved());
    assert!(!analyze("zsh -c ls").resolved());
    // A wrapper option the reader does not know.
    assert!(!analyze("env -S 'rm -rf x'").resolved());
    assert!(!analyze("xargs --weird rm").resolved());
    // A workspace program named like a wrapper is not unwrapped.
    assert_eq!(words("./env rm x"), vec![vec!["./env", "rm", "x"]]);
    assert!(!analyze("sh -c \"$X\"").resolved());
}

/// The first attack review's bypasses: each was allowed by `ls *` and
/// ran something else under dash.
#[test]
fn what_dash_reads_differently_is_not_read() {
    for cmd in [
        "ls ${x:-{};touch pwned;#}",
        "git status >${x:-{};touch pwned;#}",
        "timeout 10>/dev/null touch ls pwned",
        "sh 10>&2 -c ls",
        "env -u $\\\nE ls touch pwned",
        "xargs -E $\\\nE ls touch pwned",
        "env -u 2\\\n>/dev/null ls touch pwned",
        "$\\\nE rm victim",
        "X\\\nY=1 rm victim",
        "PATH=.:/bin sh -c ls",
        "env PATH=.:/bin sh -c ls",
        "BASH_ENV=evil bash -c ls",
        "xargs -I % sh -c \"ls %\"",
        "bash -kc 'ls PATH=.:/bin'",
        "bash -c 'exec -a -sh sh -c ls'",
        "bash -c 'exec -l sh -c ls'",
        "sh -coo errexit vi 'touch pwned'",
        "sh +c ls",
        // The second review's.
        "sh -sc ls <e.sh",
        "sh -cs ls <e.sh",
        "sh -c -s ls <e.sh",
        "dash -ecs ls <e.sh",
        "xargs -a f -I ls env ls pwned",
        "echo touch | xargs -I ls env ls pwned",
        "bash -c 'echo {PATH}>/dev/null; cat x'",
        "bash -c 'printf ${x:--v} PATH 11; ls'",
        "bash -c 'ls $[ #] & touch pwned'",
        "bash -c \"test -v 'a[\\$(touch pwned)]'\"",
        "[ -v 'a[$(touch pwned)]' ]",
        "jobs -x touch pwned",
        "compgen -C 'touch pwned' x",
        "sleep 1 & wait -p PATH; ls",
        // The fourth review's: bash as /bin/sh (Fedora, RHEL).
        "printf %n PATH; ls",
        "printf %5n PATH; ls",
        "printf '%s%n' x PATH; ls",
        "printf $\"-v\" PATH bin; ls",
        "test $\"-v\" 'a[$(touch pwned2)]'",
        "test ! ${x=-v} 'a[$(touch pwned1)]'",
        "test x = x -a ${x:--v} 'a[$(touch p)]'",
        "$\"rm\" -rf victim",
        "git $\"push\" --force",
        "echo evil >> notes/$\"..\"/.profile",
        "cat </dev/tcp/127.0.0.1/9",
        "echo hi >/dev/udp/127.0.0.1/9",
    ] {
        let a = analyze(cmd);
        assert!(!a.resolved(), "{cmd:?} was read as {:?}", a.parts);
    }
    // What dash reads the same way still is.
    assert!(analyze("ls ${HOME}/x 2>/dev/null").resolved());
    assert!(analyze("sh -ec 'ls'").resolved());
}

#[test]
fn system_programs() {
    assert!(is_system_program("ls"));
    assert!(is_system_program("/usr/bin/ls"));
    assert!(is_system_program("/bin/ls"));
    assert!(!is_system_program("./ls"));
    assert!(!is_system_program("/workspace/ls"));
    assert!(!is_system_program("/usr/bin/../../workspace/ls"));
    assert!(!is_system_program("/usr/bin/x/ls"));
    assert_eq!(base_name("/usr/bin/rm"), "rm");
}

#[test]
fn deep_nesting_is_refused_not_overflowed() {
    let deep = "$(".repeat(5000);
    assert!(!analyze(&deep).resolved());
    let nested = format!("{}ls{}", "$(".repeat(40), ")".repeat(40));
    assert!(!analyze(&nested).resolved());
    assert!(!analyze(&format!("{}ls", "env ".repeat(40))).resolved());
    assert!(analyze(&format!("{}ls", "env ".repeat(5))).resolved());
}
