//! The dispatcher: hands each invocation to an idle instance, spawning one (a cold start)
//! while fewer than `max_instances` run, else waiting for one to free up (or throttling).

use super::config::Config;
use super::instance::{ColdStart, Instance};
use super::invocation::{collect_stream, FunctionError, InvokeError, Outcome, MAX_PAYLOAD};
use super::runtime_api;
use super::slot::Invocation;
use crate::http::lock;
use anyhow::Result;
use bytes::Bytes;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{oneshot, Notify};

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
        lock(&self.instances)
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
                    let instance = self.start_instance().map_err(|e| {
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

    /// A new instance with its Runtime API.
    fn start_instance(&self) -> Result<Arc<Instance>> {
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        let listener = runtime_api::bind()?;
        let addr = listener.local_addr()?;
        Instance::spawn(
            id,
            self.cfg.clone(),
            self.released.clone(),
            self.cold_starts.clone(),
            addr,
            move |instance| runtime_api::serve(listener, instance),
        )
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

    /// Waits (at most `limit`) until every instance has exited.
    pub async fn wait_all_exited(&self, limit: Duration) {
        let list: Vec<_> = lock(&self.instances).clone();
        let _ = tokio::time::timeout(limit, async {
            for i in list {
                i.wait_exited().await;
            }
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(bootstrap: &str) -> Arc<Pool> {
        Pool::new(Arc::new(Config::for_tests(bootstrap).0))
    }

    #[tokio::test]
    async fn a_payload_over_lambdas_limit_is_refused_before_any_instance_starts() {
        let p = pool("/nonexistent/bootstrap");
        let e = p
            .invoke("r".into(), Bytes::from(vec![b'x'; MAX_PAYLOAD + 1]))
            .await
            .err()
            .unwrap();
        assert!(matches!(e, InvokeError::TooLarge(n) if n == MAX_PAYLOAD + 1));
        assert_eq!(p.live_instances(), 0);
        assert!(p.cold_starts().is_empty());
    }

    #[tokio::test]
    async fn an_instance_that_cannot_start_makes_the_invocation_unavailable() {
        let p = pool("/nonexistent/bootstrap");
        let e = p.invoke("r".into(), Bytes::new()).await.err().unwrap();
        let InvokeError::Unavailable(why) = e else {
            panic!("expected Unavailable, got {e:?}")
        };
        assert!(
            why.contains("could not start an instance") && why.contains("spawning"),
            "{why}"
        );
        assert_eq!(p.live_instances(), 0);
    }

    #[tokio::test]
    async fn a_stopped_pool_refuses_invocations() {
        let p = pool("/nonexistent/bootstrap");
        p.shutdown();
        let e = p.invoke("r".into(), Bytes::new()).await.err().unwrap();
        assert!(e.to_string().contains("stopping"), "{e}");
        p.wait_all_exited(Duration::from_secs(1)).await;
    }
}
