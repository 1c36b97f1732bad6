//! Synthetic scenes with known ground truth, rendered in Rust and encoded by the host's
//! GStreamer as a camera recording would be, and the agent config that plays one as its
//! camera.

use std::path::{Path, PathBuf};
use std::process::Command;

pub const W: usize = 320;
pub const H: usize = 180;
pub const FPS: usize = 10;

/// An object's box in pixels: x, y, width, height.
pub type ObjectBox = Option<(usize, usize, usize, usize)>;

/// A scene description: brightness and an optional object box, per frame index.
pub struct Scene {
    pub seconds: usize,
    pub brightness: fn(usize) -> f32,
    pub object: fn(usize) -> ObjectBox,
}

pub fn render(scene: &Scene, frame: usize, rng: &mut fastrand::Rng) -> Vec<u8> {
    let gain = (scene.brightness)(frame);
    let mut pixels: Vec<u8> = (0..W * H)
        .map(|i| {
            let (x, y) = ((i % W) as f32, (i / W) as f32);
            let base = 90.0 + 40.0 * ((x / 23.0).sin() * (y / 17.0).cos());
            (base * gain + (rng.f32() - 0.5) * 8.0).clamp(0.0, 255.0) as u8
        })
        .collect();
    if let Some((x, y, w, h)) = (scene.object)(frame) {
        for row in y..(y + h).min(H) {
            for col in x..(x + w).min(W) {
                pixels[row * W + col] = 225;
            }
        }
    }
    pixels
}

/// How a scene is stored.
#[derive(Clone, Copy)]
pub enum Codec {
    /// JPEG frames in AVI.
    Mjpeg,
    /// H.264 in MP4, a keyframe every second.
    H264,
}

/// Encodes the scene to a clip under `dir`.
pub fn clip(dir: &Path, name: &str, scene: &Scene) -> PathBuf {
    encode(dir, name, scene, Codec::Mjpeg)
}

/// A box walks across from 2 s to 6 s of a 12 s scene: one event, with a still scene before
/// and after it (looped, an event every 12 s).
pub fn walk() -> Scene {
    Scene {
        seconds: 12,
        brightness: |_| 1.0,
        object: |f| (20..60).contains(&f).then(|| ((f - 20) * 6, 70, 30, 70)),
    }
}

pub fn encode(dir: &Path, name: &str, scene: &Scene, codec: Codec) -> PathBuf {
    let raw = dir.join(format!("{name}.gray"));
    let mut rng = fastrand::Rng::with_seed(11);
    let bytes: Vec<u8> = (0..scene.seconds * FPS)
        .flat_map(|f| render(scene, f, &mut rng))
        .collect();
    std::fs::write(&raw, bytes).unwrap();
    let (tail, ext) = match codec {
        Codec::Mjpeg => ("jpegenc quality=90 ! avimux".to_owned(), "avi"),
        Codec::H264 => (
            format!("x264enc key-int-max={FPS} speed-preset=superfast ! h264parse ! mp4mux"),
            "mp4",
        ),
    };
    let out = dir.join(format!("{name}.{ext}"));
    host_gst_launch(&format!(
        "filesrc location={} ! rawvideoparse format=gray8 width={W} height={H} framerate={FPS}/1 \
         ! videoconvert ! video/x-raw,format=I420 ! {tail} ! filesink location={}",
        raw.display(),
        out.display()
    ));
    out
}

/// Runs a `gst-launch-1.0` pipeline description with the host's GStreamer and plugins, even
/// when the test itself runs under qemu-arm.
pub fn host_gst_launch(description: &str) {
    let status = host_command("gst-launch-1.0")
        .arg("-q")
        .args(description.split_whitespace())
        .status()
        .expect("gst-launch-1.0 must be installed (scripts/install-deps)");
    assert!(status.success(), "gst-launch-1.0 {description}");
}

/// A host tool, without the emulator's GStreamer settings.
pub fn host_command(program: &str) -> Command {
    let mut command = Command::new(program);
    for var in [
        "GST_PLUGIN_SYSTEM_PATH",
        "GST_REGISTRY",
        "GST_REGISTRY_FORK",
        "QEMU_LD_PREFIX",
    ] {
        command.env_remove(var);
    }
    command
}

/// Agent config with `clip` played as the camera (`looped` or once), 1 s of pre-roll,
/// post-roll, keyframe interval and event gap, the shipped policy, and `extra` sections.
pub fn camera_config(
    world: &super::World,
    port: u16,
    clip: &Path,
    looped: bool,
    extra: &str,
) -> PathBuf {
    let mut setup = super::AgentSetup::new(world, port);
    setup.extra = format!(
        "[capture]\nsource = \"file\"\npath = \"{}\"\nloop = {looped}\npreroll = \"1s\"\npostroll = \"1s\"\n\
         [capture.encode]\nwidth = {W}\nheight = {H}\nfps = 10\nbitrate_kbps = 600\nkeyframe_interval = \"1s\"\n\
         [motion.events]\ngap = \"1s\"\n{extra}",
        clip.display()
    );
    let dir = world.path().join("agent");
    let policy = Path::new(env!("CARGO_MANIFEST_DIR")).join("etc/policy.toml");
    setup.write(world, &dir, &policy)
}
