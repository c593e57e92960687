//! Cold start: a fresh `bootstrap` under the local Lambda emulator, from spawn to its first
//! request for work, against the Python SDK's import.

use super::*;

pub async fn cold_start(bootstrap: &Path, counts: Counts) -> Result<Section> {
    let mut s = Section::new("Cold start");
    s.method = format!(
        "Rust: the measured `bootstrap` is started {n} times by the local Lambda emulator \
         (`emulators::lambda::LocalLambda`, a fresh emulator each time); the figure is the \
         emulator's own cold-start clock, from spawning the process to its first \
         `GET /2018-06-01/runtime/invocation/next` (the handler's whole init: config, HTTP client, \
         runtime). Python baseline: wall time of `python -c \"{PY_COLD}\"` with the toolkit venv's \
         Python and `anthropic` ({m} runs, after one unmeasured warm-up run so the page cache is \
         warm for both). Both run on the same machine in the same run.",
        n = counts.cold_starts,
        m = counts.python_imports
    );
    let mut rust = Vec::new();
    let client = client()?;
    for _ in 0..counts.cold_starts {
        let mut opts = LocalLambdaOptions::new(bootstrap);
        opts.env = handler_env("http://127.0.0.1:9");
        opts.logs = LogSink::Discard;
        opts.invoke_mode = InvokeMode::ResponseStream;
        let lambda = LocalLambda::start(opts)
            .await
            .context("starting the local Lambda emulator")?;
        let resp = client
            .get(format!("{}health", lambda.url()))
            .send()
            .await
            .context("GET /health through the local Lambda")?;
        if !resp.status().is_success() {
            bail!(
                "GET /health through the local Lambda answered {}",
                resp.status()
            );
        }
        let cold = lambda.cold_starts();
        let first = cold
            .first()
            .context("the emulator recorded no cold start after the first request")?;
        rust.push(first.duration);
        lambda.stop().await;
    }
    let python = emulators::moto::venv_dir().join("bin/python");
    if !python.is_file() {
        bail!(
            "{} not found: install the stand-ins with `cargo xtask test --setup-only`",
            python.display()
        );
    }
    let run_py = |code: &'static str| {
        let python = python.clone();
        async move {
            let start = Instant::now();
            let out = tokio::process::Command::new(&python)
                .args(["-c", code])
                .stdin(Stdio::null())
                .output()
                .await
                .with_context(|| format!("running {}", python.display()))?;
            let took = start.elapsed();
            if !out.status.success() {
                bail!(
                    "`python -c \"{code}\"` failed ({}): {}\nInstall the SDK with `cargo xtask test`",
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            Ok(took)
        }
    };
    run_py(PY_COLD).await?;
    let mut py = Vec::new();
    let mut bare = Vec::new();
    for _ in 0..counts.python_imports {
        py.push(run_py(PY_COLD).await?);
        bare.push(run_py("pass").await?);
    }
    let r = Stats::of(&rust);
    let p = Stats::of(&py);
    let b = Stats::of(&bare);
    let ratio = p.p50 / r.p50;
    s.figures.push(
        Figure::new("cold start, median", ms(r.p50))
            .baseline(format!("{} (Python import + client, median)", ms(p.p50)))
            .ratio(format!("{} faster", times(ratio)))
            .target("≥ 100x faster", ratio >= 100.0),
    );
    s.figures.push(
        Figure::new("cold start, median (absolute)", ms(r.p50)).target("< 15 ms", r.p50 < 15.0),
    );
    s.figures.push(
        Figure::new("cold start, p90", ms(r.p90))
            .baseline(format!("{} (Python, p90)", ms(p.p90)))
            .ratio(format!("{} faster", times(p.p90 / r.p90))),
    );
    s.figures.push(
        Figure::new(
            "Python interpreter alone (`python -c pass`), median",
            ms(b.p50),
        )
        .baseline(format!("{} (with `import anthropic`)", ms(p.p50))),
    );
    s.notes.push(format!(
        "Samples: Rust n={}, min..max {}..{}; Python n={}, max {}.",
        r.n,
        ms(rust
            .iter()
            .min()
            .map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)),
        ms(r.max),
        p.n,
        ms(p.max)
    ));
    if ratio < 100.0 {
        s.notes.push(format!(
            "Target missed: the Python baseline's import is {} and the interpreter alone is {}; \
             the Rust cold start would have to be under {} for 100x.",
            ms(p.p50),
            ms(b.p50),
            ms(p.p50 / 100.0)
        ));
    }
    Ok(s)
}
