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
    // A blank line between sections, however the section text ends.
    let section = &format!("{}\n\n", section.trim_end());
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

/// CPU seconds (user + system, all threads) a running process has used.
pub fn cpu_seconds(pid: u32) -> f64 {
    stat_cpu_seconds(&std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap())
}

/// User + system CPU seconds in a `/proc/…/stat` line.
fn stat_cpu_seconds(stat: &str) -> f64 {
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    ticks as f64 / 100.0
}

/// CPU seconds of a running process's live threads, summed by thread name, most first.
/// Threads that already ended are not counted (their time is only in the process's total).
pub fn thread_cpu_seconds(pid: u32) -> Vec<(String, f64)> {
    let mut by_name: Vec<(String, f64)> = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return by_name;
    };
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        let name = stat
            .split_once('(')
            .and_then(|(_, rest)| rest.rsplit_once(')'))
            .map_or("?", |(name, _)| name);
        // GStreamer names threads after their element and pad (queue3:src): the element's
        // kind is enough.
        let name = match name.split_once(':') {
            Some((element, pad)) => {
                format!(
                    "{}:{pad}",
                    element.trim_end_matches(|c: char| c.is_ascii_digit())
                )
            }
            None => name.to_owned(),
        };
        let seconds = stat_cpu_seconds(&stat);
        match by_name.iter_mut().find(|(n, _)| *n == name) {
            Some((_, total)) => *total += seconds,
            None => by_name.push((name, seconds)),
        }
    }
    by_name.sort_by(|a, b| b.1.total_cmp(&a.1));
    by_name
}

/// User + system CPU seconds of all children waited for so far.
pub fn children_cpu_seconds() -> f64 {
    // SAFETY: rusage is plain data that getrusage fills in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    assert_eq!(
        unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) },
        0
    );
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

/// A running process's resident and private memory (VmRSS, RssAnon), in KiB.
pub fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("RssAnon:"))
}

/// The least-squares slope of `points` (x, y); zero for fewer than two distinct x.
pub fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    let (mx, my) = points
        .iter()
        .fold((0.0, 0.0), |(x, y), p| (x + p.0 / n, y + p.1 / n));
    let (sxy, sxx) = points.iter().fold((0.0, 0.0), |(sxy, sxx), (x, y)| {
        (sxy + (x - mx) * (y - my), sxx + (x - mx) * (x - mx))
    });
    if sxx > 0.0 {
        sxy / sxx
    } else {
        0.0
    }
}
