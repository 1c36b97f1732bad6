//! A time zone's UTC offset and DST now, from the zone's own rules in the board's tzdb.
//!
//! The agent's own process may run in UTC (systemd services usually do); the zone the owner
//! configured is what the cloud asks about, so its rules are read from its zoneinfo file
//! rather than taken from the C library's local time.

use std::path::{Path, PathBuf};

/// Where Linux boards keep the compiled tz database.
pub const DEFAULT_ZONEINFO: &str = "/usr/share/zoneinfo";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ZoneError {
    #[error("{0:?} is not an IANA time zone name (like \"Europe/Berlin\")")]
    BadName(String),
    #[error("unknown time zone {name:?}: no {} in the board's tz database", path.display())]
    Unknown { name: String, path: PathBuf },
    #[error("time zone file {}: {reason}", path.display())]
    Damaged { path: PathBuf, reason: String },
}

/// The zone's offset from UTC in seconds and whether DST is in effect, at `unix_time`.
pub fn offset_at(name: &str, zoneinfo: &Path, unix_time: i64) -> Result<(i32, bool), ZoneError> {
    // A name is a relative path under zoneinfo: nothing that could leave it.
    let well_formed = !name.is_empty()
        && !name.starts_with('/')
        && name.split('/').all(|part| {
            !part.is_empty()
                && part != "."
                && part != ".."
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_+-".contains(c))
        });
    if !well_formed {
        return Err(ZoneError::BadName(name.to_owned()));
    }
    let path = zoneinfo.join(name);
    let bytes = std::fs::read(&path).map_err(|_| ZoneError::Unknown {
        name: name.to_owned(),
        path: path.clone(),
    })?;
    let damaged = |reason: String| ZoneError::Damaged {
        path: path.clone(),
        reason,
    };
    let zone = tz::TimeZone::from_tz_data(&bytes).map_err(|e| damaged(e.to_string()))?;
    let now = zone
        .find_local_time_type(unix_time)
        .map_err(|e| damaged(e.to_string()))?;
    Ok((now.ut_offset(), now.is_dst()))
}

/// [`offset_at`] now.
pub fn offset_now(name: &str, zoneinfo: &Path) -> Result<(i32, bool), ZoneError> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    offset_at(name, zoneinfo, now)
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINTER: i64 = 1_767_225_600; // 2026-01-01T00:00:00Z
    const SUMMER: i64 = 1_782_864_000; // 2026-07-01T00:00:00Z

    fn zoneinfo() -> &'static Path {
        Path::new(DEFAULT_ZONEINFO)
    }

    #[test]
    fn offsets_follow_each_zones_own_rules() {
        let at = |name, t| offset_at(name, zoneinfo(), t).unwrap();
        assert_eq!(at("Europe/Berlin", WINTER), (3600, false));
        assert_eq!(at("Europe/Berlin", SUMMER), (7200, true));
        assert_eq!(at("America/New_York", WINTER), (-5 * 3600, false));
        assert_eq!(at("America/New_York", SUMMER), (-4 * 3600, true));
        assert_eq!(at("Asia/Kolkata", SUMMER), (19800, false));
        assert_eq!(at("UTC", SUMMER), (0, false));
    }

    #[test]
    fn unknown_and_malformed_names_are_errors() {
        assert!(matches!(
            offset_at("Mars/Olympus", zoneinfo(), WINTER),
            Err(ZoneError::Unknown { .. })
        ));
        for bad in [
            "../../etc/passwd",
            "/etc/localtime",
            "",
            "Europe//Berlin",
            "a b",
        ] {
            assert_eq!(
                offset_at(bad, zoneinfo(), WINTER),
                Err(ZoneError::BadName(bad.to_owned()))
            );
        }
    }
}
