//! The GStreamer plugins the agent loads: only those its pipeline can use. Otherwise
//! GStreamer's registry describes every installed plugin in the agent's heap — libav's alone
//! has over 500 elements: Debian's whole set cost 2.0 MiB of private memory more than a
//! sub-stream camera's list (BENCHMARKS.md, "Camera with a sub-stream").
//!
//! GStreamer reads the list from its environment when it starts (`GST_PLUGIN_LOADING_WHITELIST`),
//! so [`confine`] runs before any thread exists. The registry cache goes where the agent's own
//! cache is, one file per list: GStreamer scans all plugins again whenever the list in its
//! cache differs, and other programs on the machine keep theirs.

use std::path::{Path, PathBuf};

use super::CaptureConfig;
use crate::config::capture::{Encoder, SnapshotStream, Source};

const WHITELIST_ENV: &str = "GST_PLUGIN_LOADING_WHITELIST";
const REGISTRY_ENV: &str = "GST_REGISTRY_1_0";

/// Plugins every camera pipeline may use: its plumbing, the parser, snapshots, and the
/// kernel's hardware decoders and encoders (stateful `video4linux2`, stateless `v4l2codecs`),
/// which are preferred where the board has them. A detection stream's software decoder is
/// the agent's own (`capture::h264dec`), in no plugin.
/// `videoconvertscale` was `videoconvert` and `videoscale` before GStreamer 1.22.
const ALWAYS: &[&str] = &[
    "coreelements",
    "app",
    "videoconvertscale",
    "videoconvert",
    "videoscale",
    "videorate",
    "videoparsersbad",
    "jpeg",
    "video4linux2",
    "v4l2codecs",
];

/// What decodebin may need to play a recording: typefinding, the common containers (`isomp4`
/// for MP4), and libav for a clip that is not H.264.
const FILE: &[&str] = &[
    "playback",
    "typefindfunctions",
    "isomp4",
    "matroska",
    "avi",
    "mpegtsdemux",
    "flv",
    "libav",
];

/// GStreamer's own RTSP client, which receives `rtsps://` cameras.
const RTSPS: &[&str] = &["rtsp", "rtp", "rtpmanager", "udp", "tcp"];

/// The plugins `capture` can use, each once, with the operator's `plugins` last.
pub fn needed(capture: &CaptureConfig) -> Vec<&str> {
    let mut plugins: Vec<&str> = ALWAYS.to_vec();
    plugins.push(match capture.encode.encoder {
        Encoder::X264 => "x264",
        Encoder::V4l2 => "video4linux2",
    });
    match &capture.source {
        Source::Test { .. } => plugins.push("videotestsrc"),
        Source::File { .. } => plugins.extend(FILE),
        Source::V4l2 { .. } => {}
        Source::Rtsp { .. } => plugins.extend(RTSPS),
    }
    // libav's decoder is the fastest software one, for a main stream of H.264 decoded all
    // along. Raw frames need no decoder; a detection stream is decoded by the agent's own
    // (`elements::DecoderFor`), and the main one then only for a snapshot of its own.
    let main_decoded = match &capture.source {
        Source::Test { .. } | Source::V4l2 { encoded: false, .. } => false,
        Source::Rtsp {
            detect: Some(_), ..
        } => capture.snapshot.stream == SnapshotStream::Main,
        Source::File { .. } | Source::V4l2 { encoded: true, .. } | Source::Rtsp { .. } => true,
    };
    if main_decoded {
        plugins.push("libav");
    }
    plugins.extend(capture.plugins.iter().map(String::as_str));
    let mut seen = std::collections::HashSet::new();
    plugins.retain(|p| seen.insert(*p));
    plugins
}

/// `plugins` as GStreamer's whitelist takes them: plugin names, from any directory.
fn whitelist(plugins: &[&str]) -> String {
    format!("{}@*", plugins.join(","))
}

/// Where the registry of `whitelist` is cached: systemd's `CacheDirectory=`, else the user's
/// cache. One file per list and architecture (armv7 tests run beside the host's).
fn registry_path(whitelist: &str, env: impl Fn(&str) -> Option<String>) -> Option<PathBuf> {
    let dir = match env("CACHE_DIRECTORY") {
        Some(dirs) => PathBuf::from(dirs.split(':').next().unwrap_or_default()),
        None => match env("XDG_CACHE_HOME") {
            Some(cache) => Path::new(&cache).join("camagent"),
            None => Path::new(&env("HOME")?).join(".cache/camagent"),
        },
    };
    // FNV-1a: stable across builds, unlike std's hasher.
    let hash = whitelist.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let arch = std::env::consts::ARCH;
    Some(dir.join(format!("gstreamer-registry-{arch}-{hash:016x}.bin")))
}

/// Confines GStreamer to the plugins `capture` can use, unless the operator set a whitelist
/// of their own. Call before any thread exists and before GStreamer starts.
pub fn confine(capture: &CaptureConfig) {
    let env = |key: &str| std::env::var(key).ok().filter(|v| !v.is_empty());
    if let Some(own) = env(WHITELIST_ENV) {
        tracing::info!(whitelist = %own, "GStreamer plugins as {WHITELIST_ENV} says");
        return;
    }
    let plugins = needed(capture);
    let whitelist = whitelist(&plugins);
    std::env::set_var(WHITELIST_ENV, &whitelist);
    // An operator's registry stands; GStreamer reads it from the same variables.
    let registry = match env(REGISTRY_ENV).or_else(|| env("GST_REGISTRY")) {
        Some(own) => Some(PathBuf::from(own)),
        None => registry_path(&whitelist, env).inspect(|path| {
            std::env::set_var(REGISTRY_ENV, path);
        }),
    };
    tracing::info!(
        plugins = %plugins.join(","),
        registry = %registry.as_deref().unwrap_or(Path::new("GStreamer's default")).display(),
        "GStreamer confined to the plugins the pipeline uses"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn capture(toml: &str) -> CaptureConfig {
        toml::from_str(toml).unwrap()
    }

    #[test]
    fn a_camera_that_detects_on_its_sub_stream_loads_no_libav() {
        let sub = capture(
            "source = \"rtsp\"\nurl = \"rtsp://192.0.2.10/main\"\ndetect_url = \"rtsp://192.0.2.10/sub\"",
        );
        let plugins = needed(&sub);
        assert!(!plugins.contains(&"libav"), "{plugins:?}");
        assert!(!plugins.contains(&"openh264") && plugins.contains(&"rtsp"));
        // Its main-stream snapshot is decoded by the fastest decoder.
        let main_snapshot = capture(
            "source = \"rtsp\"\nurl = \"rtsp://192.0.2.10/main\"\ndetect_url = \"rtsp://192.0.2.10/sub\"\n[snapshot]\nstream = \"main\"",
        );
        assert!(needed(&main_snapshot).contains(&"libav"));
    }

    #[test]
    fn each_source_gets_what_it_plays_and_the_operators_plugins_come_last() {
        let test = capture("source = \"test\"\nplugins = [\"rockchipmpp\", \"x264\"]");
        let test = needed(&test);
        assert!(test.contains(&"videotestsrc") && test.contains(&"x264"));
        // Raw frames: nothing to decode, nothing to demux, and clips need no muxer.
        assert!(!test.contains(&"libav") && !test.contains(&"playback"));
        assert!(!test.contains(&"isomp4"));
        assert!(!test.contains(&"rtsp"));
        assert_eq!(test.last(), Some(&"rockchipmpp"));
        assert_eq!(test.iter().filter(|p| **p == "x264").count(), 1);

        let file = capture("source = \"file\"\npath = \"/clip.mp4\"");
        let file = needed(&file);
        assert!(file.contains(&"playback") && file.contains(&"typefindfunctions"));
        assert!(file.contains(&"isomp4"));
        assert!(file.contains(&"libav"));

        let hardware = capture("source = \"v4l2\"\n[encode]\nencoder = \"v4l2h264enc\"");
        let v4l2 = needed(&hardware);
        assert!(v4l2.contains(&"video4linux2") && !v4l2.contains(&"x264"));
        assert!(!v4l2.contains(&"libav"));
        let encoded = capture("source = \"v4l2\"\nencoded = true");
        assert!(needed(&encoded).contains(&"libav"));
    }

    #[test]
    fn the_whitelist_names_plugins_from_any_directory() {
        assert_eq!(whitelist(&["app", "jpeg"]), "app,jpeg@*");
    }

    #[test]
    fn the_registry_is_cached_per_list_in_the_agents_cache() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |key: &str| {
                vars.iter()
                    .find(|(k, _)| *k == key)
                    .map(|(_, v)| v.to_string())
            }
        };
        let systemd = registry_path("a,b@*", env(&[("CACHE_DIRECTORY", "/var/cache/camagent")]));
        let systemd = systemd.unwrap();
        assert!(systemd.starts_with("/var/cache/camagent"), "{systemd:?}");
        let home = registry_path("a,b@*", env(&[("HOME", "/home/cam")])).unwrap();
        assert!(home.starts_with("/home/cam/.cache/camagent"));
        let other = registry_path("a,c@*", env(&[("HOME", "/home/cam")])).unwrap();
        assert_ne!(home, other);
        assert_eq!(registry_path("a@*", env(&[])), None);
    }
}
