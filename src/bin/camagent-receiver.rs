//! camagent-receiver: the cloud side, for integrators to read and the tests to use. Subscribes
//! to every camagent topic under the prefix, de-duplicates QoS 1 redeliveries by (device,
//! `seq`), writes alert snapshots, reassembles clips from their chunks and verifies them
//! against their manifest's SHA-256. With `--audit POLICY` it reports every field a message
//! carries that the policy does not permit for the purpose the message names.
//!
//! Prints one JSON object a line for each thing it received:
//! `{"type":"alert"|"record"|"manifest"|"clip"|"audit", ...}`.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io::{Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use base64::Engine as _;
use camagent::config::BrokerConfig;
use camagent::policy::{Field, Policy};
use camagent::uplink::upload::{self, Manifest};
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
}

#[derive(Deserialize)]
struct ReceiverConfig {
    broker: BrokerConfig,
}

/// A clip being reassembled.
#[derive(Default)]
struct Assembly {
    manifest: Option<Manifest>,
    /// Chunks that came before the manifest.
    early: BTreeMap<u32, Vec<u8>>,
    have: BTreeSet<u32>,
    done: bool,
}

struct Receiver {
    out: PathBuf,
    audit: Option<Policy>,
    prefix_levels: usize,
    seen: HashSet<(String, u64)>,
    clips: BTreeMap<String, Assembly>,
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
            "cmd" => Ok(()),
            upload::CLIP_DATA_LEVEL => self.on_chunk(payload),
            _ => self.on_record(device, kind, payload),
        }
    }

    fn on_record(&mut self, device: &str, kind: &str, payload: &[u8]) -> anyhow::Result<()> {
        let body: Value = serde_json::from_slice(payload).context("payload is not JSON")?;
        if let Some(policy) = &self.audit {
            audit(policy, kind, &body);
        }
        // QoS 1 may deliver twice; a record's seq is unique per device.
        if let Some(seq) = body["seq"].as_u64() {
            if !self.seen.insert((device.to_owned(), seq)) {
                return Ok(());
            }
        }
        let fields = &body["fields"];
        match kind {
            "alarm" => {
                let event = &fields["event_data"];
                let mut line = json!({
                    "type": "alert",
                    "device": device,
                    "seq": body["seq"],
                    "event_id": event["event_id"],
                    "phase": event["phase"],
                    "time": event["time"],
                });
                if fields["snapshot"]["chunks"].is_u64() {
                    // Too large for one message: its chunks came first.
                    let manifest: Manifest = serde_json::from_value(fields["snapshot"].clone())
                        .context("snapshot manifest")?;
                    line["snapshot"] = json!(self.out.join(format!(
                        "{}.{}",
                        safe_name(&manifest.clip_id),
                        manifest.extension()
                    )));
                    self.on_manifest(manifest)?;
                } else if let Some(data) = fields["snapshot"]["base64"].as_str() {
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
                    serde_json::from_value(fields["clip"].clone()).context("clip manifest")?;
                emit(
                    json!({"type": "manifest", "device": device, "clip_id": manifest.clip_id, "chunks": manifest.chunks}),
                );
                self.on_manifest(manifest)?;
            }
            _ => {
                emit(json!({"type": "record", "device": device, "flow": kind, "seq": body["seq"]}))
            }
        }
        Ok(())
    }

    /// A clip's or snapshot's manifest: chunks that came before it are stored now.
    fn on_manifest(&mut self, manifest: Manifest) -> anyhow::Result<()> {
        let id = manifest.clip_id.clone();
        let assembly = self.clips.entry(id.clone()).or_default();
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
        let (header, data) = upload::parse(payload).map_err(anyhow::Error::msg)?;
        let id = header.clip_id.clone();
        let assembly = self.clips.entry(id.clone()).or_default();
        if assembly.done || assembly.have.contains(&header.index) {
            return Ok(());
        }
        if assembly.manifest.is_none() {
            assembly.early.insert(header.index, data.to_vec());
            return Ok(());
        }
        self.store_chunk(&id, header.index, data)?;
        self.finish_if_complete(&id)
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
            manifest.extension()
        } else {
            "bad"
        };
        let path = self.out.join(format!("{}.{name}", safe_name(id)));
        std::fs::rename(&part, &path)?;
        let kind = if manifest.content_type == "image/jpeg" {
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
fn audit(policy: &Policy, kind: &str, body: &Value) {
    let Some(fields) = body["fields"].as_object() else {
        return;
    };
    let purpose_id = body["purpose"].as_str().unwrap_or_default();
    let permitted: BTreeSet<Field> = match policy.purpose(purpose_id) {
        Some(p) => p.fields.clone(),
        // The agent's built-in flows carry their own record.
        None if kind == "consent_receipt" => BTreeSet::from([Field::ConsentRecord]),
        None if kind == "erasure_confirmation" => BTreeSet::from([Field::ErasureRecord]),
        None => BTreeSet::new(),
    };
    let outside: Vec<&String> = fields
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
