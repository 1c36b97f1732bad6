//! The motion detector's cost per analysis frame at 320×180 and 640×360, on a textured noisy
//! scene with a moving object (the detector's full path: lighting, noise, cells, regions,
//! learning). Run: `cargo bench --bench motion`. Writes its figures to BENCHMARKS.md.

use std::hint::black_box;
use std::path::Path;

use camagent::motion::{Detector, DetectorConfig};

mod common;

fn frames(w: usize, h: usize, n: usize) -> Vec<Vec<u8>> {
    let mut rng = fastrand::Rng::with_seed(7);
    (0..n)
        .map(|k| {
            (0..w * h)
                .map(|i| {
                    let (x, y) = (i % w, i / w);
                    let object = (x + 4 * k) % w < w / 8 && y > h / 3 && y < h / 2;
                    let base = 90.0 + 40.0 * ((x as f32 / 23.0).sin() * (y as f32 / 17.0).cos());
                    let v = if object {
                        220.0
                    } else {
                        base + (rng.f32() - 0.5) * 8.0
                    };
                    v.clamp(0.0, 255.0) as u8
                })
                .collect()
        })
        .collect()
}

fn per_frame_ns(w: usize, h: usize) -> f64 {
    let clip = frames(w, h, 64);
    let mut detector = Detector::new(DetectorConfig::default(), w, h);
    let mut i = 0;
    common::median_ns(7, 2000, || {
        black_box(detector.analyse(black_box(&clip[i % clip.len()])));
        i += 1;
    })
}

fn main() {
    let small = per_frame_ns(320, 180);
    let large = per_frame_ns(640, 360);
    let section = format!(
        "## Motion detector: cost per analysis frame\n\n\
         `cargo bench --bench motion` — median of 7 runs of 2000 frames, one core of {}.\n\
         Textured scene with sensor noise and an object crossing it; the whole analysis\n\
         (lighting estimate, noise estimate, changed pixels, cells, regions, background update).\n\n\
         | frame | µs per frame | frames per second on one core |\n| --- | ---: | ---: |\n\
         | 320×180 | {:.0} | {:.0} |\n| 640×360 | {:.0} | {:.0} |\n\n\
         640×360 has 4× the pixels and costs {:.1}× as much. The comparison with the Motion daemon\n\
         (whole-process CPU on the same clips) comes with the capture pipeline.\n",
        common::cpu(),
        small / 1000.0,
        1e9 / small,
        large / 1000.0,
        1e9 / large,
        large / small,
    );
    println!("{section}");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    common::update_benchmarks(&root.join("BENCHMARKS.md"), "## Motion detector", &section);
}
