//! Progress on stderr: an `indicatif` spinner when stderr is a terminal (and `CI` is unset),
//! plain lines otherwise (`==> step`, `    note`: CI logs and the tests read those).
//!
//! Nothing else may draw over the spinner: a child process that writes to the terminal
//! (`cargo build`, `pip install`) runs inside [`Progress::hidden_while`], which takes the
//! spinner off the screen until it is done, and log lines go through [`Progress`] as the
//! tracing writer, which prints them above the spinner.

use indicatif::{ProgressBar, ProgressStyle};
use std::future::Future;
use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The spinner's frames (indicatif shows the last one only on a finished bar, which this
/// module never draws: a finished step is printed as its own `✓` line).
const FRAMES: &[&str] = &["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏", "✓"];

/// Reports steps of a long operation. Cloning shares the same display.
#[derive(Clone)]
pub struct Progress {
    state: Arc<Mutex<State>>,
    tty: bool,
}

#[derive(Default)]
struct State {
    current: Option<Step>,
    /// A child process has the terminal: no spinner is drawn until it is done.
    hidden: bool,
}

struct Step {
    message: String,
    started: Instant,
    /// `None` when not on a terminal, or while hidden.
    spinner: Option<ProgressBar>,
}

impl Progress {
    /// A spinner when stderr is a terminal outside CI, plain lines otherwise.
    pub fn new() -> Self {
        let tty = std::io::stderr().is_terminal() && std::env::var_os("CI").is_none();
        Progress {
            state: Arc::default(),
            tty,
        }
    }

    /// Starts a step; the previous one, if any, is marked done.
    pub fn step(&self, message: impl Into<String>) {
        let message = message.into();
        let mut state = self.lock();
        finish_step(state.current.take());
        if !self.tty {
            eprintln!("==> {message}");
        }
        let spinner = self.spinner(&state, &message);
        state.current = Some(Step {
            message,
            started: Instant::now(),
            spinner,
        });
    }

    /// A one-off line that does not end the current step.
    pub fn note(&self, message: impl AsRef<str>) {
        self.print_above(format!("    {}\n", message.as_ref()).as_bytes());
    }

    /// Marks the current step done (on a terminal: its `✓` line with the time it took).
    pub fn finish(&self) {
        finish_step(self.lock().current.take());
    }

    /// Runs `work`, which lets a child process write to the terminal, with the spinner off
    /// the screen; the current step's spinner comes back afterwards.
    pub async fn hidden_while<T>(&self, work: impl Future<Output = T>) -> T {
        {
            let mut state = self.lock();
            state.hidden = true;
            if let Some(spinner) = state.current.as_mut().and_then(|s| s.spinner.take()) {
                spinner.finish_and_clear();
            }
        }
        let out = work.await;
        let mut state = self.lock();
        state.hidden = false;
        if let Some(message) = state
            .current
            .as_ref()
            .filter(|s| s.spinner.is_none())
            .map(|s| s.message.clone())
        {
            let spinner = self.spinner(&state, &message);
            if let Some(step) = state.current.as_mut() {
                step.spinner = spinner;
            }
        }
        out
    }

    /// A spinner showing `message`, when one may be drawn.
    fn spinner(&self, state: &State, message: &str) -> Option<ProgressBar> {
        if !self.tty || state.hidden {
            return None;
        }
        let style = ProgressStyle::with_template("{spinner} {msg}")
            .expect("a valid spinner template")
            .tick_strings(FRAMES);
        let spinner = ProgressBar::new_spinner()
            .with_style(style)
            .with_message(message.to_string());
        spinner.enable_steady_tick(Duration::from_millis(100));
        Some(spinner)
    }

    /// Writes `bytes` to stderr, above the spinner when one is drawn.
    fn print_above(&self, bytes: &[u8]) {
        let state = self.lock();
        let write = || {
            let mut stderr = std::io::stderr().lock();
            let _ = stderr.write_all(bytes);
            let _ = stderr.flush();
        };
        match state.current.as_ref().and_then(|s| s.spinner.as_ref()) {
            Some(spinner) => spinner.suspend(write),
            None => write(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn finish_step(step: Option<Step>) {
    if let Some(Step {
        message,
        started,
        spinner: Some(spinner),
    }) = step
    {
        spinner.finish_and_clear();
        eprintln!("✓ {message} ({:.1?})", started.elapsed());
    }
}

impl Default for Progress {
    fn default() -> Self {
        Self::new()
    }
}

/// The tracing writer: each log event is written whole, above the spinner.
impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Progress {
    type Writer = LogEvent;

    fn make_writer(&'a self) -> LogEvent {
        LogEvent {
            progress: self.clone(),
            buffer: Vec::new(),
        }
    }
}

/// One log event, printed when the subscriber is done writing it.
pub struct LogEvent {
    progress: Progress,
    buffer: Vec<u8>,
}

impl Write for LogEvent {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LogEvent {
    fn drop(&mut self) {
        if !self.buffer.is_empty() {
            self.progress.print_above(&self.buffer);
        }
    }
}

/// apply/teardown report their steps here.
impl infra::Progress for Progress {
    fn start(&self, step: &str) {
        self.step(step);
    }
    fn finish(&self, _step: &str) {
        Progress::finish(self);
    }
    fn warn(&self, message: &str) {
        self.note(format!("warning: {message}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain() -> Progress {
        Progress {
            state: Arc::default(),
            tty: false,
        }
    }

    #[tokio::test]
    async fn off_a_terminal_no_spinner_is_ever_made() {
        let p = plain();
        p.step("building");
        p.hidden_while(async { p.note("inside") }).await;
        let state = p.lock();
        let step = state.current.as_ref().unwrap();
        assert_eq!(step.message, "building");
        assert!(step.spinner.is_none());
    }

    #[tokio::test]
    async fn a_step_started_while_hidden_gets_its_spinner_afterwards() {
        let p = Progress {
            state: Arc::default(),
            tty: true,
        };
        p.step("first");
        assert!(p.lock().current.as_ref().unwrap().spinner.is_some());
        p.hidden_while(async {
            assert!(p.lock().current.as_ref().unwrap().spinner.is_none());
            p.step("second");
            assert!(p.lock().current.as_ref().unwrap().spinner.is_none());
        })
        .await;
        let state = p.lock();
        let step = state.current.as_ref().unwrap();
        assert_eq!(step.message, "second");
        assert!(step.spinner.is_some(), "the spinner is back");
        drop(state);
        p.finish();
        assert!(p.lock().current.is_none());
    }
}
