//! One instance of the function: a `bootstrap` process with the standard Lambda environment,
//! and the state of the invocation it works on (queued → active → answered, timed out, or
//! lost with the process). Its Runtime API (`runtime_api.rs`) drives that state over HTTP;
//! the pool (`pool.rs`) hands it invocations.

use super::config::Config;
use super::ids;
use super::invocation::{exit_error, timeout_error, FunctionError, Outcome};
use super::options::{LogSink, LogSource};
use super::slot::{Active, Invocation, ReplyError, Slot};
use crate::http::{lock, Server};
use anyhow::{Context, Result};
use bytes::Bytes;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::{oneshot, watch, Notify};

/// A cold start: from spawning an instance's process to its first `/invocation/next` poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ColdStart {
    /// The instance (1, 2, ... in spawn order).
    pub instance: usize,
    /// Process start → first poll of the Runtime API.
    pub duration: Duration,
}

/// What `/invocation/next` hands to the runtime.
pub(super) struct Next {
    pub request_id: String,
    pub payload: Bytes,
    pub now: SystemTime,
    pub deadline: SystemTime,
}

pub(super) struct Instance {
    id: usize,
    cfg: Arc<Config>,
    /// Signalled when an instance becomes idle or dies.
    released: Arc<Notify>,
    cold_starts: Arc<Mutex<Vec<ColdStart>>>,
    slot: Mutex<Slot>,
    /// Wakes the `/invocation/next` long-poll.
    wake: Notify,
    /// Asks the process watcher to kill the process.
    kill_signal: Notify,
    exited: watch::Sender<bool>,
    spawned_at: Instant,
    first_poll: OnceLock<Duration>,
    pid: Option<u32>,
    /// The Runtime API server, stopped when the process exits.
    runtime_api: Mutex<Option<Server>>,
}

impl Instance {
    /// Starts the process, pointed at the Runtime API on `runtime_api`, which `serve` starts
    /// for the new instance (before the process can have exited, so its stop is never missed).
    pub fn spawn(
        id: usize,
        cfg: Arc<Config>,
        released: Arc<Notify>,
        cold_starts: Arc<Mutex<Vec<ColdStart>>>,
        runtime_api: SocketAddr,
        serve: impl FnOnce(Arc<Instance>) -> Result<Server>,
    ) -> Result<Arc<Instance>> {
        let task_root = cfg
            .bootstrap
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("/"));
        let env = lambda_env(&cfg, runtime_api, &task_root, SystemTime::now());
        let (stdout, stderr) = match cfg.logs {
            LogSink::Inherit => (Stdio::inherit(), Stdio::inherit()),
            LogSink::Discard => (Stdio::null(), Stdio::null()),
            LogSink::Capture(_) => (Stdio::piped(), Stdio::piped()),
        };
        let mut cmd = tokio::process::Command::new(&cfg.bootstrap);
        cmd.env_clear()
            .envs(env)
            .current_dir(&task_root)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .kill_on_drop(true);
        let spawned_at = Instant::now();
        let mut child = cmd
            .spawn()
            .with_context(|| format!("spawning {}", cfg.bootstrap.display()))?;

        let instance = Arc::new(Instance {
            id,
            cfg: cfg.clone(),
            released,
            cold_starts,
            slot: Mutex::new(Slot::new()),
            wake: Notify::new(),
            kill_signal: Notify::new(),
            exited: watch::Sender::new(false),
            spawned_at,
            first_poll: OnceLock::new(),
            pid: child.id(),
            runtime_api: Mutex::new(None),
        });

        // Log forwarders end at EOF, when the process is gone.
        if let Some(out) = child.stdout.take() {
            forward_lines(out, id, LogSource::Stdout, cfg.clone());
        }
        if let Some(err) = child.stderr.take() {
            forward_lines(err, id, LogSource::Stderr, cfg.clone());
        }
        // On error the child is dropped, and killed with it.
        *lock(&instance.runtime_api) = Some(serve(instance.clone())?);

        // The watcher owns the child: it reaps it, or kills it when asked.
        let watched = instance.clone();
        tokio::spawn(async move {
            let status = tokio::select! {
                status = child.wait() => status,
                _ = watched.kill_signal.notified() => {
                    let _ = child.start_kill();
                    child.wait().await
                }
            };
            watched.on_exit(
                status
                    .map(|s| s.to_string())
                    .unwrap_or_else(|e| e.to_string()),
            );
        });
        Ok(instance)
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    pub fn is_alive(&self) -> bool {
        lock(&self.slot).alive
    }

    /// Reserves the instance for an invocation when it is alive and idle.
    pub fn try_reserve(&self) -> bool {
        lock(&self.slot).reserve()
    }

    /// Hands a reserved instance its invocation; a dead one fails it at once.
    pub fn enqueue(&self, inv: Invocation) {
        let refused = lock(&self.slot).queue(inv);
        match refused {
            Ok(()) => self.wake.notify_one(),
            Err((inv, status)) => {
                let _ = inv.reply.send(Outcome::Error(exit_error(
                    &inv.request_id,
                    &format!("Runtime exited with error: {status}"),
                )));
            }
        }
    }

    /// Asks the watcher to kill the process (it does not wait).
    pub fn kill(&self) {
        self.kill_signal.notify_one();
    }

    /// Waits until the process has exited.
    pub async fn wait_exited(&self) {
        let mut rx = self.exited.subscribe();
        let _ = rx.wait_for(|exited| *exited).await;
    }

    fn on_exit(&self, status: String) {
        let (queued, active) = lock(&self.slot).exit(status.clone());
        // Taken out of the lock before it is dropped: stopping it drops its connections.
        let server = lock(&self.runtime_api).take();
        drop(server);
        let why = format!("Runtime exited with error: {status}");
        if let Some(inv) = queued {
            let _ = inv
                .reply
                .send(Outcome::Error(exit_error(&inv.request_id, &why)));
        }
        if let Some(mut active) = active {
            if let Some(reply) = active.reply.take() {
                let _ = reply.send(Outcome::Error(exit_error(&active.request_id, &why)));
            }
            self.cfg
                .platform(self.id, format!("END RequestId: {}", active.request_id));
        }
        let _ = self.exited.send(true);
        self.released.notify_waiters();
    }

    /// Waits for the next invocation (the runtime's long poll); never returns once the
    /// process is gone. The first call records the cold start.
    pub async fn next_invocation(self: &Arc<Self>) -> Next {
        let first = self.first_poll.get().is_none();
        let init = *self.first_poll.get_or_init(|| self.spawned_at.elapsed());
        if first {
            lock(&self.cold_starts).push(ColdStart {
                instance: self.id,
                duration: init,
            });
        }
        loop {
            let started = lock(&self.slot).start_queued(init);
            if let Some((request_id, payload, abandoned)) = started {
                if let Some(reply) = abandoned.and_then(|mut a| a.reply.take()) {
                    let _ = reply.send(Outcome::Error(FunctionError {
                        error_type: "Runtime.InvalidResponse".into(),
                        error_message:
                            "the runtime polled for the next invocation without answering this one"
                                .into(),
                    }));
                }
                let now = SystemTime::now();
                self.cfg.platform(
                    self.id,
                    format!("START RequestId: {request_id} Version: $LATEST"),
                );
                self.clone().watchdog(request_id.clone());
                return Next {
                    request_id,
                    payload,
                    now,
                    deadline: now + self.cfg.timeout,
                };
            }
            if !self.is_alive() {
                return std::future::pending().await;
            }
            self.wake.notified().await;
        }
    }

    /// Kills the instance if `request_id` is still running when the function timeout passes.
    fn watchdog(self: Arc<Self>, request_id: String) {
        let timeout = self.cfg.timeout;
        tokio::spawn(async move {
            tokio::time::sleep(timeout).await;
            let Some(reply) = lock(&self.slot).time_out(&request_id) else {
                return;
            };
            let secs = timeout.as_secs_f64();
            self.cfg.platform(
                self.id,
                format!(
                    "{} {request_id} Task timed out after {secs:.2} seconds",
                    ids::rfc3339_millis(SystemTime::now())
                ),
            );
            if let Some(reply) = reply {
                let _ = reply.send(Outcome::Error(timeout_error(&request_id, secs)));
            }
            self.kill();
        });
    }

    /// The reply channel of the active invocation `id`, taken (it is answered once).
    pub fn take_reply(&self, id: &str) -> Result<oneshot::Sender<Outcome>, ReplyError> {
        lock(&self.slot).take_reply(id)
    }

    /// True when the invocation `id` was ended by the function timeout.
    pub fn timed_out(&self, id: &str) -> bool {
        lock(&self.slot).timed_out.as_deref() == Some(id)
    }

    /// Marks the invocation `request_id` complete, if it is still the active one.
    pub fn complete(&self, request_id: &str) {
        let finished = lock(&self.slot).finish(request_id);
        if let Some(active) = finished {
            let max_memory_mb = self
                .pid
                .and_then(crate::procfs::peak_rss)
                .map(|bytes| bytes.div_ceil(1024 * 1024));
            self.cfg
                .platform(self.id, format!("END RequestId: {}", active.request_id));
            self.cfg.platform(
                self.id,
                report_line(&active, self.cfg.memory_mb, max_memory_mb),
            );
            self.released.notify_waiters();
        }
    }

    /// `/init/error`: the queued invocation fails with `err`, the instance is discarded.
    pub fn init_failed(&self, err: FunctionError) {
        self.cfg.platform(
            self.id,
            format!("INIT_REPORT Status: error\tError Type: {}", err.error_type),
        );
        let queued = lock(&self.slot).queued.take();
        if let Some(inv) = queued {
            let _ = inv.reply.send(Outcome::Error(err));
        }
        self.kill();
    }
}

/// The environment of an instance: what Lambda sets, then the function's own variables
/// (which may override it). Nothing of the emulator's environment, as on Lambda.
fn lambda_env(
    cfg: &Config,
    runtime_api: SocketAddr,
    task_root: &Path,
    now: SystemTime,
) -> Vec<(String, String)> {
    let task_root = task_root.display().to_string();
    let mut env: Vec<(String, String)> = vec![
        ("AWS_LAMBDA_RUNTIME_API".into(), runtime_api.to_string()),
        ("AWS_LAMBDA_FUNCTION_NAME".into(), cfg.function_name.clone()),
        (
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE".into(),
            cfg.memory_mb.to_string(),
        ),
        ("AWS_LAMBDA_FUNCTION_VERSION".into(), "$LATEST".into()),
        (
            "AWS_LAMBDA_LOG_GROUP_NAME".into(),
            format!("/aws/lambda/{}", cfg.function_name),
        ),
        (
            "AWS_LAMBDA_LOG_STREAM_NAME".into(),
            format!(
                "{}/[$LATEST]{}",
                ids::log_stream_date(now),
                ids::random_hex(32)
            ),
        ),
        ("AWS_LAMBDA_INITIALIZATION_TYPE".into(), "on-demand".into()),
        ("AWS_REGION".into(), cfg.region.clone()),
        ("AWS_DEFAULT_REGION".into(), cfg.region.clone()),
        ("LAMBDA_TASK_ROOT".into(), task_root.clone()),
        ("LAMBDA_RUNTIME_DIR".into(), task_root),
        ("_HANDLER".into(), cfg.handler.clone()),
        ("TZ".into(), ":UTC".into()),
        ("LANG".into(), "en_US.UTF-8".into()),
        (
            "PATH".into(),
            "/usr/local/bin:/usr/bin/:/bin:/opt/bin".into(),
        ),
    ];
    env.extend(cfg.env.iter().cloned());
    env
}

/// The `REPORT` line of a finished invocation.
fn report_line(active: &Active, memory_mb: u32, max_memory_mb: Option<u64>) -> String {
    let ms = active.started.elapsed().as_secs_f64() * 1000.0;
    let mut line = format!(
        "REPORT RequestId: {}\tDuration: {ms:.2} ms\tBilled Duration: {} ms\tMemory Size: {memory_mb} MB",
        active.request_id,
        ms.ceil() as u64,
    );
    if let Some(mb) = max_memory_mb {
        line.push_str(&format!("\tMax Memory Used: {mb} MB"));
    }
    if let Some(init) = active.init {
        line.push_str(&format!(
            "\tInit Duration: {:.2} ms",
            init.as_secs_f64() * 1000.0
        ));
    }
    line
}

fn forward_lines(
    stream: impl AsyncRead + Unpin + Send + 'static,
    instance: usize,
    source: LogSource,
    cfg: Arc<Config>,
) {
    tokio::spawn(async move {
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            cfg.log(instance, source, line);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_environment_is_lambdas_then_the_functions() {
        let (mut cfg, _logs) = Config::for_tests("/var/task/bootstrap");
        cfg.function_name = "fn-1".into();
        cfg.env = vec![
            ("TZ".into(), "Europe/Paris".into()),
            ("X".into(), "1".into()),
        ];
        let addr = SocketAddr::from(([127, 0, 0, 1], 9001));
        let env = lambda_env(&cfg, addr, Path::new("/var/task"), SystemTime::UNIX_EPOCH);
        let get = |k: &str| {
            env.iter()
                .rev()
                .find(|(name, _)| name == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("AWS_LAMBDA_RUNTIME_API"), Some("127.0.0.1:9001"));
        assert_eq!(get("AWS_LAMBDA_LOG_GROUP_NAME"), Some("/aws/lambda/fn-1"));
        assert!(get("AWS_LAMBDA_LOG_STREAM_NAME")
            .unwrap()
            .starts_with("1970/01/01/[$LATEST]"));
        assert_eq!(get("LAMBDA_TASK_ROOT"), Some("/var/task"));
        assert_eq!(get("AWS_REGION"), Some("us-east-1"));
        // The function's own variables come last, so they win.
        assert_eq!(get("TZ"), Some("Europe/Paris"));
        assert_eq!(get("X"), Some("1"));
        assert!(get("HOME").is_none());
    }

    #[test]
    fn the_report_line_has_lambdas_fields() {
        let active = Active {
            request_id: "r-1".into(),
            reply: None,
            started: Instant::now(),
            init: Some(Duration::from_millis(12)),
        };
        let line = report_line(&active, 256, Some(30));
        assert!(
            line.starts_with("REPORT RequestId: r-1\tDuration: "),
            "{line}"
        );
        assert!(
            line.contains("\tMemory Size: 256 MB\tMax Memory Used: 30 MB"),
            "{line}"
        );
        assert!(line.ends_with("\tInit Duration: 12.00 ms"), "{line}");
        let later = Active {
            init: None,
            ..active
        };
        assert!(!report_line(&later, 128, None).contains("Init Duration"));
    }
}
