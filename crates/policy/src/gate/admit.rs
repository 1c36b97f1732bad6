//! Admission: a record, a clip chunk or a retained clear in, the bytes that may leave out.
//! Only this module and its parent construct [`Admitted`].

use serde_json::{json, Map};

use super::{Admitted, Gate, Refusal};
use crate::record::{rfc3339, Record, Value};
use crate::{transform, Field, Flow, LegalBasis, Secrets};
use camagent_wire::topic;
use camagent_wire::vocabulary::ContentType;
use camagent_wire::{chunk, ChunkHeader, Envelope, Manifest, PAYLOAD_SCHEMA};

impl Gate {
    /// An empty retained publish on `topic`, which a retained record of `purpose` used: it
    /// deletes that record at the broker (after an objection, a withdrawal or an erase). It
    /// carries no data; it is logged like any send, under the legal obligation to stop.
    pub fn admit_clear(&self, topic: &str, purpose: &str) -> Admitted {
        Admitted {
            topic: topic.to_owned(),
            payload: Vec::new(),
            retain: true,
            purpose: purpose.to_owned(),
            legal_basis: LegalBasis::LegalObligation.name(),
            fields: Vec::new(),
            withheld: Vec::new(),
            seq: None,
        }
    }

    /// Admits chunk `index` of a clip, with the decision the clip record gets: the clip
    /// flow's purpose must permit the `clip` field, and the owner's consent must allow it.
    pub fn admit_chunk(
        &self,
        manifest: &Manifest,
        index: u32,
        data: &[u8],
    ) -> Result<Admitted, Refusal> {
        // A snapshot sent in chunks is the alarm purpose's snapshot; anything else a clip.
        let (flow, field) = match manifest.content_type {
            ContentType::Jpeg => (Flow::Alarm, Field::Snapshot),
            ContentType::Mp4 => (Flow::Clip, Field::Clip),
        };
        let rule = self.rule(flow)?;
        if !rule.fields.contains(&field) || self.policy.never_leave.contains(&field) {
            return Err(Refusal::NothingPermitted(rule.id.to_owned()));
        }
        let topic = topic::build(&self.prefix, &self.device_id(flow), topic::CLIP_DATA_LEVEL)?;
        let header = ChunkHeader {
            schema: PAYLOAD_SCHEMA,
            clip_id: manifest.clip_id.clone(),
            index,
            chunks: manifest.chunks,
            offset: Some(manifest.range(index).0),
            purpose: rule.id.to_owned(),
            legal_basis: rule.basis.dpv().to_owned(),
        };
        // The chunk's data is encoder output (pixels), not device text; the parts the gate
        // writes are checked.
        let payload = chunk::frame(&header, data);
        let header_len = payload.len() - data.len();
        if self.secrets.found_in(topic.as_bytes()) || self.secrets.found_in(&payload[..header_len])
        {
            return Err(Refusal::HoldsSecret(rule.id.to_owned()));
        }
        Ok(Admitted {
            topic,
            payload,
            retain: false,
            purpose: rule.id.to_owned(),
            legal_basis: rule.basis.name(),
            fields: vec![field],
            withheld: Vec::new(),
            seq: None,
        })
    }

    /// Applies the policy to `record`. `seq` is the outbox sequence number, if queued.
    pub fn admit(&self, record: &Record, seq: Option<u64>) -> Result<Admitted, Refusal> {
        let rule = self.rule(record.flow)?;
        let key = self.key_for(rule.key, rule.id);

        // The record's own secret fields (a fresh Wi-Fi key) count as well as those known.
        let own = Secrets::from_facts(&record.fields, &self.policy.never_leave);
        let holds_secret = |bytes: &[u8]| self.secrets.found_in(bytes) || own.found_in(bytes);

        let mut values = Map::new();
        let mut unavailable = Vec::new();
        let mut withheld = Vec::new();
        let mut fields = Vec::new();
        for (field, value) in &record.fields {
            if !rule.fields.contains(field) || self.policy.never_leave.contains(field) {
                continue;
            }
            let value = match rule.transforms.and_then(|t| t.get(field)) {
                Some(t) => transform::apply(*t, value, &key, field.name()),
                None => Some(value.clone()),
            };
            let out = match value {
                Some(Value::Text(s)) => json!(s),
                Some(Value::Count(n)) => json!(n),
                Some(Value::Zone { name, .. }) => json!(name),
                Some(Value::Json(v)) => v,
                Some(Value::Media { content_type, data }) => json!({
                    "content_type": content_type,
                    "bytes": data.len(),
                    "base64": crate::record::base64_bytes::encode(&data),
                }),
                // The reason may name local paths; only the fact that it is missing leaves.
                // A value its transform cannot handle safely does not leave either.
                Some(Value::Unavailable(_)) | None => {
                    fields.push(*field);
                    unavailable.push(field.name());
                    continue;
                }
            };
            // Media is searched as the bytes it holds (base64 only re-encodes them).
            let holds = match record.fields.get(field) {
                Some(Value::Media { data, .. }) => holds_secret(data),
                _ => holds_secret(out.to_string().as_bytes()),
            };
            if holds {
                withheld.push(*field);
                continue;
            }
            fields.push(*field);
            values.insert(field.name().into(), out);
        }
        if fields.is_empty() {
            return Err(if withheld.is_empty() {
                Refusal::NothingPermitted(rule.id.to_owned())
            } else {
                Refusal::HoldsSecret(rule.id.to_owned())
            });
        }

        // An erasure is confirmed under the id the erase retired (see `erase::confirmation`).
        let device_id = match (record.flow, record.fields.get(&Field::ErasureRecord)) {
            (Flow::ErasureConfirmation, Some(Value::Json(body))) => body["device_id"]
                .as_str()
                .filter(|id| topic::is_safe_level(id))
                .map_or_else(|| self.device_id(record.flow), str::to_owned),
            _ => self.device_id(record.flow),
        };
        let topic = topic::build(&self.prefix, &device_id, record.flow.name())?;
        let payload = Envelope {
            schema: PAYLOAD_SCHEMA,
            flow: record.flow.name().to_owned(),
            purpose: rule.id.to_owned(),
            legal_basis: rule.basis.dpv().to_owned(),
            time: rfc3339(record.created_ms),
            fields: values,
            seq,
            unavailable: unavailable.iter().map(|f: &&str| (*f).to_owned()).collect(),
            withheld: withheld
                .iter()
                .map(|f: &Field| f.name().to_owned())
                .collect(),
        };
        if holds_secret(topic.as_bytes()) {
            return Err(Refusal::HoldsSecret(rule.id.to_owned()));
        }
        Ok(Admitted {
            topic,
            payload: payload.to_bytes(),
            retain: record.flow.retained(),
            purpose: rule.id.to_owned(),
            legal_basis: rule.basis.name(),
            fields,
            withheld,
            seq,
        })
    }
}
