//! The privacy controller: what a consent change, the passing of time and an erase command
//! ask of the session, decided without I/O from what the gate, the outbox and the ledger
//! hold. The session carries the duties out in the order given (`privacy/mod.rs`).

use crate::policy::consent::{ConsentEvent, Ledger};
use crate::policy::{Flow, Gate, Policy};
use crate::record::Record;
use crate::uplink::outbox::Meta;

/// One thing the session must do.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Duty {
    /// Delete these queued records.
    Purge { seqs: Vec<u64>, why: Purged },
    /// Clip uploads queued before this time (ms since the epoch) go unsent.
    ExpireClips { before_ms: u64 },
    /// Clear the retained messages of every purpose that may no longer run.
    ClearStoppedRetained,
    /// Clear every retained message the device used.
    ClearAllRetained,
    /// Register the offline status as the last will again: its topic changed, or it may no
    /// longer be sent at all.
    RenewWill,
    /// Queue the receipts of these consent changes and mark them receipted.
    Receipts(Vec<ConsentEvent>),
    /// Wipe the owner's data on disk and start new pseudonyms.
    Wipe,
    /// Take in the consent ledger again, and what follows from it.
    ReloadConsent,
    /// Move the command subscription to the device's new id.
    Resubscribe,
    /// Confirm the erase to the cloud under the id it retired (which the cloud knows).
    ConfirmErase { retired: String, issued_ms: u64 },
}

/// Why queued records were deleted unsent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purged {
    /// Their purpose may no longer send (consent withdrawn, an objection).
    Refused,
    /// They waited longer than their purpose's retention.
    Expired,
    /// The owner's data was erased.
    Erased,
}

/// After the gate took in a changed ledger: what may no longer leave goes, a stopped purpose
/// stops at the broker too, and every change not yet acknowledged gets its receipt.
/// `will_topic` is the topic of the last will registered now.
pub(crate) fn consent_changed<'a>(
    gate: &Gate,
    queued: impl IntoIterator<Item = (u64, &'a Meta)>,
    ledger: &Ledger,
    will_topic: Option<&str>,
) -> Vec<Duty> {
    let mut duties = Vec::new();
    let refused: Vec<u64> = queued
        .into_iter()
        .filter(|(_, meta)| gate.check_flow(meta.flow).is_err())
        .map(|(seq, _)| seq)
        .collect();
    if !refused.is_empty() {
        duties.push(Duty::Purge {
            seqs: refused,
            why: Purged::Refused,
        });
    }
    duties.push(Duty::ClearStoppedRetained);
    let offline = gate.admit(&Record::status(false), None).ok();
    if offline.as_ref().map(|o| o.topic()) != will_topic {
        duties.push(Duty::RenewWill);
    }
    let fresh: Vec<ConsentEvent> = ledger
        .events
        .iter()
        .filter(|e| !e.receipted)
        .cloned()
        .collect();
    if !fresh.is_empty() {
        duties.push(Duty::Receipts(fresh));
    }
    duties
}

/// At `now_ms`: records and clips older than their purpose's retention go unsent.
pub(crate) fn retention<'a>(
    policy: &Policy,
    queued: impl IntoIterator<Item = (u64, &'a Meta)>,
    now_ms: u64,
) -> Vec<Duty> {
    let retention_of = |flow| policy.purpose_for_flow(flow).and_then(|p| p.retention);
    let mut duties = Vec::new();
    let expired: Vec<u64> = queued
        .into_iter()
        .filter(|(_, meta)| {
            retention_of(meta.flow)
                .is_some_and(|r| meta.created_ms.saturating_add(r.as_millis() as u64) < now_ms)
        })
        .map(|(seq, _)| seq)
        .collect();
    if !expired.is_empty() {
        duties.push(Duty::Purge {
            seqs: expired,
            why: Purged::Expired,
        });
    }
    if let Some(retention) = retention_of(Flow::Clip) {
        duties.push(Duty::ExpireClips {
            before_ms: now_ms.saturating_sub(retention.as_millis() as u64),
        });
    }
    duties
}

/// A verified erase command, on a device whose id is `retired`: nothing queued leaves, the
/// broker forgets what it retains, the data goes, the device starts new pseudonyms and
/// listens under its new id, and only then is the erase confirmed (after the clearing
/// publishes, under the old id).
pub(crate) fn erase<'a>(
    retired: String,
    issued_ms: u64,
    queued: impl IntoIterator<Item = (u64, &'a Meta)>,
) -> Vec<Duty> {
    let seqs: Vec<u64> = queued.into_iter().map(|(seq, _)| seq).collect();
    let mut duties = Vec::new();
    if !seqs.is_empty() {
        duties.push(Duty::Purge {
            seqs,
            why: Purged::Erased,
        });
    }
    duties.extend([
        Duty::ClearAllRetained,
        Duty::Wipe,
        Duty::ReloadConsent,
        Duty::Resubscribe,
        Duty::ConfirmErase { retired, issued_ms },
    ]);
    duties
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::policy::consent::{uuid, Choice, Via};
    use crate::policy::PseudonymKey;

    const POLICY: &str = r#"
schema = 1
name = "t"
version = "1"
[[purpose]]
id = "alerts"
flow = "alarm"
legal_basis = "contract"
fields = ["event_data"]
retention = "1h"
[[purpose]]
id = "presence"
flow = "status"
legal_basis = "legitimate_interest"
fields = ["online_status"]
[[purpose]]
id = "clips"
flow = "clip"
legal_basis = "consent"
fields = ["clip"]
retention = "1d"
"#;

    fn policy() -> Policy {
        Policy::parse(POLICY, Path::new("t.toml")).unwrap()
    }

    fn gate_with(choices: &[(&str, Choice)]) -> (Gate, Ledger) {
        let policy = policy();
        let mut ledger = Ledger::default();
        for (purpose, choice) in choices {
            ledger
                .record(&policy, purpose, *choice, Via::Local, uuid())
                .unwrap();
        }
        let mut gate = Gate::new(policy, PseudonymKey::from_bytes(&[7; 32]), "t", None);
        gate.set_consent(ledger.clone());
        (gate, ledger)
    }

    fn meta(flow: Flow, created_ms: u64) -> Meta {
        Meta {
            size: 100,
            flow,
            created_ms,
        }
    }

    fn offline_topic(gate: &Gate) -> Option<String> {
        gate.admit(&Record::status(false), None)
            .ok()
            .map(|a| a.topic().to_owned())
    }

    #[test]
    fn a_withdrawal_purges_that_purpose_s_records_only_and_is_receipted() {
        let (gate, mut ledger) =
            gate_with(&[("clips", Choice::Given), ("clips", Choice::Withdrawn)]);
        ledger.events[0].receipted = true;
        let queued = [
            (1, meta(Flow::Alarm, 0)),
            (2, meta(Flow::Clip, 0)),
            (3, meta(Flow::Alarm, 0)),
            (4, meta(Flow::Clip, 0)),
        ];
        let will = offline_topic(&gate);
        let duties = consent_changed(
            &gate,
            queued.iter().map(|(s, m)| (*s, m)),
            &ledger,
            will.as_deref(),
        );
        assert_eq!(
            duties,
            [
                Duty::Purge {
                    seqs: vec![2, 4],
                    why: Purged::Refused
                },
                Duty::ClearStoppedRetained,
                Duty::Receipts(vec![ledger.events[1].clone()]),
            ]
        );
    }

    #[test]
    fn an_objection_to_the_status_purpose_renews_the_will() {
        let (before, _) = gate_with(&[]);
        let will = offline_topic(&before);
        assert!(will.is_some());
        let (gate, ledger) = gate_with(&[("presence", Choice::Withdrawn)]);
        let duties = consent_changed(&gate, [], &ledger, will.as_deref());
        assert!(duties.contains(&Duty::RenewWill), "{duties:?}");
        // Registered as it should be, nothing to renew.
        let duties = consent_changed(&gate, [], &ledger, None);
        assert!(!duties.contains(&Duty::RenewWill), "{duties:?}");
    }

    #[test]
    fn retention_expires_what_waited_too_long_and_keeps_the_rest() {
        let hour = 3_600_000;
        let now = 10 * 24 * hour;
        let queued = [
            (1, meta(Flow::Alarm, now - 2 * hour)),
            (2, meta(Flow::Alarm, now - hour / 2)),
            // No retention for status: kept however old.
            (3, meta(Flow::Status, 0)),
            (4, meta(Flow::Clip, now - 2 * 24 * hour)),
        ];
        let duties = retention(&policy(), queued.iter().map(|(s, m)| (*s, m)), now);
        assert_eq!(
            duties,
            [
                Duty::Purge {
                    seqs: vec![1, 4],
                    why: Purged::Expired
                },
                Duty::ExpireClips {
                    before_ms: now - 24 * hour
                },
            ]
        );
    }

    #[test]
    fn an_erase_confirms_last_under_the_retired_id() {
        let queued = [(5, meta(Flow::Alarm, 0)), (6, meta(Flow::Clip, 0))];
        let duties = erase("old-id".into(), 42, queued.iter().map(|(s, m)| (*s, m)));
        assert_eq!(
            duties,
            [
                Duty::Purge {
                    seqs: vec![5, 6],
                    why: Purged::Erased
                },
                Duty::ClearAllRetained,
                Duty::Wipe,
                Duty::ReloadConsent,
                Duty::Resubscribe,
                Duty::ConfirmErase {
                    retired: "old-id".into(),
                    issued_ms: 42
                },
            ]
        );
        assert_eq!(erase("x".into(), 1, [])[0], Duty::ClearAllRetained);
    }
}
