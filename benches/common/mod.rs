//! What the benchmarks share: timing and writing their section of BENCHMARKS.md.
#![allow(dead_code)]

use std::path::Path;
use std::time::Instant;

/// Median over `runs` of the mean nanoseconds per call across `iterations` calls.
pub fn median_ns(runs: usize, iterations: u32, mut f: impl FnMut()) -> f64 {
    let mut per_call: Vec<f64> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..iterations {
                f();
            }
            start.elapsed().as_nanos() as f64 / f64::from(iterations)
        })
        .collect();
    per_call.sort_by(f64::total_cmp);
    per_call[runs / 2]
}

/// The CPU's model name, for the record.
pub fn cpu() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

/// Replaces the section that starts with `heading` (up to the next `## `) or appends it.
pub fn update_benchmarks(path: &Path, heading: &str, section: &str) {
    let text = std::fs::read_to_string(path).unwrap_or_else(|_| "# Benchmarks\n\nFigures measured on this project's CI machine kind (2 cores). Each section names the command that reproduces it.\n\n".into());
    let new = match text.find(heading) {
        Some(start) => {
            let rest = &text[start + heading.len()..];
            let end = rest
                .find("\n## ")
                .map_or(text.len(), |i| start + heading.len() + i + 1);
            format!("{}{}{}", &text[..start], section, &text[end..])
        }
        None => format!(
            "{}{}{section}",
            text,
            if text.ends_with("\n\n") { "" } else { "\n" }
        ),
    };
    std::fs::write(path, new).expect("write BENCHMARKS.md");
}
