//! camagent-receiver: the cloud side, for integrators to read and the tests to use. Subscribes
//! to every camagent topic under the prefix, de-duplicates QoS 1 redeliveries by (device,
//! `seq`), writes alert snapshots, reassembles clips from their chunks and verifies them
//! against their manifest's SHA-256. With `--audit POLICY` it reports every field a message
//! carries that the policy does not permit for the purpose the message names.
//!
//! Prints one JSON object a line for each thing it received:
//! `{"type":"alert"|"record"|"manifest"|"clip"|"clip_progress"|"clip_stalled"|"audit"|"orphan_dropped", ...}`.
//!
//! A clip streamed while it is recorded is written in place as its chunks come, playable from
//! its start as it grows. With `--command-key` it confirms each clip it verified to the device
//! and asks for the chunks of a clip that stalled (signed commands, see `confirm`). Chunks
//! without an offset that come before their manifest are held in memory, within a byte budget
//! and for a limited time: chunks whose manifest never comes are dropped, oldest first, and
//! reported.

#![deny(unsafe_code)]

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use base64::Engine as _;
use camagent::config::BrokerConfig;
use camagent::policy::{Field, Policy};
use camagent::vocabulary::Flow;
use camagent::wire::{topic, Envelope, Manifest};
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
    /// Confirm each clip verified here, and ask for the chunks of a stalled one, with
    /// commands signed by this Ed25519 key (PKCS#8 DER; its public half is the devices'
    /// `commands.verify_key`).
    #[arg(long)]
    command_key: Option<PathBuf>,
}

#[derive(Deserialize)]
struct ReceiverConfig {
    broker: BrokerConfig,
}

struct Receiver {
    out: PathBuf,
    audit: Option<Policy>,
    prefix_levels: usize,
    seen: HashSet<(String, u64)>,
    clips: BTreeMap<String, Assembly>,
    orphans: OrphanLimits,
    confirmer: Option<Confirmer>,
    /// Commands to publish to devices: topic and payload.
    replies: Vec<(String, Vec<u8>)>,
}

mod clips;
mod confirm;

use confirm::Confirmer;

use clips::{Assembly, OrphanLimits};

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
        confirmer: match &args.command_key {
            Some(path) => Some(Confirmer::load(path, &b.topic_prefix)?),
            None => None,
        },
        replies: Vec::new(),
    };
    let filter = format!("{}/#", b.topic_prefix);
    while let Ok(event) = connection.recv() {
        match event {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                client.try_subscribe(&filter, QoS::AtLeastOnce)?;
                clean_next(&mut connection, false);
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                if let Err(e) = receiver.on_message(&p.topic, &p.payload) {
                    emit(json!({"type": "error", "topic": p.topic, "error": format!("{e:#}")}));
                }
            }
            Ok(_) => {}
            Err(e) => {
                eprintln!("camagent-receiver: {e}; reconnecting");
                // Over the size limit: the broker would redeliver it at every reconnect of
                // the persistent session; a clean one drops it.
                if camagent::uplink::mqtt::oversized_v311(&e).is_some() {
                    clean_next(&mut connection, true);
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        }
        // Every event, pings at least, is a moment to look for stalled clips.
        receiver.chase_stalled();
        for (topic, payload) in receiver.replies.drain(..) {
            if let Err(e) = client.try_publish(&topic, QoS::AtLeastOnce, false, payload) {
                eprintln!("camagent-receiver: cannot publish to {topic}: {e}");
            }
        }
    }
    Ok(())
}

/// Whether the next connection starts a clean session.
fn clean_next(connection: &mut rumqttc::Connection, clean: bool) {
    connection.eventloop.mqtt_options.set_clean_session(clean);
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
            topic::CLIP_DATA_LEVEL => self.on_chunk(device, payload),
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
                    self.on_manifest(device, manifest)?;
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
                self.on_manifest(device, manifest)?;
            }
            _ => emit(json!({"type": "record", "device": device, "flow": kind, "seq": body.seq})),
        }
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
