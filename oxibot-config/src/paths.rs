//! Whether a path is safe to keep secrets in or to write as root: who
//! else could change the directories above it, and whether an ACL grants
//! more than the mode bits show. Used before `oxibotctl` writes the
//! secrets file or the config, and by `oxibotctl doctor`.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

const STICKY: u32 = 0o1000;

/// The first directory above `path` that someone other than root (or
/// `trusted`, e.g. the caller) could change — own it, or write to it
/// without the sticky bit — described for an error message. A directory
/// that can be changed lets its owner or writers swap the file for their
/// own, however the file's own mode is set.
pub fn untrusted_directory(path: &Path, trusted: Option<u32>) -> Option<String> {
    let absolute = match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(p) => p.to_path_buf(),
        None => PathBuf::from("."),
    };
    let dir = match absolute.canonicalize() {
        Ok(d) => d,
        Err(e) => return Some(format!("{}: {e}", absolute.display())),
    };
    for ancestor in dir.ancestors() {
        let m = match std::fs::metadata(ancestor) {
            Ok(m) => m,
            Err(e) => return Some(format!("{}: {e}", ancestor.display())),
        };
        let owner_ok = m.uid() == 0 || Some(m.uid()) == trusted;
        let sticky = m.mode() & STICKY != 0;
        let others_write = m.mode() & 0o002 != 0 && !sticky;
        let group_write = m.mode() & 0o020 != 0 && m.gid() != 0 && !sticky;
        if !owner_ok || others_write || group_write {
            return Some(format!(
                "{} (uid {}, gid {}, mode {:04o}) can be changed by someone other than root",
                ancestor.display(),
                m.uid(),
                m.gid(),
                m.mode() & 0o7777
            ));
        }
    }
    None
}

/// Whether `path` carries a POSIX ACL (access, or a directory's default):
/// then its mode bits do not say who may read it.
pub fn has_acl(path: &Path) -> bool {
    let Ok(c_path) = CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    ["system.posix_acl_access", "system.posix_acl_default"]
        .iter()
        .any(|name| {
            let Ok(c_name) = CString::new(*name) else {
                return false;
            };
            // SAFETY: both strings are NUL-terminated and outlive the call; a
            // null buffer of size 0 asks only for the value's size, so the
            // kernel writes nothing. It answers -1 (ENODATA) when there is none.
            let size = unsafe { nix::libc::lgetxattr(c_path.as_ptr(), c_name.as_ptr(), std::ptr::null_mut(), 0) };
            size > 0
        })
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
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o1777)).unwrap();
        assert_eq!(
            untrusted_directory(&file, Some(me)),
            None,
            "sticky: nobody may rename our file"
        );
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        if me == 0 {
            nix::unistd::chown(d.path(), Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
            let why = untrusted_directory(&file, Some(me)).unwrap();
            assert!(why.contains("uid 65534"), "{why}");
        }
    }

    #[test]
    fn an_acl_is_seen() {
        let d = tempfile::tempdir().unwrap();
        let file = d.path().join("f");
        std::fs::write(&file, "x").unwrap();
        assert!(!has_acl(&file));
        // An access ACL that lets uid 65534 read: version 2, then entries
        // (tag u16, perm u16, id u32): USER_OBJ rw, USER 65534 r,
        // GROUP_OBJ r, MASK r, OTHER none.
        let mut acl = 2u32.to_le_bytes().to_vec();
        for (tag, perm, id) in [
            (1u16, 6u16, u32::MAX),
            (2, 4, 65534),
            (4, 4, u32::MAX),
            (0x10, 4, u32::MAX),
            (0x20, 0, u32::MAX),
        ] {
            acl.extend(tag.to_le_bytes());
            acl.extend(perm.to_le_bytes());
            acl.extend(id.to_le_bytes());
        }
        let c_path = CString::new(file.as_os_str().as_bytes()).unwrap();
        let c_name = CString::new("system.posix_acl_access").unwrap();
        // SAFETY: valid NUL-terminated strings and a buffer of the length given.
        let r = unsafe { nix::libc::setxattr(c_path.as_ptr(), c_name.as_ptr(), acl.as_ptr().cast(), acl.len(), 0) };
        if r != 0 {
            let why = std::io::Error::last_os_error();
            assert!(
                std::env::var_os("CI").is_none(),
                "CI: the temp filesystem takes no ACLs ({why})"
            );
            eprintln!("skipped: this filesystem takes no ACLs ({why})");
            return;
        }
        assert!(has_acl(&file));
    }
}
