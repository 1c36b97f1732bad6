//! Clips reach the cloud whole under faults: a recorded H.264 scene plays as the camera, its
//! clip travels as a manifest and QoS 1 chunks to a real mutual-TLS mosquitto, and the cloud's
//! subscriber reassembles it. Each test checks the clip arrives byte-identical (the manifest's
//! SHA-256) and the local copy is deleted once the broker acknowledged every chunk.

mod support;

use std::path::{Path, PathBuf};

use support::scenes::*;
use support::*;

const BIN: &str = env!("CARGO_BIN_EXE_camagent");

/// A box crosses the scene from 2 s to 6 s; the clip is about 8 s.
fn scene_clip(dir: &Path) -> PathBuf {
    let scene = Scene {
        seconds: 9,
        brightness: |_| 1.0,
        object: |f| (20..60).contains(&f).then(|| ((f - 20) * 6, 70, 30, 70)),
    };
    encode(dir, "walk", &scene, Codec::H264)
}

/// A snapshot too large for one message (a 16 KiB broker packet limit here) goes in chunks,
/// every one of them ahead of its alert, which carries the snapshot's manifest.
#[test]
fn a_snapshot_too_large_for_one_message_goes_in_chunks_ahead_of_its_alert() {
    let world = World::new();
    let broker = world.broker(false);
    let cloud = cloud_listening(&world, broker.port, false);
    let tmp = tempfile::tempdir().unwrap();
    let mut setup = AgentSetup::new(&world, broker.port);
    setup.broker_extra = "max_packet_bytes = 16384\n".into();
    setup.extra = format!(
        "[outbox]\nchunk_bytes = 8192\n\
         [capture]\nsource = \"file\"\npath = \"{}\"\nloop = false\n\
         [capture.snapshot]\nwidth = 1280\nheight = 720\nquality = 95\n",
        scene_clip(tmp.path()).display()
    );
    let dir = world.path().join("agent");
    let policy = Path::new(env!("CARGO_MANIFEST_DIR")).join("etc/policy.toml");
    let agent = Agent::start(BIN, &setup.write(&world, &dir, &policy));
    let start = |m: &Message| m.json()["fields"]["event_data"]["phase"] == "start";
    let Some(alert) = wait_for(PATIENCE, || cloud.on("/alarm").into_iter().find(start)) else {
        panic!("no alert; log:\n{}", agent.log());
    };
    let manifest = alert.json()["fields"]["snapshot"].clone();
    assert_eq!(manifest["content_type"], "image/jpeg", "{manifest}");
    assert!(manifest["chunks"].as_u64().unwrap() >= 2, "{manifest}");
    let id = manifest["clip_id"].as_str().unwrap();
    // Every chunk of the picture was received before the alert.
    let order = cloud.snapshot();
    let alert_at = order
        .iter()
        .position(|m| m.payload == alert.payload)
        .unwrap();
    let chunks_before = order[..alert_at]
        .iter()
        .filter(|m| {
            m.topic.ends_with("/clip_data")
                && camagent::wire::chunk::parse(&m.payload).is_ok_and(|(h, _)| h.clip_id == id)
        })
        .count() as u64;
    assert!(
        chunks_before >= manifest["chunks"].as_u64().unwrap(),
        "{chunks_before} before the alert"
    );
    let jpeg = cloud.clip(&manifest).expect("the whole snapshot");
    let hex = sha256_hex(&jpeg);
    assert_eq!(hex, manifest["sha256"].as_str().unwrap());
    assert_eq!(&jpeg[..2], &[0xFF, 0xD8]);
}

/// The cloud's subscriber (its session `persistent` or not), once the broker has taken its
/// subscription.
fn cloud_listening(world: &World, port: u16, persistent: bool) -> Subscriber {
    let cloud = Subscriber::connect(world, port, "cloud", persistent);
    wait_for(PATIENCE, || {
        (*cloud.subacks.lock().unwrap() > 0).then_some(())
    })
    .unwrap();
    cloud
}

/// Config for the agent: the scene once, small chunks and an upload cap when given, so the
/// upload takes long enough to be interrupted.
fn setup(world: &World, port: u16, clip: &Path, outbox: &str) -> PathBuf {
    camera_config(world, port, clip, false, &format!("[outbox]\n{outbox}\n"))
}

/// Config whose upload is slow enough to interrupt: the scene's clip in 4 KiB chunks at
/// 40 kbit/s.
fn slow_upload(world: &World, port: u16, tmp: &Path) -> PathBuf {
    setup(
        world,
        port,
        &scene_clip(tmp),
        "chunk_bytes = 4096\nupload_kbps = 40",
    )
}

/// The first clip record's manifest, with its clip id and chunk count.
fn clip_under_way(cloud: &Subscriber, agent: &Agent) -> (serde_json::Value, String, usize) {
    let manifest = manifest(cloud, agent);
    let id = manifest["clip_id"].as_str().unwrap().to_owned();
    let chunks = manifest["chunks"].as_u64().unwrap() as usize;
    (manifest, id, chunks)
}

/// The first clip record's manifest.
fn manifest(cloud: &Subscriber, agent: &Agent) -> serde_json::Value {
    match wait_for(PATIENCE, || cloud.on("/clip").into_iter().next()) {
        Some(m) => m.json()["fields"]["clip"].clone(),
        None => panic!("no clip record; agent log:\n{}", agent.log()),
    }
}

/// Waits for the whole clip at the cloud and checks it against its manifest.
fn received_whole(
    cloud: &Subscriber,
    manifest: &serde_json::Value,
    agent_log: impl Fn() -> String,
) {
    let Some(bytes) = wait_for(PATIENCE * 2, || cloud.clip(manifest)) else {
        panic!("the clip did not arrive whole; agent log:\n{}", agent_log());
    };
    assert_eq!(bytes.len() as u64, manifest["bytes"].as_u64().unwrap());
    let hex = sha256_hex(&bytes);
    assert_eq!(hex, manifest["sha256"].as_str().unwrap(), "byte-identical");
}

fn local_copy_deleted(dir: &Path, manifest: &serde_json::Value, agent: &Agent) {
    let id = manifest["clip_id"].as_str().unwrap();
    let local = dir.join("state/clips").join(format!("{id}.mp4"));
    // The clip goes first, then its progress files: wait for all three, not only the first.
    let files = ["mp4", "upload", "acked"].map(|ext| local.with_extension(ext));
    if wait_for(PATIENCE * 2, || {
        files.iter().all(|f| !f.exists()).then_some(())
    })
    .is_none()
    {
        panic!("local copy not deleted; agent log:\n{}", agent.log());
    }
    for file in &files {
        assert!(!file.exists(), "{} left behind", file.display());
    }
}

#[test]
fn clip_survives_a_broker_restart_mid_upload() {
    let world = World::new();
    let mut broker = world.broker(true);
    // The cloud's session is persistent too, so what the broker accepted while the cloud was
    // reconnecting still reaches it.
    let cloud = Subscriber::connect(&world, broker.port, "cloud", true);
    let tmp = tempfile::tempdir().unwrap();
    let config = slow_upload(&world, broker.port, tmp.path());
    let agent = Agent::start(BIN, &config);
    let (manifest, id, chunks) = clip_under_way(&cloud, &agent);
    assert!(
        chunks >= 20,
        "a clip of {chunks} chunks is too short to interrupt"
    );
    wait_for(PATIENCE, || (cloud.chunk_messages(&id) >= 5).then_some(()))
        .expect("upload under way");
    broker.restart();
    received_whole(&cloud, &manifest, || agent.log());
    local_copy_deleted(&world.path().join("agent"), &manifest, &agent);
}

#[test]
fn an_agent_killed_mid_upload_resumes_where_it_stopped() {
    let world = World::new();
    let broker = world.broker(false);
    let cloud = Subscriber::connect(&world, broker.port, "cloud", false);
    let tmp = tempfile::tempdir().unwrap();
    let config = slow_upload(&world, broker.port, tmp.path());
    let mut agent = Agent::start(BIN, &config);
    let (manifest, id, chunks) = clip_under_way(&cloud, &agent);
    wait_for(PATIENCE, || {
        (cloud.chunk_messages(&id) >= chunks / 2).then_some(())
    })
    .expect("half the clip sent");
    agent.child.kill().unwrap();
    agent.child.wait().unwrap();
    let sent_before = cloud.chunk_messages(&id);
    assert!(
        sent_before < chunks,
        "killed mid-upload ({sent_before} of {chunks})"
    );

    let again = Agent::start(BIN, &config);
    again.wait_log("resuming clip uploads");
    received_whole(&cloud, &manifest, || again.log());
    // Resumed, not restarted: only what was sent since the last saved progress (every eight
    // acknowledgements) and what was in flight goes again.
    let resent = cloud.chunk_messages(&id) - chunks;
    assert!(
        resent <= 8 + camagent::uplink::window::CHUNKS_IN_FLIGHT,
        "{resent} chunks sent twice"
    );
    local_copy_deleted(&world.path().join("agent"), &manifest, &again);
}

/// A clean stop (`systemctl stop`) mid-upload waits for the chunks already in flight and
/// saves the progress: the next start sends no chunk twice.
#[test]
fn a_clean_stop_mid_upload_sends_no_chunk_twice() {
    let world = World::new();
    let broker = world.broker(false);
    let cloud = Subscriber::connect(&world, broker.port, "cloud", false);
    let tmp = tempfile::tempdir().unwrap();
    let config = slow_upload(&world, broker.port, tmp.path());
    let mut agent = Agent::start(BIN, &config);
    let (manifest, id, chunks) = clip_under_way(&cloud, &agent);
    // Stopped at a chunk count that is not a multiple of the eight the agent saves at.
    wait_for(PATIENCE, || (cloud.chunk_messages(&id) >= 5).then_some(()))
        .expect("upload under way");
    assert!(agent.stop().success());
    let sent_before = cloud.chunk_messages(&id);
    assert!(sent_before < chunks, "stopped mid-upload");

    let again = Agent::start(BIN, &config);
    again.wait_log("resuming clip uploads");
    received_whole(&cloud, &manifest, || again.log());
    let sent = cloud.chunk_messages(&id);
    assert_eq!(sent, chunks, "{} chunks sent twice", sent - chunks);
}

/// Upload progress damaged on disk (a flipped digit, a torn file) is never taken for
/// acknowledgements: the upload restarts from its clip, which arrives whole.
#[test]
fn damaged_upload_progress_restarts_the_clip_and_it_arrives_whole() {
    let world = World::new();
    let broker = world.broker(false);
    let cloud = Subscriber::connect(&world, broker.port, "cloud", false);
    let tmp = tempfile::tempdir().unwrap();
    let config = slow_upload(&world, broker.port, tmp.path());
    let mut agent = Agent::start(BIN, &config);
    let (manifest, id, chunks) = clip_under_way(&cloud, &agent);
    let acked = world.path().join(format!("agent/state/clips/{id}.acked"));
    wait_for(PATIENCE, || acked.exists().then_some(())).expect("progress saved");
    agent.child.kill().unwrap();
    agent.child.wait().unwrap();
    // One flipped index: before, the agent believed it and never sent that chunk.
    let text = std::fs::read_to_string(&acked).unwrap();
    std::fs::write(&acked, text.replacen('[', "[9", 1)).unwrap();
    let sent_before = cloud.chunk_messages(&id);

    let again = Agent::start(BIN, &config);
    again.wait_log("restarts from its clip");
    received_whole(&cloud, &manifest, || again.log());
    assert!(
        cloud.chunk_messages(&id) >= sent_before + chunks,
        "the whole clip went again"
    );
    local_copy_deleted(&world.path().join("agent"), &manifest, &again);
}

#[test]
fn uploads_fit_a_broker_that_caps_packets_at_128_kib() {
    let world = World::new();
    let broker = world.broker_with(false, "max_packet_size 131072\n");
    let cloud = Subscriber::connect(&world, broker.port, "cloud", false);
    let tmp = tempfile::tempdir().unwrap();
    // The default chunk size (127 KiB) and a clip of several chunks.
    let config = setup(&world, broker.port, &scene_clip(tmp.path()), "");
    let agent = Agent::start(BIN, &config);
    let manifest = manifest(&cloud, &agent);
    assert!(manifest["chunks"].as_u64().unwrap() >= 2, "{manifest}");
    received_whole(&cloud, &manifest, || agent.log());
    // The alert (with its snapshot) fits too, and arrives once.
    let starts = cloud
        .on("/alarm")
        .iter()
        .filter(|m| m.json()["fields"]["event_data"]["phase"] == "start")
        .count();
    assert_eq!(starts, 1);
    assert!(
        !agent.log().contains("broker connection lost"),
        "{}",
        agent.log()
    );
}

/// The reference receiver (`camagent-receiver`) against a real agent: it writes the alert's
/// snapshot, reassembles and verifies the clip, and in audit mode names a field the given
/// policy does not permit (here: a stricter policy without snapshots in alerts).
#[test]
fn the_reference_receiver_verifies_clips_and_audits_fields() {
    let world = World::new();
    let broker = world.broker(false);
    let tmp = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let strict = tmp.path().join("strict.toml");
    let policy = std::fs::read_to_string(root.join("etc/policy.toml")).unwrap();
    std::fs::write(
        &strict,
        policy.replace(
            "fields = [\"event_data\", \"snapshot\"]",
            "fields = [\"event_data\"]",
        ),
    )
    .unwrap();
    let receiver = ReceiverProcess::start(
        BIN,
        &world,
        broker.port,
        tmp.path(),
        &["--audit".as_ref(), strict.as_os_str()],
    );
    let config = setup(&world, broker.port, &scene_clip(tmp.path()), "");
    let agent = Agent::start(BIN, &config);
    let clip = wait_for(PATIENCE * 2, || receiver.of("clip").into_iter().next());
    let lines = receiver.lines();
    drop(receiver);
    let Some(clip) = clip else {
        panic!(
            "no clip at the receiver: {lines:?}\nagent log:\n{}",
            agent.log()
        );
    };
    assert_eq!(clip["verified"], true, "{clip}");
    let file = std::fs::read(clip["path"].as_str().unwrap()).unwrap();
    let hex = sha256_hex(&file);
    assert_eq!(clip["sha256"], hex);

    let alert = lines
        .iter()
        .find(|l| l["type"] == "alert" && l["phase"] == "start")
        .expect("the alert");
    let jpeg = std::fs::read(alert["snapshot"].as_str().unwrap()).unwrap();
    assert_eq!(&jpeg[..2], &[0xFF, 0xD8], "a JPEG");
    let audits: Vec<&serde_json::Value> = lines.iter().filter(|l| l["type"] == "audit").collect();
    assert!(
        audits
            .iter()
            .any(|a| a["flow"] == "alarm" && a["outside"] == serde_json::json!(["snapshot"])),
        "{audits:?}"
    );
    assert!(
        audits.iter().all(|a| a["flow"] == "alarm"),
        "only the snapshot is outside the strict policy: {audits:?}"
    );
}

/// Clip quota reached during an outage: clips are evicted (here every one: the quota is a
/// byte), each logged and counted in `camagent status`; every alert accepted meanwhile is
/// delivered once the broker is back. (Oldest-first order: `upload::tests`.)
#[test]
fn a_full_clip_quota_evicts_clips_and_never_alerts() {
    let world = World::new();
    // Persistent, with the cloud's session too: what the agent sends as soon as the broker is
    // back reaches the cloud even if it reconnects later.
    let mut broker = world.broker(true);
    let cloud = cloud_listening(&world, broker.port, true);
    let tmp = tempfile::tempdir().unwrap();
    // Three crossings, 10 s apart.
    let scene = Scene {
        seconds: 30,
        brightness: |_| 1.0,
        object: |f| {
            let t = f % 100;
            (20..50).contains(&t).then(|| ((t - 20) * 8, 70, 30, 70))
        },
    };
    let clip = encode(tmp.path(), "three", &scene, Codec::H264);
    let config = setup(&world, broker.port, &clip, "clips_max_bytes = 1");
    broker.stop();
    let agent = Agent::start(BIN, &config);
    let evicted = || agent.log().matches("clip evicted unsent").count();
    if wait_for(PATIENCE * 2, || (evicted() >= 3).then_some(())).is_none() {
        panic!("three clips not evicted; log:\n{}", agent.log());
    }
    // The status file follows within a tick.
    let status = wait_for(PATIENCE, || {
        status_json(BIN, &config).filter(|status| status["clips_evicted"] == 3)
    })
    .expect("camagent status counts three evictions");
    assert_eq!(status["connected"], false);
    assert!(
        status["outbox_records"].as_u64().unwrap() >= 6,
        "alerts wait: {status}"
    );

    broker.restart();
    // Every alert, once after de-duplication by seq, in the order they were accepted.
    let alerts = || {
        let mut seqs: Vec<u64> = cloud
            .on("/alarm")
            .iter()
            .map(|m| m.json()["seq"].as_u64().unwrap())
            .collect();
        seqs.dedup();
        seqs
    };
    if wait_for(PATIENCE, || (alerts().len() == 6).then_some(())).is_none() {
        panic!(
            "{:?}: not 3 starts and 3 ends; log:\n{}",
            alerts(),
            agent.log()
        );
    }
    let seqs = alerts();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "in order: {seqs:?}");
    // The retained status tells the cloud about the evictions too.
    let evictions = |m: &Message| m.json()["fields"]["agent_status"]["clips_evicted"] == 3;
    wait_for(PATIENCE, || cloud.on("/status").into_iter().find(evictions))
        .expect("retained status with the evictions");
    assert!(
        cloud.on("/clip_data").is_empty(),
        "evicted clips never go up"
    );
}

/// Outbox entries torn or corrupted on disk while the agent was down (a power cut, a bad
/// flash page) are quarantined at start and reported; every entry around them is delivered.
#[test]
fn corrupt_outbox_entries_are_quarantined_and_the_rest_delivered() {
    let world = World::new();
    let mut broker = world.broker(false);
    broker.stop();
    let mut setup = AgentSetup::new(&world, broker.port);
    setup.facts_interval = "200ms";
    let dir = world.path().join("agent");
    let policy = Path::new(env!("CARGO_MANIFEST_DIR")).join("etc/policy.toml");
    let config = setup.write(&world, &dir, &policy);
    let mut agent = Agent::start(BIN, &config);
    wait_for(PATIENCE, || (queued_records(&dir) >= 8).then_some(()))
        .expect("records queued offline");
    assert!(agent.stop().success());

    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir.join("state/outbox"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "rec"))
        .collect();
    entries.sort();
    let total = entries.len();
    // One torn in half, one with a flipped byte in the middle.
    let torn = std::fs::read(&entries[2]).unwrap();
    std::fs::write(&entries[2], &torn[..torn.len() / 2]).unwrap();
    let mut flipped = std::fs::read(&entries[5]).unwrap();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x5A;
    std::fs::write(&entries[5], flipped).unwrap();

    broker.restart();
    let cloud = cloud_listening(&world, broker.port, false);
    let agent = Agent::start(BIN, &config);
    let delivered = || {
        let mut seqs: Vec<u64> = cloud
            .on("/activation")
            .iter()
            .filter_map(|m| m.json()["seq"].as_u64())
            .collect();
        seqs.sort();
        seqs.dedup();
        seqs
    };
    // Everything queued but the two bad entries (and what the agent queues meanwhile).
    if wait_for(PATIENCE, || (delivered().len() >= total - 2).then_some(())).is_none() {
        panic!("{:?} of {total}; log:\n{}", delivered(), agent.log());
    }
    let log = agent.log();
    assert_eq!(log.matches("outbox entry quarantined").count(), 2, "{log}");
    assert_eq!(
        std::fs::read_dir(dir.join("state/outbox/quarantine"))
            .unwrap()
            .count(),
        2
    );
    let seqs = delivered();
    assert!(
        seqs.contains(&1) && seqs.contains(&3) && seqs.contains(&4),
        "around them: {seqs:?}"
    );
}

/// The agent with its state directory on a small file system of its own (a tmpfs of `size`
/// in a private mount namespace: a real full disk without root), `filler` bytes of it taken
/// by something else.
fn agent_on_small_disk(config: &Path, size: &str, filler: u64) -> Agent {
    let state = config.parent().unwrap().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let agent = agent_command(BIN);
    let log = config.with_extension("log");
    let child = std::process::Command::new("unshare")
        .args(["-r", "-m", "sh", "-c"])
        .arg(format!(
            "mount -t tmpfs -o size={size} tmpfs \"$0\" && head -c {filler} /dev/zero > \"$0/filler\" && exec \"$@\""
        ))
        .arg(&state)
        .arg(agent.get_program())
        .args(agent.get_args())
        .arg("--config")
        .arg(config)
        .args(["run", "--allow-root"])
        .env("RUST_LOG", "debug")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("unshare (util-linux) must be installed");
    Agent { child, log }
}

/// On a full disk, clips give way to alerts: the agent watches the file system's free space
/// and evicts the oldest clips before an alert could be refused. Before, clips filled the
/// disk within their quota and start alerts were refused. Quotas the disk cannot hold are
/// refused at start, naming the keys.
#[test]
fn on_a_full_disk_clips_give_way_to_alerts() {
    let world = World::new();
    let broker = world.broker(false);
    let cloud = Subscriber::connect(&world, broker.port, "cloud", false);
    let link = Link::new(broker.port);
    link.cut();
    let tmp = tempfile::tempdir().unwrap();
    // A box crosses a short scene, over and over: an event and a clip every loop.
    let scene = Scene {
        seconds: 5,
        brightness: |_| 1.0,
        object: |f| (10..30).contains(&f).then(|| ((f - 10) * 12, 70, 30, 70)),
    };
    let clip = encode(tmp.path(), "loop", &scene, Codec::H264);
    let config = setup(
        &world,
        link.port,
        &clip,
        "max_bytes = 1048576\nclips_max_bytes = 8388608",
    );

    // The quotas (9 MiB) cannot fit a 4 MiB disk: refused at start with the keys named.
    let mut refused = agent_on_small_disk(&config, "4m", 0);
    assert!(!refused.child.wait().unwrap().success());
    let log = refused.log();
    assert!(
        log.contains("outbox.max_bytes")
            && log.contains("outbox.clips_max_bytes")
            && log.contains("lower them"),
        "{log}"
    );

    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("clips_max_bytes = 8388608", "clips_max_bytes = 2097152")
            .replace("loop = false", "loop = true"),
    )
    .unwrap();
    // 4 MiB, 2 MiB of it taken: the clip quota alone would let clips fill the disk.
    let agent = agent_on_small_disk(&config, "4m", 2 << 20);
    let clips_ready = || agent.log().matches("clip ready").count();
    wait_for(PATIENCE * 4, || (clips_ready() >= 6).then_some(()))
        .unwrap_or_else(|| panic!("six clips not recorded; log:\n{}", agent.log()));
    let log = agent.log();
    assert!(
        log.contains("the disk is nearly full"),
        "no clip gave way:\n{log}"
    );
    assert!(!log.contains("record not accepted"), "{log}");

    // Every event's start alert reaches the cloud once the link is back.
    let started: Vec<String> = log
        .lines()
        .filter(|l| l.contains("motion started"))
        .filter_map(|l| {
            l.split("event=")
                .nth(1)?
                .split_whitespace()
                .next()
                .map(str::to_owned)
        })
        .collect();
    assert!(started.len() >= 6, "{log}");
    link.restore();
    let alerted = || -> Vec<String> {
        cloud
            .on("/alarm")
            .iter()
            .filter(|m| m.json()["fields"]["event_data"]["phase"] == "start")
            .filter_map(|m| {
                m.json()["fields"]["event_data"]["event_id"]
                    .as_str()
                    .map(str::to_owned)
            })
            .collect()
    };
    wait_for(PATIENCE * 2, || {
        started
            .iter()
            .all(|id| alerted().contains(id))
            .then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "alerts missing: {started:?} vs {:?}; log:\n{}",
            alerted(),
            agent.log()
        )
    });
}

/// Motion that never stops (one object crossing the scene again and again for 24 s) is cut
/// into clips of at most `max_clip`, each starting on a keyframe and arriving whole, instead
/// of one unfinished file that grows until the event ends.
#[test]
fn continuous_motion_is_cut_into_clips_of_at_most_max_clip() {
    let world = World::new();
    let broker = world.broker(false);
    let cloud = cloud_listening(&world, broker.port, false);
    let tmp = tempfile::tempdir().unwrap();
    let scene = Scene {
        seconds: 24,
        brightness: |_| 1.0,
        object: |f| (10..235).contains(&f).then(|| ((f * 7) % 280, 70, 30, 70)),
    };
    let clip = encode(tmp.path(), "endless", &scene, Codec::H264);
    let mut setup = AgentSetup::new(&world, broker.port);
    setup.extra = format!(
        "[capture]\nsource = \"file\"\npath = \"{}\"\nloop = false\npreroll = \"1s\"\npostroll = \"1s\"\nmax_clip = \"6s\"\n\
         [motion.events]\ngap = \"1s\"\n",
        clip.display()
    );
    let dir = world.path().join("agent");
    let policy = Path::new(env!("CARGO_MANIFEST_DIR")).join("etc/policy.toml");
    let agent = Agent::start(BIN, &setup.write(&world, &dir, &policy));
    // 1 s of pre-roll, 22 s of motion and 1 s of post-roll: four clips at least.
    let Some(records) = wait_for(PATIENCE * 2, || {
        let records = cloud.on("/clip");
        (records.len() >= 4).then_some(records)
    }) else {
        panic!("not four clip records; agent log:\n{}", agent.log());
    };
    let mut ids = std::collections::BTreeSet::new();
    for record in &records {
        let manifest = record.json()["fields"]["clip"].clone();
        let duration = manifest["duration_ms"].as_u64().unwrap();
        assert!(duration <= 6000, "a clip of {duration} ms: {manifest}");
        assert!(
            ids.insert(manifest["clip_id"].as_str().unwrap().to_owned()),
            "{manifest}"
        );
        received_whole(&cloud, &manifest, || agent.log());
    }
}
