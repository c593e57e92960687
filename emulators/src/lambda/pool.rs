//! Instances of the function (one `bootstrap` process each, with its own Runtime API server)
//! and the dispatcher that hands invocations to them.

use super::{ids, FunctionError, LocalLambdaOptions, LogLine, LogSink, LogSource};
use anyhow::{Context, Result};
use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::{mpsc, oneshot, watch, Notify};
use tokio::task::AbortHandle;

/// Lambda's limit on a buffered response (and on a synchronous request) payload.
pub(crate) const MAX_PAYLOAD: usize = 6 * 1024 * 1024 + 100;

const STREAM_ERROR_PREFIX: &[u8] = b"Lambda-Runtime-Function-Error-Type:";

/// A cold start: from spawning an instance's process to its first `/invocation/next` poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ColdStart {
    /// The instance (1, 2, ... in spawn order).
    pub instance: usize,
    /// Process start → first poll of the Runtime API.
    pub duration: Duration,
}

/// What the dispatcher needs from the options, plus derived names.
pub(crate) struct Config {
    pub bootstrap: PathBuf,
    pub env: Vec<(String, String)>,
    pub function_name: String,
    pub memory_mb: u32,
    pub timeout: Duration,
    pub max_instances: usize,
    pub throttle_when_busy: bool,
    pub region: String,
    pub account_id: String,
    pub handler: String,
    pub function_arn: String,
    pub logs: LogSink,
}

impl Config {
    pub fn new(o: &LocalLambdaOptions) -> Result<Config> {
        let bootstrap = std::fs::canonicalize(&o.bootstrap)
            .with_context(|| format!("resolving the bootstrap path {}", o.bootstrap.display()))?;
        Ok(Config {
            bootstrap,
            env: o.env.clone(),
            function_name: o.function_name.clone(),
            memory_mb: o.memory_mb,
            timeout: o.timeout,
            max_instances: o.max_instances,
            throttle_when_busy: o.throttle_when_busy,
            region: o.region.clone(),
            account_id: o.account_id.clone(),
            handler: o.handler.clone(),
            function_arn: format!(
                "arn:aws:lambda:{}:{}:function:{}",
                o.region, o.account_id, o.function_name
            ),
            logs: o.logs.clone(),
        })
    }

    pub(crate) fn log(&self, instance: usize, source: LogSource, line: String) {
        match &self.logs {
            LogSink::Discard => {}
            LogSink::Inherit => match source {
                LogSource::Stdout => println!("{line}"),
                _ => eprintln!("{line}"),
            },
            LogSink::Capture(f) => f(LogLine {
                instance,
                source,
                line,
            }),
        }
    }

    pub(crate) fn platform(&self, instance: usize, line: String) {
        self.log(instance, LogSource::Platform, line);
    }
}

/// How an invocation ended (or is going on, for a stream).
pub(crate) enum Outcome {
    /// A buffered response payload.
    Buffered(Bytes),
    /// A streamed response: the runtime's `Content-Type` and the body as it arrives.
    Streaming {
        content_type: Option<String>,
        events: mpsc::Receiver<StreamEvent>,
    },
    /// The function (or Lambda on its behalf) reported an error before any response.
    Error(FunctionError),
}

/// A piece of a streamed response.
pub(crate) enum StreamEvent {
    Data(Bytes),
    /// The stream ended cleanly.
    End,
    /// The stream broke: a mid-stream error trailer, a timeout, a crash.
    Error(FunctionError),
}

/// Why the dispatcher could not hand the invocation to an instance.
#[derive(Debug)]
pub(crate) enum InvokeError {
    /// All `max_instances` are busy and `throttle_when_busy` is set.
    Throttled,
    /// The payload exceeds Lambda's synchronous limit.
    TooLarge(usize),
    /// The emulator is stopping or an instance could not be started.
    Unavailable(String),
}

impl std::fmt::Display for InvokeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InvokeError::Throttled => f.write_str("all instances are busy (Rate Exceeded)"),
            InvokeError::TooLarge(n) => write!(
                f,
                "the request payload is {n} bytes; Lambda accepts at most {MAX_PAYLOAD}"
            ),
            InvokeError::Unavailable(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for InvokeError {}

pub(crate) struct Pool {
    cfg: Arc<Config>,
    instances: Mutex<Vec<Arc<Instance>>>,
    next_id: AtomicUsize,
    /// Signalled when an instance becomes idle or dies.
    released: Arc<Notify>,
    cold_starts: Arc<Mutex<Vec<ColdStart>>>,
    stopping: AtomicBool,
}

impl Pool {
    pub fn new(cfg: Arc<Config>) -> Arc<Pool> {
        Arc::new(Pool {
            cfg,
            instances: Mutex::new(Vec::new()),
            next_id: AtomicUsize::new(1),
            released: Arc::new(Notify::new()),
            cold_starts: Arc::new(Mutex::new(Vec::new())),
            stopping: AtomicBool::new(false),
        })
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    pub fn cold_starts(&self) -> Vec<ColdStart> {
        lock(&self.cold_starts).clone()
    }

    pub fn live_instances(&self) -> usize {
        self.instances
            .lock()
            .unwrap()
            .iter()
            .filter(|i| i.is_alive())
            .count()
    }

    /// Hands `payload` to an idle instance (spawning one if allowed, else waiting) and waits
    /// for the outcome. `request_id` becomes the invocation's `Lambda-Runtime-Aws-Request-Id`.
    pub async fn invoke(&self, request_id: String, payload: Bytes) -> Result<Outcome, InvokeError> {
        if payload.len() > MAX_PAYLOAD {
            return Err(InvokeError::TooLarge(payload.len()));
        }
        let instance = self.acquire().await?;
        let (reply, outcome) = oneshot::channel();
        instance.enqueue(Invocation {
            request_id: request_id.clone(),
            payload,
            reply,
        });
        Ok(outcome.await.unwrap_or_else(|_| {
            Outcome::Error(FunctionError {
                error_type: "Runtime.ExitError".into(),
                error_message: format!(
                    "RequestId: {request_id} Error: the instance went away without answering"
                ),
            })
        }))
    }

    /// [`Pool::invoke`], with a streamed response collected.
    pub async fn invoke_collected(
        &self,
        request_id: String,
        payload: Bytes,
    ) -> Result<Result<Bytes, FunctionError>> {
        match self.invoke(request_id, payload).await? {
            Outcome::Buffered(b) => Ok(Ok(b)),
            Outcome::Error(e) => Ok(Err(e)),
            Outcome::Streaming { events, .. } => Ok(collect_stream(events).await),
        }
    }

    async fn acquire(&self) -> Result<Arc<Instance>, InvokeError> {
        loop {
            let released = self.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            {
                // Checked under the list lock, which `shutdown` takes too: no instance is
                // spawned after `shutdown` has killed the others.
                let mut list = lock(&self.instances);
                if self.stopping.load(Ordering::SeqCst) {
                    return Err(InvokeError::Unavailable(
                        "the local Lambda is stopping".into(),
                    ));
                }
                list.retain(|i| i.is_alive());
                if let Some(i) = list.iter().find(|i| i.try_reserve()) {
                    return Ok(i.clone());
                }
                if list.len() < self.cfg.max_instances {
                    let id = self.next_id.fetch_add(1, Ordering::SeqCst);
                    let instance = Instance::spawn(
                        id,
                        self.cfg.clone(),
                        self.released.clone(),
                        self.cold_starts.clone(),
                    )
                    .map_err(|e| {
                        InvokeError::Unavailable(format!("could not start an instance: {e:#}"))
                    })?;
                    // Spawned reserved: it may even have exited already, then the
                    // invocation fails with its exit status.
                    list.push(instance.clone());
                    return Ok(instance);
                }
            }
            if self.cfg.throttle_when_busy {
                return Err(InvokeError::Throttled);
            }
            released.await;
        }
    }

    /// Kills every instance (without waiting) and refuses new invocations.
    pub fn shutdown(&self) {
        let list = lock(&self.instances);
        self.stopping.store(true, Ordering::SeqCst);
        for i in list.iter() {
            i.kill();
        }
        drop(list);
        self.released.notify_waiters();
    }

    pub async fn wait_all_exited(&self, limit: Duration) {
        let list: Vec<_> = lock(&self.instances).clone();
        let _ = tokio::time::timeout(limit, async {
            for i in list {
                let mut rx = i.exited.subscribe();
                let _ = rx.wait_for(|exited| *exited).await;
            }
        })
        .await;
    }
}

/// Collects a streamed response; a mid-stream error wins over the bytes.
pub(crate) async fn collect_stream(
    mut events: mpsc::Receiver<StreamEvent>,
) -> Result<Bytes, FunctionError> {
    let mut buf = BytesMut::new();
    loop {
        match events.recv().await {
            Some(StreamEvent::Data(b)) => buf.extend_from_slice(&b),
            Some(StreamEvent::End) => return Ok(buf.freeze()),
            Some(StreamEvent::Error(e)) => return Err(e),
            None => return Err(lost_stream()),
        }
    }
}

pub(crate) fn lost_stream() -> FunctionError {
    FunctionError {
        error_type: "Runtime.ExitError".into(),
        error_message: "the response stream ended abruptly".into(),
    }
}

struct Invocation {
    request_id: String,
    payload: Bytes,
    reply: oneshot::Sender<Outcome>,
}

/// The invocation an instance is working on.
struct Active {
    request_id: String,
    /// Taken when the outcome (or the start of a stream) has been sent.
    reply: Option<oneshot::Sender<Outcome>>,
    started: Instant,
    /// Init duration, on the first invocation of an instance (for the `REPORT` line).
    init: Option<Duration>,
}

#[derive(Default)]
struct Slot {
    alive: bool,
    /// Reserved by the dispatcher or working; cleared when the invocation completes.
    busy: bool,
    queued: Option<Invocation>,
    active: Option<Active>,
    invocations: u64,
    timed_out: Option<String>,
    exit_status: Option<String>,
}

pub(crate) struct Instance {
    id: usize,
    cfg: Arc<Config>,
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
    server: Mutex<Option<AbortHandle>>,
}

impl Instance {
    fn spawn(
        id: usize,
        cfg: Arc<Config>,
        released: Arc<Notify>,
        cold_starts: Arc<Mutex<Vec<ColdStart>>>,
    ) -> Result<Arc<Instance>> {
        let std_listener = std::net::TcpListener::bind(("127.0.0.1", 0))
            .context("binding a Runtime API port on 127.0.0.1")?;
        std_listener.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(std_listener)?;
        let runtime_api = listener.local_addr()?;

        let task_root = cfg
            .bootstrap
            .parent()
            .map(|p| p.to_path_buf())
            .unwrap_or_else(|| PathBuf::from("/"));
        let now = SystemTime::now();
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
            ("LAMBDA_TASK_ROOT".into(), task_root.display().to_string()),
            ("LAMBDA_RUNTIME_DIR".into(), task_root.display().to_string()),
            ("_HANDLER".into(), cfg.handler.clone()),
            ("TZ".into(), ":UTC".into()),
            ("LANG".into(), "en_US.UTF-8".into()),
            (
                "PATH".into(),
                "/usr/local/bin:/usr/bin/:/bin:/opt/bin".into(),
            ),
        ];
        env.extend(cfg.env.iter().cloned());

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
            slot: Mutex::new(Slot {
                alive: true,
                busy: true,
                ..Slot::default()
            }),
            wake: Notify::new(),
            kill_signal: Notify::new(),
            exited: watch::Sender::new(false),
            spawned_at,
            first_poll: OnceLock::new(),
            pid: child.id(),
            server: Mutex::new(None),
        });

        // Log forwarders end at EOF, when the process is gone.
        if let Some(out) = child.stdout.take() {
            forward_lines(out, id, LogSource::Stdout, cfg.clone());
        }
        if let Some(err) = child.stderr.take() {
            forward_lines(err, id, LogSource::Stderr, cfg.clone());
        }
        let server = {
            let instance = instance.clone();
            tokio::spawn(super::front::serve(listener, move |req, _peer| {
                let instance = instance.clone();
                async move { instance.runtime_api(req).await }
            }))
        };
        *lock(&instance.server) = Some(server.abort_handle());

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

    fn is_alive(&self) -> bool {
        lock(&self.slot).alive
    }

    fn try_reserve(&self) -> bool {
        let mut slot = lock(&self.slot);
        if slot.alive && !slot.busy {
            slot.busy = true;
            true
        } else {
            false
        }
    }

    fn enqueue(&self, inv: Invocation) {
        {
            let mut slot = lock(&self.slot);
            if !slot.alive {
                let status = slot.exit_status.clone().unwrap_or_default();
                drop(slot);
                let _ = inv.reply.send(Outcome::Error(exit_error(
                    &inv.request_id,
                    &format!("Runtime exited with error: {status}"),
                )));
                return;
            }
            slot.queued = Some(inv);
        }
        self.wake.notify_one();
    }

    fn kill(&self) {
        self.kill_signal.notify_one();
    }

    fn on_exit(&self, status: String) {
        let (queued, active) = {
            let mut slot = lock(&self.slot);
            slot.alive = false;
            slot.busy = false;
            slot.exit_status = Some(status.clone());
            (slot.queued.take(), slot.active.take())
        };
        if let Some(server) = lock(&self.server).take() {
            server.abort();
        }
        if let Some(inv) = queued {
            let _ = inv.reply.send(Outcome::Error(exit_error(
                &inv.request_id,
                &format!("Runtime exited with error: {status}"),
            )));
        }
        if let Some(mut active) = active {
            if let Some(reply) = active.reply.take() {
                let _ = reply.send(Outcome::Error(exit_error(
                    &active.request_id,
                    &format!("Runtime exited with error: {status}"),
                )));
            }
            self.cfg
                .platform(self.id, format!("END RequestId: {}", active.request_id));
        }
        let _ = self.exited.send(true);
        self.released.notify_waiters();
    }

    /// Marks the invocation `request_id` complete, if it is still the active one.
    fn complete(&self, request_id: &str) {
        let active = {
            let mut slot = lock(&self.slot);
            match &slot.active {
                Some(a) if a.request_id == request_id => {
                    slot.busy = false;
                    slot.active.take()
                }
                _ => None,
            }
        };
        if let Some(active) = active {
            self.report(&active);
            self.released.notify_waiters();
        }
    }

    fn report(&self, active: &Active) {
        let ms = active.started.elapsed().as_secs_f64() * 1000.0;
        let mut line = format!(
            "REPORT RequestId: {}\tDuration: {ms:.2} ms\tBilled Duration: {} ms\tMemory Size: {} MB",
            active.request_id,
            ms.ceil() as u64,
            self.cfg.memory_mb
        );
        if let Some(mb) = self.pid.and_then(max_memory_mb) {
            line.push_str(&format!("\tMax Memory Used: {mb} MB"));
        }
        if let Some(init) = active.init {
            line.push_str(&format!(
                "\tInit Duration: {:.2} ms",
                init.as_secs_f64() * 1000.0
            ));
        }
        self.cfg
            .platform(self.id, format!("END RequestId: {}", active.request_id));
        self.cfg.platform(self.id, line);
    }

    async fn runtime_api(self: Arc<Self>, req: Request<Incoming>) -> Response<super::front::Body> {
        let path = req.uri().path().to_string();
        let Some(rest) = path.strip_prefix("/2018-06-01/runtime/") else {
            return not_found();
        };
        let parts: Vec<&str> = rest.split('/').collect();
        match (req.method(), parts.as_slice()) {
            (&Method::GET, ["invocation", "next"]) => self.next().await,
            (&Method::POST, ["invocation", id, "response"]) => {
                let id = id.to_string();
                self.response(&id, req).await
            }
            (&Method::POST, ["invocation", id, "error"]) => {
                let id = id.to_string();
                self.error(&id, req).await
            }
            (&Method::POST, ["init", "error"]) => self.init_error(req).await,
            _ => not_found(),
        }
    }

    /// `GET /runtime/invocation/next`: long-polls until an invocation is queued.
    async fn next(self: Arc<Self>) -> Response<super::front::Body> {
        let first = self.first_poll.get().is_none();
        let init = *self.first_poll.get_or_init(|| self.spawned_at.elapsed());
        if first {
            lock(&self.cold_starts).push(ColdStart {
                instance: self.id,
                duration: init,
            });
        }
        loop {
            let taken = {
                let mut slot = lock(&self.slot);
                if !slot.alive {
                    None
                } else if let Some(inv) = slot.queued.take() {
                    slot.invocations += 1;
                    let first_invocation = slot.invocations == 1;
                    // A poll while an invocation is unanswered abandons it, as on Lambda.
                    let abandoned = slot.active.replace(Active {
                        request_id: inv.request_id.clone(),
                        reply: Some(inv.reply),
                        started: Instant::now(),
                        init: first_invocation.then_some(init),
                    });
                    Some((inv.request_id, inv.payload, abandoned))
                } else {
                    None
                }
            };
            if let Some((request_id, payload, abandoned)) = taken {
                if let Some(reply) = abandoned.and_then(|mut a| a.reply.take()) {
                    let _ = reply.send(Outcome::Error(FunctionError {
                        error_type: "Runtime.InvalidResponse".into(),
                        error_message:
                            "the runtime polled for the next invocation without answering this one"
                                .into(),
                    }));
                }
                let now = SystemTime::now();
                let deadline = now + self.cfg.timeout;
                self.cfg.platform(
                    self.id,
                    format!("START RequestId: {request_id} Version: $LATEST"),
                );
                self.clone().watchdog(request_id.clone());
                return Response::builder()
                    .status(StatusCode::OK)
                    .header("content-type", "application/json")
                    .header("lambda-runtime-aws-request-id", &request_id)
                    .header(
                        "lambda-runtime-deadline-ms",
                        ids::epoch_millis(deadline).to_string(),
                    )
                    .header(
                        "lambda-runtime-invoked-function-arn",
                        &self.cfg.function_arn,
                    )
                    .header("lambda-runtime-trace-id", ids::trace_header(now))
                    .body(super::front::full(payload))
                    .expect("valid response");
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
            let reply = {
                let mut slot = lock(&self.slot);
                match slot.active.as_mut() {
                    Some(a) if a.request_id == request_id => {
                        slot.timed_out = Some(request_id.clone());
                        slot.active.as_mut().and_then(|a| a.reply.take())
                    }
                    _ => return,
                }
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

    /// Takes the reply channel of the active invocation `id`, or answers the runtime why not.
    fn take_reply(
        &self,
        id: &str,
    ) -> Result<oneshot::Sender<Outcome>, Box<Response<super::front::Body>>> {
        let mut slot = lock(&self.slot);
        match slot.active.as_mut() {
            Some(a) if a.request_id == id => a.reply.take().ok_or_else(|| {
                Box::new(runtime_error(
                    StatusCode::BAD_REQUEST,
                    "InvalidStateTransition",
                    "State transition from Ready to InvocationResponse failed for runtime. Error: the invocation has already been answered",
                ))
            }),
            _ => Err(Box::new(runtime_error(
                StatusCode::BAD_REQUEST,
                "InvalidRequestID",
                "Invalid request ID",
            ))),
        }
    }

    /// `POST /runtime/invocation/{id}/response`, buffered or streamed.
    async fn response(
        self: Arc<Self>,
        id: &str,
        req: Request<Incoming>,
    ) -> Response<super::front::Body> {
        let streaming = req
            .headers()
            .get("lambda-runtime-function-response-mode")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("streaming"));
        if streaming {
            let reply = match self.take_reply(id) {
                Ok(r) => r,
                Err(resp) => return *resp,
            };
            let content_type = req
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let (tx, events) = mpsc::channel(16);
            let _ = reply.send(Outcome::Streaming {
                content_type,
                events,
            });
            let end = self.relay_stream(id, req.into_body(), &tx).await;
            let _ = tx.send(end).await;
            self.complete(id);
            return accepted();
        }

        let body = match read_limited(req.into_body(), MAX_PAYLOAD).await {
            Ok(b) => b,
            Err(ReadError::TooLarge) => {
                if let Ok(reply) = self.take_reply(id) {
                    let _ = reply.send(Outcome::Error(FunctionError {
                        error_type: "Function.ResponseSizeTooLarge".into(),
                        error_message: format!(
                            "Response payload size exceeded maximum allowed payload size ({MAX_PAYLOAD} bytes)."
                        ),
                    }));
                }
                self.complete(id);
                return runtime_error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "RequestEntityTooLarge",
                    &format!("Exceeded maximum allowed payload size ({MAX_PAYLOAD} bytes)."),
                );
            }
            Err(ReadError::Broken(e)) => {
                return runtime_error(StatusCode::BAD_REQUEST, "InvalidRequest", &e)
            }
        };
        let reply = match self.take_reply(id) {
            Ok(r) => r,
            Err(resp) => return *resp,
        };
        let _ = reply.send(Outcome::Buffered(body));
        self.complete(id);
        accepted()
    }

    /// Forwards a streamed response body; returns how it ended.
    async fn relay_stream(
        &self,
        id: &str,
        mut body: Incoming,
        tx: &mpsc::Sender<StreamEvent>,
    ) -> StreamEvent {
        loop {
            match body.frame().await {
                None => return StreamEvent::End,
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        // lambda_runtime writes a mid-stream error into the body in the shape
                        // of the trailers it announced (`Trailer:` header).
                        if data.starts_with(STREAM_ERROR_PREFIX) {
                            if let Some(e) = parse_error_lines(&data) {
                                return StreamEvent::Error(e);
                            }
                        }
                        // A client that went away does not stop the function.
                        let _ = tx.send(StreamEvent::Data(data)).await;
                    }
                    Err(frame) => {
                        if let Some(trailers) = frame.trailers_ref() {
                            if let Some(t) = trailers.get("lambda-runtime-function-error-type") {
                                let body = trailers
                                    .get("lambda-runtime-function-error-body")
                                    .map(|v| v.as_bytes().to_vec())
                                    .unwrap_or_default();
                                return StreamEvent::Error(stream_error(
                                    String::from_utf8_lossy(t.as_bytes()).into_owned(),
                                    &body,
                                ));
                            }
                        }
                    }
                },
                Some(Err(e)) => {
                    let timed_out = lock(&self.slot).timed_out.as_deref() == Some(id);
                    return StreamEvent::Error(if timed_out {
                        timeout_error(id, self.cfg.timeout.as_secs_f64())
                    } else {
                        exit_error(id, &format!("the response stream broke: {e}"))
                    });
                }
            }
        }
    }

    /// `POST /runtime/invocation/{id}/error`.
    async fn error(
        self: Arc<Self>,
        id: &str,
        req: Request<Incoming>,
    ) -> Response<super::front::Body> {
        let header_type = req
            .headers()
            .get("lambda-runtime-function-error-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("Unhandled")
            .to_string();
        let body = read_limited(req.into_body(), MAX_PAYLOAD)
            .await
            .unwrap_or_default();
        let reply = match self.take_reply(id) {
            Ok(r) => r,
            Err(resp) => return *resp,
        };
        let _ = reply.send(Outcome::Error(diagnostic(&body, &header_type)));
        self.complete(id);
        accepted()
    }

    /// `POST /runtime/init/error`: the queued invocation fails, the instance is discarded.
    async fn init_error(self: Arc<Self>, req: Request<Incoming>) -> Response<super::front::Body> {
        let header_type = req
            .headers()
            .get("lambda-runtime-function-error-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("Runtime.InitError")
            .to_string();
        let body = read_limited(req.into_body(), MAX_PAYLOAD)
            .await
            .unwrap_or_default();
        let err = diagnostic(&body, &header_type);
        self.cfg.platform(
            self.id,
            format!("INIT_REPORT Status: error\tError Type: {}", err.error_type),
        );
        let queued = lock(&self.slot).queued.take();
        if let Some(inv) = queued {
            let _ = inv.reply.send(Outcome::Error(err));
        }
        self.kill();
        accepted()
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        if let Some(server) = lock(&self.server).take() {
            server.abort();
        }
    }
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

/// Peak resident memory of a process (Linux `VmHWM`), in MB.
fn max_memory_mb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb.div_ceil(1024))
}

/// Locks a mutex; a panic elsewhere while holding it does not make the state unusable.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

enum ReadError {
    TooLarge,
    Broken(String),
}

async fn read_limited(mut body: Incoming, limit: usize) -> Result<Bytes, ReadError> {
    let mut buf = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ReadError::Broken(e.to_string()))?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > limit {
                return Err(ReadError::TooLarge);
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf.freeze())
}

/// A Lambda error document (`{"errorType": .., "errorMessage": ..}`) or whatever was sent.
fn diagnostic(body: &[u8], header_type: &str) -> FunctionError {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Diag {
        error_type: Option<String>,
        error_message: Option<String>,
    }
    match serde_json::from_slice::<Diag>(body) {
        Ok(d) => FunctionError {
            error_type: d.error_type.unwrap_or_else(|| header_type.to_string()),
            error_message: d.error_message.unwrap_or_default(),
        },
        Err(_) => FunctionError {
            error_type: header_type.to_string(),
            error_message: String::from_utf8_lossy(body).into_owned(),
        },
    }
}

/// `Lambda-Runtime-Function-Error-Type: X\r\nLambda-Runtime-Function-Error-Body: <base64>\r\n`.
fn parse_error_lines(data: &[u8]) -> Option<FunctionError> {
    let text = std::str::from_utf8(data).ok()?;
    let mut headers: HashMap<String, String> = HashMap::new();
    for line in text.split("\r\n").filter(|l| !l.is_empty()) {
        let (k, v) = line.split_once(':')?;
        headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
    }
    let error_type = headers.remove("lambda-runtime-function-error-type")?;
    let body = headers
        .remove("lambda-runtime-function-error-body")
        .unwrap_or_default();
    Some(stream_error(error_type, body.as_bytes()))
}

fn stream_error(error_type: String, body_b64: &[u8]) -> FunctionError {
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(body_b64)
        .unwrap_or_else(|_| body_b64.to_vec());
    let d = diagnostic(&decoded, &error_type);
    FunctionError {
        error_type,
        error_message: d.error_message,
    }
}

fn exit_error(request_id: &str, why: &str) -> FunctionError {
    FunctionError {
        error_type: "Runtime.ExitError".into(),
        error_message: format!("RequestId: {request_id} Error: {why}"),
    }
}

fn timeout_error(request_id: &str, secs: f64) -> FunctionError {
    FunctionError {
        error_type: "Sandbox.Timedout".into(),
        error_message: format!(
            "RequestId: {request_id} Error: Task timed out after {secs:.2} seconds"
        ),
    }
}

fn accepted() -> Response<super::front::Body> {
    Response::builder()
        .status(StatusCode::ACCEPTED)
        .header("content-type", "application/json")
        .body(super::front::full(Bytes::from_static(
            b"{\"status\":\"OK\"}",
        )))
        .expect("valid response")
}

fn runtime_error(
    status: StatusCode,
    error_type: &str,
    message: &str,
) -> Response<super::front::Body> {
    let body = serde_json::json!({"errorMessage": message, "errorType": error_type});
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(super::front::full(Bytes::from(body.to_string())))
        .expect("valid response")
}

fn not_found() -> Response<super::front::Body> {
    runtime_error(
        StatusCode::NOT_FOUND,
        "NotFound",
        "unknown Runtime API path",
    )
}
