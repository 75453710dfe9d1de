//! Files that come with chat messages: what kind each one is, and what the
//! model is told when one cannot be passed on. The user learns about a file
//! that did not arrive through the model's answer: nothing goes silently.

use oxibot_proto::messages::{AttachmentKind, MAX_FILE_BYTES};

/// Images go to vision models, audio to transcription, the rest is a file.
pub fn kind_for(mime: &str) -> AttachmentKind {
    let mime = mime.to_ascii_lowercase();
    if mime.starts_with("image/") {
        AttachmentKind::Image
    } else if mime.starts_with("audio/") {
        AttachmentKind::Audio
    } else {
        AttachmentKind::Document
    }
}

/// Whether a file of `size` bytes can be passed on.
pub fn fits(size: u64) -> bool {
    size <= MAX_FILE_BYTES as u64
}

pub fn too_large(name: &str, size: u64) -> String {
    format!(
        "[the user sent {name} ({} KiB); more than {} MiB of files per message cannot come through chat, so it was not received]",
        size.div_ceil(1024),
        MAX_FILE_BYTES >> 20
    )
}

pub fn not_downloaded(name: &str, error: &str) -> String {
    format!("[the user sent {name}, but it could not be downloaded: {error}]")
}

/// Appends notes about files to a message's text.
pub fn with_notes(text: &str, notes: &[String]) -> String {
    std::iter::once(text)
        .filter(|t| !t.is_empty())
        .chain(notes.iter().map(String::as_str))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_limits() {
        assert_eq!(kind_for("image/PNG"), AttachmentKind::Image);
        assert_eq!(kind_for("audio/ogg"), AttachmentKind::Audio);
        assert_eq!(kind_for("application/pdf"), AttachmentKind::Document);
        assert!(fits(MAX_FILE_BYTES as u64) && !fits(MAX_FILE_BYTES as u64 + 1));
        assert!(too_large("a.pdf", 2 << 20).contains("2048 KiB"));
        assert_eq!(with_notes("", &["[x]".into()]), "[x]");
        assert_eq!(with_notes("hi", &["[x]".into()]), "hi\n[x]");
    }
}
