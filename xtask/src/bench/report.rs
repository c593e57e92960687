//! The numbers and how `BENCHMARKS.md` shows them.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

/// Percentiles of a sample of durations, in milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct Stats {
    pub n: usize,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl Stats {
    pub fn of(samples: &[Duration]) -> Stats {
        let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
        ms.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
        Stats {
            n: ms.len(),
            p50: percentile(&ms, 50.0),
            p90: percentile(&ms, 90.0),
            p99: percentile(&ms, 99.0),
            max: ms.last().copied().unwrap_or(f64::NAN),
        }
    }
}

/// Nearest-rank percentile of sorted values (NaN for an empty sample).
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// One row: the value, its baseline from the same run, their ratio, the target and whether it
/// was met.
#[derive(Debug, Clone)]
pub struct Figure {
    pub name: String,
    pub value: String,
    pub baseline: String,
    pub ratio: String,
    pub target: String,
    /// `None`: no target for this row (context only).
    pub met: Option<bool>,
}

impl Figure {
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Figure {
        Figure {
            name: name.into(),
            value: value.into(),
            baseline: "-".into(),
            ratio: "-".into(),
            target: "-".into(),
            met: None,
        }
    }
    pub fn baseline(mut self, b: impl Into<String>) -> Figure {
        self.baseline = b.into();
        self
    }
    pub fn ratio(mut self, r: impl Into<String>) -> Figure {
        self.ratio = r.into();
        self
    }
    pub fn target(mut self, t: impl Into<String>, met: bool) -> Figure {
        self.target = t.into();
        self.met = Some(met);
        self
    }
}

#[derive(Debug, Clone)]
pub struct Section {
    pub title: String,
    /// What exactly was measured, and how.
    pub method: String,
    pub figures: Vec<Figure>,
    pub notes: Vec<String>,
    pub error: Option<String>,
    /// Not measured in this run (`--only`): its summary rows and text as an earlier run of
    /// the bench wrote them.
    pub earlier: Option<(Vec<String>, String)>,
}

impl Section {
    pub fn new(title: &str) -> Section {
        Section {
            title: title.to_string(),
            method: String::new(),
            figures: Vec::new(),
            notes: Vec::new(),
            error: None,
            earlier: None,
        }
    }

    /// The section `title` as `report` (an earlier BENCHMARKS.md) has it, marked as such;
    /// `None` when it has no such section.
    pub fn from_earlier(report: &str, title: &str) -> Option<Section> {
        let heading = format!("## {title}\n");
        let start = report.find(&heading)? + heading.len();
        let end = report[start..]
            .find("\n## ")
            .map_or(report.len(), |i| start + i + 1);
        let rows = report
            .lines()
            .filter(|l| l.starts_with(&format!("| {title} | ")))
            .map(str::to_string)
            .collect();
        let body = format!(
            "_Not measured in this run (`cargo xtask bench --only`): as an earlier run wrote it._\n\n{}",
            report[start..end].trim_start()
        );
        let mut s = Section::new(title);
        s.earlier = Some((rows, body));
        Some(s)
    }
}

pub struct Report {
    quick: bool,
    bootstrap: String,
    serve: String,
    sections: Vec<Section>,
}

pub fn ms(v: f64) -> String {
    if v.is_nan() {
        "n/a".into()
    } else if v.abs() < 10.0 {
        format!("{v:.3} ms")
    } else {
        format!("{v:.1} ms")
    }
}

pub fn mb(bytes: u64) -> String {
    format!("{:.2} MB", bytes as f64 / (1024.0 * 1024.0))
}

pub fn times(r: f64) -> String {
    if r.is_nan() || r.is_infinite() {
        "n/a".into()
    } else if r >= 10.0 {
        format!("{r:.0}x")
    } else {
        format!("{r:.2}x")
    }
}

impl Report {
    pub fn new(quick: bool, bootstrap: &Path, serve: &Path) -> Report {
        Report {
            quick,
            bootstrap: bootstrap.display().to_string(),
            serve: serve.display().to_string(),
            sections: Vec::new(),
        }
    }

    pub fn push(&mut self, s: Section) {
        self.sections.push(s);
    }

    pub fn failed_sections(&self) -> Vec<String> {
        self.sections
            .iter()
            .filter(|s| s.error.is_some())
            .map(|s| s.title.clone())
            .collect()
    }

    pub fn render(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(o, "# Benchmarks\n");
        let _ = writeln!(
            o,
            "Written by `cargo xtask bench{}`. Every baseline is measured in the same run as the \
             figure it is compared with. Targets are from issues 7 and 16; a missed target says **missed**.\n",
            if self.quick { " --quick" } else { "" }
        );
        if self.quick {
            let _ = writeln!(
                o,
                "> **Quick run**: tiny iteration counts, to check the harness works. These numbers \
                 are not meaningful; run `cargo xtask bench` for the real ones.\n"
            );
        }
        let _ = writeln!(o, "## Machine\n");
        let _ = writeln!(o, "| | |\n|---|---|");
        let _ = writeln!(o, "| date (UTC) | {} |", utc_now());
        let _ = writeln!(o, "| CPU | {} |", cpu_model());
        let _ = writeln!(
            o,
            "| cores (nproc) | {} |",
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
        let _ = writeln!(o, "| memory | {} |", mem_total());
        let _ = writeln!(o, "| kernel | {} |", kernel());
        let _ = writeln!(o, "| bootstrap measured | `{}` |", self.bootstrap);
        let _ = writeln!(
            o,
            "| serving process measured (proxy overhead, streaming latency, memory) | `{}` |",
            self.serve
        );
        let _ = writeln!(o);
        let _ = writeln!(o, "## Summary\n");
        let _ = writeln!(o, "| section | figure | value | target | result |");
        let _ = writeln!(o, "|---|---|---|---|---|");
        for s in &self.sections {
            if let Some((rows, _)) = &s.earlier {
                for r in rows {
                    let _ = writeln!(o, "{r}");
                }
            }
            if let Some(e) = &s.error {
                let _ = writeln!(
                    o,
                    "| {} | (did not run) | - | - | **error**: {} |",
                    s.title,
                    one_line(e)
                );
            }
            for f in s.figures.iter().filter(|f| f.met.is_some()) {
                let _ = writeln!(
                    o,
                    "| {} | {} | {} | {} | {} |",
                    s.title,
                    f.name,
                    f.value,
                    f.target,
                    verdict(f.met)
                );
            }
        }
        let _ = writeln!(o);
        for s in &self.sections {
            let _ = writeln!(o, "## {}\n", s.title);
            if let Some((_, body)) = &s.earlier {
                let _ = writeln!(o, "{}", body.trim_end());
                let _ = writeln!(o);
                continue;
            }
            if !s.method.is_empty() {
                let _ = writeln!(o, "{}\n", s.method);
            }
            if let Some(e) = &s.error {
                let _ = writeln!(o, "**This benchmark could not run:**\n\n```\n{e}\n```\n");
            }
            if !s.figures.is_empty() {
                let _ = writeln!(o, "| figure | value | baseline | ratio | target | result |");
                let _ = writeln!(o, "|---|---|---|---|---|---|");
                for f in &s.figures {
                    let _ = writeln!(
                        o,
                        "| {} | {} | {} | {} | {} | {} |",
                        f.name,
                        f.value,
                        f.baseline,
                        f.ratio,
                        f.target,
                        verdict(f.met)
                    );
                }
                let _ = writeln!(o);
            }
            for n in &s.notes {
                let _ = writeln!(o, "- {n}");
            }
            if !s.notes.is_empty() {
                let _ = writeln!(o);
            }
        }
        o
    }
}

fn verdict(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "met",
        Some(false) => "**missed**",
        None => "-",
    }
}

fn one_line(s: &str) -> String {
    s.lines()
        .next()
        .unwrap_or("")
        .replace('|', "/")
        .chars()
        .take(160)
        .collect()
}

fn utc_now() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M:%S"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

fn mem_total() -> String {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map(|kb| format!("{:.1} GiB", kb as f64 / (1024.0 * 1024.0)))
        .unwrap_or_else(|| "unknown".into())
}

fn kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&v, 100.0), 100.0);
        assert_eq!(percentile(&[3.0], 99.0), 3.0);
        assert!(percentile(&[], 50.0).is_nan());
    }
}
