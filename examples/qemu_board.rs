//! Boots the emulated camera board (`board/qemu-virt`) and shows it working against a broker
//! on this host: camagent starting under systemd in the guest, reaching a mutual-TLS
//! mosquitto here through QEMU's user networking, and its first motion alert arriving at a
//! subscriber. Reports boot-to-first-alert time and the agent's resident memory in the guest,
//! and writes them to BENCHMARKS.md.
//!
//! Run through `board/qemu-virt/run`, which builds the image first.

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

fn main() {
    let image = PathBuf::from(
        std::env::args()
            .nth(1)
            .expect("usage: qemu_board IMAGE_DIR"),
    );
    let world = World::new();
    let broker = world.broker(false);
    let cloud = Subscriber::connect(&world, broker.port, "cloud", false);
    let identity = provision(&world, broker.port, &image);

    println!(
        "booting the board (qemu-system-arm -M virt); broker on host port {}",
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
    let status = cloud.on("/status");
    let memory = wait_for(Duration::from_secs(120), || {
        let text = console.lock().unwrap().clone();
        let rss = field_kib(&text, "camagent-memory: VmRSS:")?;
        let hwm = field_kib(&text, "camagent-memory: VmHWM:")?;
        Some((rss, hwm))
    });
    let _ = qemu.kill();
    let _ = qemu.wait();

    let memory = match memory {
        Some((rss, hwm)) => format!(
            "resident {:.1} MiB (peak {:.1} MiB) 45 s after the agent started",
            rss as f64 / 1024.0,
            hwm as f64 / 1024.0
        ),
        None => "not reported by the guest".into(),
    };
    println!(
        "first alert {:.1} s after QEMU started; agent memory: {memory}; status messages: {}",
        first_alert.as_secs_f64(),
        status.len()
    );
    let section = format!(
        "## The emulated board (QEMU)\n\n\
         `board/qemu-virt/run` — {when}, on {cpu}: `qemu-system-arm -M virt` (TCG, cortex-a15, \
         2 vCPUs, 1.5 GiB) booting Debian's armmp kernel into the board image (systemd, \
         GStreamer, the armv7 camagent as a hardened systemd service reading a recorded street \
         scene as its camera), against a mutual-TLS mosquitto on the host through QEMU's user \
         networking.\n\n\
         - boot to first alert at the host's subscriber: {alert:.1} s (kernel, systemd, \
         network, the agent's first GStreamer plugin scan, TLS connect, first event)\n\
         - camagent in the guest: {memory}\n",
        when = humantime::format_rfc3339_seconds(std::time::SystemTime::now()),
        cpu = common::cpu(),
        alert = first_alert.as_secs_f64(),
    );
    common::update_benchmarks(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("BENCHMARKS.md"),
        "## The emulated board (QEMU)",
        &section,
    );
    drop(broker);
}

/// The per-run part of the image: the broker's port and the TLS identity, appended to the
/// board's initramfs as a second archive (the kernel unpacks both).
fn provision(world: &World, port: u16, image: &Path) -> PathBuf {
    let dir = world.path().join("provision");
    let etc = dir.join("etc/camagent");
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::copy(world.pki.ca_file("main"), etc.join("ca.pem")).unwrap();
    std::fs::copy(&world.device.cert, etc.join("device.crt")).unwrap();
    std::fs::copy(&world.device.key, etc.join("device.key")).unwrap();
    let profile = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("board/qemu-virt/camagent.toml"),
    )
    .unwrap();
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

fn field_kib(console: &str, prefix: &str) -> Option<u64> {
    let line = console.lines().find(|l| l.contains(prefix))?;
    let rest = &line[line.find(prefix)? + prefix.len()..];
    rest.split_whitespace().next()?.parse().ok()
}
