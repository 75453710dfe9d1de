//! Files users send through a channel: each one is saved into the
//! workspace's `inbox/` through toold (the broker never writes there
//! itself), then photos go to a vision model as images, voice notes are
//! transcribed, and the model is told, in the message text, what came and
//! where it is.

use std::time::Duration;

use base64::Engine;
use oxibot_proto::messages::{Attachment, AttachmentKind, ToolCall};

use crate::broker::Broker;
use crate::providers::Image;

/// What the model gets besides the user's own words.
pub struct Prepared {
    /// One line per file, appended to the message.
    pub notes: Vec<String>,
    pub images: Vec<Image>,
}

const SAVE_TIMEOUT: Duration = Duration::from_secs(30);

pub async fn prepare(broker: &Broker, files: &[Attachment]) -> Prepared {
    let mut out = Prepared {
        notes: Vec::new(),
        images: Vec::new(),
    };
    for (i, file) in files.iter().enumerate() {
        let size = human_size(file.data.len());
        let saved = save(broker, file, i).await;
        let place = match &saved {
            Ok(path) => format!("saved to {path}"),
            Err(e) => format!("could not be saved ({e})"),
        };
        let note = match file.kind {
            AttachmentKind::Image if broker.config.agents.defaults.vision => {
                out.images.push(Image {
                    mime: file.mime.clone(),
                    base64: base64::engine::general_purpose::STANDARD.encode(&file.data),
                });
                format!("[image {} ({size}), attached; {place}]", file.name)
            }
            AttachmentKind::Image => format!(
                "[image {} ({size}) {place}; this model is not set up to see images (agents.defaults.vision)]",
                file.name
            ),
            AttachmentKind::Audio => match &broker.transcriber {
                Some(t) => match t.transcribe(&file.name, &file.mime, &file.data).await {
                    Ok(text) => format!("[voice message {} ({size}), {place}; transcript: {text}]", file.name),
                    Err(e) => {
                        broker.record_error(&format!("transcription failed: {e}"));
                        format!(
                            "[voice message {} ({size}) {place}; transcription failed: {e}]",
                            file.name
                        )
                    }
                },
                None => format!(
                    "[voice message {} ({size}) {place}; not transcribed: no transcription model is configured]",
                    file.name
                ),
            },
            AttachmentKind::Document => format!("[file {} ({size}, {}) {place}]", file.name, file.mime),
        };
        out.notes.push(note);
    }
    out
}

/// Saves one file under `inbox/` and returns the path the tools see.
async fn save(broker: &Broker, file: &Attachment, index: usize) -> Result<String, String> {
    let call = ToolCall::SaveUpload {
        path: format!("inbox/{}", safe_name(&file.name, index)),
        data: file.data.clone(),
    };
    broker.tools.call(call, SAVE_TIMEOUT).await
}

/// A file name that stays one plain path component, whatever the user
/// called the file.
fn safe_name(name: &str, index: usize) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let cleaned: String = base
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .take(100)
        .collect();
    let cleaned = cleaned.trim_start_matches('.').to_string();
    if cleaned.is_empty() {
        format!("file-{index}")
    } else {
        cleaned
    }
}

fn human_size(bytes: usize) -> String {
    if bytes < 1024 {
        format!("{bytes} bytes")
    } else {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_cannot_leave_the_inbox() {
        assert_eq!(safe_name("../../etc/passwd", 0), "passwd");
        assert_eq!(safe_name("..", 1), "file-1");
        assert_eq!(safe_name(".bashrc", 2), "bashrc");
        assert_eq!(safe_name("C:\\x\\report final.pdf", 3), "report_final.pdf");
        assert_eq!(safe_name("", 4), "file-4");
        assert_eq!(safe_name("фото.jpg", 5), "фото.jpg");
    }
}
