//! Output capture that keeps the head and the tail, cut on UTF-8 boundaries.

/// Keeps the first `cap/2` and the last `cap/2` bytes of a stream.
pub struct HeadTail {
    half: usize,
    head: Vec<u8>,
    tail: std::collections::VecDeque<u8>,
    total: usize,
}

impl HeadTail {
    pub fn new(cap: usize) -> Self {
        HeadTail {
            half: cap / 2,
            head: Vec::new(),
            tail: Default::default(),
            total: 0,
        }
    }

    pub fn push(&mut self, mut data: &[u8]) {
        self.total += data.len();
        let room = self.half - self.head.len();
        let take = room.min(data.len());
        self.head.extend_from_slice(&data[..take]);
        data = &data[take..];
        // Only the last `half` bytes of what remains can survive.
        if data.len() > self.half {
            data = &data[data.len() - self.half..];
        }
        self.tail.extend(data);
        while self.tail.len() > self.half {
            self.tail.pop_front();
        }
    }

    /// The kept text; a marker says how much was left out in the middle.
    pub fn finish(self) -> String {
        let kept = self.head.len() + self.tail.len();
        if kept == self.total {
            let mut all = self.head;
            all.extend(self.tail);
            return String::from_utf8_lossy(&all).into_owned();
        }
        let head = &self.head[..char_floor(&self.head, self.head.len())];
        let tail: Vec<u8> = self.tail.into_iter().collect();
        let tail = &tail[char_ceil(&tail, 0)..];
        let omitted = self.total - head.len() - tail.len();
        format!(
            "{}\n... [{omitted} bytes omitted] ...\n{}",
            String::from_utf8_lossy(head),
            String::from_utf8_lossy(tail)
        )
    }
}

/// At most `max` characters of `s`, with "…" when cut.
pub fn truncate_chars(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

fn is_continuation(b: u8) -> bool {
    b & 0b1100_0000 == 0b1000_0000
}

/// The largest index ≤ `i` that does not split a UTF-8 sequence.
fn char_floor(bytes: &[u8], mut i: usize) -> usize {
    if i >= bytes.len() {
        // Cutting at the end splits a sequence only if the last one is incomplete.
        let start = (0..bytes.len()).rev().take(4).find(|&j| !is_continuation(bytes[j]));
        if let Some(s) = start {
            let need = match bytes[s] {
                b if b >= 0xF0 => 4,
                b if b >= 0xE0 => 3,
                b if b >= 0xC0 => 2,
                _ => 1,
            };
            if bytes.len() - s < need {
                return s;
            }
        }
        return bytes.len();
    }
    while i > 0 && is_continuation(bytes[i]) {
        i -= 1;
    }
    i
}

/// The smallest index ≥ `i` that starts a UTF-8 sequence.
fn char_ceil(bytes: &[u8], mut i: usize) -> usize {
    while i < bytes.len() && is_continuation(bytes[i]) {
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_output_is_kept_whole() {
        let mut h = HeadTail::new(100);
        h.push("héllo".as_bytes());
        assert_eq!(h.finish(), "héllo");
    }

    #[test]
    fn long_output_keeps_head_and_tail_without_splitting_chars() {
        let text = "é".repeat(1000); // 2000 bytes, every char 2 bytes
        for cap in [9usize, 10, 11, 101] {
            let mut h = HeadTail::new(cap);
            for chunk in text.as_bytes().chunks(7) {
                h.push(chunk);
            }
            let out = h.finish();
            assert!(!out.contains('\u{FFFD}'), "cap {cap}: a character was split: {out}");
            assert!(out.contains("bytes omitted"));
            assert!(out.starts_with('é') && out.ends_with('é'));
        }
    }
}
