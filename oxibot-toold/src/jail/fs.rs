//! The jail's filesystem: a tmpfs root holding read-only binds of the system
//! directories, a synthesized /etc, a fresh /proc, a minimal /dev, a tmpfs
//! /tmp and the workspace at /workspace. Then pivot_root and detach the old
//! root, so nothing of the host stays reachable.

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::statvfs::{statvfs, FsFlags};
use nix::unistd::{chdir, pivot_root, Gid, Uid};

use super::{step, JailError};

/// The staging mount point: a tmpfs over /tmp that only our (private) mount
/// namespace sees; it becomes the new root.
const STAGING: &str = "/tmp";
/// System directories bound read-only (or recreated as the same symlink).
/// `/opt` too: where an admin installs an MCP server's code, read-only to
/// every command.
const SYSTEM_DIRS: &[&str] = &["/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/opt"];
const DEVICES: &[&str] = &["null", "zero", "random", "urandom", "tty"];

/// Where the tool user's home goes in the jail's passwd: programs that
/// find no file under `$HOME` look there (curl's `.curlrc`, `.netrc`), so
/// it is the same directory as `$HOME` (see `build_etc`).
const HOME_MARK: &str = "@HOME@";

/// Host files read before the host disappears.
pub struct HostFiles {
    passwd: String,
    group: String,
    ld_cache: Option<Vec<u8>>,
    localtime: Option<PathBuf>,
    has_alternatives: bool,
    uid: Uid,
    gid: Gid,
}

impl HostFiles {
    pub fn snapshot(uid: Uid, gid: Gid, tool_user: &str) -> std::io::Result<HostFiles> {
        let name = if uid.is_root() {
            "root".to_string()
        } else {
            user_name(uid).unwrap_or_else(|| tool_user.into())
        };
        // Only the identities a command may need to print; no host accounts.
        let passwd = format!(
            "root:x:0:0:root:/root:/usr/sbin/nologin\n{name}:x:{uid}:{gid}:OxiBot tools:{HOME_MARK}:/bin/sh\n\
             nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
        );
        let group = format!("root:x:0:\n{name}:x:{gid}:\nnogroup:x:65534:\n");
        Ok(HostFiles {
            passwd,
            group,
            ld_cache: std::fs::read("/etc/ld.so.cache").ok(),
            localtime: std::fs::read_link("/etc/localtime").ok(),
            has_alternatives: Path::new("/etc/alternatives").is_dir(),
            uid,
            gid,
        })
    }
}

fn user_name(uid: Uid) -> Option<String> {
    nix::unistd::User::from_uid(uid).ok().flatten().map(|u| u.name)
}

/// `network`: commands may reach the egress door, and get a trust bundle
/// (see `crate::trust`) on a tmpfs of its own that toold writes.
pub fn build_root(workspace: &Path, host: &HostFiles, tmp_size_mb: u32, network: bool) -> Result<(), JailError> {
    // Nothing we mount may propagate back to the host.
    step(
        "make / private",
        mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_REC | MsFlags::MS_PRIVATE,
            None::<&str>,
        ),
    )?;
    // Hold the workspace by a descriptor opened in *this* mount namespace
    // before the staging tmpfs covers /tmp (the workspace may live there).
    let workspace_fd = step("open the workspace", open_dir(workspace))?;
    step(
        "mount the tmpfs root",
        mount(
            Some("tmpfs"),
            STAGING,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some("mode=0755,size=16m"),
        ),
    )?;
    let root = Path::new(STAGING);

    for dir in SYSTEM_DIRS {
        let host_path = Path::new(dir);
        let target = root.join(&dir[1..]);
        match std::fs::symlink_metadata(host_path) {
            Ok(m) if m.file_type().is_symlink() => {
                let link = step("read a system symlink", std::fs::read_link(host_path))?;
                step("recreate a system symlink", symlink(link, &target))?;
            }
            Ok(m) if m.is_dir() => {
                step("create a system mount point", std::fs::create_dir(&target))?;
                bind_read_only(host_path, &target, "bind the system directories read-only")?;
            }
            _ => {}
        }
    }

    build_etc(root, host, network)?;
    if network {
        build_trust(root, host)?;
    }

    let proc_dir = root.join("proc");
    step("create /proc", std::fs::create_dir(&proc_dir))?;
    // A fresh procfs of the new pid namespace: only the jail's processes.
    step(
        "mount a fresh /proc",
        mount(
            Some("proc"),
            &proc_dir,
            Some("proc"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            None::<&str>,
        ),
    )?;

    build_dev(root)?;

    let tmp = root.join("tmp");
    step("create /tmp", std::fs::create_dir(&tmp))?;
    step(
        "mount the jail's /tmp",
        mount(
            Some("tmpfs"),
            &tmp,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some(format!("mode=1777,size={tmp_size_mb}m").as_str()),
        ),
    )?;

    build_mcp_state(root, host, tmp_size_mb)?;

    // The workspace, by the descriptor opened before /tmp was covered
    // (the workspace may itself live under the host's /tmp).
    let ws = root.join("workspace");
    step("create /workspace", std::fs::create_dir(&ws))?;
    let source = format!("/proc/self/fd/{}", workspace_fd.as_raw_fd());
    step(
        "bind the workspace",
        mount(
            Some(source.as_str()),
            &ws,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        ),
    )?;
    // No setuid or device files from the workspace, ever.
    let flags = locked_flags(&ws) | MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    step(
        "remount the workspace nosuid,nodev",
        mount(None::<&str>, &ws, None::<&str>, flags, None::<&str>),
    )?;
    drop(workspace_fd);

    // Swap roots and cut the old one loose.
    step("enter the new root", chdir(root))?;
    step("pivot_root", pivot_root(".", "."))?;
    step("detach the old root", umount2(".", MntFlags::MNT_DETACH))?;
    step("chdir to /", chdir("/"))?;
    step(
        "remount / read-only",
        mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            None::<&str>,
        ),
    )?;
    step("chdir to /workspace", chdir(super::JAIL_WORKSPACE))?;
    Ok(())
}

fn open_dir(path: &Path) -> nix::Result<OwnedFd> {
    use nix::fcntl::{open, OFlag};
    let fd = open(
        path,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )?;
    // SAFETY: open returned a fresh descriptor that nothing else owns.
    Ok(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) })
}

fn build_etc(root: &Path, host: &HostFiles, network: bool) -> Result<(), JailError> {
    let etc = root.join("etc");
    let w = |name: &str, text: &[u8]| step("write the jail's /etc", std::fs::write(etc.join(name), text));
    step("create /etc", std::fs::create_dir(&etc))?;
    let home = if network {
        crate::trust::HOME
    } else {
        super::JAIL_WORKSPACE
    };
    w("passwd", host.passwd.replace(HOME_MARK, home).as_bytes())?;
    w("group", host.group.as_bytes())?;
    w("hosts", b"127.0.0.1 localhost\n::1 localhost\n")?;
    w("hostname", b"oxibot-jail\n")?;
    w("nsswitch.conf", b"passwd: files\ngroup: files\nhosts: files\n")?;
    w("resolv.conf", b"")?;
    if let Some(cache) = &host.ld_cache {
        w("ld.so.cache", cache)?;
    }
    if let Some(link) = &host.localtime {
        step("write the jail's /etc", symlink(link, etc.join("localtime")))?;
    }
    if host.has_alternatives {
        // Debian's /usr/bin/awk and friends are symlinks through here.
        let alt = etc.join("alternatives");
        step("create /etc/alternatives", std::fs::create_dir(&alt))?;
        bind_read_only(Path::new("/etc/alternatives"), &alt, "bind /etc/alternatives read-only")?;
    }
    Ok(())
}

/// The trust bundle's tmpfs, the tool user's (toold writes it once it has
/// dropped to that user; each command's Landlock domain keeps the commands
/// from writing it). It starts with the system's authorities alone.
fn build_trust(root: &Path, host: &HostFiles) -> Result<(), JailError> {
    let dir = root.join(&crate::trust::DIR[1..]);
    step("create the trust bundle's directory", std::fs::create_dir(&dir))?;
    step(
        "mount the trust bundle's tmpfs",
        mount(
            Some("tmpfs"),
            &dir,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            Some(format!("mode=0755,size=2m,uid={},gid={}", host.uid, host.gid).as_str()),
        ),
    )?;
    let system = crate::trust::read_system_bundle();
    step(
        "write the trust bundle",
        std::fs::write(dir.join("bundle.pem"), &system),
    )?;
    step(
        "give the trust bundle to the tool user",
        nix::unistd::chown(&dir.join("bundle.pem"), Some(host.uid), Some(host.gid)),
    )?;
    crate::trust::keep_system_bundle(system);
    // The HOME of commands with the network: empty, and theirs to read only.
    let home = root.join(&crate::trust::HOME[1..]);
    step("create the network commands' HOME", std::fs::create_dir(&home))?;
    // The mode first: once the directory is another user's, changing it
    // would need a capability the jail's builder does not keep.
    step(
        "make the network commands' HOME read-only",
        std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o555)),
    )?;
    step(
        "give the network commands' HOME to the tool user",
        nix::unistd::chown(&home, Some(host.uid), Some(host.gid)),
    )?;
    Ok(())
}

/// The MCP servers' state directories (`super::MCP_STATE`): one per slot, on a
/// tmpfs of their own, the tool user's. Each server's Landlock domain lets
/// it read and write its own slot only; each command's lets it read none.
fn build_mcp_state(root: &Path, host: &HostFiles, size_mb: u32) -> Result<(), JailError> {
    let dir = root.join(&super::MCP_STATE[1..]);
    step("create the MCP servers' state directory", std::fs::create_dir(&dir))?;
    step(
        "mount the MCP servers' state tmpfs",
        mount(
            Some("tmpfs"),
            &dir,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            // Files cost inodes, not size: bounded too.
            Some(format!("mode=0755,size={size_mb}m,nr_inodes=65536").as_str()),
        ),
    )?;
    for slot in 0..oxibot_proto::messages::MAX_MCP_SERVERS {
        let state = dir.join(slot.to_string());
        step("create an MCP server's state directory", std::fs::create_dir(&state))?;
        step(
            "make an MCP server's state directory private",
            std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)),
        )?;
        step(
            "give an MCP server's state directory to the tool user",
            nix::unistd::chown(&state, Some(host.uid), Some(host.gid)),
        )?;
    }
    Ok(())
}

fn build_dev(root: &Path) -> Result<(), JailError> {
    let dev = root.join("dev");
    step("create /dev", std::fs::create_dir(&dev))?;
    step(
        "mount the jail's /dev",
        mount(
            Some("tmpfs"),
            &dev,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
            Some("mode=0755,size=64k"),
        ),
    )?;
    for name in DEVICES {
        let host = Path::new("/dev").join(name);
        if !host.exists() {
            continue;
        }
        let target = dev.join(name);
        step("create a device mount point", std::fs::write(&target, b""))?;
        step(
            "bind a device node",
            mount(Some(&host), &target, None::<&str>, MsFlags::MS_BIND, None::<&str>),
        )?;
    }
    for (name, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        step("create /dev symlinks", symlink(target, dev.join(name)))?;
    }
    let shm = dev.join("shm");
    step("create /dev/shm", std::fs::create_dir(&shm))?;
    step(
        "make /dev/shm sticky",
        std::fs::set_permissions(&shm, std::fs::Permissions::from_mode(0o1777)),
    )?;
    Ok(())
}

/// Binds `source` on `target` and makes it read-only, nosuid and nodev —
/// every mount below it too. In a user namespace the flags locked on the
/// source mount (noexec, atime) must be kept, or the kernel refuses the
/// remount.
fn bind_read_only(source: &Path, target: &Path, what: &'static str) -> Result<(), JailError> {
    step(
        what,
        mount(
            Some(source),
            target,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        ),
    )?;
    let flags = locked_flags(target)
        | MsFlags::MS_BIND
        | MsFlags::MS_REMOUNT
        | MsFlags::MS_RDONLY
        | MsFlags::MS_NOSUID
        | MsFlags::MS_NODEV;
    step(what, mount(None::<&str>, target, None::<&str>, flags, None::<&str>))?;
    // The remount above changes only the top mount of the bind; a host
    // mount below /usr (a separate /usr/local, say) would stay writable.
    step(what, read_only_recursive(target))
}

/// `mount_setattr(2)` with `AT_RECURSIVE`: read-only, nosuid and nodev for
/// the mount at `target` and every mount below it (Linux 5.12+). It only
/// adds restrictions, so the flags locked in a user namespace stay as they
/// are.
fn read_only_recursive(target: &Path) -> nix::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    /// `struct mount_attr` from <linux/mount.h>, version 0 (32 bytes).
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    const MOUNT_ATTR_RDONLY: u64 = 0x1;
    const MOUNT_ATTR_NOSUID: u64 = 0x2;
    const MOUNT_ATTR_NODEV: u64 = 0x4;
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    let path = std::ffi::CString::new(target.as_os_str().as_bytes()).map_err(|_| nix::errno::Errno::EINVAL)?;
    // SAFETY: a NUL-terminated path and a fully initialised struct of the
    // size we pass, both alive for the duration of the call; the kernel
    // only reads them.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            path.as_ptr(),
            libc::AT_RECURSIVE as libc::c_uint,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    nix::errno::Errno::result(r).map(drop)
}

fn locked_flags(path: &Path) -> MsFlags {
    let Ok(st) = statvfs(path) else { return MsFlags::empty() };
    let f = st.flags();
    let mut out = MsFlags::empty();
    for (fs, ms) in [
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_RDONLY, MsFlags::MS_RDONLY),
    ] {
        if f.contains(fs) {
            out |= ms;
        }
    }
    out
}
