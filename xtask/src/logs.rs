//! `cargo xtask logs`: the function's log group through CloudWatch Logs `FilterLogEvents`,
//! polled every two seconds with `--follow`.

use crate::flags::{self, Common, OutputFormat};
use crate::stack::StackContext;
use anyhow::{bail, Result};
use infra::aws::OrNotFound;
use std::collections::HashSet;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

impl flags::Logs {
    pub async fn run(self, common: &Common) -> Result<ExitCode> {
        let since = flags::parse_seconds(&self.since).map_err(anyhow::Error::msg)?;
        let ctx = StackContext::new(common).await?;
        let group = ctx.names.log_group.clone();
        let now_ms = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as i64;
        let mut start = now_ms - (since * 1000.0) as i64;
        // Events already printed at the newest timestamp seen (the next poll starts there).
        let mut seen_at_start: HashSet<String> = HashSet::new();
        let json = common.output == OutputFormat::Json;
        let mut printed = 0usize;

        loop {
            let mut next: Option<String> = None;
            let mut newest = start;
            let mut at_newest: HashSet<String> = HashSet::new();
            loop {
                let mut req = ctx
                    .aws
                    .logs
                    .filter_log_events()
                    .log_group_name(&group)
                    .start_time(start)
                    .set_next_token(next.clone());
                if let Some(p) = &self.filter {
                    req = req.filter_pattern(p);
                }
                let Some(page) = req
                    .send()
                    .await
                    .or_not_found()
                    .map_err(infra::aws::ctx(format!("logs:FilterLogEvents {group}")))?
                else {
                    bail!(
                        "log group {group} does not exist in {}: deploy the stack first (`cargo xtask deploy --stack {}`)",
                        ctx.where_(),
                        ctx.stack
                    );
                };
                for ev in page.events() {
                    let id = ev.event_id().unwrap_or_default().to_string();
                    let ts = ev.timestamp().unwrap_or(start);
                    if ts == start && seen_at_start.contains(&id) {
                        continue;
                    }
                    print_event(ev, json);
                    printed += 1;
                    if ts > newest {
                        newest = ts;
                        at_newest.clear();
                    }
                    if ts == newest {
                        at_newest.insert(id);
                    }
                }
                next = page.next_token().map(str::to_owned);
                if next.is_none() {
                    break;
                }
            }
            if !self.follow {
                if printed == 0 {
                    eprintln!("no log events in {group} in the last {} (use --since to look further back, --follow to wait)", self.since);
                }
                return Ok(ExitCode::SUCCESS);
            }
            if newest > start {
                start = newest;
                seen_at_start = at_newest;
            } else {
                seen_at_start.extend(at_newest);
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
            }
        }
    }
}

fn print_event(ev: &aws_sdk_cloudwatchlogs::types::FilteredLogEvent, json: bool) {
    let message = ev.message().unwrap_or_default().trim_end();
    if json {
        let line = serde_json::json!({
            "timestamp": ev.timestamp(),
            "log_stream": ev.log_stream_name(),
            "message": message,
        });
        println!("{line}");
    } else {
        let ts = ev.timestamp().map(format_ms).unwrap_or_default();
        println!("{ts}  {message}");
    }
}

/// `2026-01-02T03:04:05.678Z` from epoch milliseconds (UTC, no date library needed).
fn format_ms(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (h, m, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(mo <= 2);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{m:02}:{s:02}.{millis:03}Z")
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats_timestamps() {
        assert_eq!(super::format_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            super::format_ms(1_767_323_045_678),
            "2026-01-02T03:04:05.678Z"
        );
    }
}
