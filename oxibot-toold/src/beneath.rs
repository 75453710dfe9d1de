//! Opening files beneath a directory without trusting anything in it: one
//! `openat` per path component, each with `O_NOFOLLOW` (a symlink, `/proc`
//! magic links included, is refused wherever it stands), `.`, `..` and
//! empty components refused outright, `O_NONBLOCK` (a FIFO cannot stall the
//! reader) and an `fstat` on the opened descriptor (only a regular file, or
//! a directory where one is asked for, is accepted).
//!
//! Not `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`: the jail's seccomp
//! filter answers `openat2` with ENOSYS, because its mode hides behind a
//! pointer the filter cannot read (a command could create a setuid file
//! with it).
//!
//! The jail already confines every path; this is what keeps a file planted
//! by a command (a link to `/dev/zero`, a link to another workspace file)
//! out of what the broker reads for itself, and it holds the same way when
//! the sandbox is off.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd};
use std::path::Path;

use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

/// `rel` beneath `dir`, component by component; the last one opened with
/// `extra` (O_DIRECTORY for a directory), the others as directories. An
/// empty `rel` is `dir` itself.
fn open_beneath(dir: &OwnedFd, rel: &str, extra: OFlag) -> io::Result<OwnedFd> {
    let base = OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC | OFlag::O_NOCTTY | OFlag::O_NOFOLLOW;
    let components: Vec<&str> = if rel.is_empty() {
        vec!["."]
    } else {
        rel.split('/').collect()
    };
    let mut current: Option<OwnedFd> = None;
    for (i, name) in components.iter().enumerate() {
        let last = i + 1 == components.len();
        if name.is_empty() || *name == ".." || (*name == "." && !rel.is_empty()) {
            // What RESOLVE_BENEATH answers for a path that would leave.
            return Err(io::Error::from_raw_os_error(libc::EXDEV));
        }
        let flags = base | if last { extra } else { OFlag::O_DIRECTORY };
        let at = current.as_ref().unwrap_or(dir).as_raw_fd();
        let fd = nix::fcntl::openat(Some(at), *name, flags, Mode::empty()).map_err(io::Error::from)?;
        // SAFETY: openat returned a fresh descriptor that nothing else owns.
        current = Some(unsafe { OwnedFd::from_raw_fd(fd) });
    }
    current.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no path"))
}

/// The directory itself (the workspace), as the anchor for the others.
pub fn open_root(path: &Path) -> io::Result<OwnedFd> {
    let fd = nix::fcntl::open(
        path,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(io::Error::from)?;
    // SAFETY: open returned a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A directory beneath `root`.
pub fn open_dir(root: &OwnedFd, rel: &str) -> io::Result<OwnedFd> {
    open_beneath(root, rel, OFlag::O_DIRECTORY)
}

/// A regular file beneath `root`, for reading.
pub fn open_regular(root: &OwnedFd, rel: &str) -> io::Result<File> {
    let file = File::from(open_beneath(root, rel, OFlag::empty())?);
    let kind = file.metadata()?.file_type();
    if !kind.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file (a directory, FIFO, socket or device)",
        ));
    }
    Ok(file)
}

/// At most `max` bytes, and whether the file held more.
pub fn read_capped(file: File, max: usize) -> io::Result<(Vec<u8>, bool)> {
    let mut data = Vec::with_capacity(max.min(64 * 1024) + 1);
    file.take(max as u64 + 1).read_to_end(&mut data)?;
    let truncated = data.len() > max;
    data.truncate(max);
    Ok((data, truncated))
}

/// The names in a directory beneath `root`, sorted.
pub fn list(root: &OwnedFd, rel: &str) -> io::Result<Vec<String>> {
    // Dir takes the descriptor over (and closes it).
    let mut dir = nix::dir::Dir::from_fd(open_dir(root, rel)?.into_raw_fd()).map_err(io::Error::from)?;
    let mut names: Vec<String> = dir
        .iter()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "." && n != "..")
        .collect();
    names.sort();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ws() -> (tempfile::TempDir, OwnedFd) {
        let d = tempfile::tempdir().unwrap();
        let root = open_root(d.path()).unwrap();
        (d, root)
    }

    #[test]
    fn reads_a_regular_file_capped() {
        let (d, root) = ws();
        std::fs::write(d.path().join("a.md"), "0123456789").unwrap();
        let (data, cut) = read_capped(open_regular(&root, "a.md").unwrap(), 4).unwrap();
        assert_eq!((data.as_slice(), cut), (&b"0123"[..], true));
        let (data, cut) = read_capped(open_regular(&root, "a.md").unwrap(), 10).unwrap();
        assert_eq!((data.len(), cut), (10, false));
    }

    #[test]
    fn symlinks_dotdot_and_special_files_are_refused() {
        let (d, root) = ws();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "s3cret").unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), d.path().join("abs-link")).unwrap();
        std::fs::write(d.path().join("inside"), "fine").unwrap();
        std::os::unix::fs::symlink("inside", d.path().join("rel-link")).unwrap();
        std::os::unix::fs::symlink("/dev/zero", d.path().join("zero")).unwrap();
        nix::unistd::mkfifo(&d.path().join("fifo"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        std::fs::create_dir(d.path().join("dir")).unwrap();
        std::os::unix::fs::symlink(outside.path(), d.path().join("dir-link")).unwrap();
        std::fs::write(outside.path().join("x"), "x").unwrap();

        let errno = |r: io::Result<File>| r.err().and_then(|e| e.raw_os_error());
        assert_eq!(errno(open_regular(&root, "abs-link")), Some(libc::ELOOP));
        assert_eq!(errno(open_regular(&root, "rel-link")), Some(libc::ELOOP));
        assert_eq!(errno(open_regular(&root, "zero")), Some(libc::ELOOP));
        // A link as a directory on the way: O_DIRECTORY | O_NOFOLLOW.
        assert_eq!(errno(open_regular(&root, "dir-link/x")), Some(libc::ENOTDIR));
        assert_eq!(errno(open_regular(&root, "dir/../inside")), Some(libc::EXDEV));
        assert_eq!(errno(open_regular(&root, "dir//inside")), Some(libc::EXDEV));
        assert_eq!(errno(open_regular(&root, "../etc/passwd")), Some(libc::EXDEV));
        assert_eq!(errno(open_regular(&root, "/etc/passwd")), Some(libc::EXDEV));
        // A FIFO opens without blocking, and is then refused for what it is.
        let fifo = open_regular(&root, "fifo").unwrap_err();
        assert_eq!(fifo.kind(), io::ErrorKind::InvalidInput, "{fifo}");
        assert!(open_regular(&root, "dir").is_err());
        // The legitimate path.
        assert!(open_regular(&root, "inside").is_ok());
        assert_eq!(
            list(&root, "").unwrap(),
            ["abs-link", "dir", "dir-link", "fifo", "inside", "rel-link", "zero"]
        );
        assert!(list(&root, "dir-link").is_err());
    }
}
