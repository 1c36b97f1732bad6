//! Topics: `<prefix>/<device-id>/<kind>`, within AWS IoT Core's limits (≤ 7 slashes,
//! ≤ 256 bytes) and free of MQTT wildcards.

pub const MAX_BYTES: usize = 256;
/// The level of clip chunks (beside the clip flow's own, which carries the manifest).
pub const CLIP_DATA_LEVEL: &str = "clip_data";
/// The level where signed commands for a device arrive.
pub const COMMAND_LEVEL: &str = "cmd";
pub const MAX_SLASHES: usize = 7;
/// Levels the agent itself adds after the prefix: device id, kind and up to two more.
const AGENT_LEVELS: usize = 4;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    #[error("topic {0:?} is longer than {MAX_BYTES} bytes")]
    TooLong(String),
    #[error("topic {0:?} has more than {MAX_SLASHES} slashes")]
    TooDeep(String),
    #[error("topic level {0:?} is empty or holds a character other than letters, digits, '-', '_' or '.'")]
    BadLevel(String),
}

/// Letters, digits, `-`, `_`, `.`: safe in any broker's topic and in file names.
pub fn is_safe_level(level: &str) -> bool {
    !level.is_empty()
        && level.len() <= 64
        && level
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Checks a configured prefix, leaving room for the levels the agent appends.
pub fn check_prefix(prefix: &str) -> Result<(), String> {
    let levels: Vec<&str> = prefix.split('/').collect();
    if let Some(bad) = levels.iter().find(|l| !is_safe_level(l)) {
        return Err(format!("level {bad:?} of {prefix:?} is empty or has a character that is not a letter, digit, '-', '_' or '.'"));
    }
    if levels.len() - 1 + AGENT_LEVELS > MAX_SLASHES {
        return Err(format!("{prefix:?} has {} levels, leaving too few of the {MAX_SLASHES} slashes a topic may have", levels.len()));
    }
    Ok(())
}

pub fn build(prefix: &str, device_id: &str, kind: &str) -> Result<String, TopicError> {
    for level in [device_id, kind] {
        if !is_safe_level(level) {
            return Err(TopicError::BadLevel(level.to_owned()));
        }
    }
    let topic = format!("{prefix}/{device_id}/{kind}");
    if topic.len() > MAX_BYTES {
        return Err(TopicError::TooLong(topic));
    }
    if topic.matches('/').count() > MAX_SLASHES {
        return Err(TopicError::TooDeep(topic));
    }
    Ok(topic)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_three_level_topic() {
        assert_eq!(
            build("acme/cams", "SN1", "facts").unwrap(),
            "acme/cams/SN1/facts"
        );
    }

    #[test]
    fn refuses_wildcards_and_separators_in_levels() {
        for id in ["a+b", "#", "a/b", "", "sp ace"] {
            assert!(build("p", id, "facts").is_err(), "{id:?}");
        }
    }

    #[test]
    fn prefix_depth_is_bounded() {
        assert!(check_prefix("a/b/c").is_ok());
        assert!(check_prefix("a/b/c/d/e").is_err());
        assert!(check_prefix("a//b").is_err());
    }
}
