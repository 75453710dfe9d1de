//! Whether a path is safe to keep secrets in or to write as root: who
//! else could change the directories above it, and whether an ACL grants
//! more than the mode bits show. Used before `oxibotctl` writes the
//! secrets file or the config, and by `oxibotctl doctor`.

use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

const STICKY: u32 = 0o1000;

/// The first place above `path` that someone other than root (or
/// `trusted`, e.g. the caller) could change, described for an error
/// message; None when there is none. Whoever can change a directory can
/// swap the file in it for their own, however the file's own mode is set.
///
/// The path is resolved here component by component, as the kernel
/// would, so that every directory the lookup passes through counts — the
/// ones a link lives in and the ones its target leads through included —
/// and every link followed. A directory is someone else's when they own
/// it, may write to it (by mode or by an ACL), or own a link on the way.
/// The sticky bit excuses a world-writable directory on the way (/tmp),
/// not the file's own: there, a stranger could have made the file first.
pub fn untrusted_directory(path: &Path, trusted: Option<u32>) -> Option<String> {
    let absolute = match std::path::absolute(path) {
        Ok(p) => p,
        Err(e) => return Some(format!("{}: {e}", path.display())),
    };
    let Some(parent) = absolute.parent() else {
        return Some(format!("{} has no directory", path.display()));
    };
    let mut links = 0;
    match resolve(Path::new("/"), parent, trusted, &mut links) {
        Ok(dir) => foreign_directory(&dir, trusted, true),
        Err(why) => Some(why),
    }
}

/// The most links one lookup follows, as Linux allows (ELOOP beyond).
const MAX_LINKS: u32 = 40;

/// Walks `path` from the real directory `from`, checking each directory
/// reached and each link followed; returns the real directory reached.
fn resolve(from: &Path, path: &Path, trusted: Option<u32>, links: &mut u32) -> Result<PathBuf, String> {
    let mut at = from.to_path_buf();
    for component in path.components() {
        match component {
            Component::RootDir => at = PathBuf::from("/"),
            Component::CurDir | Component::Prefix(_) => {}
            // `at` has no links in it, so its parent is the real one.
            Component::ParentDir => {
                at.pop();
            }
            Component::Normal(name) => {
                let next = at.join(name);
                let m = std::fs::symlink_metadata(&next).map_err(|e| format!("{}: {e}", next.display()))?;
                if m.file_type().is_symlink() {
                    if !owner_ok(m.uid(), trusted) {
                        return Err(format!(
                            "{} is a link owned by uid {}, who can point it elsewhere",
                            next.display(),
                            m.uid()
                        ));
                    }
                    *links += 1;
                    if *links > MAX_LINKS {
                        return Err(format!("{}: too many levels of links", next.display()));
                    }
                    let target = std::fs::read_link(&next).map_err(|e| format!("{}: {e}", next.display()))?;
                    at = resolve(&at, &target, trusted, links)?;
                } else {
                    at = next;
                }
            }
        }
        if let Some(why) = foreign_directory(&at, trusted, false) {
            return Err(why);
        }
    }
    Ok(at)
}

fn owner_ok(uid: u32, trusted: Option<u32>) -> bool {
    uid == 0 || Some(uid) == trusted
}

/// Why someone else could change the directory `dir` (links followed).
/// `holds_the_file`: the file's own directory, where sticky is no excuse.
fn foreign_directory(dir: &Path, trusted: Option<u32>, holds_the_file: bool) -> Option<String> {
    let m = match std::fs::metadata(dir) {
        Ok(m) => m,
        Err(e) => return Some(format!("{}: {e}", dir.display())),
    };
    let sticky_excuses = m.mode() & STICKY != 0 && !holds_the_file;
    let writable_by_others = m.mode() & 0o022 != 0 && !sticky_excuses;
    if !owner_ok(m.uid(), trusted) || writable_by_others {
        return Some(format!(
            "{} (uid {}, gid {}, mode {:04o}) can be changed by someone other than root",
            dir.display(),
            m.uid(),
            m.gid(),
            m.mode() & 0o7777
        ));
    }
    if has_acl(dir) {
        return Some(format!(
            "{} carries an ACL, which may let others change it (getfacl {})",
            dir.display(),
            dir.display()
        ));
    }
    None
}

/// Whether `path` carries a POSIX ACL (access, or a directory's default):
/// then its mode bits do not say who may read or change it. A filesystem
/// without ACLs has none.
pub fn has_acl(path: &Path) -> bool {
    ["system.posix_acl_access", "system.posix_acl_default"]
        .iter()
        .any(|name| rustix::fs::lgetxattr_query(path, *name).is_ok_and(|size| size > 0))
}

/// A path from the configuration, with a leading `~/` taken as $HOME.
pub fn expand_home(p: &str) -> PathBuf {
    match (p.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => Path::new(&home).join(rest),
        _ => PathBuf::from(p),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn a_directory_others_can_change_is_named() {
        let d = tempfile::tempdir().unwrap();
        let file = d.path().join("secrets.json");
        let me = nix::unistd::getuid().as_raw();
        assert_eq!(
            untrusted_directory(&file, Some(me)),
            None,
            "a private temp dir in /tmp (sticky)"
        );
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let why = untrusted_directory(&file, Some(me)).unwrap();
        assert!(why.contains(&d.path().display().to_string()), "{why}");
        // Sticky in the file's own directory: a stranger could have made
        // the file (or its link) before us.
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o1777)).unwrap();
        assert!(untrusted_directory(&file, Some(me)).is_some());
        // Sticky higher up (/tmp): nobody may rename our directory.
        let inner = d.path().join("inner");
        std::fs::create_dir(&inner).unwrap();
        std::fs::set_permissions(&inner, std::fs::Permissions::from_mode(0o700)).unwrap();
        assert_eq!(untrusted_directory(&inner.join("secrets.json"), Some(me)), None);
        // Group-writable, whatever the group.
        std::fs::set_permissions(&inner, std::fs::Permissions::from_mode(0o770)).unwrap();
        assert!(untrusted_directory(&inner.join("secrets.json"), Some(me)).is_some());
        std::fs::remove_dir(&inner).unwrap();
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        if me == 0 {
            nix::unistd::chown(d.path(), Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
            let why = untrusted_directory(&file, Some(me)).unwrap();
            assert!(why.contains("uid 65534"), "{why}");
            // A link on the way that a stranger owns: they can repoint it.
            nix::unistd::chown(d.path(), Some(nix::unistd::Uid::from_raw(0)), None).unwrap();
            let real = d.path().join("real");
            std::fs::create_dir(&real).unwrap();
            let link = d.path().join("link");
            std::os::unix::fs::symlink(&real, &link).unwrap();
            assert_eq!(untrusted_directory(&link.join("secrets.json"), Some(me)), None);
            std::os::unix::fs::lchown(&link, Some(65534), None).unwrap();
            let why = untrusted_directory(&link.join("secrets.json"), Some(me)).unwrap();
            assert!(why.contains("link owned by uid 65534"), "{why}");
            // Root's own link, in a directory a stranger owns: they can
            // replace the link.
            let home = d.path().join("home");
            std::fs::create_dir(&home).unwrap();
            let conf = home.join("conf");
            std::os::unix::fs::symlink(&real, &conf).unwrap();
            assert_eq!(untrusted_directory(&conf.join("secrets.json"), Some(me)), None);
            nix::unistd::chown(&home, Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
            let why = untrusted_directory(&conf.join("secrets.json"), Some(me)).unwrap();
            assert!(why.contains("home (uid 65534"), "{why}");
            // A link whose target leads through a stranger's directory
            // (a deploy user's `current -> releases/v3`): they can swap
            // `current`, though neither the path as written nor its
            // resolved form names their directory.
            std::fs::remove_file(&conf).unwrap();
            let app = d.path().join("app");
            let release = d.path().join("release");
            std::fs::create_dir_all(release.join("etc")).unwrap();
            std::fs::create_dir(&app).unwrap();
            std::os::unix::fs::symlink(&release, app.join("current")).unwrap();
            let etc = d.path().join("etc-oxibot");
            std::os::unix::fs::symlink(app.join("current").join("etc"), &etc).unwrap();
            assert_eq!(untrusted_directory(&etc.join("secrets.json"), Some(me)), None);
            nix::unistd::chown(&app, Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
            let why = untrusted_directory(&etc.join("secrets.json"), Some(me)).unwrap();
            assert!(why.contains("app (uid 65534"), "{why}");
            // And through a stranger's directory by `..`.
            let through = home.join("..").join("real").join("secrets.json");
            assert!(untrusted_directory(&through, Some(me)).is_some());
        }
    }

    /// A default ACL on the file's directory: the mode bits (0755) do not
    /// show it, and a file made there would let the ACL's user read it.
    #[test]
    fn a_directory_opened_by_an_acl_is_named() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("etc");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let me = nix::unistd::getuid().as_raw();
        assert_eq!(untrusted_directory(&dir.join("secrets.json"), Some(me)), None);
        if !set_acl(&dir, "system.posix_acl_default", 7) {
            return;
        }
        let why = untrusted_directory(&dir.join("secrets.json"), Some(me)).unwrap();
        assert!(why.contains("ACL"), "{why}");
    }

    /// Gives uid 65534 `perm` (rwx bits) by an ACL (`kind`: access or
    /// default); false (and a note, or a failure under CI) where the
    /// filesystem takes none.
    fn set_acl(path: &Path, kind: &str, perm: u16) -> bool {
        // Version 2, then entries (tag u16, perm u16, id u32): USER_OBJ rwx,
        // USER 65534, GROUP_OBJ r-x, MASK, OTHER r-x.
        let mut acl = 2u32.to_le_bytes().to_vec();
        for (tag, perm, id) in [
            (1u16, 7u16, u32::MAX),
            (2, perm, 65534),
            (4, 5, u32::MAX),
            (0x10, 7, u32::MAX),
            (0x20, 5, u32::MAX),
        ] {
            acl.extend(tag.to_le_bytes());
            acl.extend(perm.to_le_bytes());
            acl.extend(id.to_le_bytes());
        }
        match rustix::fs::lsetxattr(path, kind, &acl, rustix::fs::XattrFlags::empty()) {
            Ok(()) => true,
            Err(why) => {
                assert!(
                    std::env::var_os("CI").is_none(),
                    "CI: the temp filesystem takes no ACLs ({why})"
                );
                eprintln!("skipped: this filesystem takes no ACLs ({why})");
                false
            }
        }
    }

    #[test]
    fn an_acl_is_seen() {
        let d = tempfile::tempdir().unwrap();
        let file = d.path().join("f");
        std::fs::write(&file, "x").unwrap();
        assert!(!has_acl(&file));
        if !set_acl(&file, "system.posix_acl_access", 4) {
            return;
        }
        assert!(has_acl(&file));
    }
}
