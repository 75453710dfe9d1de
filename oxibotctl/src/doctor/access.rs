//! What the settings allow: who may talk on each channel, how e-mail
//! senders are verified, where the health endpoint listens.

use oxibot_config::access::{Access, DmPolicy, GroupPolicy};
use oxibot_config::layout::Layout;
use serde_json::Value;

use super::{Finding, Level};

pub fn settings(layout: &Layout) -> Vec<Finding> {
    let mut out = Vec::new();
    for name in layout.enabled_channels() {
        let s = &layout.channels[&name];
        let check = format!("{name}: who may talk is limited");
        // The same reading as the broker's access decision.
        let access = match Access::of(&name, s) {
            Ok(a) => a,
            Err(e) => {
                out.push(
                    Finding::new("access", check, Level::Fail, e.to_string())
                        .fix("correct the value; the broker refuses to start with it"),
                );
                continue;
            }
        };
        let (users, dm) = (&access.allowed_users, access.dm_policy.name());
        out.push(if access.open_to_everybody() {
            Finding::new("access", check, Level::Warn, "everybody may (dmPolicy open or allowedUsers [\"*\"])").fix(format!(
                "anyone who finds the bot can make it run commands in the jail: list ids in channels.{name}.allowedUsers, or use dmPolicy \"pairing\""
            ))
        } else if users.is_empty() && access.dm_policy == DmPolicy::Allowlist {
            Finding::new("access", check, Level::Warn, "allowedUsers is empty: nobody may").fix(format!(
                "list the user ids in channels.{name}.allowedUsers, or oxibotctl users allow {name} ID"
            ))
        } else {
            Finding::new("access", check, Level::Ok, format!("dmPolicy {dm}, {} user(s) listed", users.len()))
        });
        if access.group_policy == GroupPolicy::Open {
            out.push(
                Finding::new(
                    "access",
                    format!("{name}: group messages need a mention"),
                    Level::Warn,
                    "groupPolicy open",
                )
                .fix(format!(
                    "set channels.{name}.groupPolicy to \"mention\" or \"allowlist\""
                )),
            );
        }
        if name == "email" {
            let trust = s.get("trustFromHeader").and_then(Value::as_bool).unwrap_or(false);
            let authserv = s
                .get("authservId")
                .and_then(Value::as_str)
                .unwrap_or("")
                .trim()
                .to_string();
            let check = "email: senders are verified by the mail server (authservId)";
            out.push(if trust {
                Finding::new("access", check, Level::Fail, "trustFromHeader: anyone can claim any sender")
                    .fix("set channels.email.authservId to your server's authserv-id and remove trustFromHeader")
            } else if authserv.is_empty() {
                Finding::new("access", check, Level::Fail, "no authservId: every mail is refused").fix(
                    "set channels.email.authservId to the id your mail server writes first in its Authentication-Results headers",
                )
            } else {
                Finding::new("access", check, Level::Ok, authserv)
            });
        }
    }
    let sandbox_off = matches!(layout.tools.sandbox, oxibot_config::config::SandboxMode::Off);
    out.push(if sandbox_off {
        Finding::new("settings", "the tool jail is on", Level::Fail, "tools.sandbox \"off\"")
            .fix("remove tools.sandbox: the model's commands run with the tool user's full rights")
    } else {
        Finding::new("settings", "the tool jail is on", Level::Ok, "on")
    });
    if layout.tools.seccomp_log {
        out.push(
            Finding::new(
                "settings",
                "seccomp refuses (not only logs)",
                Level::Warn,
                "tools.seccompLog is on",
            )
            .fix("remove tools.seccompLog once the missing syscall is found"),
        );
    }
    let h = &layout.health;
    let check = "the health endpoint listens on loopback only";
    out.push(if !h.enabled {
        Finding::new("settings", check, Level::Ok, "off")
    } else if h.host.is_loopback() {
        Finding::new("settings", check, Level::Ok, format!("{}:{}", h.host, h.port))
    } else {
        Finding::new("settings", check, Level::Fail, format!("{}:{}", h.host, h.port))
            .fix("set health.host to 127.0.0.1 and put a reverse proxy with authentication in front")
    });
    out
}
