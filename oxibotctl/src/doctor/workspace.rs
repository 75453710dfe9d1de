//! The jail's workspace, checked from outside: no setuid or setgid file or
//! directory in it. The jail's seccomp filter refuses those bits (a setuid
//! program the jail left there would run as the jail's user for anyone on
//! the host, and in unprivileged supervise mode that user is the
//! broker's); one found here was made before that, or by someone outside.

use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::dir::Dir;
use nix::fcntl::{AtFlags, OFlag};
use nix::libc;
use nix::sys::stat::{fstatat, Mode};

use super::{Finding, Level};

/// The walk stops after this many entries (a workspace may be huge)…
const MAX_ENTRIES: usize = 1_000_000;
/// …or this deep (each level holds one descriptor).
const MAX_DEPTH: usize = 256;
/// At most this many are named in the finding.
const SHOWN: usize = 10;

/// What a walk found, and why it did not see everything (None: it did).
pub struct Walk {
    pub found: Vec<PathBuf>,
    pub incomplete: Option<String>,
}

/// Paths under `root` with S_ISUID or S_ISGID. The walk goes by directory
/// descriptors (`openat` with `O_NOFOLLOW`, `fstatat` without following),
/// so no link is followed and no path grows past PATH_MAX, and it says
/// whenever it could not look somewhere: a tree built to hide a file (too
/// deep, too many entries, unreadable) is reported, never passed.
pub fn setid_paths(root: &Path) -> Walk {
    let mut walk = Walk {
        found: Vec::new(),
        incomplete: None,
    };
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let top = match Dir::open(root, flags, Mode::empty()) {
        Ok(d) => d,
        Err(e) => {
            walk.incomplete = Some(format!("{}: {e}", root.display()));
            return walk;
        }
    };
    // (the directory, where it is, how deep): one descriptor per level of
    // the current branch.
    let mut stack: Vec<(Dir, PathBuf, usize)> = vec![(top, root.to_path_buf(), 0)];
    let mut seen = 0usize;
    while let Some((mut dir, path, depth)) = stack.pop() {
        let fd = dir.as_raw_fd();
        let mut subdirs = Vec::new();
        for entry in dir.iter() {
            let entry = match entry {
                Ok(e) => e,
                Err(e) => {
                    walk.incomplete.get_or_insert(format!("{}: {e}", path.display()));
                    break;
                }
            };
            let name = entry.file_name().to_owned();
            if name.as_bytes() == b"." || name.as_bytes() == b".." {
                continue;
            }
            seen += 1;
            if seen > MAX_ENTRIES {
                walk.incomplete = Some(format!("more than {MAX_ENTRIES} entries; only those were looked at"));
                return walk;
            }
            let here = path.join(std::ffi::OsStr::from_bytes(name.as_bytes()));
            let st = match fstatat(Some(fd), name.as_c_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                Err(e) => {
                    walk.incomplete.get_or_insert(format!("{}: {e}", here.display()));
                    continue;
                }
            };
            if st.st_mode & 0o6000 != 0 {
                walk.found.push(here.clone());
            }
            if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
                subdirs.push((name, here));
            }
        }
        for (name, here) in subdirs {
            if depth + 1 > MAX_DEPTH {
                walk.incomplete
                    .get_or_insert(format!("{}: deeper than {MAX_DEPTH} levels", here.display()));
                continue;
            }
            match Dir::openat(Some(fd), name.as_c_str(), flags, Mode::empty()) {
                Ok(sub) => stack.push((sub, here, depth + 1)),
                Err(e) => {
                    walk.incomplete.get_or_insert(format!("{}: {e}", here.display()));
                }
            }
        }
        drop(dir);
    }
    walk.found.sort();
    walk
}

pub fn check(workspace: &Path) -> Finding {
    let check = format!("no setuid/setgid files in the workspace {}", workspace.display());
    if !workspace.exists() {
        return Finding::new("files", check, Level::Ok, "no workspace yet");
    }
    let walk = setid_paths(workspace);
    if walk.found.is_empty() {
        return match walk.incomplete {
            None => Finding::new("files", check, Level::Ok, "none"),
            // A tree that hides part of itself is a finding, not a pass.
            Some(why) => Finding::new(
                "files",
                check,
                Level::Warn,
                format!("none seen, but not all was looked at: {why}"),
            )
            .fix(format!("look yourself: find {} -perm /6000", workspace.display())),
        };
    }
    let names: Vec<String> = walk.found.iter().take(SHOWN).map(|p| p.display().to_string()).collect();
    let more = walk.found.len().saturating_sub(SHOWN);
    let mut seen = if more > 0 {
        format!("{} and {more} more", names.join(", "))
    } else {
        names.join(", ")
    };
    if let Some(why) = walk.incomplete {
        seen.push_str(&format!(" (not all was looked at: {why})"));
    }
    Finding::new("files", check, Level::Fail, seen).fix(format!(
        "anyone on the host may run such a file as its owner: chmod -R u-s,g-s {} (the jail refuses these bits, \
         so they were made before that, or from outside)",
        workspace.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn setuid_and_setgid_entries_are_found_and_links_not_followed() {
        let d = tempfile::tempdir().unwrap();
        let ws = d.path().join("ws");
        std::fs::create_dir_all(ws.join("a/b")).unwrap();
        std::fs::write(ws.join("a/b/sh"), "x").unwrap();
        std::fs::set_permissions(ws.join("a/b/sh"), std::fs::Permissions::from_mode(0o4755)).unwrap();
        std::fs::create_dir(ws.join("g")).unwrap();
        std::fs::set_permissions(ws.join("g"), std::fs::Permissions::from_mode(0o2755)).unwrap();
        std::fs::write(ws.join("plain"), "x").unwrap();
        // A link to a setuid file elsewhere is the link's business, not a
        // file in the workspace; the walk does not follow it.
        let outside = d.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("su"), "x").unwrap();
        std::fs::set_permissions(outside.join("su"), std::fs::Permissions::from_mode(0o4755)).unwrap();
        std::os::unix::fs::symlink(&outside, ws.join("link")).unwrap();
        let walk = setid_paths(&ws);
        assert!(walk.incomplete.is_none(), "{:?}", walk.incomplete);
        assert_eq!(walk.found, [ws.join("a/b/sh"), ws.join("g")]);
        let f = check(&ws);
        assert_eq!(f.level, Level::Fail);
        assert!(f.seen.contains("a/b/sh"), "{}", f.seen);

        std::fs::set_permissions(ws.join("a/b/sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(ws.join("g"), std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(check(&ws).level, Level::Ok);
    }

    /// The second review hid a setuid file below 18 directories of 250
    /// characters (past PATH_MAX): the walk goes by descriptors and finds
    /// it; a tree deeper than the walk goes is reported, not passed.
    #[test]
    fn a_file_past_path_max_is_found_and_a_tree_too_deep_is_reported() {
        let d = tempfile::tempdir().unwrap();
        let ws = d.path().join("ws");
        std::fs::create_dir(&ws).unwrap();
        let long = "d".repeat(250);
        let mut dir = std::fs::File::open(&ws).unwrap();
        for _ in 0..18 {
            nix::sys::stat::mkdirat(Some(dir.as_raw_fd()), long.as_str(), Mode::from_bits_truncate(0o755)).unwrap();
            let fd =
                nix::fcntl::openat(Some(dir.as_raw_fd()), long.as_str(), OFlag::O_DIRECTORY, Mode::empty()).unwrap();
            // SAFETY: openat returned a fresh descriptor that nothing else owns.
            dir = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        }
        let fd = nix::fcntl::openat(
            Some(dir.as_raw_fd()),
            "suid",
            OFlag::O_CREAT | OFlag::O_WRONLY,
            Mode::from_bits_truncate(0o755),
        )
        .unwrap();
        nix::sys::stat::fchmod(fd, Mode::from_bits_truncate(0o4755)).unwrap();
        nix::unistd::close(fd).unwrap();
        let walk = setid_paths(&ws);
        assert_eq!(walk.found.len(), 1, "{:?}", walk.incomplete);
        assert!(walk.found[0].as_os_str().len() > 4096);
        assert_eq!(check(&ws).level, Level::Fail);

        let deep = d.path().join("deep");
        let mut p = deep.clone();
        for _ in 0..=MAX_DEPTH + 1 {
            p.push("x");
        }
        std::fs::create_dir_all(&p).unwrap();
        let f = check(&deep);
        assert_eq!(f.level, Level::Warn, "{}", f.seen);
        assert!(f.seen.contains("deeper than"), "{}", f.seen);
    }
}
