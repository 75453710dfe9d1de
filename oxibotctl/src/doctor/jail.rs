//! The jail, measured from inside it: one script run through the tool
//! daemon exactly as the agent would run it, and its output judged.

/// Prints `key=value` lines describing the process it runs as.
pub const SCRIPT: &str = r#"
echo "uid=$(id -u)"
grep -E '^(NoNewPrivs|Seccomp|CapEff|CapPrm|CapBnd|CapAmb):' /proc/self/status | tr -d '\t ' | sed 's/:/=/'
echo "pid1=$(tr '\0' ' ' < /proc/1/cmdline)"
echo "netdevs=$(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | tr '\n' ',')"
echo "hostname=$(uname -n)"
if touch /usr/.oxibot-doctor 2>/dev/null; then echo usr_writable=yes; rm -f /usr/.oxibot-doctor; else echo usr_writable=no; fi
if [ -e /etc/oxibot ]; then echo etc_oxibot_visible=yes; else echo etc_oxibot_visible=no; fi
if touch /workspace/.oxibot-doctor 2>/dev/null; then echo workspace_writable=yes; rm -f /workspace/.oxibot-doctor; else echo workspace_writable=no; fi
echo "nproc_limit=$(awk '/^Max processes/ {print $3}' /proc/self/limits)"
"#;

#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    pub seen: String,
}

/// Judges the script's output. A missing line is a failed check.
pub fn judge(output: &str) -> Vec<Check> {
    let get = |k: &str| {
        output
            .lines()
            .find_map(|l| l.strip_prefix(k).and_then(|r| r.strip_prefix('=')))
            .map(str::to_string)
    };
    let zero = |v: &Option<String>| {
        v.as_deref()
            .is_some_and(|s| !s.is_empty() && s.chars().all(|c| c == '0'))
    };
    let mut checks = Vec::new();
    let mut add = |name, ok, seen: Option<String>| {
        checks.push(Check {
            name,
            ok,
            seen: seen.unwrap_or_default(),
        })
    };
    let uid = get("uid");
    add(
        "runs as a user other than root",
        uid.as_deref().is_some_and(|u| u != "0" && !u.is_empty()),
        uid,
    );
    let nnp = get("NoNewPrivs");
    add("no_new_privs is set", nnp.as_deref() == Some("1"), nnp);
    let sc = get("Seccomp");
    add("a seccomp filter is active (mode 2)", sc.as_deref() == Some("2"), sc);
    for (name, key) in [
        ("no effective capabilities", "CapEff"),
        ("no permitted capabilities", "CapPrm"),
        ("empty capability bounding set", "CapBnd"),
        ("no ambient capabilities", "CapAmb"),
    ] {
        let v = get(key);
        add(name, zero(&v), v);
    }
    let pid1 = get("pid1");
    add(
        "own pid namespace (pid 1 is the tool daemon)",
        pid1.as_deref().is_some_and(|p| p.contains("oxibot-toold")),
        pid1,
    );
    let net = get("netdevs");
    add(
        "own network namespace (loopback only)",
        net.as_deref() == Some("lo,"),
        net,
    );
    let host = get("hostname");
    add("own uts namespace", host.as_deref() == Some("oxibot-jail"), host);
    let usr = get("usr_writable");
    add("/usr is read-only", usr.as_deref() == Some("no"), usr);
    let etc = get("etc_oxibot_visible");
    add("/etc/oxibot is not visible", etc.as_deref() == Some("no"), etc);
    let ws = get("workspace_writable");
    add("/workspace is writable", ws.as_deref() == Some("yes"), ws);
    let nproc = get("nproc_limit");
    add(
        "a process limit is set",
        nproc.as_deref().is_some_and(|n| n.parse::<u64>().is_ok()),
        nproc,
    );
    checks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unjailed_process_fails_the_checks() {
        let out = "uid=0\nNoNewPrivs=0\nSeccomp=0\nCapEff=000001ffffffffff\nCapPrm=000001ffffffffff\n\
                   CapBnd=000001ffffffffff\nCapAmb=0000000000000000\npid1=/sbin/init\nnetdevs=lo,eth0,\n\
                   hostname=server\nusr_writable=yes\netc_oxibot_visible=yes\nworkspace_writable=yes\nnproc_limit=unlimited\n";
        let failed: Vec<&str> = judge(out).iter().filter(|c| !c.ok).map(|c| c.name).collect();
        assert_eq!(failed.len(), 12, "{failed:?}");
    }

    #[test]
    fn a_jailed_process_passes() {
        let out = "uid=999\nNoNewPrivs=1\nSeccomp=2\nCapEff=0000000000000000\nCapPrm=0000000000000000\n\
                   CapBnd=0000000000000000\nCapAmb=0000000000000000\npid1=/usr/bin/oxibot-toold --socket x\n\
                   netdevs=lo,\nhostname=oxibot-jail\nusr_writable=no\netc_oxibot_visible=no\n\
                   workspace_writable=yes\nnproc_limit=256\n";
        assert!(judge(out).iter().all(|c| c.ok), "{:?}", judge(out));
    }
}
