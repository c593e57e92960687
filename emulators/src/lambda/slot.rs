//! The state of one instance, as a pure state machine under one lock: reserved by the pool,
//! an invocation queued, made active by the runtime's poll, answered once, finished, timed
//! out, or lost when the process exits. `instance.rs` holds it; nothing here runs a process.

use super::invocation::Outcome;
use bytes::Bytes;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// An invocation handed to an instance, with the channel its outcome goes back on.
pub(super) struct Invocation {
    pub request_id: String,
    pub payload: Bytes,
    pub reply: oneshot::Sender<Outcome>,
}

/// The invocation an instance is working on.
pub(super) struct Active {
    pub request_id: String,
    /// Taken when the outcome (or the start of a stream) has been sent.
    pub reply: Option<oneshot::Sender<Outcome>>,
    pub started: Instant,
    /// Init duration, on the first invocation of an instance (for the `REPORT` line).
    pub init: Option<Duration>,
}

/// Why the runtime may not answer an invocation.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum ReplyError {
    /// It has been answered already (or timed out).
    AlreadyAnswered,
    /// It is not the invocation the instance works on.
    UnknownRequest,
}

/// The state of one instance, changed under one lock.
#[derive(Default)]
pub(super) struct Slot {
    pub alive: bool,
    /// Reserved by the dispatcher or working; cleared when the invocation completes.
    busy: bool,
    pub queued: Option<Invocation>,
    active: Option<Active>,
    invocations: u64,
    pub timed_out: Option<String>,
    exit_status: Option<String>,
}

impl Slot {
    pub fn new() -> Slot {
        // An instance is spawned reserved for the invocation that asked for it.
        Slot {
            alive: true,
            busy: true,
            ..Slot::default()
        }
    }

    pub fn reserve(&mut self) -> bool {
        let free = self.alive && !self.busy;
        self.busy |= free;
        free
    }

    /// Queues `inv`; a dead instance gives it back with its exit status.
    pub fn queue(&mut self, inv: Invocation) -> Result<(), (Invocation, String)> {
        if !self.alive {
            return Err((inv, self.exit_status.clone().unwrap_or_default()));
        }
        self.queued = Some(inv);
        Ok(())
    }

    /// Makes the queued invocation the active one. Returns it (request id, payload) and the
    /// active one it replaces: a poll while an invocation is unanswered abandons it, as on
    /// Lambda. `init` is reported with the instance's first invocation only.
    pub fn start_queued(&mut self, init: Duration) -> Option<(String, Bytes, Option<Active>)> {
        if !self.alive {
            return None;
        }
        let inv = self.queued.take()?;
        self.invocations += 1;
        let abandoned = self.active.replace(Active {
            request_id: inv.request_id.clone(),
            reply: Some(inv.reply),
            started: Instant::now(),
            init: (self.invocations == 1).then_some(init),
        });
        Some((inv.request_id, inv.payload, abandoned))
    }

    pub fn take_reply(&mut self, id: &str) -> Result<oneshot::Sender<Outcome>, ReplyError> {
        match self.active.as_mut() {
            Some(a) if a.request_id == id => a.reply.take().ok_or(ReplyError::AlreadyAnswered),
            _ => Err(ReplyError::UnknownRequest),
        }
    }

    /// Ends the active invocation `id` (the instance is free again).
    pub fn finish(&mut self, id: &str) -> Option<Active> {
        match &self.active {
            Some(a) if a.request_id == id => {
                self.busy = false;
                self.active.take()
            }
            _ => None,
        }
    }

    /// Marks `id` timed out if it is still the active invocation; then its reply channel
    /// (when it has not been answered), else `None`.
    pub fn time_out(&mut self, id: &str) -> Option<Option<oneshot::Sender<Outcome>>> {
        let active = self.active.as_mut().filter(|a| a.request_id == id)?;
        let reply = active.reply.take();
        self.timed_out = Some(id.to_string());
        Some(reply)
    }

    /// The process exited: what was queued or active is lost.
    pub fn exit(&mut self, status: String) -> (Option<Invocation>, Option<Active>) {
        self.alive = false;
        self.busy = false;
        self.exit_status = Some(status);
        (self.queued.take(), self.active.take())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invocation(id: &str) -> (Invocation, oneshot::Receiver<Outcome>) {
        let (reply, rx) = oneshot::channel();
        let inv = Invocation {
            request_id: id.into(),
            payload: Bytes::from_static(b"{}"),
            reply,
        };
        (inv, rx)
    }

    #[test]
    fn a_slot_runs_one_invocation_at_a_time() {
        let mut slot = Slot::new();
        // Spawned reserved for the invocation that asked for it.
        assert!(!slot.reserve());
        let (inv, _rx) = invocation("a");
        assert!(slot.queue(inv).is_ok());
        let (id, payload, abandoned) = slot.start_queued(Duration::from_millis(7)).unwrap();
        assert_eq!((id.as_str(), &payload[..]), ("a", &b"{}"[..]));
        assert!(abandoned.is_none());
        assert!(
            slot.start_queued(Duration::ZERO).is_none(),
            "nothing queued"
        );

        assert!(slot
            .take_reply("b")
            .is_err_and(|e| e == ReplyError::UnknownRequest));
        assert!(slot.take_reply("a").is_ok());
        assert!(slot
            .take_reply("a")
            .is_err_and(|e| e == ReplyError::AlreadyAnswered));
        assert!(slot.finish("b").is_none());
        let done = slot.finish("a").unwrap();
        assert_eq!(done.init, Some(Duration::from_millis(7)));
        assert!(slot.reserve(), "free again");

        // Only the first invocation carries the init duration.
        let (inv, _rx) = invocation("c");
        slot.queue(inv).ok().unwrap();
        slot.start_queued(Duration::from_millis(7)).unwrap();
        assert_eq!(slot.finish("c").unwrap().init, None);
    }

    #[tokio::test]
    async fn a_poll_abandons_an_unanswered_invocation() {
        let mut slot = Slot::new();
        let (a, _ra) = invocation("a");
        slot.queue(a).ok().unwrap();
        slot.start_queued(Duration::ZERO).unwrap();
        let (b, _rb) = invocation("b");
        slot.queue(b).ok().unwrap();
        let (_, _, abandoned) = slot.start_queued(Duration::ZERO).unwrap();
        assert_eq!(abandoned.unwrap().request_id, "a");
    }

    #[test]
    fn a_timeout_takes_the_reply_of_the_active_invocation_only() {
        let mut slot = Slot::new();
        let (a, _ra) = invocation("a");
        slot.queue(a).ok().unwrap();
        slot.start_queued(Duration::ZERO).unwrap();
        assert!(slot.time_out("other").is_none());
        assert!(slot.time_out("a").unwrap().is_some());
        assert_eq!(slot.timed_out.as_deref(), Some("a"));
        // Answered already: still timed out, no reply left.
        assert!(slot.time_out("a").unwrap().is_none());
        slot.finish("a").unwrap();
        assert!(slot.time_out("a").is_none(), "finished before the timeout");
    }

    #[tokio::test]
    async fn an_exit_loses_what_was_queued_and_refuses_more() {
        let mut slot = Slot::new();
        let (a, _ra) = invocation("a");
        slot.queue(a).ok().unwrap();
        let (queued, active) = slot.exit("signal: 9 (SIGKILL)".into());
        assert_eq!(queued.unwrap().request_id, "a");
        assert!(active.is_none());
        assert!(!slot.reserve());
        let (b, _rb) = invocation("b");
        let (back, status) = slot.queue(b).err().unwrap();
        assert_eq!(
            (back.request_id.as_str(), status.as_str()),
            ("b", "signal: 9 (SIGKILL)")
        );
        assert!(slot.start_queued(Duration::ZERO).is_none());
    }
}
