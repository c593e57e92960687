//! The options the running emulator works from, with the names derived from them (the
//! function's ARN), and where log lines go.

use super::options::{LocalLambdaOptions, LogLine, LogSink, LogSource};
use anyhow::{Context, Result};
use std::path::PathBuf;
use std::time::Duration;

/// What the pool, the instances and the fronts need from the options, plus derived names.
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
    /// Fails when the bootstrap's path cannot be resolved.
    pub fn new(o: &LocalLambdaOptions) -> Result<Config> {
        let bootstrap = std::fs::canonicalize(&o.bootstrap)
            .with_context(|| format!("resolving the bootstrap path {}", o.bootstrap.display()))?;
        Ok(Config::resolved(o, bootstrap))
    }

    fn resolved(o: &LocalLambdaOptions, bootstrap: PathBuf) -> Config {
        Config {
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
        }
    }

    /// Hands one line to the log sink.
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

    /// A line as Lambda's platform writes it (`START`, `END`, `REPORT`, errors).
    pub(crate) fn platform(&self, instance: usize, line: String) {
        self.log(instance, LogSource::Platform, line);
    }
}

#[cfg(test)]
impl Config {
    /// A configuration for unit tests: `bootstrap` as given (not resolved), lines captured
    /// into the returned receiver.
    pub(crate) fn for_tests(
        bootstrap: &str,
    ) -> (Config, tokio::sync::mpsc::UnboundedReceiver<LogLine>) {
        let (logs, rx) = LogSink::channel();
        let mut o = LocalLambdaOptions::new(bootstrap);
        o.logs = logs;
        (Config::resolved(&o, PathBuf::from(bootstrap)), rx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_arn_is_derived_and_the_bootstrap_resolved() {
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("bootstrap");
        std::fs::write(&exe, "").unwrap();
        let mut o = LocalLambdaOptions::new(dir.path().join(".").join("bootstrap"));
        o.function_name = "f".into();
        o.region = "eu-west-1".into();
        o.account_id = "111122223333".into();
        let cfg = Config::new(&o).unwrap();
        assert_eq!(
            cfg.function_arn,
            "arn:aws:lambda:eu-west-1:111122223333:function:f"
        );
        assert_eq!(cfg.bootstrap, std::fs::canonicalize(&exe).unwrap());

        let gone = LocalLambdaOptions::new(dir.path().join("missing"));
        let e = Config::new(&gone).err().unwrap();
        assert!(format!("{e:#}").contains("resolving the bootstrap path"));
    }

    #[test]
    fn platform_lines_are_captured_with_their_instance() {
        let (cfg, mut rx) = Config::for_tests("/bin/true");
        cfg.platform(3, "START RequestId: x".into());
        cfg.log(1, LogSource::Stdout, "out".into());
        let a = rx.try_recv().unwrap();
        assert_eq!((a.instance, a.source), (3, LogSource::Platform));
        assert_eq!(a.line, "START RequestId: x");
        assert_eq!(rx.try_recv().unwrap().source, LogSource::Stdout);
    }
}
