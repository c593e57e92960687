//! The deploy lock: one deploy or teardown of a stack at a time, across machines that
//! share nothing but the AWS account.
//!
//! The lock is the Secrets Manager secret `claude-proxy/<stack>/lock`. `CreateSecret` is
//! atomic: it fails with `ResourceExistsException` while someone holds the lock. Its value
//! names the holder (host, pid, CI run) and when the lock expires; it carries the stack's
//! tags, so it is found by the same tags as everything else. No extra infrastructure.
//!
//! * Release: `DeleteSecret` with `ForceDeleteWithoutRecovery`, by the lock's full ARN.
//! * Waiting: the holder is re-read every `poll` until the lock is gone, stale, or
//!   `timeout` has passed ([`LockHeld`] names the holder and the expiry).
//! * Taking over a stale lock (expired; or held by a process on this host that is no longer
//!   running; or by an earlier attempt of the same CI run): `DeleteSecret` by the full ARN
//!   read together with the holder, then `CreateSecret` again. Every `CreateSecret` makes a
//!   new ARN (random suffix), so a delete by the old ARN cannot remove a lock that a
//!   competing taker has just created: the takeover race is settled by `CreateSecret`.

use crate::aws::{ctx, describe, Aws, OrNotFound};
use crate::names;
use anyhow::{Context, Result};
use aws_sdk_secretsmanager::types::Tag;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::{Duration, SystemTime};

/// Default lifetime of a lock: a crashed deploy on another machine blocks the stack at most
/// this long.
pub const DEFAULT_TTL: Duration = Duration::from_secs(10 * 60);
/// Default time to wait for a held lock.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// The lock secret's name for a stack.
pub fn lock_name(stack: &str) -> String {
    format!("claude-proxy/{stack}/lock")
}

#[derive(Debug, Clone)]
pub struct LockOptions {
    /// What the holder is doing ("deploy", "teardown"), shown to waiters.
    pub operation: String,
    /// How long the lock is valid; after that anyone may take it over.
    pub ttl: Duration,
    /// How long to wait for a held lock before giving up with [`LockHeld`].
    pub timeout: Duration,
    /// How often a waiter re-reads the lock.
    pub poll: Duration,
}

impl LockOptions {
    pub fn new(operation: &str) -> LockOptions {
        LockOptions {
            operation: operation.to_string(),
            ttl: DEFAULT_TTL,
            timeout: DEFAULT_TIMEOUT,
            poll: Duration::from_secs(2),
        }
    }
}

/// Who holds a lock: stored as the lock secret's JSON value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    /// Random, unique per acquisition.
    pub id: String,
    pub operation: String,
    pub host: String,
    pub pid: u32,
    /// The process's start time (clock ticks since boot, Linux), to tell a reused pid apart.
    #[serde(default)]
    pub pid_start: Option<u64>,
    /// `GITHUB_RUN_ID` (or another CI's run id) when running in CI.
    #[serde(default)]
    pub ci_run_id: Option<String>,
    #[serde(default)]
    pub ci_run_attempt: Option<String>,
    /// A link to the CI run, when known.
    #[serde(default)]
    pub ci_url: Option<String>,
    /// RFC 3339.
    pub acquired_at: String,
    /// RFC 3339.
    pub expires_at: String,
}

impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} on host {} (pid {}",
            self.operation, self.host, self.pid
        )?;
        if let Some(run) = &self.ci_run_id {
            write!(f, ", CI run {run}")?;
            if let Some(a) = &self.ci_run_attempt {
                write!(f, " attempt {a}")?;
            }
        }
        if let Some(u) = &self.ci_url {
            write!(f, ", {u}")?;
        }
        write!(f, ") since {}", self.acquired_at)
    }
}

impl Holder {
    /// This process, acquiring now for `ttl`.
    pub fn this_process(operation: &str, ttl: Duration) -> Holder {
        let now = SystemTime::now();
        let ci_run_id = std::env::var("GITHUB_RUN_ID")
            .ok()
            .filter(|s| !s.is_empty());
        let ci_url = match (
            std::env::var("GITHUB_SERVER_URL"),
            std::env::var("GITHUB_REPOSITORY"),
            &ci_run_id,
        ) {
            (Ok(server), Ok(repo), Some(run)) => {
                Some(format!("{server}/{repo}/actions/runs/{run}"))
            }
            _ => None,
        };
        Holder {
            id: random_id(),
            operation: operation.to_string(),
            host: hostname(),
            pid: std::process::id(),
            pid_start: process_start(std::process::id()),
            ci_run_id,
            ci_run_attempt: std::env::var("GITHUB_RUN_ATTEMPT")
                .ok()
                .filter(|s| !s.is_empty()),
            ci_url,
            acquired_at: rfc3339(now),
            expires_at: rfc3339(now + ttl),
        }
    }

    /// When the lock expires (`None` when the stored time does not parse: treated as expired).
    pub fn expires(&self) -> Option<SystemTime> {
        humantime::parse_rfc3339_weak(&self.expires_at).ok()
    }

    /// Why `self` (the current holder) may be taken over by `me`, or `None` when it is live.
    pub fn stale_because(&self, me: &Holder, now: SystemTime) -> Option<String> {
        match self.expires() {
            None => return Some(format!("its expiry `{}` is unreadable", self.expires_at)),
            Some(t) if t <= now => return Some(format!("it expired at {}", self.expires_at)),
            _ => {}
        }
        if self.host == me.host && self.host != UNKNOWN_HOST {
            if self.pid == me.pid && self.pid_start == me.pid_start {
                // This very process (never happens unless acquired twice).
                return None;
            }
            let running = match process_start(self.pid) {
                None => false,
                Some(start) => self.pid_start.is_none_or(|s| s == start),
            };
            if !running {
                return Some(format!(
                    "its process {} on this host is no longer running",
                    self.pid
                ));
            }
        }
        if let (Some(run), Some(my_run)) = (&self.ci_run_id, &me.ci_run_id) {
            if run == my_run && self.ci_run_attempt != me.ci_run_attempt {
                return Some(format!(
                    "it belongs to an earlier attempt of this CI run ({run})"
                ));
            }
        }
        None
    }
}

/// A held lock was not released within the timeout.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "stack `{stack}` is locked by {holder}; the lock expires at {expires_at} (waited {waited}). \
     Try again after the other run ends, or raise --lock-timeout; an expired lock is taken over automatically"
)]
pub struct LockHeld {
    pub stack: String,
    pub holder: Holder,
    pub expires_at: String,
    pub waited: String,
}

/// A held lock. Release it with [`StackLock::release`]; a lock that is never released
/// (the process was killed) expires after its TTL.
#[derive(Debug)]
pub struct StackLock {
    aws: Aws,
    pub stack: String,
    pub name: String,
    /// The lock secret's full ARN (its random suffix identifies this acquisition).
    pub arn: String,
    pub holder: Holder,
    /// The stale holder this acquisition replaced, and why, if any.
    pub took_over: Option<(Holder, String)>,
}

impl StackLock {
    /// Deletes the lock secret (by its full ARN: never someone else's lock).
    pub async fn release(self) -> Result<()> {
        let deleted = self
            .aws
            .secrets
            .delete_secret()
            .secret_id(&self.arn)
            .force_delete_without_recovery(true)
            .send()
            .await
            .or_not_found()
            .map_err(ctx(format!(
                "releasing the lock: secretsmanager:DeleteSecret {}",
                self.name
            )))?;
        if deleted.is_none() {
            tracing::warn!(
                "the lock on stack `{}` was taken over by someone else before it was released (it expired?)",
                self.stack
            );
        }
        Ok(())
    }
}

/// The current lock of a stack: its full ARN and holder, if held.
pub async fn read(aws: &Aws, stack: &str) -> Result<Option<(String, Holder)>> {
    let name = lock_name(stack);
    match aws
        .secrets
        .get_secret_value()
        .secret_id(&name)
        .send()
        .await
        .or_not_found()
    {
        Ok(None) => Ok(None),
        Ok(Some(v)) => {
            let arn = v
                .arn()
                .context("GetSecretValue returned no ARN for the lock")?
                .to_string();
            let holder = v
                .secret_string()
                .and_then(|s| serde_json::from_str::<Holder>(s).ok())
                .unwrap_or_else(|| Holder {
                    id: String::new(),
                    operation: "unknown".into(),
                    host: UNKNOWN_HOST.into(),
                    pid: 0,
                    pid_start: None,
                    ci_run_id: None,
                    ci_run_attempt: None,
                    ci_url: None,
                    acquired_at: "unknown".into(),
                    // Unreadable: treated as expired.
                    expires_at: "unreadable".into(),
                });
            Ok(Some((arn, holder)))
        }
        // A lock secret being deleted right now (real AWS, briefly) reads as InvalidRequest.
        Err(e) if code(&e) == Some("InvalidRequestException") => Ok(None),
        Err(e) => Err(ctx(format!("secretsmanager:GetSecretValue {name}"))(e)),
    }
}

/// Takes the stack's lock, waiting (re-reading every `poll`) up to `timeout` while someone
/// else holds a live one. `on_wait` is told once what is being waited for.
pub async fn acquire(
    aws: &Aws,
    stack: &str,
    opts: &LockOptions,
    on_wait: &(dyn Fn(&str) + Sync),
) -> Result<StackLock> {
    crate::names::validate_stack_name(stack)?;
    let name = lock_name(stack);
    let started = std::time::Instant::now();
    let mut told: Option<String> = None;
    let mut took_over = None;
    loop {
        let me = Holder::this_process(&opts.operation, opts.ttl);
        let value = serde_json::to_string(&me).context("serialising the lock holder")?;
        let tags: Vec<Tag> = names::tags_at_creation(stack, &me.acquired_at)
            .into_iter()
            .map(|(k, v)| Tag::builder().key(k).value(v).build())
            .collect();
        let created = aws
            .secrets
            .create_secret()
            .name(&name)
            .description(format!(
                "Deploy lock of the claude-proxy stack `{stack}` (claude-lambda-toolkit); deleted when the deploy ends"
            ))
            .secret_string(value)
            .set_tags(Some(tags))
            .send()
            .await;
        let held_code = match created {
            Ok(out) => {
                let arn = out
                    .arn()
                    .context("CreateSecret returned no ARN for the lock")?
                    .to_string();
                tracing::debug!(stack, arn, "lock acquired");
                return Ok(StackLock {
                    aws: aws.clone(),
                    stack: stack.to_string(),
                    name,
                    arn,
                    holder: me,
                    took_over,
                });
            }
            Err(e) => match code(&e) {
                Some(c @ ("ResourceExistsException" | "InvalidRequestException")) => c.to_string(),
                _ => {
                    return Err(anyhow::anyhow!(
                        "taking the deploy lock: secretsmanager:CreateSecret {name}: {}",
                        describe(&e)
                    ))
                }
            },
        };
        // Held (or, on real AWS, a just force-deleted lock whose name is not free yet).
        let current = read(aws, stack).await?;
        let waited = started.elapsed();
        match current {
            None => {}
            Some((arn, holder)) => {
                if let Some(why) = holder.stale_because(&me, SystemTime::now()) {
                    tracing::debug!(stack, %holder, why, "taking over a stale lock");
                    // Not found: someone else removed it first; just try again.
                    aws.secrets
                        .delete_secret()
                        .secret_id(&arn)
                        .force_delete_without_recovery(true)
                        .send()
                        .await
                        .or_not_found()
                        .map_err(ctx(format!(
                            "taking over the stale lock ({why}): secretsmanager:DeleteSecret {arn}"
                        )))?;
                    took_over = Some((holder, why));
                    continue;
                }
                if waited >= opts.timeout {
                    return Err(LockHeld {
                        stack: stack.to_string(),
                        expires_at: holder.expires_at.clone(),
                        holder,
                        waited: format!("{:.0?}", waited),
                    }
                    .into());
                }
                let msg = format!(
                    "stack `{stack}` is locked by {holder}; waiting up to {} for it (the lock expires at {})",
                    humantime::format_duration(round_secs(opts.timeout)),
                    holder.expires_at
                );
                if told.as_deref() != Some(holder.id.as_str()) {
                    on_wait(&msg);
                    told = Some(holder.id.clone());
                }
            }
        }
        if held_code == "InvalidRequestException" && waited >= opts.timeout {
            anyhow::bail!(
                "taking the deploy lock: {name} is still being deleted after {waited:.0?}; try again in a minute"
            );
        }
        let left = opts.timeout.saturating_sub(waited);
        tokio::time::sleep(opts.poll.min(left).max(Duration::from_millis(20))).await;
    }
}

const UNKNOWN_HOST: &str = "unknown-host";

fn code<E: ProvideErrorMetadata, R>(
    e: &aws_smithy_runtime_api::client::result::SdkError<E, R>,
) -> Option<&str> {
    e.as_service_error().and_then(|se| se.code())
}

fn round_secs(d: Duration) -> Duration {
    Duration::from_secs(d.as_secs())
}

/// `2026-01-01T00:00:00Z`.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

fn random_id() -> String {
    let mut b = [0u8; 12];
    rand::fill(&mut b);
    hex::encode(b)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| UNKNOWN_HOST.to_string())
}

/// The start time of a running process (Linux `/proc/<pid>/stat` field 22), `None` when no
/// such process runs (or there is no `/proc`).
fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses: skip past the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    // rest starts at field 3 (state); field 22 is the 20th from here.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    if fields.first() == Some(&"Z") {
        return None; // a zombie is not running
    }
    fields.get(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holder(host: &str, pid: u32, start: Option<u64>, expires_in: i64) -> Holder {
        let now = SystemTime::now();
        let exp = if expires_in >= 0 {
            now + Duration::from_secs(expires_in as u64)
        } else {
            now - Duration::from_secs((-expires_in) as u64)
        };
        Holder {
            id: random_id(),
            operation: "deploy".into(),
            host: host.into(),
            pid,
            pid_start: start,
            ci_run_id: None,
            ci_run_attempt: None,
            ci_url: None,
            acquired_at: rfc3339(now),
            expires_at: rfc3339(exp),
        }
    }

    #[test]
    fn this_process_is_running_and_named() {
        let me = Holder::this_process("deploy", Duration::from_secs(60));
        assert_eq!(me.pid, std::process::id());
        assert!(me.pid_start.is_some(), "Linux has /proc");
        assert!(me.expires().unwrap() > SystemTime::now());
        let shown = me.to_string();
        assert!(shown.contains(&format!("pid {}", me.pid)), "{shown}");
        assert!(shown.contains(&me.host), "{shown}");
        let back: Holder = serde_json::from_str(&serde_json::to_string(&me).unwrap()).unwrap();
        assert_eq!(back, me);
    }

    #[test]
    fn stale_rules() {
        let me = Holder::this_process("deploy", Duration::from_secs(60));
        let now = SystemTime::now();
        // Expired: stale, wherever it is.
        let h = holder("elsewhere", 1, None, -5);
        assert!(h.stale_because(&me, now).unwrap().contains("expired"));
        // Live on another host: not stale.
        assert_eq!(
            holder("elsewhere", 1, None, 600).stale_because(&me, now),
            None
        );
        // Live process on this host (ourselves, seen as another acquisition): not stale.
        let alive = holder(&me.host, me.pid, me.pid_start, 600);
        assert_eq!(alive.stale_because(&me, now), None);
        // Our parent process (the test runner) is running: not stale.
        let ppid = std::os::unix::process::parent_id();
        let parent = holder(&me.host, ppid, process_start(ppid), 600);
        assert_eq!(parent.stale_because(&me, now), None);
        // A pid that runs no process on this host: stale.
        let dead = holder(&me.host, u32::MAX - 7, Some(1), 600);
        assert!(dead
            .stale_because(&me, now)
            .unwrap()
            .contains("no longer running"));
        // The same pid but another start time: a reused pid, so the holder is gone.
        let reused = holder(&me.host, ppid, process_start(ppid).map(|s| s + 1), 600);
        assert!(reused.stale_because(&me, now).is_some());
        // Unknown hosts are never judged by pid.
        let mut unknown_me = me.clone();
        unknown_me.host = UNKNOWN_HOST.into();
        let unknown = holder(UNKNOWN_HOST, u32::MAX - 7, None, 600);
        assert_eq!(unknown.stale_because(&unknown_me, now), None);
        // An earlier attempt of the same CI run is over.
        let mut ci_me = me.clone();
        ci_me.host = "runner-2".into();
        ci_me.ci_run_id = Some("42".into());
        ci_me.ci_run_attempt = Some("2".into());
        let mut earlier = holder("runner-1", 9, None, 600);
        earlier.ci_run_id = Some("42".into());
        earlier.ci_run_attempt = Some("1".into());
        assert!(earlier.stale_because(&ci_me, now).is_some());
        earlier.ci_run_attempt = Some("2".into());
        assert_eq!(earlier.stale_because(&ci_me, now), None);
        // An unreadable expiry counts as expired.
        let mut bad = holder("elsewhere", 1, None, 600);
        bad.expires_at = "garbage".into();
        assert!(bad.stale_because(&me, now).is_some());
    }

    #[test]
    fn lock_held_names_holder_and_expiry() {
        let h = holder("ci-box", 4242, None, 300);
        let e = LockHeld {
            stack: "pr-7".into(),
            expires_at: h.expires_at.clone(),
            holder: h.clone(),
            waited: "10s".into(),
        };
        let s = e.to_string();
        assert!(s.contains("pr-7") && s.contains("ci-box") && s.contains("4242"));
        assert!(s.contains(&h.expires_at) && s.contains("--lock-timeout"));
    }
}
