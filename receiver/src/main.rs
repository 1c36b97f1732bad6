//! camagent-receiver: the cloud side, for integrators to read and the tests to use. Subscribes
//! to every camagent topic under the prefix, de-duplicates QoS 1 redeliveries by (device,
//! `seq`), writes alert snapshots, reassembles clips from their chunks and verifies them
//! against their manifest's SHA-256. With `--audit POLICY` it reports every field a message
//! carries that the policy does not permit for the purpose the message names.
//!
//! Prints one JSON object a line for each thing it received:
//! `{"type":"alert"|"record"|"manifest"|"clip"|"audit"|"orphan_dropped", ...}`.
//!
//! Chunks that come before their manifest are held in memory, within a byte budget and for a
//! limited time: chunks whose manifest never comes are dropped, oldest first, and reported.

#![deny(unsafe_code)]

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io::{Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use base64::Engine as _;
use camagent::config::BrokerConfig;
use camagent::policy::{Field, Policy};
use camagent::vocabulary::{ContentType, Flow};
use camagent::wire::{chunk, topic, Envelope, Manifest};
use clap::Parser;
use rumqttc::{Client, Event, MqttOptions, Packet, QoS, Transport};
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Parser)]
#[command(
    version,
    about = "Receives what camagent devices send: alerts, snapshots, clips"
)]
struct Args {
    /// TOML file with a `[broker]` table, as in camagent's config (this side's identity).
    #[arg(long)]
    config: PathBuf,
    /// Where snapshots and clips are written.
    #[arg(long)]
    out: PathBuf,
    /// Report fields outside this policy.
    #[arg(long)]
    audit: Option<PathBuf>,
    /// MQTT client id (the session is persistent, so nothing is missed across restarts).
    #[arg(long, default_value = "camagent-receiver")]
    client_id: String,
    /// Memory for chunks whose manifest has not come yet, in MiB.
    #[arg(long, default_value_t = 64)]
    orphan_max_mib: u64,
    /// How long chunks wait for their manifest, in seconds.
    #[arg(long, default_value_t = 600)]
    orphan_ttl_secs: u64,
}

#[derive(Deserialize)]
struct ReceiverConfig {
    broker: BrokerConfig,
}

/// A clip being reassembled.
struct Assembly {
    manifest: Option<Manifest>,
    /// Chunks that came before the manifest.
    early: BTreeMap<u32, Vec<u8>>,
    have: BTreeSet<u32>,
    done: bool,
    /// When its first chunk or manifest came.
    since: Instant,
}

impl Assembly {
    fn new() -> Self {
        Self {
            manifest: None,
            early: BTreeMap::new(),
            have: BTreeSet::new(),
            done: false,
            since: Instant::now(),
        }
    }

    fn early_bytes(&self) -> usize {
        self.early.values().map(Vec::len).sum()
    }
}

/// What chunks without a manifest may hold.
struct OrphanLimits {
    max_bytes: usize,
    ttl: Duration,
}

struct Receiver {
    out: PathBuf,
    audit: Option<Policy>,
    prefix_levels: usize,
    seen: HashSet<(String, u64)>,
    clips: BTreeMap<String, Assembly>,
    orphans: OrphanLimits,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let text = std::fs::read_to_string(&args.config)
        .with_context(|| format!("reading {}", args.config.display()))?;
    let config: ReceiverConfig =
        toml::from_str(&text).with_context(|| format!("{}", args.config.display()))?;
    let audit = match &args.audit {
        Some(path) => Some(Policy::load(path)?),
        None => None,
    };
    std::fs::create_dir_all(&args.out)?;
    let b = &config.broker;
    let tls = camagent::uplink::tls::client_config(b)?;
    let mut options = MqttOptions::new(&args.client_id, b.host.clone(), b.port);
    options
        .set_keep_alive(b.keep_alive)
        .set_clean_session(false)
        .set_max_packet_size(b.max_packet_bytes * 2, b.max_packet_bytes * 2)
        .set_transport(Transport::tls_with_config(
            rumqttc::TlsConfiguration::Rustls(tls),
        ));
    let (client, mut connection) = Client::new(options, 64);
    let mut receiver = Receiver {
        out: args.out,
        audit,
        prefix_levels: b.topic_prefix.split('/').count(),
        seen: HashSet::new(),
        clips: BTreeMap::new(),
        orphans: OrphanLimits {
            max_bytes: usize::try_from(args.orphan_max_mib << 20).unwrap_or(usize::MAX),
            ttl: Duration::from_secs(args.orphan_ttl_secs),
        },
    };
    let filter = format!("{}/#", b.topic_prefix);
    for event in connection.iter() {
        match event {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                client.try_subscribe(&filter, QoS::AtLeastOnce)?;
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                if let Err(e) = receiver.on_message(&p.topic, &p.payload) {
                    emit(json!({"type": "error", "topic": p.topic, "error": format!("{e:#}")}));
                }
            }
            Ok(_) => {}
            Err(e) => {
                eprintln!("camagent-receiver: {e}; reconnecting");
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }
    Ok(())
}

fn emit(line: Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

impl Receiver {
    fn on_message(&mut self, topic: &str, payload: &[u8]) -> anyhow::Result<()> {
        let levels: Vec<&str> = topic.split('/').collect();
        let (Some(device), Some(kind)) = (
            levels.get(self.prefix_levels),
            levels.get(self.prefix_levels + 1),
        ) else {
            return Ok(());
        };
        match *kind {
            topic::COMMAND_LEVEL => Ok(()),
            topic::CLIP_DATA_LEVEL => self.on_chunk(payload),
            _ => self.on_record(device, kind, payload),
        }
    }

    fn on_record(&mut self, device: &str, kind: &str, payload: &[u8]) -> anyhow::Result<()> {
        let body: Envelope =
            serde_json::from_slice(payload).context("payload is not a record envelope")?;
        if let Some(policy) = &self.audit {
            audit(policy, kind, &body);
        }
        // QoS 1 may deliver twice; a record's seq is unique per device.
        if let Some(seq) = body.seq {
            if !self.seen.insert((device.to_owned(), seq)) {
                return Ok(());
            }
        }
        // A field the record lacks reads as null (indexing a `Map` itself would panic).
        let fields = |name: &str| body.fields.get(name).unwrap_or(&Value::Null);
        match kind {
            "alarm" => {
                let event = fields("event_data");
                let mut line = json!({
                    "type": "alert",
                    "device": device,
                    "seq": body.seq,
                    "event_id": event["event_id"],
                    "phase": event["phase"],
                    "time": event["time"],
                });
                if fields("snapshot")["chunks"].is_u64() {
                    // Too large for one message: its chunks came first.
                    let manifest: Manifest = serde_json::from_value(fields("snapshot").clone())
                        .context("snapshot manifest")?;
                    line["snapshot"] = json!(self.out.join(format!(
                        "{}.{}",
                        safe_name(&manifest.clip_id),
                        manifest.content_type.extension()
                    )));
                    self.on_manifest(manifest)?;
                } else if let Some(data) = fields("snapshot")["base64"].as_str() {
                    let jpeg = base64::engine::general_purpose::STANDARD
                        .decode(data)
                        .map_err(|e| anyhow::anyhow!("snapshot: {e}"))?;
                    let id = event["event_id"].as_str().unwrap_or("snapshot");
                    let path = self.out.join(format!("{}.jpg", safe_name(id)));
                    std::fs::write(&path, jpeg)?;
                    line["snapshot"] = json!(path);
                }
                emit(line);
            }
            "clip" => {
                let manifest: Manifest =
                    serde_json::from_value(fields("clip").clone()).context("clip manifest")?;
                emit(
                    json!({"type": "manifest", "device": device, "clip_id": manifest.clip_id, "chunks": manifest.chunks}),
                );
                self.on_manifest(manifest)?;
            }
            _ => emit(json!({"type": "record", "device": device, "flow": kind, "seq": body.seq})),
        }
        Ok(())
    }

    /// A clip's or snapshot's manifest: chunks that came before it are stored now.
    fn on_manifest(&mut self, manifest: Manifest) -> anyhow::Result<()> {
        let id = manifest.clip_id.clone();
        let assembly = self.clips.entry(id.clone()).or_insert_with(Assembly::new);
        if assembly.manifest.is_some() {
            return Ok(());
        }
        assembly.manifest = Some(manifest);
        let early = std::mem::take(&mut assembly.early);
        for (index, data) in early {
            self.store_chunk(&id, index, &data)?;
        }
        self.finish_if_complete(&id)
    }

    fn on_chunk(&mut self, payload: &[u8]) -> anyhow::Result<()> {
        let (header, data) = chunk::parse(payload)?;
        let id = header.clip_id.clone();
        let assembly = self.clips.entry(id.clone()).or_insert_with(Assembly::new);
        if assembly.done || assembly.have.contains(&header.index) {
            return Ok(());
        }
        if assembly.manifest.is_none() {
            assembly.early.insert(header.index, data.to_vec());
            self.drop_orphans();
            return Ok(());
        }
        self.store_chunk(&id, header.index, data)?;
        self.finish_if_complete(&id)
    }

    /// Drops chunks whose manifest has not come in time, then the oldest such chunks while
    /// they hold more than their budget.
    fn drop_orphans(&mut self) {
        let mut orphans: Vec<(Instant, String, usize)> = self
            .clips
            .iter()
            .filter(|(_, a)| a.manifest.is_none())
            .map(|(id, a)| (a.since, id.clone(), a.early_bytes()))
            .collect();
        orphans.sort();
        let mut held: usize = orphans.iter().map(|(_, _, bytes)| bytes).sum();
        for (since, id, bytes) in orphans {
            let reason = if since.elapsed() > self.orphans.ttl {
                "no manifest in time"
            } else if held > self.orphans.max_bytes {
                "over the memory budget for chunks without a manifest"
            } else {
                continue;
            };
            held -= bytes;
            if let Some(a) = self.clips.remove(&id) {
                emit(
                    json!({"type": "orphan_dropped", "clip_id": id, "chunks": a.early.len(), "bytes": bytes, "reason": reason}),
                );
            }
        }
    }

    fn part_path(&self, id: &str) -> PathBuf {
        self.out.join(format!(".{}.part", safe_name(id)))
    }

    fn store_chunk(&mut self, id: &str, index: u32, data: &[u8]) -> anyhow::Result<()> {
        let path = self.part_path(id);
        let assembly = self.clips.get_mut(id).context("unknown clip")?;
        let Some(manifest) = &assembly.manifest else {
            bail!("chunk before manifest");
        };
        let (start, end) = manifest.range(index);
        if index >= manifest.chunks || data.len() as u64 != end - start {
            bail!("chunk {index} of clip {id} does not match its manifest");
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .open(&path)?;
        file.seek(SeekFrom::Start(start))?;
        file.write_all(data)?;
        assembly.have.insert(index);
        Ok(())
    }

    fn finish_if_complete(&mut self, id: &str) -> anyhow::Result<()> {
        let part = self.part_path(id);
        let assembly = self.clips.get_mut(id).context("unknown clip")?;
        let Some(manifest) = &assembly.manifest else {
            return Ok(());
        };
        if assembly.done || assembly.have.len() as u32 != manifest.chunks {
            return Ok(());
        }
        assembly.done = true;
        let bytes = std::fs::read(&part)?;
        let digest = ring::digest::digest(&ring::digest::SHA256, &bytes);
        let sha256: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        let verified = sha256 == manifest.sha256 && bytes.len() as u64 == manifest.bytes;
        let name = if verified {
            manifest.content_type.extension()
        } else {
            "bad"
        };
        let path = self.out.join(format!("{}.{name}", safe_name(id)));
        std::fs::rename(&part, &path)?;
        let kind = if manifest.content_type == ContentType::Jpeg {
            "snapshot"
        } else {
            "clip"
        };
        emit(json!({
            "type": kind,
            "clip_id": id,
            "bytes": bytes.len(),
            "sha256": sha256,
            "verified": verified,
            "path": path,
            "event_ids": manifest.event_ids,
        }));
        Ok(())
    }
}

/// Reports the fields of `body` the policy does not permit for the purpose it names.
fn audit(policy: &Policy, kind: &str, body: &Envelope) {
    let purpose_id = body.purpose.as_str();
    let permitted: BTreeSet<Field> = match policy.purpose(purpose_id) {
        Some(p) => p.fields.clone(),
        // The agent's built-in flows carry their own record.
        None => Flow::ALL
            .iter()
            .filter(|flow| flow.name() == kind)
            .filter_map(|flow| flow.built_in())
            .map(|built_in| built_in.field)
            .collect(),
    };
    let outside: Vec<&String> = body
        .fields
        .keys()
        .filter(|name| {
            let field = serde_json::from_value::<Field>(json!(name)).ok();
            field.is_none_or(|f| !permitted.contains(&f) || policy.never_leave.contains(&f))
        })
        .collect();
    if !outside.is_empty() {
        emit(json!({"type": "audit", "flow": kind, "purpose": purpose_id, "outside": outside}));
    }
}

/// Clip and event ids are UUIDs; anything else is reduced to a safe file name.
fn safe_name(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receiver(max_bytes: usize, ttl: Duration) -> Receiver {
        Receiver {
            out: std::env::temp_dir(),
            audit: None,
            prefix_levels: 1,
            seen: HashSet::new(),
            clips: BTreeMap::new(),
            orphans: OrphanLimits { max_bytes, ttl },
        }
    }

    fn chunk(clip: &str, index: u32, bytes: usize) -> Vec<u8> {
        let header = camagent::wire::ChunkHeader {
            schema: 1,
            clip_id: clip.into(),
            index,
            chunks: 100,
            purpose: "p".into(),
            legal_basis: "dpv:Contract".into(),
        };
        chunk::frame(&header, &vec![0; bytes])
    }

    fn held(r: &Receiver) -> usize {
        r.clips.values().map(Assembly::early_bytes).sum()
    }

    #[test]
    fn chunks_without_a_manifest_stay_within_their_budget_oldest_dropped_first() {
        let mut r = receiver(10_000, Duration::from_secs(3600));
        for clip in ["a", "b", "c"] {
            for i in 0..4 {
                r.on_chunk(&chunk(clip, i, 1000)).unwrap();
            }
        }
        assert_eq!(held(&r), 8000, "a's 4000 bytes made room");
        assert!(!r.clips.contains_key("a"), "the oldest orphan goes first");
        assert!(r.clips.contains_key("c"));
        for i in 0..100 {
            r.on_chunk(&chunk("d", i, 1000)).unwrap();
            assert!(held(&r) <= 10_000);
        }
    }

    #[test]
    fn chunks_whose_manifest_never_comes_are_dropped_in_time() {
        let mut r = receiver(usize::MAX, Duration::ZERO);
        r.on_chunk(&chunk("a", 0, 10)).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        r.on_chunk(&chunk("b", 0, 10)).unwrap();
        assert!(!r.clips.contains_key("a"));
    }
}
