//! Unpredictable bytes from the kernel (`getrandom(2)`): pairing codes,
//! the untrusted-content tags' suffixes, the egress door's per-exec
//! tokens. The syscall needs no file (a sandbox without `/dev` still has
//! it) and blocks only before the kernel's pool is first seeded.

use std::io;

/// Fills `buf` with random bytes, or says why it could not.
pub fn fill(buf: &mut [u8]) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        let rest = &mut buf[done..];
        // SAFETY: the pointer and length describe `rest`, a live, writable
        // slice; the kernel writes at most `rest.len()` bytes into it.
        let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        done += n as usize;
    }
    Ok(())
}

/// `n` random bytes as lowercase hex.
pub fn hex(n: usize) -> io::Result<String> {
    let mut bytes = vec![0u8; n];
    fill(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_are_filled_and_differ() {
        let (a, b) = (hex(16).unwrap(), hex(16).unwrap());
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
        // Longer than one call may return at once.
        let mut big = vec![0u8; 1 << 20];
        fill(&mut big).unwrap();
        assert!(big.iter().filter(|b| **b == 0).count() < 1 << 14);
    }
}
