//! `camagent detect` and `camagent eval`: the detector on recorded footage, to tune `[motion]`.

use anyhow::Context;

use camagent::config::capture::Decoding;
use camagent::config::MotionConfig;

pub(crate) fn detect(
    input: &std::path::Path,
    motion: &MotionConfig,
    decoding: Decoding,
) -> anyhow::Result<()> {
    use std::io::Write;
    let started = std::time::Instant::now();
    let mut out = std::io::stdout().lock();
    let mut write_error = None;
    let summary = camagent::capture::detect_file(input, motion, decoding, |line| {
        if write_error.is_none() {
            if let Err(e) = serde_json::to_writer(&mut out, &line)
                .map_err(std::io::Error::from)
                .and_then(|()| writeln!(out))
            {
                write_error = Some(e);
            }
        }
    })
    .with_context(|| format!("cannot analyse {}", input.display()))?;
    if let Some(e) = write_error {
        return Err(e).context("cannot write the events");
    }
    let took = started.elapsed().as_secs_f64();
    eprintln!(
        "{} analysis frames ({:.1} s of media at {} fps, {}x{}) in {took:.2} s; decoded {}",
        summary.frames,
        summary.media_seconds,
        motion.fps,
        motion.width,
        motion.height,
        share(summary.decoded, summary.units)
    );
    Ok(())
}

pub(crate) fn eval(
    dir: &std::path::Path,
    motion: &MotionConfig,
    decoding: Decoding,
    json: bool,
) -> anyhow::Result<()> {
    use camagent::motion::eval::{totals, Report};
    let (scores, decoded) = camagent::capture::eval::evaluate_dir(dir, motion, decoding)
        .with_context(|| format!("cannot evaluate {}", dir.display()))?;
    if json {
        let report = serde_json::json!({
            "clips": scores,
            "totals": totals(&scores),
            "decoding": decoding,
            "decoded": decoded,
        });
        println!("{report}");
    } else {
        println!("{}", Report(&scores));
        println!(
            "decoded ({decoding:?}): {}",
            share(decoded.decoded, decoded.units)
        );
    }
    Ok(())
}

/// "n of m H.264 units (p %)".
fn share(decoded: u64, units: u64) -> String {
    if units == 0 {
        return "every picture (not H.264)".into();
    }
    format!(
        "{decoded} of {units} H.264 units ({:.1} %)",
        decoded as f64 * 100.0 / units as f64
    )
}
