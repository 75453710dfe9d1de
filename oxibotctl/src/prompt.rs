//! `oxibotctl prompt list|diff|accept`: the workspace files that shape the
//! assistant's instructions, and the changes that wait for the admin.
//! Their text was written by whatever turn changed them: it is shown
//! through `shown` (no terminal escapes), never as it is.

use oxibot_proto::messages::{CtlReply, CtlRequest, PromptFileInfo};
use serde_json::json;

use crate::client::{self, ask, CtlConn};
use crate::show::{shown, shown_line, utc};

const ABSENT: &str = "absent";

fn state(f: &PromptFileInfo) -> String {
    match (&f.accepted_sha, f.pending_sha.as_deref()) {
        (_, None) => "accepted".into(),
        (None, Some(ABSENT)) => "accepted".into(),
        (Some(_), Some(ABSENT)) => "removed in the workspace, waiting".into(),
        (None, Some(_)) => "new, waiting".into(),
        (Some(_), Some(_)) => "changed, waiting".into(),
    }
}

async fn files(conn: &mut CtlConn, request: CtlRequest) -> Result<Vec<PromptFileInfo>, String> {
    match ask(conn, request).await? {
        CtlReply::PromptFiles(files) => Ok(files),
        other => Err(client::unexpected(&other)),
    }
}

pub async fn list(conn: &mut CtlConn, json: bool) -> Result<(), String> {
    let files = files(conn, CtlRequest::PromptList).await?;
    if json {
        let items: Vec<_> = files
            .iter()
            .map(|f| {
                json!({"path": f.path, "state": state(f), "acceptedSha": f.accepted_sha,
                       "pendingSha": f.pending_sha, "pendingAt": f.pending_at})
            })
            .collect();
        crate::show::print_json(&json!({"files": items}));
        return Ok(());
    }
    if files.is_empty() {
        println!("no prompt files yet (the broker reads them at start and on each turn)");
    }
    for f in &files {
        let since = f.pending_at.map(|t| format!(" since {}", utc(t))).unwrap_or_default();
        println!("{:<40} {}{since}", shown_line(&f.path), state(f));
    }
    if files.iter().any(|f| f.pending_sha.is_some()) {
        println!("\nreview: oxibotctl prompt diff [FILE]; take: oxibotctl prompt accept FILE --sha DIGEST");
    }
    Ok(())
}

/// The unified diff from the accepted to the waiting version of each file
/// (or of `path`), with the digest `accept --sha` takes.
pub async fn diff(conn: &mut CtlConn, path: Option<String>, json: bool) -> Result<(), String> {
    let waiting: Vec<String> = match path {
        Some(p) => vec![p],
        None => files(conn, CtlRequest::PromptList)
            .await?
            .into_iter()
            .filter(|f| f.pending_sha.is_some())
            .map(|f| f.path)
            .collect(),
    };
    if waiting.is_empty() && !json {
        println!("no prompt file change waits");
    }
    let mut out = Vec::new();
    for path in waiting {
        let mut shown_files = files(conn, CtlRequest::PromptShow { path }).await?;
        let Some(f) = shown_files.pop() else { continue };
        let old = f.accepted_text.clone().unwrap_or_default();
        let new = f.pending_text.clone().unwrap_or_default();
        let patch = diffy::create_patch(&old, &new).to_string();
        if json {
            out.push(json!({"path": f.path, "state": state(&f), "pendingSha": f.pending_sha, "diff": patch}));
            continue;
        }
        println!("== {} ({})", shown_line(&f.path), state(&f));
        match f.pending_sha.as_deref() {
            None => println!("nothing waits"),
            Some(sha) => {
                print!("{}", shown(&patch));
                // The whole digest: a prefix could be matched by a second
                // version a turn wrote after this diff (a birthday search
                // on 48 bits takes a minute).
                let digest = sha;
                println!(
                    "accept with: oxibotctl prompt accept {} --sha {digest}\n",
                    shown_line(&f.path)
                );
            }
        }
    }
    if json {
        crate::show::print_json(&json!({"files": out}));
    }
    Ok(())
}
