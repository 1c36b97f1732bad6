//! `[capture]`: where pictures come from, how the agent encodes them, pre- and post-roll,
//! snapshots and privacy masks. The TOML's flat keys are checked into a [`Source`] per
//! preset, so a preset without the keys it needs never reaches the pipeline.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::motion::Rect;

/// Where the H.264 comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// GStreamer's synthetic scene (`pattern = "ball"` moves), encoded by the agent.
    Test { pattern: String },
    /// A recorded clip, played in real time; H.264 passes through, anything else is encoded.
    File { path: PathBuf, looped: bool },
    /// A camera device: H.264 from its hardware encoder (`encoded`), or raw frames the agent
    /// encodes.
    V4l2 { device: PathBuf, encoded: bool },
    /// An existing camera's H.264 RTSP stream; with `detect`, motion is detected on that
    /// second, smaller stream of the camera's and the main one is only recorded (never
    /// decoded).
    Rtsp {
        url: super::RtspUrl,
        detect: Option<super::RtspUrl>,
        /// The jitter buffer of an `rtsps://` camera (GStreamer's rtspsrc receives it);
        /// `rtsp://` cameras come over TCP, in order, and need none.
        latency: Duration,
    },
}

impl Source {
    /// Live sources run on the clock and must never be stalled by analysis; a file is paced
    /// by the sinks instead.
    pub fn is_live(&self) -> bool {
        !matches!(self, Source::File { .. })
    }

    /// Whether motion is detected on a second stream of the camera's (`detect_url`).
    pub fn has_detection_stream(&self) -> bool {
        matches!(
            self,
            Source::Rtsp {
                detect: Some(_),
                ..
            }
        )
    }
}

/// The picture the agent encodes when it encodes (raw sources, or any source with masks).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncodeConfig {
    #[serde(default = "default_width")]
    pub width: u32,
    #[serde(default = "default_height")]
    pub height: u32,
    #[serde(default = "default_fps")]
    pub fps: u32,
    #[serde(default = "default_bitrate")]
    pub bitrate_kbps: u32,
    #[serde(default = "default_keyframe_interval", with = "crate::human_duration")]
    pub keyframe_interval: Duration,
    #[serde(default)]
    pub encoder: Encoder,
}

/// The GStreamer H.264 encoder. Each is tuned for a camera (latency, rate, keyframes) its own
/// way, so only those the agent knows how to tune can be named.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum Encoder {
    /// Software, `x264enc`.
    #[default]
    #[serde(rename = "x264enc")]
    X264,
    /// The board's hardware encoder through V4L2, `v4l2h264enc`.
    #[serde(rename = "v4l2h264enc")]
    V4l2,
}

impl Encoder {
    /// The GStreamer element.
    pub fn element(self) -> &'static str {
        match self {
            Self::X264 => "x264enc",
            Self::V4l2 => "v4l2h264enc",
        }
    }
}

/// The JPEG sent with an alert.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotConfig {
    #[serde(default = "default_snapshot_width")]
    pub width: u32,
    #[serde(default = "default_snapshot_height")]
    pub height: u32,
    /// JPEG quality, 1–100.
    #[serde(default = "default_quality")]
    pub quality: u8,
    /// Which stream the picture comes from, when a detection stream is set.
    #[serde(default)]
    pub stream: SnapshotStream,
}

/// Which of a camera's two streams a snapshot is taken from (`snapshot.stream`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SnapshotStream {
    /// The picture the detector saw move, at once.
    #[default]
    Detection,
    /// The main stream's picture of the same moment: sharper, but decoded from its last
    /// keyframe, so the alert leaves later.
    Main,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "RawCapture")]
pub struct CaptureConfig {
    pub source: Source,
    pub encode: EncodeConfig,
    pub snapshot: SnapshotConfig,
    pub preroll: Duration,
    pub postroll: Duration,
    /// The longest a clip runs; events that chain on go on in the next clip.
    pub max_clip: Duration,
    /// Painted black in every picture before it is encoded, snapshotted or analysed.
    pub privacy_masks: Vec<Rect>,
    /// How much of a source's own H.264 the detector decodes.
    pub decode: Decoding,
    /// GStreamer plugins loaded beside those the pipeline uses (`capture::plugins`): a
    /// board's own decoder or encoder.
    pub plugins: Vec<String>,
}

/// How much of a source's own H.264 the detector decodes (`decode`). Raw sources and sources
/// with privacy masks decode everything whatever it says.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Decoding {
    /// Keyframes, and every unit from the first cue of motion until the scene is still
    /// again (see `capture::on_demand`).
    #[default]
    OnDemand,
    /// Every unit.
    Always,
}

impl std::str::FromStr for Decoding {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "on-demand" => Ok(Self::OnDemand),
            "always" => Ok(Self::Always),
            _ => Err(format!(
                "`{s}` is not a way to decode; use on-demand or always"
            )),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Preset {
    Test,
    File,
    V4l2,
    Rtsp,
}

/// `[capture]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCapture {
    source: Preset,
    pattern: Option<String>,
    path: Option<PathBuf>,
    #[serde(rename = "loop")]
    looped: Option<bool>,
    device: Option<PathBuf>,
    encoded: Option<bool>,
    url: Option<String>,
    detect_url: Option<String>,
    #[serde(default, with = "crate::human_duration::option")]
    latency: Option<Duration>,
    #[serde(default = "default_roll", with = "crate::human_duration")]
    preroll: Duration,
    #[serde(default = "default_roll", with = "crate::human_duration")]
    postroll: Duration,
    #[serde(default = "default_max_clip", with = "crate::human_duration")]
    max_clip: Duration,
    #[serde(default)]
    privacy_masks: Vec<Rect>,
    #[serde(default)]
    decode: Decoding,
    #[serde(default = "default_encode")]
    encode: EncodeConfig,
    #[serde(default = "default_snapshot")]
    snapshot: SnapshotConfig,
    #[serde(default)]
    plugins: Vec<String>,
}

impl TryFrom<RawCapture> for CaptureConfig {
    type Error = String;

    fn try_from(raw: RawCapture) -> Result<Self, String> {
        let only = |key: &str, set: bool, presets: &str| {
            if set {
                Err(format!(
                    "`{key}` applies only to source = {presets}; remove it or change `source`"
                ))
            } else {
                Ok(())
            }
        };
        let preset = raw.source;
        if preset != Preset::Test {
            only("pattern", raw.pattern.is_some(), "\"test\"")?;
        }
        if preset != Preset::File {
            only("path", raw.path.is_some(), "\"file\"")?;
            only("loop", raw.looped.is_some(), "\"file\"")?;
        }
        if preset != Preset::V4l2 {
            only("device", raw.device.is_some(), "\"v4l2\"")?;
            only("encoded", raw.encoded.is_some(), "\"v4l2\"")?;
        }
        if preset != Preset::Rtsp {
            only("url", raw.url.is_some(), "\"rtsp\"")?;
            only("detect_url", raw.detect_url.is_some(), "\"rtsp\"")?;
            only("latency", raw.latency.is_some(), "\"rtsp\"")?;
        }
        let source = match preset {
            Preset::Test => Source::Test {
                pattern: raw.pattern.unwrap_or_else(|| "ball".into()),
            },
            Preset::File => Source::File {
                path: raw.path.ok_or(
                    "source = \"file\" needs `path`: the clip to play, e.g. path = \"/var/lib/camagent/demo.mp4\"",
                )?,
                looped: raw.looped.unwrap_or(true),
            },
            Preset::V4l2 => Source::V4l2 {
                device: raw.device.unwrap_or_else(|| "/dev/video0".into()),
                encoded: raw.encoded.unwrap_or(false),
            },
            Preset::Rtsp => {
                let url = raw.url.ok_or(
                    "source = \"rtsp\" needs `url`, e.g. url = \"rtsp://192.0.2.10:554/stream1\"",
                )?;
                if raw.detect_url.is_some() && !raw.privacy_masks.is_empty() {
                    return Err("`detect_url` cannot be used with `privacy_masks` yet (the \
                        detection stream would need masks of its own); remove one of them"
                        .into());
                }
                Source::Rtsp {
                    url: super::RtspUrl::parse("url", &url)?,
                    detect: raw
                        .detect_url
                        .map(|u| super::RtspUrl::parse("detect_url", &u))
                        .transpose()?,
                    latency: raw.latency.unwrap_or(Duration::from_millis(200)),
                }
            }
        };
        let e = &raw.encode;
        if !is_picture_size(e.width, e.height) {
            return Err(format!(
                "`encode.width` × `encode.height` = {}×{} is not a picture size; use even sizes of at least 16, e.g. 1280×720",
                e.width, e.height
            ));
        }
        if !(1..=60).contains(&e.fps) {
            return Err(format!(
                "`encode.fps` = {} is out of range; use 1 to 60",
                e.fps
            ));
        }
        if e.bitrate_kbps < 64 {
            return Err(format!(
                "`encode.bitrate_kbps` = {} is too low for video; use at least 64 (2000 suits 720p)",
                e.bitrate_kbps
            ));
        }
        if e.keyframe_interval < Duration::from_millis(100) {
            return Err(
                "`encode.keyframe_interval` is below 100ms; use about 1–2 seconds (\"2s\"): pre-roll starts at a keyframe".into(),
            );
        }
        let s = &raw.snapshot;
        if !is_picture_size(s.width, s.height) {
            return Err(format!(
                "`snapshot.width` × `snapshot.height` = {}×{} is not a picture size; use even sizes of at least 16, e.g. 640×360",
                s.width, s.height
            ));
        }
        if !(1..=100).contains(&s.quality) {
            return Err(format!(
                "`snapshot.quality` = {} is out of range; use 1 to 100 (80 is a good default)",
                s.quality
            ));
        }
        if raw.max_clip < raw.preroll + Duration::from_secs(5) {
            return Err(format!(
                "`max_clip` = {:?} leaves too little after the pre-roll ({:?}); use at least 5 s more, e.g. \"1m\"",
                raw.max_clip, raw.preroll
            ));
        }
        for (i, m) in raw.privacy_masks.iter().enumerate() {
            let inside = |v: f32| (0.0..=1.0).contains(&v);
            if !(inside(m.x) && inside(m.y) && m.w > 0.0 && m.h > 0.0)
                || m.x + m.w > 1.0 + f32::EPSILON
                || m.y + m.h > 1.0 + f32::EPSILON
            {
                return Err(format!(
                    "`privacy_masks[{i}]` = {m:?} is not inside the picture; use fractions of the frame, e.g. {{ x = 0.0, y = 0.0, w = 0.25, h = 0.3 }}"
                ));
            }
        }
        for (i, name) in raw.plugins.iter().enumerate() {
            let is_name = name.starts_with(|c: char| c.is_ascii_alphanumeric())
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if !is_name {
                return Err(format!(
                    "`plugins[{i}]` = {name:?} is not a GStreamer plugin name; use the name `gst-inspect-1.0 ELEMENT` shows under Plugin Details, e.g. \"rockchipmpp\""
                ));
            }
        }
        Ok(CaptureConfig {
            source,
            encode: raw.encode,
            snapshot: raw.snapshot,
            preroll: raw.preroll,
            postroll: raw.postroll,
            max_clip: raw.max_clip,
            privacy_masks: raw.privacy_masks,
            decode: raw.decode,
            plugins: raw.plugins,
        })
    }
}

/// Even sides (4:2:0 chroma) of at least 16 pixels.
fn is_picture_size(width: u32, height: u32) -> bool {
    width >= 16 && height >= 16 && width.is_multiple_of(2) && height.is_multiple_of(2)
}

fn default_width() -> u32 {
    1280
}
fn default_height() -> u32 {
    720
}
fn default_fps() -> u32 {
    15
}
fn default_bitrate() -> u32 {
    2000
}
fn default_keyframe_interval() -> Duration {
    Duration::from_secs(2)
}
fn default_snapshot_width() -> u32 {
    640
}
fn default_snapshot_height() -> u32 {
    360
}
fn default_quality() -> u8 {
    80
}
fn default_roll() -> Duration {
    Duration::from_secs(5)
}
fn default_max_clip() -> Duration {
    Duration::from_secs(60)
}
fn default_encode() -> EncodeConfig {
    toml::from_str("").expect("encode defaults")
}
fn default_snapshot() -> SnapshotConfig {
    toml::from_str("").expect("snapshot defaults")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<CaptureConfig, String> {
        toml::from_str::<CaptureConfig>(text).map_err(|e| e.to_string())
    }

    #[test]
    fn presets_get_their_defaults() {
        let c = parse("source = \"file\"\npath = \"/a.mp4\"").unwrap();
        assert_eq!(
            c.source,
            Source::File {
                path: "/a.mp4".into(),
                looped: true
            }
        );
        assert_eq!(
            (c.encode.width, c.encode.height, c.encode.fps),
            (1280, 720, 15)
        );
        assert_eq!((c.snapshot.width, c.snapshot.quality), (640, 80));
        assert_eq!(c.preroll, Duration::from_secs(5));
        let c = parse("source = \"v4l2\"\nencoded = true").unwrap();
        assert_eq!(
            c.source,
            Source::V4l2 {
                device: "/dev/video0".into(),
                encoded: true
            }
        );
    }

    /// The commented-out `[capture]` block of `etc/camagent.toml`, uncommented, is valid.
    #[test]
    fn shipped_example_is_valid() {
        let example = include_str!("../../etc/camagent.toml");
        let start = example.find("# [capture]").unwrap();
        let end = example.find("[motion]").unwrap();
        let block: String = example[start..end]
            .lines()
            .filter_map(|l| l.strip_prefix("# "))
            .filter(|l| {
                l.starts_with('[') || l.split_once(" = ").is_some_and(|(k, _)| !k.contains(' '))
            })
            .map(|l| format!("{l}\n"))
            .collect();
        let table: toml::Table = toml::from_str(&block).unwrap();
        let c: CaptureConfig = table["capture"].clone().try_into().unwrap();
        assert_eq!(c.privacy_masks.len(), 1);
        assert_eq!(c.encode.encoder, Encoder::X264);
        assert_eq!(c.snapshot.quality, 80);
        assert_eq!(c.plugins, ["rockchipmpp"]);
    }

    #[test]
    fn errors_name_the_key_and_the_fix() {
        let cases = [
            ("source = \"file\"", "needs `path`"),
            (
                "source = \"test\"\npath = \"/x\"",
                "`path` applies only to source = \"file\"",
            ),
            (
                "source = \"rtsp\"\nurl = \"http://x\"",
                "write it as rtsp://",
            ),
            (
                "source = \"rtsp\"\nurl = \"rtsp://cam/main\"\ndetect_url = \"rtsp:/cam\"",
                "`detect_url` is not an RTSP address",
            ),
            (
                "source = \"file\"\npath = \"/x\"\ndetect_url = \"rtsp://cam/sub\"",
                "`detect_url` applies only to source = \"rtsp\"",
            ),
            (
                "source = \"rtsp\"\nurl = \"rtsp://cam/main\"\ndetect_url = \"rtsp://cam/sub\"\n\
                 privacy_masks = [{ x = 0.0, y = 0.0, w = 0.2, h = 0.1 }]",
                "`detect_url` cannot be used with `privacy_masks`",
            ),
            (
                "source = \"test\"\n[snapshot]\nquality = 0",
                "`snapshot.quality`",
            ),
            ("source = \"test\"\n[encode]\nwidth = 15", "`encode.width`"),
            ("source = \"test\"\nmax_clip = \"8s\"", "`max_clip`"),
            (
                "source = \"test\"\nprivacy_masks = [{ x = 0.9, y = 0.0, w = 0.2, h = 0.1 }]",
                "`privacy_masks[0]`",
            ),
            ("source = \"usb\"", "unknown variant `usb`"),
            (
                "source = \"test\"\n[encode]\nencoder = \"openh264enc\"",
                "expected `x264enc` or `v4l2h264enc`",
            ),
            (
                "source = \"test\"\n[snapshot]\nsize = 3",
                "unknown field `size`",
            ),
            (
                "source = \"test\"\n[snapshot]\nstream = \"sub\"",
                "expected `detection` or `main`",
            ),
            (
                "source = \"test\"\nplugins = [\"libav@*\"]",
                "`plugins[0]` = \"libav@*\" is not a GStreamer plugin name",
            ),
        ];
        for (text, want) in cases {
            let err = parse(text).unwrap_err();
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }
}
