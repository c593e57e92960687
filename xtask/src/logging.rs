//! Logs on stderr, written above the progress spinner. Default: the toolkit's warnings only;
//! `-v` debug for our crates; `-vv` debug for everything, the AWS SDK's internals included;
//! `RUST_LOG` wins when set.

use crate::progress::Progress;

pub fn init(verbose: u8, progress: &Progress) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(filter(verbose)));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(progress.clone())
        .with_target(verbose > 1)
        .init();
}

/// The log filter for `-v` given `verbose` times. Below `-vv` only the toolkit's own crates
/// log: the SDK's internal warnings (e.g. a raw dump of an instance-metadata answer) are
/// not for users, who get the toolkit's own error instead.
fn filter(verbose: u8) -> &'static str {
    match verbose {
        0 => "off,xtask=warn,infra=warn,emulators=warn,handler=warn,artifacts=warn",
        1 => "off,xtask=debug,infra=debug,emulators=debug,handler=debug,artifacts=debug",
        _ => "debug,hyper=info,hyper_util=info,h2=info,rustls=info",
    }
}

#[cfg(test)]
mod tests {
    use super::filter;

    #[test]
    fn the_sdk_logs_only_at_vv() {
        use tracing_subscriber::EnvFilter;
        for v in [0, 1] {
            let f = filter(v);
            assert!(f.starts_with("off,"), "{f}");
            assert!(!f.contains("aws"), "{f}");
            EnvFilter::try_new(f).unwrap();
        }
        assert!(filter(0).contains("infra=warn"));
        assert!(filter(2).starts_with("debug"));
    }
}
