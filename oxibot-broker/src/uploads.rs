//! Files users send through a channel: each one is saved into the
//! workspace's `inbox/` through toold (the broker never writes there
//! itself), then photos go to a vision model as images, voice notes are
//! transcribed, and the model is told, in the message text, what came and
//! where it is.

use std::time::Duration;

use base64::Engine;
use oxibot_proto::messages::{Attachment, AttachmentKind, ToolCall, MAX_FILE_BYTES, MAX_PART};

use crate::providers::Image;
use crate::services::Services;
use crate::toolclient::ToolCallError;

/// A channel daemon broke the rules of file pieces (its link is closed).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum PieceError {
    #[error("file pieces of two messages interleaved")]
    Interleaved,
    #[error("more than {MAX_FILE_BYTES} bytes of files for one message")]
    TooMuch,
    #[error("file pieces came for another message")]
    ForAnotherMessage,
    #[error("file pieces for attachment {0}, which the message lacks")]
    NoSuchAttachment(usize),
}

/// File data a channel daemon sent ahead of its message, in pieces.
#[derive(Default)]
pub struct Pieces {
    message: Option<String>,
    files: Vec<Vec<u8>>,
    total: usize,
}

impl Pieces {
    pub fn add(&mut self, platform_id: String, index: u8, data: Vec<u8>) -> Result<(), PieceError> {
        match &self.message {
            Some(m) if *m != platform_id => return Err(PieceError::Interleaved),
            Some(_) => {}
            None => self.message = Some(platform_id),
        }
        self.total += data.len();
        if self.total > MAX_FILE_BYTES {
            return Err(PieceError::TooMuch);
        }
        let index = usize::from(index);
        if self.files.len() <= index {
            self.files.resize_with(index + 1, Vec::new);
        }
        self.files[index].extend_from_slice(&data);
        Ok(())
    }

    /// Puts the pieces in front of the message's own attachment data.
    pub fn complete(&mut self, platform_id: &str, attachments: &mut [Attachment]) -> Result<(), PieceError> {
        let pieces = std::mem::take(self);
        match pieces.message {
            None => Ok(()),
            Some(m) if m != platform_id => Err(PieceError::ForAnotherMessage),
            Some(_) => pieces.files.into_iter().enumerate().try_for_each(|(i, mut data)| {
                let a = attachments.get_mut(i).ok_or(PieceError::NoSuchAttachment(i))?;
                data.extend_from_slice(&a.data);
                a.data = data;
                Ok(())
            }),
        }
    }
}

/// What the model gets besides the user's own words.
pub struct Prepared {
    /// One line per file, appended to the message.
    pub notes: Vec<String>,
    pub images: Vec<Image>,
}

const SAVE_TIMEOUT: Duration = Duration::from_secs(30);

pub async fn prepare(svc: &Services, files: &[Attachment]) -> Prepared {
    let mut out = Prepared {
        notes: Vec::new(),
        images: Vec::new(),
    };
    for (i, file) in files.iter().enumerate() {
        let size = human_size(file.data.len());
        let saved = save(svc, file, i).await;
        let place = match &saved {
            Ok(path) => format!("saved to {path}"),
            Err(e) => format!("could not be saved ({e})"),
        };
        let note = match file.kind {
            AttachmentKind::Image if svc.config().agents.defaults.vision => {
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
            AttachmentKind::Audio => match svc.live.transcriber() {
                Some(t) => match t.transcribe(&file.name, &file.mime, &file.data).await {
                    Ok(text) => format!("[voice message {} ({size}), {place}; transcript: {text}]", file.name),
                    Err(e) => {
                        // A provider's error text may quote what it was sent.
                        let e = svc.audit.scrub(&e.to_string(), "a transcription error");
                        svc.audit.record_error(&format!("transcription failed: {e}"));
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

/// Saves one file under `inbox/` and returns the path the tools see. The
/// file is the user's and only in the state database until this turn ends:
/// if toold dies during the save, it is saved again once toold is back
/// (the tool client waits for the reconnect).
async fn save(svc: &Services, file: &Attachment, index: usize) -> Result<String, ToolCallError> {
    let mut attempt = 0;
    loop {
        match save_once(svc, file, index).await {
            Err(e) if attempt < SAVE_RETRIES && !svc.tools.is_connected() => {
                tracing::warn!(file = %file.name, attempt, "saving an upload failed ({e}); trying again");
                attempt += 1;
            }
            result => return result,
        }
    }
}

const SAVE_RETRIES: u32 = 2;

/// One attempt: a piece per call.
async fn save_once(svc: &Services, file: &Attachment, index: usize) -> Result<String, ToolCallError> {
    let mut path = format!("inbox/{}", safe_name(&file.name, index));
    let mut offset = 0u64;
    let mut pieces = file.data.chunks(MAX_PART);
    let first = pieces.next().unwrap_or_default();
    for piece in std::iter::once(first).chain(pieces) {
        let call = ToolCall::SaveUpload {
            path: path.clone(),
            data: piece.to_vec(),
            offset,
        };
        // The first piece tells which free name toold chose.
        path = svc.tools.call(call, SAVE_TIMEOUT).await?;
        offset += piece.len() as u64;
    }
    Ok(path)
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

    fn doc(data: &[u8]) -> Attachment {
        Attachment {
            kind: AttachmentKind::Document,
            name: "d".into(),
            mime: "application/pdf".into(),
            data: data.to_vec(),
        }
    }

    #[test]
    fn pieces_are_put_together_for_their_message_only() {
        let mut p = Pieces::default();
        p.add("m1".into(), 1, b"bb".to_vec()).unwrap();
        p.add("m1".into(), 0, b"a".to_vec()).unwrap();
        p.add("m1".into(), 0, b"a".to_vec()).unwrap();
        let mut files = vec![doc(b"!"), doc(b"")];
        p.complete("m1", &mut files).unwrap();
        assert_eq!(
            (files[0].data.as_slice(), files[1].data.as_slice()),
            (&b"aa!"[..], &b"bb"[..])
        );
        // Nothing left over for the next message.
        let mut next = vec![doc(b"x")];
        p.complete("m2", &mut next).unwrap();
        assert_eq!(next[0].data, b"x");

        assert!(p.add("m3".into(), 0, vec![1]).is_ok());
        assert_eq!(p.add("m4".into(), 0, vec![1]), Err(PieceError::Interleaved));
        let mut p = Pieces::default();
        p.add("m5".into(), 2, vec![1]).unwrap();
        assert_eq!(p.complete("m5", &mut [doc(b"")]), Err(PieceError::NoSuchAttachment(1)));
        let mut p = Pieces::default();
        p.add("m6".into(), 0, vec![0; MAX_FILE_BYTES]).unwrap();
        assert_eq!(p.add("m6".into(), 0, vec![0]), Err(PieceError::TooMuch));
    }

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
