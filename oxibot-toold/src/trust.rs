//! What the jail's commands trust for TLS when they may reach the network.
//! For hosts with a credential the egress door answers TLS itself, with a
//! certificate of its own authority (its key stays in the door's daemon),
//! so the commands are pointed to a bundle that holds the system's
//! authorities and the door's: `SSL_CERT_FILE` (OpenSSL, Go's `gh`),
//! `CURL_CA_BUNDLE`, `REQUESTS_CA_BUNDLE` and `PIP_CERT` (Python),
//! `GIT_SSL_CAINFO`, and `NODE_EXTRA_CA_CERTS` (the door's alone: Node adds
//! it to its own).
//!
//! The bundle lives on a small tmpfs of its own in the jail's /etc. toold
//! (pid 1) writes it when an exec brings a new authority (the daemon makes
//! a new one each start); the commands cannot write it (each exec's
//! Landlock domain writes only /workspace, /tmp and /dev), so one command
//! cannot plant an authority for a later one.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::{Mutex, OnceLock};

use tokio::process::Command;

/// The tmpfs, inside the jail.
pub const DIR: &str = "/etc/oxibot-egress";
/// The system's authorities and the door's.
pub const BUNDLE: &str = "/etc/oxibot-egress/bundle.pem";
/// The door's authority alone.
pub const AUTHORITY: &str = "/etc/oxibot-egress/door-ca.pem";
/// The HOME of commands with the network: empty, and no command can
/// write it (see `exec::ignore_planted_settings`).
pub const HOME: &str = "/etc/oxibot-egress/home";

/// Where distributions keep the system's bundle (Debian, Fedora/RHEL,
/// SUSE, Alpine/others).
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// The most an authority's certificate may be (a PEM of one certificate).
const MAX_AUTHORITY: usize = 4096;

static SYSTEM: OnceLock<Vec<u8>> = OnceLock::new();
/// The authority the bundle holds now.
static WRITTEN: Mutex<Option<String>> = Mutex::new(None);

/// The system's bundle, read from the host while the jail is built
/// (empty when the host has none: then only the door's hosts verify).
pub fn read_system_bundle() -> Vec<u8> {
    SYSTEM_BUNDLES
        .iter()
        .find_map(|p| std::fs::read(p).ok())
        .unwrap_or_default()
}

/// Keeps the system's bundle for `install` (once, while the jail is built).
pub fn keep_system_bundle(bundle: Vec<u8>) {
    let _ = SYSTEM.set(bundle);
}

/// Puts `authority` (one PEM certificate) in the bundle, unless it is
/// there already. Written to a new file and renamed over the old one, so
/// a command that reads it meanwhile sees one or the other, whole.
pub fn install(authority: &str) -> Result<(), String> {
    let mut written = WRITTEN.lock().unwrap_or_else(|p| p.into_inner());
    repair_modes();
    if written.as_deref() == Some(authority) {
        return Ok(());
    }
    let one_certificate = authority.len() <= MAX_AUTHORITY
        && authority.trim_start().starts_with("-----BEGIN CERTIFICATE-----")
        && authority.matches("-----BEGIN ").count() == 1
        && authority.trim_end().ends_with("-----END CERTIFICATE-----");
    if !one_certificate {
        return Err("the egress door's authority is not one PEM certificate; not trusted".into());
    }
    let mut bundle = SYSTEM.get().cloned().unwrap_or_default();
    if !bundle.is_empty() && !bundle.ends_with(b"\n") {
        bundle.push(b'\n');
    }
    bundle.extend_from_slice(authority.as_bytes());
    write_replacing(Path::new(AUTHORITY), authority.as_bytes())
        .and_then(|_| write_replacing(Path::new(BUNDLE), &bundle))
        .map_err(|e| format!("cannot write the jail's trust bundle {BUNDLE}: {e}"))?;
    *written = Some(authority.to_string());
    Ok(())
}

/// The modes as toold set them. The files are the tool user's, like the
/// commands, and Landlock does not cover `chmod`: a command could make the
/// bundle unreadable for every later one. Set again before each command
/// with the network (writing stays toold's alone).
pub fn repair_modes() {
    use std::os::unix::fs::PermissionsExt;
    let set = |path: &str, mode: u32| {
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode));
    };
    set(DIR, 0o755);
    set(HOME, 0o555);
    set(BUNDLE, 0o644);
    set(AUTHORITY, 0o644);
}

fn write_replacing(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let new = path.with_extension("new");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .open(&new)?;
    f.write_all(bytes)?;
    drop(f);
    std::fs::rename(&new, path)
}

/// Points a command's TLS clients to the bundle.
pub fn point_to_bundle(cmd: &mut Command) {
    for name in [
        "SSL_CERT_FILE",
        "CURL_CA_BUNDLE",
        "REQUESTS_CA_BUNDLE",
        "PIP_CERT",
        "GIT_SSL_CAINFO",
    ] {
        cmd.env(name, BUNDLE);
    }
    cmd.env("NODE_EXTRA_CA_CERTS", AUTHORITY);
}
