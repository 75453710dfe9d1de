//! Files shared in Slack: downloaded by the daemon with the bot token
//! (Slack's private file links need it), after the broker said the sender
//! would be admitted, and only from Slack's own file host: the token goes
//! nowhere else, whatever link an event names.

use oxibot_proto::messages::{Attachment, MAX_ATTACHMENTS, MAX_FILE_BYTES};
use slack_morphism::prelude::SlackFile;

use crate::attach;

/// Where file links may point: the API's own host (a test's fake, a
/// proxy), or Slack's file host when the API is Slack's.
pub(super) struct FileHost {
    scheme: String,
    host: String,
}

impl FileHost {
    /// From the API base (`https://slack.com/api/` by default).
    pub(super) fn of(api_base: Option<&str>) -> FileHost {
        let parsed = api_base.and_then(|b| url::Url::parse(b).ok());
        let scheme = parsed.as_ref().map_or("https", |u| u.scheme()).to_string();
        let host = match parsed.as_ref().and_then(|u| u.host_str()) {
            None | Some("slack.com") => "files.slack.com".to_string(),
            Some(host) => match parsed.as_ref().and_then(url::Url::port) {
                Some(port) => format!("{host}:{port}"),
                None => host.to_string(),
            },
        };
        FileHost { scheme, host }
    }

    fn allows(&self, url: &url::Url) -> bool {
        let host = match (url.host_str(), url.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_string(),
            (None, _) => return false,
        };
        url.scheme() == self.scheme && host.eq_ignore_ascii_case(&self.host)
    }
}

/// Downloads a message's files, at most 20 MiB in all; what could not come
/// through becomes a note for the model (so the person hears of it).
pub(super) async fn fetch(
    http: &reqwest::Client,
    token: &str,
    allowed: &FileHost,
    files: &[SlackFile],
) -> (Vec<Attachment>, Vec<String>) {
    let mut attachments = Vec::new();
    let mut notes = Vec::new();
    let mut budget = MAX_FILE_BYTES as u64;
    for (i, file) in files.iter().enumerate() {
        let name = file
            .name
            .clone()
            .or_else(|| file.title.clone())
            .unwrap_or_else(|| format!("file-{}", file.id));
        if i >= MAX_ATTACHMENTS {
            notes.push(attach::not_downloaded(&name, "more files than one message carries"));
            continue;
        }
        let mime = file
            .mimetype
            .as_ref()
            .map_or_else(|| "application/octet-stream".to_string(), |m| m.to_string());
        let Some(url) = file.url_private_download.as_ref().or(file.url_private.as_ref()) else {
            notes.push(attach::not_downloaded(&name, "Slack gave no download link"));
            continue;
        };
        if !allowed.allows(url) {
            tracing::warn!(url = %url, "a Slack file link outside Slack's file host; not fetched");
            notes.push(attach::not_downloaded(&name, "its link is not on Slack's file host"));
            continue;
        }
        match download(http, token, url, budget).await {
            Ok(data) => {
                budget -= data.len() as u64;
                attachments.push(Attachment {
                    kind: attach::kind_for(&mime),
                    name,
                    mime,
                    data,
                });
            }
            Err(Refused::TooLarge(size)) => notes.push(attach::too_large(&name, size)),
            Err(Refused::Failed(e)) => notes.push(attach::not_downloaded(&name, &e)),
        }
    }
    (attachments, notes)
}

enum Refused {
    /// Its size, as far as it is known.
    TooLarge(u64),
    Failed(String),
}

/// One file, refused as soon as its size says it does not fit: by the
/// announced length before a byte of it is read, or as it arrives.
async fn download(http: &reqwest::Client, token: &str, url: &url::Url, budget: u64) -> Result<Vec<u8>, Refused> {
    let mut resp = http
        .get(url.clone())
        .bearer_auth(token)
        .send()
        .await
        .map_err(|e| Refused::Failed(e.without_url().to_string()))?;
    if !resp.status().is_success() {
        return Err(Refused::Failed(format!(
            "Slack answered HTTP {}",
            resp.status().as_u16()
        )));
    }
    if let Some(size) = resp.content_length().filter(|s| *s > budget) {
        return Err(Refused::TooLarge(size));
    }
    let mut data = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| Refused::Failed(e.without_url().to_string()))?
    {
        if (data.len() + chunk.len()) as u64 > budget {
            return Err(Refused::TooLarge((data.len() + chunk.len()) as u64));
        }
        data.extend_from_slice(&chunk);
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_goes_only_to_slacks_file_host() {
        let real = FileHost::of(None);
        let ok = |u: &str| real.allows(&url::Url::parse(u).unwrap());
        assert!(ok("https://files.slack.com/files-pri/T1-F1/download/a.png"));
        assert!(
            !ok("http://files.slack.com/files-pri/T1-F1/download/a.png"),
            "not in clear"
        );
        assert!(!ok("https://files.slack.com.evil.example/a.png"));
        assert!(!ok("https://evil.example/files.slack.com/a.png"));
        assert!(!ok("https://slack.com@evil.example/a.png"));
        let fake = FileHost::of(Some("http://127.0.0.1:4100/api/"));
        assert!(fake.allows(&url::Url::parse("http://127.0.0.1:4100/files/F1/a.png").unwrap()));
        assert!(!fake.allows(&url::Url::parse("http://127.0.0.1:4101/files/F1/a.png").unwrap()));
    }
}
