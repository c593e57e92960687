//! Progress reporting. The CLI decides how it looks (spinner on a terminal, plain lines in CI).

/// Receives what apply/teardown are doing.
pub trait Progress: Sync {
    /// A step starts (e.g. "create function claude-proxy-dev").
    fn start(&self, step: &str);
    /// The step finished.
    fn finish(&self, step: &str);
    /// Something the user should know; the run goes on.
    fn warn(&self, message: &str);
}

/// Reports nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct Silent;

impl Progress for Silent {
    fn start(&self, _: &str) {}
    fn finish(&self, _: &str) {}
    fn warn(&self, _: &str) {}
}

/// Collects events (tests, and callers that want a log).
#[derive(Debug, Default)]
pub struct Recorder {
    pub events: std::sync::Mutex<Vec<String>>,
}

impl Recorder {
    pub fn events(&self) -> Vec<String> {
        self.events.lock().unwrap().clone()
    }
}

impl Progress for Recorder {
    fn start(&self, step: &str) {
        self.events.lock().unwrap().push(format!("start {step}"));
    }
    fn finish(&self, step: &str) {
        self.events.lock().unwrap().push(format!("finish {step}"));
    }
    fn warn(&self, message: &str) {
        self.events.lock().unwrap().push(format!("warn {message}"));
    }
}
