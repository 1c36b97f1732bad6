//! Gate output for records just queued, kept in memory so the pump sends them without reading
//! the outbox back or gating them a second time: an alert is gated and base64-encoded once on
//! its way out. An entry holds only while the gate's decisions are unchanged (its
//! [`Gate::epoch`](crate::policy::Gate::epoch)); otherwise, after a restart, or beyond the
//! memory bound, the pump reads the record from the outbox and gates it again.

use std::collections::BTreeMap;

use crate::policy::Admitted;

/// What a queued record needs at the pump: its gate output and the upload it waits for.
#[derive(Debug)]
pub struct Ready {
    pub admitted: Admitted,
    pub awaits: Option<String>,
}

#[derive(Debug)]
struct Entry {
    ready: Ready,
    epoch: u64,
}

/// Gate output by outbox sequence number, within a memory bound.
#[derive(Debug)]
pub struct ReadyRecords {
    entries: BTreeMap<u64, Entry>,
    bytes: usize,
    max_bytes: usize,
}

impl ReadyRecords {
    pub fn new(max_bytes: usize) -> Self {
        Self {
            entries: BTreeMap::new(),
            bytes: 0,
            max_bytes,
        }
    }

    /// Keeps `ready` for record `seq`, gated at `epoch`, if it fits.
    pub fn keep(&mut self, seq: u64, ready: Ready, epoch: u64) {
        let size = ready.admitted.payload().len();
        if self.bytes + size > self.max_bytes {
            return;
        }
        self.bytes += size;
        if let Some(old) = self.entries.insert(seq, Entry { ready, epoch }) {
            self.bytes -= old.ready.admitted.payload().len();
        }
    }

    /// Takes what was kept for `seq`, if the gate is still at the epoch it was gated at.
    pub fn take(&mut self, seq: u64, epoch: u64) -> Option<Ready> {
        let entry = self.entries.remove(&seq)?;
        self.bytes -= entry.ready.admitted.payload().len();
        (entry.epoch == epoch).then_some(entry.ready)
    }

    /// Drops what was kept for records no longer queued.
    pub fn forget(&mut self, seqs: &[u64]) {
        for seq in seqs {
            if let Some(old) = self.entries.remove(seq) {
                self.bytes -= old.ready.admitted.payload().len();
            }
        }
    }

    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::policy::{Gate, Policy, PseudonymKey};
    use crate::vocabulary::ContentType;
    use crate::wire::Manifest;

    /// Real gate output: a clip chunk of 10 bytes with its header.
    fn ready() -> Ready {
        let text = "schema = 1\nname = \"t\"\nversion = \"1\"\n[[purpose]]\nid = \"c\"\n\
                    flow = \"clip\"\nlegal_basis = \"contract\"\nfields = [\"clip\"]\n";
        let policy = Policy::parse(text, Path::new("t")).unwrap();
        let gate = Gate::new(policy, PseudonymKey::from_bytes(&[1; 32]), "t", None);
        let manifest = Manifest {
            clip_id: "c".into(),
            content_type: ContentType::Mp4,
            bytes: 10,
            duration_ms: 0,
            sha256: String::new(),
            chunk_bytes: 10,
            chunks: 1,
            event_ids: Vec::new(),
            fragments: Vec::new(),
            cut_short: false,
        };
        Ready {
            admitted: gate.admit_chunk(&manifest, 0, &[0; 10]).unwrap(),
            awaits: None,
        }
    }

    #[test]
    fn an_entry_is_taken_once_and_only_at_its_epoch() {
        let mut r = ReadyRecords::new(1000);
        r.keep(1, ready(), 0);
        r.keep(2, ready(), 0);
        assert!(r.take(1, 0).is_some());
        assert!(r.take(1, 0).is_none(), "taken once");
        assert!(r.take(2, 1).is_none(), "the gate changed since");
        assert_eq!(r.bytes(), 0);
    }

    #[test]
    fn the_memory_bound_holds_and_forgotten_entries_free_it() {
        let size = ready().admitted.payload().len();
        let mut r = ReadyRecords::new(2 * size + size / 2);
        r.keep(1, ready(), 0);
        r.keep(2, ready(), 0);
        r.keep(3, ready(), 0);
        assert!(r.take(3, 0).is_none(), "over the bound: not kept");
        r.forget(&[1]);
        assert_eq!(r.bytes(), size);
        r.keep(3, ready(), 0);
        assert!(r.take(3, 0).is_some());
    }
}
