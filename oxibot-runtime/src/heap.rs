//! Handing freed heap back to the system.
//!
//! glibc keeps what a burst of messages allocated and freed: free chunks
//! stay in each thread's arena, and after large frees its dynamic mmap
//! threshold grows so that later large buffers come from the heap too. A
//! daemon that answered 10,000 messages then sat at two to three times its
//! idle RSS for good. `malloc_trim` returns the free pages (the top of each
//! arena, and `madvise(MADV_DONTNEED)` for free pages inside them), so each
//! daemon calls it now and then; what is still in use is not touched.

use std::time::Duration;

/// How often the daemons trim: rare enough to cost nothing (a trim walks
/// the arenas in well under a millisecond when little is free), often
/// enough that memory returns soon after a burst.
pub const TRIM_EVERY: Duration = Duration::from_secs(30);

/// Returns free heap memory to the system; true when some was released.
pub fn trim() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim takes no pointers and only walks glibc's own
        // arenas under their locks; it is safe to call from any thread at
        // any time (the 0 asks it to keep no padding at the top).
        unsafe { nix::libc::malloc_trim(0) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// Trims every [`TRIM_EVERY`], for as long as the runtime runs.
pub async fn trim_periodically() {
    let mut tick = tokio::time::interval(TRIM_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        trim();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rss_kib() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }

    /// The burst's pattern: many small buffers, freed in an order that
    /// leaves holes, on a thread of their own (its own arena). glibc alone
    /// keeps the pages; the trim gives them back.
    #[test]
    fn freed_small_buffers_go_back_to_the_system() {
        std::thread::spawn(|| {
            let mut kept = Vec::new();
            let mut freed = Vec::new();
            for i in 0..64 * 1024 {
                let buf = vec![i as u8; 1024];
                if i % 64 == 0 {
                    kept.push(buf);
                } else {
                    freed.push(buf);
                }
            }
            drop(freed);
            let before = rss_kib();
            assert!(trim(), "nothing was released");
            let after = rss_kib();
            assert!(
                before.saturating_sub(after) >= 32 * 1024,
                "RSS {before} KiB before the trim, {after} KiB after"
            );
            assert_eq!(kept.len(), 1024, "what is in use stays");
        })
        .join()
        .unwrap();
    }
}
