//! What the kernel and the units offer: user namespaces, Landlock and
//! seccomp support, and each unit's exposure.

use std::path::Path;

use super::{Finding, Level};

/// The packaged units and the exposure each may have (as CI's gate).
const UNITS: [(&str, f64); 4] = [
    ("oxibot-broker.service", 1.5),
    ("oxibot-channeld@.service", 1.5),
    ("oxibot-toold.service", 2.0),
    ("oxibot-egressd.service", 1.5),
];
const UNIT_DIRS: [&str; 2] = ["/etc/systemd/system", "/usr/lib/systemd/system"];

fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

pub fn sandbox() -> Vec<Finding> {
    let mut out = Vec::new();
    let max = read_trimmed("/proc/sys/user/max_user_namespaces");
    let debian = read_trimmed("/proc/sys/kernel/unprivileged_userns_clone");
    let apparmor = read_trimmed("/proc/sys/kernel/apparmor_restrict_unprivileged_userns");
    let check = "unprivileged user namespaces (toold's jail)";
    out.push(if max.as_deref() == Some("0") {
        Finding::new("sandbox", check, Level::Fail, "user.max_user_namespaces = 0")
            .fix("sysctl -w user.max_user_namespaces=15000 (and in /etc/sysctl.d/)")
    } else if debian.as_deref() == Some("0") {
        Finding::new("sandbox", check, Level::Fail, "kernel.unprivileged_userns_clone = 0")
            .fix("sysctl -w kernel.unprivileged_userns_clone=1 (and in /etc/sysctl.d/)")
    } else if apparmor.as_deref() == Some("1") {
        Finding::new(
            "sandbox",
            check,
            Level::Fail,
            "kernel.apparmor_restrict_unprivileged_userns = 1",
        )
        .fix("allow it for oxibot-toold with an AppArmor profile that has `userns,` (see SECURITY.md)")
    } else {
        Finding::new("sandbox", check, Level::Ok, "available")
    });
    let lsm = read_trimmed("/sys/kernel/security/lsm").unwrap_or_default();
    out.push(if lsm.split(',').any(|m| m == "landlock") {
        Finding::new("sandbox", "Landlock (file limits for daemons)", Level::Ok, lsm)
    } else {
        Finding::new(
            "sandbox",
            "Landlock (file limits for daemons)",
            Level::Warn,
            format!("LSMs: {lsm}"),
        )
        .fix("boot with landlock in lsm= (e.g. lsm=landlock,lockdown,yama,apparmor); seccomp and users still apply")
    });
    let seccomp = std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Seccomp:"));
    out.push(if seccomp {
        Finding::new("sandbox", "seccomp filters", Level::Ok, "available")
    } else {
        Finding::new("sandbox", "seccomp filters", Level::Fail, "the kernel has no seccomp")
            .fix("use a kernel built with CONFIG_SECCOMP_FILTER")
    });
    out
}

pub fn units() -> Vec<Finding> {
    let mut out = Vec::new();
    for (unit, bound) in UNITS {
        let check = format!("{unit} exposure at most {bound}");
        let Some(path) = UNIT_DIRS.iter().map(|d| Path::new(d).join(unit)).find(|p| p.exists()) else {
            out.push(Finding::new(
                "units",
                check,
                Level::Skip,
                "not installed (supervise mode?)",
            ));
            continue;
        };
        let output = std::process::Command::new("systemd-analyze")
            .args(["security", "--offline=true", "--no-pager"])
            .arg(&path)
            .output();
        let text = match output {
            Ok(o) => String::from_utf8_lossy(&o.stdout).to_string(),
            Err(e) => {
                out.push(Finding::new(
                    "units",
                    check,
                    Level::Skip,
                    format!("systemd-analyze: {e}"),
                ));
                continue;
            }
        };
        let score = text
            .lines()
            .find_map(|l| l.split("Overall exposure level for ").nth(1))
            .and_then(|rest| rest.split(':').nth(1))
            .and_then(|s| s.split_whitespace().next())
            .and_then(|s| s.parse::<f64>().ok());
        out.push(match score {
            Some(s) if s <= bound => Finding::new("units", check, Level::Ok, format!("{s}")),
            Some(s) => Finding::new("units", check, Level::Warn, format!("{s}")).fix(format!(
                "a drop-in loosened {unit}: systemctl cat {unit}; systemd-delta"
            )),
            None => Finding::new("units", check, Level::Warn, "no score from systemd-analyze"),
        });
    }
    out
}
