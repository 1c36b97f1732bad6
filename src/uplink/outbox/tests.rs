//! The outbox on a real directory: order, bounds, damage and recovery.

use super::*;
use crate::policy::Field;
use crate::record::Value;
use std::collections::BTreeMap;

fn record(n: u64) -> Record {
    Record::new(
        Flow::Telemetry,
        BTreeMap::from([(Field::Uptime, Value::Count(n))]),
    )
    .unwrap()
}

fn uptime(r: &Record) -> u64 {
    match r.fields[&Field::Uptime] {
        Value::Count(n) => n,
        _ => unreachable!(),
    }
}

#[test]
fn survives_reopen_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let (mut ob, _) = Outbox::open(dir.path(), 1 << 20).unwrap();
    let seqs: Vec<u64> = (0..5).map(|n| ob.append(&record(n)).unwrap()).collect();
    ob.remove(seqs[0]).unwrap();
    drop(ob);
    let (mut ob, q) = Outbox::open(dir.path(), 1 << 20).unwrap();
    assert!(q.is_empty());
    let mut order = Vec::new();
    let mut cur = None;
    while let Some(seq) = ob.next_after(cur) {
        order.push(uptime(&ob.get(seq).unwrap()));
        cur = Some(seq);
    }
    assert_eq!(order, vec![1, 2, 3, 4]);
    // New entries go after the old ones, never reusing a number.
    assert!(ob.append(&record(9)).unwrap() > seqs[4]);
}

#[test]
fn sequence_never_repeats_after_delivery_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (mut ob, _) = Outbox::open(dir.path(), 1 << 20).unwrap();
    let first = ob.append(&record(1)).unwrap();
    ob.remove(first).unwrap();
    drop(ob);
    let (mut ob, _) = Outbox::open(dir.path(), 1 << 20).unwrap();
    assert!(ob.append(&record(2)).unwrap() > first);
}

#[test]
fn a_damaged_counter_is_recovered_past_every_number_seen() {
    let dir = tempfile::tempdir().unwrap();
    let counter = dir.path().join(COUNTER_FILE);
    let (mut ob, _) = Outbox::open(dir.path(), 1 << 20).unwrap();
    assert_eq!(ob.recover_sequence(None).unwrap(), None, "a fresh outbox");
    let first = ob.append(&record(1)).unwrap();
    ob.remove(first).unwrap();
    drop(ob);
    // A flipped digit still parses as a number; the checksum tells.
    let text = fs::read_to_string(&counter).unwrap().replacen('1', "0", 1);
    let mut last = 700;
    for damage in [text.as_str(), "", "garbage", "12 34 56"] {
        fs::write(&counter, damage).unwrap();
        let (mut ob, _) = Outbox::open(dir.path(), 1 << 20).unwrap();
        let said = ob.recover_sequence(Some(700)).unwrap().expect("recovered");
        assert!(said.contains(&format!("highest seen {last}")), "{said}");
        let next = ob.append(&record(2)).unwrap();
        assert!(next >= last + SEQ_BLOCK, "{damage:?}: {next}");
        last = next;
    }
    // Missing while the log shows numbers used; and a counter behind the log.
    fs::remove_file(&counter).unwrap();
    let (mut ob, _) = Outbox::open(dir.path(), 1 << 20).unwrap();
    assert!(ob
        .recover_sequence(Some(5000))
        .unwrap()
        .unwrap()
        .contains("missing"));
    assert!(ob.append(&record(3)).unwrap() > 5000);
    drop(ob);
    let (mut ob, _) = Outbox::open(dir.path(), 1 << 20).unwrap();
    assert!(ob
        .recover_sequence(Some(99_999))
        .unwrap()
        .unwrap()
        .contains("behind"));
    // A sound counter ahead of the log is left alone; the old format still reads.
    drop(ob);
    fs::write(&counter, "200000\n").unwrap();
    let (mut ob, _) = Outbox::open(dir.path(), 1 << 20).unwrap();
    assert_eq!(ob.recover_sequence(Some(99_999)).unwrap(), None);
}

#[test]
fn full_outbox_refuses_new_and_keeps_old() {
    let dir = tempfile::tempdir().unwrap();
    let size = encode(&record(1)).unwrap().len() as u64;
    let (mut ob, _) = Outbox::open(dir.path(), size * 2).unwrap();
    ob.append(&record(1)).unwrap();
    ob.append(&record(2)).unwrap();
    assert!(matches!(
        ob.append(&record(3)),
        Err(OutboxError::Full { .. })
    ));
    assert_eq!(ob.len(), 2);
}

#[test]
fn corrupt_and_torn_entries_are_quarantined_rest_kept() {
    let dir = tempfile::tempdir().unwrap();
    let (mut ob, _) = Outbox::open(dir.path(), 1 << 20).unwrap();
    let seqs: Vec<u64> = (0..4).map(|n| ob.append(&record(n)).unwrap()).collect();
    drop(ob);
    let flip = dir.path().join(entry_name(seqs[1]));
    let mut bytes = fs::read(&flip).unwrap();
    let last = bytes.len() - 2;
    bytes[last] ^= 0x55;
    fs::write(&flip, bytes).unwrap();
    let torn = dir.path().join(entry_name(seqs[2]));
    let bytes = fs::read(&torn).unwrap();
    fs::write(&torn, &bytes[..bytes.len() / 2]).unwrap();
    fs::write(dir.path().join(".x.rec.tmp"), b"half").unwrap();

    let (ob, q) = Outbox::open(dir.path(), 1 << 20).unwrap();
    assert_eq!(q.len(), 2);
    assert_eq!(ob.len(), 2);
    assert_eq!(ob.next_after(None), Some(seqs[0]));
    assert_eq!(ob.next_after(Some(seqs[0])), Some(seqs[3]));
    assert!(dir
        .path()
        .join("quarantine")
        .join(entry_name(seqs[1]))
        .exists());
    assert!(!dir.path().join(".x.rec.tmp").exists());
}

#[test]
fn alien_and_vanished_entries_never_stop_the_outbox() {
    let dir = tempfile::tempdir().unwrap();
    let (mut ob, _) = Outbox::open(dir.path(), 1 << 20).unwrap();
    let seqs: Vec<u64> = (0..4).map(|n| ob.append(&record(n)).unwrap()).collect();
    drop(ob);
    // A directory named like an entry (EISDIR on read), and a name that is no entry's.
    let dir_entry = dir.path().join(entry_name(seqs[3] + 100));
    fs::create_dir(&dir_entry).unwrap();
    fs::write(dir.path().join("garbage.rec"), b"junk").unwrap();

    let (mut ob, q) = Outbox::open(dir.path(), 1 << 20).unwrap();
    let mut reasons: Vec<&str> = q.iter().map(|q| q.reason.as_str()).collect();
    reasons.sort();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(
        reasons[0].starts_with("not an outbox entry name"),
        "{reasons:?}"
    );
    assert!(reasons[1].starts_with("unreadable"), "{reasons:?}");
    assert!(!dir_entry.exists() && !dir.path().join("garbage.rec").exists());
    assert_eq!(ob.len(), 4);

    // An entry deleted behind the outbox's back is forgotten; the next one is read.
    fs::remove_file(dir.path().join(entry_name(seqs[1]))).unwrap();
    assert_eq!(uptime(&ob.get(seqs[0]).unwrap()), 0);
    assert!(matches!(ob.get(seqs[1]), Err(OutboxError::Vanished(_))));
    assert_eq!(ob.next_after(Some(seqs[0])), Some(seqs[2]));
    assert_eq!(ob.len(), 3);
}

#[test]
fn purge_removes_only_what_it_picks() {
    let dir = tempfile::tempdir().unwrap();
    let (mut ob, _) = Outbox::open(dir.path(), 1 << 20).unwrap();
    ob.append(&record(1)).unwrap();
    ob.append(&Record::status(true)).unwrap();
    ob.append(&record(2)).unwrap();
    let doomed: Vec<u64> = ob
        .queued()
        .filter(|(_, m)| m.flow == Flow::Telemetry)
        .map(|(seq, _)| seq)
        .collect();
    let (gone, errors) = ob.purge(&doomed);
    assert!(errors.is_empty());
    assert_eq!(gone.len(), 2);
    assert_eq!(ob.len(), 1);
    drop(ob);
    let (ob, _) = Outbox::open(dir.path(), 1 << 20).unwrap();
    assert_eq!(ob.len(), 1);
}
