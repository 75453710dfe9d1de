//! What the egress benchmarks share: timing a request many times, and
//! printing the percentiles.

use std::time::{Duration, Instant};

/// Requests measured per path.
pub const ROUNDS: usize = 1000;

/// Times `one` ROUNDS times, after a warm-up; sorted.
pub async fn measure<F, Fut>(mut one: F) -> Vec<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    // Warm up: the first connections pay for page faults and the allocator.
    for _ in 0..50 {
        one().await;
    }
    let mut took = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let started = Instant::now();
        one().await;
        took.push(started.elapsed());
    }
    took.sort();
    took
}

/// One line: p50 and p99 of `sorted`.
pub fn report(what: &str, sorted: &[Duration]) {
    let at = |q: f64| sorted[((sorted.len() as f64 - 1.0) * q).round() as usize];
    println!(
        "  {what:<34} p50 {:>7.1} µs   p99 {:>7.1} µs",
        at(0.50).as_secs_f64() * 1e6,
        at(0.99).as_secs_f64() * 1e6
    );
}
