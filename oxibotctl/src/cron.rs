//! `oxibotctl cron list`.

use oxibot_proto::messages::{CronRequest, CtlReply, CtlRequest};
use serde_json::json;

use crate::client::{self, ask, CtlConn};
use crate::show::{shown_line, utc};

pub async fn list(conn: &mut CtlConn, json: bool) -> Result<(), String> {
    let jobs = match ask(conn, CtlRequest::Cron(CronRequest::List)).await? {
        CtlReply::CronJobs(jobs) => jobs,
        other => return Err(client::unexpected(&other)),
    };
    if json {
        let items: Vec<_> = jobs
            .iter()
            .map(|j| {
                json!({"id": j.id, "name": j.name, "channel": j.channel, "chatId": j.chat_id,
                       "schedule": j.schedule, "message": j.message, "enabled": j.enabled,
                       "nextRunAt": j.next_run_at, "lastRunAt": j.last_run_at, "lastStatus": j.last_status})
            })
            .collect();
        crate::show::print_json(&json!({"jobs": items}));
        return Ok(());
    }
    if jobs.is_empty() {
        println!("no scheduled jobs");
    }
    for j in jobs {
        let next = match (j.enabled, j.next_run_at) {
            (false, _) => "paused".to_string(),
            (true, Some(t)) => utc(t),
            (true, None) => "done".to_string(),
        };
        println!(
            "#{:<4} {:<20} {:<24} {:<30} next {:<20} last {} {}",
            j.id,
            shown_line(&j.name),
            shown_line(&format!("{}:{}", j.channel, j.chat_id)),
            shown_line(&j.schedule),
            next,
            j.last_run_at.map(utc).unwrap_or_else(|| "-".into()),
            shown_line(j.last_status.as_deref().unwrap_or("")),
        );
    }
    Ok(())
}
