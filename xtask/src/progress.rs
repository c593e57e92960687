//! Progress on stderr: a spinner when stderr is a terminal, plain lines otherwise (CI, pipes).

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const FRAMES: [&str; 10] = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];

#[derive(Default)]
struct State {
    current: Option<(String, Instant)>,
    frame: usize,
}

/// Reports steps of a long operation. Cloning shares the same display.
#[derive(Clone)]
pub struct Progress {
    state: Arc<Mutex<State>>,
    tty: bool,
    quiet: bool,
}

impl Progress {
    /// A spinner when stderr is a terminal, plain lines otherwise.
    pub fn new() -> Self {
        let tty = std::io::stderr().is_terminal() && std::env::var_os("CI").is_none();
        let progress = Progress {
            state: Arc::default(),
            tty,
            quiet: false,
        };
        if tty {
            let state = Arc::downgrade(&progress.state);
            std::thread::spawn(move || loop {
                std::thread::sleep(Duration::from_millis(100));
                let Some(state) = state.upgrade() else { break };
                let mut s = state.lock().unwrap();
                s.frame = (s.frame + 1) % FRAMES.len();
                if let Some((msg, _)) = &s.current {
                    eprint!("\r\x1b[2K{} {msg}", FRAMES[s.frame]);
                    let _ = std::io::stderr().flush();
                }
            });
        }
        progress
    }

    /// No output at all (for callers that print their own results only).
    #[allow(dead_code)]
    pub fn quiet() -> Self {
        Progress {
            state: Arc::default(),
            tty: false,
            quiet: true,
        }
    }

    /// Starts a step; the previous one, if any, is marked done.
    pub fn step(&self, msg: impl Into<String>) {
        if self.quiet {
            return;
        }
        let msg = msg.into();
        let mut s = self.state.lock().unwrap();
        Self::finish_current(&mut s, self.tty);
        if self.tty {
            eprint!("\r\x1b[2K{} {msg}", FRAMES[s.frame]);
            let _ = std::io::stderr().flush();
        } else {
            eprintln!("==> {msg}");
        }
        s.current = Some((msg, Instant::now()));
    }

    /// A one-off line that does not end the current step.
    pub fn note(&self, msg: impl AsRef<str>) {
        if self.quiet {
            return;
        }
        let s = self.state.lock().unwrap();
        if self.tty {
            eprint!("\r\x1b[2K");
        }
        eprintln!("    {}", msg.as_ref());
        if self.tty {
            if let Some((cur, _)) = &s.current {
                eprint!("{} {cur}", FRAMES[s.frame]);
                let _ = std::io::stderr().flush();
            }
        }
    }

    /// Marks the current step done and stops the spinner line.
    pub fn finish(&self) {
        let mut s = self.state.lock().unwrap();
        Self::finish_current(&mut s, self.tty);
    }

    fn finish_current(s: &mut State, tty: bool) {
        if let Some((msg, started)) = s.current.take() {
            if tty {
                eprintln!("\r\x1b[2K✓ {msg} ({:.1?})", started.elapsed());
            }
        }
    }
}

impl Default for Progress {
    fn default() -> Self {
        Self::new()
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
