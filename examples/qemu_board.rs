//! Boots the emulated camera board (`board/qemu-virt`) and shows it working against a broker
//! on this host: camagent starting under systemd in the guest, reaching a mutual-TLS
//! mosquitto here through QEMU's user networking, and its first motion alert arriving at a
//! subscriber. Reports boot-to-first-alert time and the agent's resident memory in the guest,
//! and writes them to BENCHMARKS.md.
//!
//! Run through `board/qemu-virt/run`, which builds the image first and boots the board with
//! each camera; `board/qemu-virt/run vivid` (or `file`) boots it with one and records nothing;
//! `board/qemu-virt/run soak [vivid|file] [MINUTES]` keeps the board running with that camera
//! (vivid's V4L2 camera, 30 minutes, unless told) and records the agent's memory, sampled
//! every minute, in BENCHMARKS.md.

#[path = "../benches/common/mod.rs"]
mod common;
#[path = "../tests/support/mod.rs"]
mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::*;

/// Generous: a cold boot under TCG emulation, GStreamer's first plugin scan included.
const LIMIT: Duration = Duration::from_secs(600);

const USAGE: &str = "usage: qemu_board IMAGE_DIR [file|vivid|soak [vivid|file] [MINUTES]]";

/// The board's cameras: the profile it boots with, and what it adds to the image's `/etc`.
#[derive(Clone, Copy, PartialEq)]
enum Camera {
    /// A recorded street scene as H.264, looped (`camagent.toml`).
    File,
    /// The kernel's vivid test driver as `/dev/video0`: raw frames the agent encodes
    /// (`camagent-vivid.toml`); the image's `vivid-scene` unit moves its picture now and then.
    Vivid,
}

impl Camera {
    /// The camera called `arg` on the command line.
    fn named(arg: &str) -> Option<Self> {
        [Camera::File, Camera::Vivid]
            .into_iter()
            .find(|c| c.arg() == arg)
    }

    /// Its name on the command line.
    fn arg(self) -> &'static str {
        match self {
            Camera::File => "file",
            Camera::Vivid => "vivid",
        }
    }

    /// What it shows the agent over a soak.
    fn soaked(self) -> &'static str {
        match self {
            Camera::File => {
                "the recorded street scene (looped: every 80 s the scene ends and its pipeline \
                 starts again)"
            }
            Camera::Vivid => {
                "the kernel's vivid driver as `/dev/video0` (raw frames the agent encodes with \
                 x264enc at 640×360, 10 fps; something moves in front of it for 4 s every 20 s)"
            }
        }
    }
}

/// What one boot showed.
struct Boot {
    first_alert: Duration,
    /// When the first event's clip was whole at the subscriber (asked of the vivid camera).
    clip: Option<Duration>,
    memory: String,
    /// The agent's memory as the guest reported it, once a minute from 45 s after it
    /// started: (resident, private) KiB.
    samples: Vec<(u64, u64)>,
}

fn main() {
    let mut args = std::env::args().skip(1);
    let image = PathBuf::from(args.next().expect(USAGE));
    // One camera alone, to try it: nothing is recorded.
    if let Some(first) = args.next() {
        if first == "soak" {
            let (mut camera, mut minutes) = (Camera::Vivid, 30);
            for arg in args {
                match Camera::named(&arg) {
                    Some(named) => camera = named,
                    None => minutes = arg.parse().expect(USAGE),
                }
            }
            soak(&image, camera, minutes);
        } else {
            boot(&image, Camera::named(&first).expect(USAGE), 1);
        }
        return;
    }
    let file = boot(&image, Camera::File, 1);
    let vivid = boot(&image, Camera::Vivid, 1);
    let clip = vivid.clip.expect("the vivid boot waits for its clip");
    let section = format!(
        "## The emulated board (QEMU)\n\n\
         `board/qemu-virt/run` — {when}, on {cpu}: `qemu-system-arm -M virt` (TCG, cortex-a15, \
         2 vCPUs, 1.5 GiB) booting Debian's armmp kernel into the board image (systemd, \
         GStreamer, the armv7 camagent as a hardened systemd service), against a mutual-TLS \
         mosquitto on the host through QEMU's user networking. Booted twice: with a recorded \
         street scene (H.264, 640×360) as its camera, and with the kernel's vivid driver as \
         `/dev/video0` (raw frames the agent encodes with x264enc at 640×360, 10 fps).\n\n\
         - recorded scene: boot to first alert at the host's subscriber {file_alert:.1} s \
         (kernel, systemd, network, the agent's first GStreamer plugin scan, TLS connect, first \
         event); camagent {file_memory}\n\
         - vivid: boot to first alert {vivid_alert:.1} s, to the event's whole clip {clip:.1} s; \
         camagent {vivid_memory}\n",
        when = humantime::format_rfc3339_seconds(std::time::SystemTime::now()),
        cpu = common::cpu(),
        file_alert = file.first_alert.as_secs_f64(),
        file_memory = file.memory,
        vivid_alert = vivid.first_alert.as_secs_f64(),
        vivid_memory = vivid.memory,
        clip = clip.as_secs_f64(),
    );
    common::update_benchmarks(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("BENCHMARKS.md"),
        "## The emulated board (QEMU)",
        &section,
    );
}

/// Keeps the board running with `camera` for `minutes` and records the agent's memory over
/// them.
fn soak(image: &Path, camera: Camera, minutes: usize) {
    let board = boot(image, camera, minutes + 1);
    assert!(
        board.samples.len() > minutes,
        "the guest reported the agent's memory {} times in {minutes} minutes",
        board.samples.len()
    );
    let mib = |kib: u64| kib as f64 / 1024.0;
    let range = |of: fn(&(u64, u64)) -> u64| {
        let values = board.samples.iter().map(of);
        let (min, max) = (values.clone().min(), values.max());
        format!(
            "{:.1}–{:.1} MiB",
            mib(min.unwrap_or(0)),
            mib(max.unwrap_or(0))
        )
    };
    // Per hour, from the samples after the first five minutes (the pipeline's pools grown).
    let per_hour = |of: fn(&(u64, u64)) -> u64| {
        let points: Vec<(f64, f64)> = board
            .samples
            .iter()
            .enumerate()
            .skip(5)
            .map(|(minute, s)| (minute as f64 / 60.0, mib(of(s))))
            .collect();
        common::slope(&points)
    };
    // One section per camera.
    let heading = format!("## The emulated board's {} camera over", camera.arg());
    let section = format!(
        "{heading} {minutes} minutes\n\n\
         `board/qemu-virt/run soak {arg} {minutes}` — {when}, on {cpu}: the emulated board (QEMU) \
         with {scene} as its camera, the agent's memory as the guest reports it once a minute \
         from 45 s after the agent started, {n} samples:\n\n\
         | | range | least-squares slope from minute 5 |\n|---|---:|---:|\n\
         | resident (VmRSS) | {rss} | {rss_slope:+.2} MiB/hour |\n\
         | private (RssAnon) | {private} | {private_slope:+.2} MiB/hour |\n\n\
         The board's root is an initramfs in RAM, so the shared libraries' pages the agent maps \
         count in its resident memory and cannot be reclaimed; on a root on flash they are \
         file-backed. Private memory is the agent's own.\n",
        when = humantime::format_rfc3339_seconds(std::time::SystemTime::now()),
        cpu = common::cpu(),
        arg = camera.arg(),
        scene = camera.soaked(),
        n = board.samples.len(),
        rss = range(|s| s.0),
        private = range(|s| s.1),
        rss_slope = per_hour(|s| s.0),
        private_slope = per_hour(|s| s.1),
    );
    print!("{section}");
    common::update_benchmarks(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("BENCHMARKS.md"),
        &heading,
        &section,
    );
}

/// Boots the board with `camera`, waits for its first alert (and, with vivid, that event's
/// clip) at a subscriber on this host, and for the guest's first `samples` reports of the
/// agent's memory.
fn boot(image: &Path, camera: Camera, samples: usize) -> Boot {
    let world = World::new();
    let broker = world.broker(false);
    let cloud = Subscriber::connect(&world, broker.port, "cloud", false);
    let identity = provision(&world, broker.port, image, camera);

    let name = match camera {
        Camera::File => "a recorded scene",
        Camera::Vivid => "vivid's /dev/video0",
    };
    println!(
        "booting the board (qemu-system-arm -M virt) with {name} as its camera; broker on \
         host port {}",
        broker.port
    );
    let booted = Instant::now();
    let mut qemu = Command::new("qemu-system-arm")
        .args([
            "-M",
            "virt",
            "-cpu",
            "cortex-a15",
            "-smp",
            "2",
            "-m",
            "1536",
        ])
        .args(["-nographic", "-no-reboot"])
        .arg("-kernel")
        .arg(image.join("vmlinuz"))
        .arg("-initrd")
        .arg(&identity)
        .args(["-append", "console=ttyAMA0 rdinit=/init panic=5 quiet"])
        .args([
            "-netdev",
            "user,id=net0",
            "-device",
            "virtio-net-device,netdev=net0",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("qemu-system-arm must be installed (apt-get install qemu-system-arm)");
    let console = Arc::new(Mutex::new(String::new()));
    let stdout = qemu.stdout.take().unwrap();
    let lines = console.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.contains("camagent") || line.contains("Reached target") {
                println!("  board: {line}");
            }
            lines.lock().unwrap().push_str(&line);
            lines.lock().unwrap().push('\n');
        }
    });

    let alert = wait_for(LIMIT, || {
        cloud
            .on("/alarm")
            .into_iter()
            .find(|m| m.json()["fields"]["event_data"]["phase"] == "start")
    });
    let Some(alert) = alert else {
        let _ = qemu.kill();
        panic!("no alert from the board within {LIMIT:?}");
    };
    let first_alert = booted.elapsed();
    println!("  cloud <- {} ({} bytes)", alert.topic, alert.payload.len());
    let clip = (camera == Camera::Vivid).then(|| {
        let clip = wait_for(LIMIT, || {
            let record = cloud.on("/clip").into_iter().next()?;
            cloud.clip(&record.json()["fields"]["clip"])
        });
        let Some(clip) = clip else {
            let _ = qemu.kill();
            panic!("the board's first clip did not arrive whole within {LIMIT:?}");
        };
        assert_eq!(&clip[4..8], b"ftyp", "an MP4 clip");
        println!("  cloud <- a clip of {} bytes", clip.len());
        booted.elapsed()
    });
    // A report a minute, and the guest's `systemctl` and `grep` under emulation on top.
    let reports = Duration::from_secs(120 + 70 * samples as u64);
    let reported = wait_for(reports, || {
        let text = console.lock().unwrap().clone();
        let rss = fields_kib(&text, "camagent-memory: VmRSS:");
        let private = fields_kib(&text, "camagent-memory: RssAnon:");
        (rss.len().min(private.len()) >= samples).then(|| rss.into_iter().zip(private).collect())
    });
    let text = console.lock().unwrap().clone();
    let _ = qemu.kill();
    let _ = qemu.wait();
    let samples: Vec<(u64, u64)> = reported.unwrap_or_default();

    let first = |prefix: &str| fields_kib(&text, prefix).first().copied();
    let memory = match (
        first("camagent-memory: VmRSS:"),
        first("camagent-memory: VmHWM:"),
        first("camagent-memory: RssAnon:"),
    ) {
        (Some(rss), Some(hwm), Some(private)) => format!(
            "resident {:.1} MiB (peak {:.1} MiB; private {:.1} MiB) 45 s after it started",
            rss as f64 / 1024.0,
            hwm as f64 / 1024.0,
            private as f64 / 1024.0
        ),
        _ => "memory not reported by the guest".into(),
    };
    println!(
        "first alert {:.1} s after QEMU started; {memory}",
        first_alert.as_secs_f64()
    );
    Boot {
        first_alert,
        clip,
        memory,
        samples,
    }
}

/// The per-run part of the image: the broker's port, the TLS identity and the camera,
/// appended to the board's initramfs as a second archive (the kernel unpacks both).
fn provision(world: &World, port: u16, image: &Path, camera: Camera) -> PathBuf {
    let dir = world.path().join("provision");
    let etc = dir.join("etc/camagent");
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::copy(world.pki.ca_file("main"), etc.join("ca.pem")).unwrap();
    std::fs::copy(&world.device.cert, etc.join("device.crt")).unwrap();
    std::fs::copy(&world.device.key, etc.join("device.key")).unwrap();
    let profile = match camera {
        Camera::File => "camagent.toml",
        Camera::Vivid => "camagent-vivid.toml",
    };
    let board = Path::new(env!("CARGO_MANIFEST_DIR")).join("board/qemu-virt");
    let profile = std::fs::read_to_string(board.join(profile)).unwrap();
    if camera == Camera::Vivid {
        let load = dir.join("etc/modules-load.d");
        std::fs::create_dir_all(&load).unwrap();
        std::fs::write(load.join("vivid.conf"), "vivid\n").unwrap();
        let wants = dir.join("etc/systemd/system/multi-user.target.wants");
        std::fs::create_dir_all(&wants).unwrap();
        std::os::unix::fs::symlink(
            "/lib/systemd/system/vivid-scene.service",
            wants.join("vivid-scene.service"),
        )
        .unwrap();
    }
    std::fs::write(
        etc.join("camagent.toml"),
        profile.replace("port = 8883", &format!("port = {port}")),
    )
    .unwrap();
    let extra = world.path().join("provision.cpio.gz");
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "cd {} && find etc | cpio -o -H newc --quiet | gzip -1 > {}",
            dir.display(),
            extra.display()
        ))
        .status()
        .unwrap();
    assert!(status.success());
    let initrd = world.path().join("initrd.cpio.gz");
    let mut joined = std::fs::read(image.join("rootfs.cpio.gz")).unwrap();
    joined.extend(std::fs::read(&extra).unwrap());
    std::fs::write(&initrd, joined).unwrap();
    initrd
}

/// The KiB after `prefix` on each console line that has it, in order.
fn fields_kib(console: &str, prefix: &str) -> Vec<u64> {
    console
        .lines()
        .filter_map(|line| {
            let rest = &line[line.find(prefix)? + prefix.len()..];
            rest.split_whitespace().next()?.parse().ok()
        })
        .collect()
}
