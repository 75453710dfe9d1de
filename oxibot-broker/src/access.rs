//! Who may talk to the assistant through a channel. Decided in the broker,
//! not in the channel daemon: one implementation for every platform, next
//! to the audit log, and a compromised channel daemon gains nothing by
//! skipping it.
//!
//! The settings (`allowedUsers`, `dmPolicy`, `groupPolicy`,
//! `groupAllowFrom`) are typed in `oxibot_config::access`, shared with
//! `oxibotctl doctor` and checked when the configuration loads.

use serde_json::Value;

use crate::access_settings::{Access, DmPolicy, GroupPolicy};

#[derive(Debug, Clone)]
pub struct Policy {
    allowed_users: Vec<String>,
    dm: DmPolicy,
    group: GroupPolicy,
    group_allow_from: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Admit,
    /// Refused; the reason goes to the audit log.
    Reject(String),
    /// An unknown user under the pairing policy: send a code.
    Pair,
    /// A group message not addressed to us: not an intrusion, not audited.
    Ignore,
}

/// Who sent what, where.
pub struct Origin<'a> {
    pub sender: &'a str,
    pub chat_id: &'a str,
    pub is_group: bool,
    pub mentioned: bool,
}

/// What an e-mail daemon calls a sender whose address the receiving mail
/// server did not vouch for.
pub const UNVERIFIED: &str = "unverified:";

/// A user id in the one form every comparison uses: trimmed, and for
/// e-mail in ASCII lower case (the daemon lower-cases addresses, an admin
/// may not). The allow-list, the admin's decisions and the sender all go
/// through this, so "Bob@Example.com" in one place is bob@example.com in all.
/// ASCII only, as the e-mail daemon folds: Unicode folding would make a
/// different mailbox (U+212A KELVIN SIGN in "boK@") equal to an allowed one.
pub fn user_id(channel: &str, id: &str) -> String {
    // ASCII whitespace only: a no-break or ideographic space inside an
    // address makes another mailbox, not a typo.
    let id = id.trim_matches(|c: char| c.is_ascii_whitespace());
    if channel == "email" {
        id.to_ascii_lowercase()
    } else {
        id.to_string()
    }
}

/// A sender the platform did not authenticate: never admitted, whatever
/// the policy, the lists or the admin's decisions say (its address is
/// whatever a stranger wrote in From).
pub fn is_unverified(sender: &str) -> bool {
    sender.starts_with(UNVERIFIED)
}

impl Policy {
    /// Reads a channel's settings; a bad value is an error naming its key.
    pub fn from_settings(channel: &str, settings: &Value) -> Result<Policy, crate::config::SettingError> {
        let access = Access::of(channel, settings)?;
        Ok(Policy {
            allowed_users: access.allowed_users.iter().map(|u| user_id(channel, u)).collect(),
            dm: access.dm_policy,
            group: access.group_policy,
            group_allow_from: access.group_allow_from,
        })
    }

    fn user_allowed(&self, sender: &str, paired: bool) -> bool {
        paired || self.allowed_users.iter().any(|u| u == "*" || u == sender)
    }

    /// `paired`: the sender was approved through `oxibotctl pairing approve`.
    pub fn decide(&self, o: &Origin<'_>, paired: bool) -> Decision {
        if o.is_group {
            let group_ok = match self.group {
                GroupPolicy::Open => true,
                GroupPolicy::Mention => o.mentioned,
                GroupPolicy::Allowlist => self.group_allow_from.iter().any(|g| g == o.chat_id),
            };
            if !group_ok {
                return match self.group {
                    GroupPolicy::Mention => Decision::Ignore,
                    _ => Decision::Reject(format!("group {} is not in groupAllowFrom", o.chat_id)),
                };
            }
            if self.user_allowed(o.sender, paired) {
                return Decision::Admit;
            }
            return Decision::Reject(format!(
                "user {} is not in allowedUsers (group {})",
                o.sender, o.chat_id
            ));
        }
        match self.dm {
            DmPolicy::Open => Decision::Admit,
            _ if self.user_allowed(o.sender, paired) => Decision::Admit,
            DmPolicy::Pairing => Decision::Pair,
            DmPolicy::Allowlist => Decision::Reject(format!("user {} is not in allowedUsers", o.sender)),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn dm(sender: &str) -> Origin<'_> {
        Origin {
            sender,
            chat_id: "c",
            is_group: false,
            mentioned: false,
        }
    }

    #[test]
    fn empty_allow_list_admits_nobody_and_star_everybody() {
        let p = Policy::from_settings("t", &json!({})).unwrap();
        assert!(matches!(p.decide(&dm("42"), false), Decision::Reject(_)));
        let p = Policy::from_settings("t", &json!({"allowedUsers": ["*"]})).unwrap();
        assert_eq!(p.decide(&dm("42"), false), Decision::Admit);
        let p = Policy::from_settings("t", &json!({"allowedUsers": [42]})).unwrap();
        assert_eq!(p.decide(&dm("42"), false), Decision::Admit);
        assert!(matches!(p.decide(&dm("43"), false), Decision::Reject(_)));
    }

    #[test]
    fn pairing_and_open_dm_policies() {
        let p = Policy::from_settings("t", &json!({"dmPolicy": "pairing"})).unwrap();
        assert_eq!(p.decide(&dm("7"), false), Decision::Pair);
        assert_eq!(p.decide(&dm("7"), true), Decision::Admit);
        let p = Policy::from_settings("t", &json!({"dmPolicy": "open"})).unwrap();
        assert_eq!(p.decide(&dm("7"), false), Decision::Admit);
        assert_eq!(
            Policy::from_settings("t", &json!({"dmPolicy": "everyone"}))
                .unwrap_err()
                .key,
            "channels.t.dmPolicy"
        );
    }

    #[test]
    fn group_policies() {
        let s = json!({"allowedUsers": ["1"], "groupAllowFrom": ["g1"]});
        let p = Policy::from_settings("t", &s).unwrap();
        let g = |chat, sender, mentioned| Origin {
            sender,
            chat_id: chat,
            is_group: true,
            mentioned,
        };
        assert_eq!(p.decide(&g("g9", "1", false), false), Decision::Ignore);
        assert_eq!(p.decide(&g("g9", "1", true), false), Decision::Admit);
        assert!(matches!(p.decide(&g("g9", "2", true), false), Decision::Reject(_)));
        let mut s2 = s.clone();
        s2["groupPolicy"] = json!("allowlist");
        let p = Policy::from_settings("t", &s2).unwrap();
        assert_eq!(p.decide(&g("g1", "1", false), false), Decision::Admit);
        assert!(matches!(p.decide(&g("g9", "1", true), false), Decision::Reject(_)));
    }

    #[test]
    fn email_ids_compare_in_one_form() {
        let p = Policy::from_settings("email", &json!({"allowedUsers": [" Bob@Example.com "]})).unwrap();
        assert_eq!(
            p.decide(&dm(&user_id("email", "bob@example.com")), false),
            Decision::Admit
        );
        assert_eq!(user_id("email", "BOB@example.COM"), "bob@example.com");
        // Another mailbox stays another user: KELVIN SIGN is not k.
        assert_ne!(user_id("email", "bo\u{212A}@example.com"), "bok@example.com");
        assert_ne!(user_id("email", "\u{a0}bok@example.com"), "bok@example.com");
        assert_ne!(user_id("email", "\u{3000}bok@example.com"), "bok@example.com");
        let kelvin = Policy::from_settings("email", &json!({"allowedUsers": ["bok@example.com"]})).unwrap();
        assert!(matches!(
            kelvin.decide(&dm(&user_id("email", "bo\u{212A}@example.com")), false),
            Decision::Reject(_)
        ));
        // Other platforms' ids keep their case (Slack's U0ABC is not u0abc).
        assert_eq!(user_id("slack", " U0ABC "), "U0ABC");
        assert!(is_unverified("unverified:bob@example.com"));
        assert!(!is_unverified("bob@example.com"));
    }
}
