//! The retained topics this device has published to, so that an objection, a withdrawal or an
//! erase can clear them at the broker.
//!
//! A retained message outlives the connection that sent it: without this list, the broker
//! would go on handing the status of a purpose the owner objected to (or the serial number's
//! status after an erase) to every new subscriber. A topic is cleared by an empty retained
//! publish; it leaves the list once the broker acknowledges that.
//!
//! The list lives beside the state it describes and survives `erase` (which needs it), until
//! each topic on it is cleared.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Entry {
    /// The purpose whose record was retained there.
    purpose: String,
    /// Waiting for an empty retained publish to be acknowledged.
    clearing: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("retained-topic list {}", path.display())]
pub struct RetainedError {
    path: PathBuf,
    #[source]
    source: std::io::Error,
}

#[derive(Debug)]
pub struct RetainedTopics {
    path: PathBuf,
    topics: BTreeMap<String, Entry>,
}

impl RetainedTopics {
    /// Loads the list. A damaged one is reported and started afresh: the topics it named can
    /// no longer be cleared by the device, which the error says.
    pub fn open(path: PathBuf) -> (Self, Option<RetainedError>) {
        let (topics, error) = match crate::durable::read_sealed_json(&path) {
            Ok(topics) => (topics, None),
            Err(e) if e.is_not_found() => (BTreeMap::new(), None),
            Err(e) => (BTreeMap::new(), Some(std::io::Error::other(e))),
        };
        let error = error.map(|source| RetainedError {
            path: path.clone(),
            source,
        });
        (Self { path, topics }, error)
    }

    /// Notes a retained publish of `purpose` on `topic`; writes the list only when it changes.
    pub fn used(&mut self, topic: &str, purpose: &str) -> Result<(), RetainedError> {
        let entry = Entry {
            purpose: purpose.to_owned(),
            clearing: false,
        };
        if self.topics.get(topic) == Some(&entry) {
            return Ok(());
        }
        self.topics.insert(topic.to_owned(), entry);
        self.save()
    }

    /// Marks for clearing every topic of a purpose `stopped` says may no longer run; returns
    /// how many were newly marked.
    pub fn clear_where(&mut self, stopped: impl Fn(&str) -> bool) -> Result<usize, RetainedError> {
        let mut marked = 0;
        for entry in self.topics.values_mut() {
            if !entry.clearing && stopped(&entry.purpose) {
                entry.clearing = true;
                marked += 1;
            }
        }
        if marked > 0 {
            self.save()?;
        }
        Ok(marked)
    }

    /// Topics waiting to be cleared, with their purpose.
    pub fn to_clear(&self) -> impl Iterator<Item = (&str, &str)> {
        self.topics
            .iter()
            .filter(|(_, e)| e.clearing)
            .map(|(t, e)| (t.as_str(), e.purpose.as_str()))
    }

    /// The broker acknowledged the empty retained publish on `topic`.
    pub fn cleared(&mut self, topic: &str) -> Result<(), RetainedError> {
        if self.topics.get(topic).is_some_and(|e| e.clearing) {
            self.topics.remove(topic);
            return self.save();
        }
        Ok(())
    }

    fn save(&self) -> Result<(), RetainedError> {
        let error = |source| RetainedError {
            path: self.path.clone(),
            source,
        };
        if self.topics.is_empty() {
            return match std::fs::remove_file(&self.path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(error(e)),
                _ => Ok(()),
            };
        }
        let bytes = serde_json::to_vec_pretty(&self.topics).map_err(|e| error(e.into()))?;
        crate::durable::write_sealed(&self.path, &bytes).map_err(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_are_kept_until_their_clearing_is_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        let (mut list, error) = RetainedTopics::open(dir.path().join("retained.json"));
        assert!(error.is_none());
        list.used("p/SN1/status", "service").unwrap();
        list.used("p/ab12/status", "service").unwrap();
        list.used("p/cd34/status", "other").unwrap();
        assert_eq!(list.clear_where(|p| p == "service").unwrap(), 2);
        assert_eq!(list.clear_where(|p| p == "service").unwrap(), 0);

        // A restart finds the same work.
        let (mut list, _) = RetainedTopics::open(dir.path().join("retained.json"));
        let waiting: Vec<_> = list.to_clear().map(|(t, _)| t.to_owned()).collect();
        assert_eq!(waiting, ["p/SN1/status", "p/ab12/status"]);
        list.cleared("p/SN1/status").unwrap();
        list.cleared("p/cd34/status").unwrap(); // not being cleared: stays
        let (list, _) = RetainedTopics::open(dir.path().join("retained.json"));
        assert_eq!(list.to_clear().count(), 1);
        assert_eq!(list.topics.len(), 2);
    }

    #[test]
    fn a_damaged_list_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("retained.json"), b"{not json").unwrap();
        let (list, error) = RetainedTopics::open(dir.path().join("retained.json"));
        assert!(error.unwrap().to_string().contains("retained.json"));
        assert_eq!(list.to_clear().count(), 0);
    }
}
