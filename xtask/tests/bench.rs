//! Smoke run of the bench harness (`cargo xtask bench --quick`): tiny iteration counts, no
//! timing assertions. It checks that every benchmark runs and the report has its numbers, so
//! the harness does not rot. It needs the stand-ins (moto, cargo-lambda, the `anthropic` SDK
//! in `~/.cache/claude-lambda/venv`; `cargo xtask test` installs them) and PyPI for the
//! `pip install anthropic -t` layer baseline (cached after the first run).

mod common;
use common::handler_bootstrap;
use std::process::Command;

/// The lines of the section `## title`, up to the next `## `.
fn section<'a>(report: &'a str, title: &str) -> Vec<&'a str> {
    let heading = format!("## {title}");
    let mut lines = report.lines().skip_while(|l| l.trim() != heading);
    assert!(
        lines.next().is_some(),
        "the report has no `{heading}` section:\n{report}"
    );
    lines.take_while(|l| !l.starts_with("## ")).collect()
}

/// Table rows (not the header or the separator) whose value cell holds a number with `unit`.
fn numeric_rows(lines: &[&str], unit: &str) -> usize {
    lines
        .iter()
        .filter(|l| l.starts_with('|') && !l.starts_with("|---") && !l.starts_with("| figure"))
        .filter(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            // | figure | value | baseline | ratio | target | result |
            cells.get(2).is_some_and(|v| {
                v.ends_with(unit)
                    && v.trim_end_matches(unit)
                        .trim()
                        .parse::<f64>()
                        .is_ok_and(f64::is_finite)
            })
        })
        .count()
}

#[test]
fn quick_bench_writes_every_section_with_numbers() {
    assert!(
        emulators::moto::find_moto_server().is_some(),
        "moto server is not installed: run `cargo xtask test --setup-only`"
    );
    let venv = emulators::moto::venv_dir();
    assert!(
        venv.join("bin/cargo-lambda").is_file(),
        "cargo-lambda is not installed in {}: run `cargo xtask test`",
        venv.display()
    );
    let bootstrap = handler_bootstrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("BENCH.md");
    let result = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["bench", "--quick", "--bootstrap"])
        .arg(&bootstrap)
        .arg("--out")
        .arg(&out)
        .env_remove("AWS_ENDPOINT_URL")
        .env_remove("AWS_PROFILE")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&result.stderr);
    let report = std::fs::read_to_string(&out)
        .unwrap_or_else(|e| panic!("no report at {} ({e}); stderr:\n{stderr}", out.display()));
    assert!(
        result.status.success(),
        "bench --quick failed:\n{stderr}\n--- report ---\n{report}"
    );
    assert!(
        !report.contains("could not run"),
        "a benchmark did not run:\n{report}"
    );

    let machine = section(&report, "Machine");
    for key in ["date (UTC)", "CPU", "cores (nproc)", "memory"] {
        assert!(
            machine.iter().any(|l| l.starts_with(&format!("| {key} |"))),
            "the machine table lacks `{key}`:\n{report}"
        );
    }
    for (title, unit, at_least) in [
        ("Cold start", "ms", 3),
        ("Proxy overhead", "ms", 8),
        ("Streaming latency", "ms", 4),
        ("Memory", "MB", 4),
        ("Artifact", "MB", 2),
        ("Deploy", "ms", 6),
        ("Deploy under the AWS latency model", "ms", 6),
    ] {
        let lines = section(&report, title);
        let n = numeric_rows(&lines, unit);
        assert!(
            n >= at_least,
            "section `{title}` has {n} rows with a value in {unit}, expected at least {at_least}:\n{}",
            lines.join("\n")
        );
        assert!(
            lines
                .iter()
                .any(|l| l.contains("| met |") || l.contains("**missed**")),
            "section `{title}` says nothing about its target:\n{}",
            lines.join("\n")
        );
    }
    // The deploy baseline ran (cargo-lambda against the same moto), and our CLI was timed the
    // same way: as a process.
    let deploy = section(&report, "Deploy").join("\n");
    assert!(
        deploy.contains("(cargo lambda deploy, process)"),
        "the deploy section has no cargo-lambda baseline:\n{deploy}"
    );
    assert!(
        deploy.contains("| first deploy, `cargo xtask deploy` process, median |")
            && deploy.contains("| no-op redeploy, process, median |"),
        "the deploy section does not time the CLI as a process:\n{deploy}"
    );
    // Under the latency model each command stands beside its critical path, and cargo-lambda
    // went through the same proxy.
    let modeled = section(&report, "Deploy under the AWS latency model").join("\n");
    for row in [
        "| first deploy, process, median |",
        "| first deploy vs cargo lambda deploy, median |",
        "| no-op redeploy, process, median |",
        "| configuration change (--memory), process, median |",
        "| teardown, process, median |",
    ] {
        assert!(modeled.contains(row), "no `{row}` row:\n{modeled}");
    }
    assert!(modeled.contains("(critical path)"), "{modeled}");
    assert!(report.contains("Quick run"), "a quick report must say so");
}
