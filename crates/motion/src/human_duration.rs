//! Durations in config files are written for people: `"30s"`, `"500ms"`, `"1h 30m"`.
//! For `#[serde(with = "crate::human_duration")]`; the agent's config uses it too.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serializer};

pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&humantime::format_duration(*d).to_string())
}

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    humantime::parse_duration(&text).map_err(|e| {
        serde::de::Error::custom(format!(
            "invalid duration {text:?} ({e}); write it like \"30s\", \"500ms\" or \"1h\""
        ))
    })
}

/// For `Option<Duration>` fields: `#[serde(default, with = "crate::human_duration::option")]`.
pub mod option {
    use super::*;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        super::deserialize(d).map(Some)
    }
}
