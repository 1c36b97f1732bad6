//! Field transforms applied by the gate. Pure functions: a value in, the value that may leave
//! out (or `None` when the input cannot be transformed safely, and so must not leave).

use std::net::IpAddr;

use super::{PseudonymKey, Transform};
use crate::record::Value;

/// Applies `transform` to `value`. `key` and `scope` make pseudonyms.
pub fn apply(
    transform: Transform,
    value: &Value,
    key: &PseudonymKey,
    scope: &str,
) -> Option<Value> {
    match (transform, value) {
        (_, Value::Unavailable(_)) => Some(value.clone()),
        (Transform::Redact, _) => Some(Value::Text("redacted".into())),
        (Transform::Pseudonym, Value::Text(s)) => {
            Some(Value::Text(key.pseudonym(scope, s.as_bytes())))
        }
        (Transform::TruncateIp, Value::Text(s)) => truncate_ip(s).map(Value::Text),
        (Transform::CoarseLocation, Value::Text(s)) => coarse_location(s).map(Value::Text),
        (
            Transform::UtcOffset,
            Value::Zone {
                utc_offset_secs, ..
            },
        ) => Some(Value::Text(format_offset(*utc_offset_secs))),
        _ => None,
    }
}

/// IPv4 keeps its /24 (`192.0.2.0`), IPv6 its /48 (`2001:db8:1::`).
pub fn truncate_ip(text: &str) -> Option<String> {
    match text.trim().parse::<IpAddr>().ok()? {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            Some(format!("{a}.{b}.{c}.0"))
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            Some(std::net::Ipv6Addr::new(s[0], s[1], s[2], 0, 0, 0, 0, 0).to_string())
        }
    }
}

/// `"lat,lon"` rounded to one decimal (about 11 km).
pub fn coarse_location(text: &str) -> Option<String> {
    let (lat, lon) = text.split_once(',')?;
    let lat: f64 = lat.trim().parse().ok()?;
    let lon: f64 = lon.trim().parse().ok()?;
    if !(-90.0..=90.0).contains(&lat) || !(-180.0..=180.0).contains(&lon) {
        return None;
    }
    Some(format!("{lat:.1},{lon:.1}"))
}

/// `3600` → `+01:00`, `-16200` → `-04:30`.
pub fn format_offset(secs: i32) -> String {
    let sign = if secs < 0 { '-' } else { '+' };
    let abs = secs.unsigned_abs();
    format!("{sign}{:02}:{:02}", abs / 3600, abs % 3600 / 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_truncation() {
        assert_eq!(truncate_ip("192.168.1.77").as_deref(), Some("192.168.1.0"));
        assert_eq!(
            truncate_ip("2001:db8:1:2:3::9").as_deref(),
            Some("2001:db8:1::")
        );
        assert_eq!(truncate_ip("not an ip"), None);
    }

    #[test]
    fn coarse_location_rounds_and_validates() {
        assert_eq!(
            coarse_location("48.13743, 11.57549").as_deref(),
            Some("48.1,11.6")
        );
        assert_eq!(coarse_location("91,0"), None);
        assert_eq!(coarse_location("somewhere"), None);
    }

    #[test]
    fn offsets() {
        assert_eq!(format_offset(3600), "+01:00");
        assert_eq!(format_offset(-16200), "-04:30");
        assert_eq!(format_offset(0), "+00:00");
    }

    #[test]
    fn untransformable_values_do_not_leave() {
        let key = PseudonymKey::from_bytes(&[1; 32]);
        assert_eq!(
            apply(Transform::TruncateIp, &Value::Count(3), &key, "s"),
            None
        );
        assert_eq!(
            apply(
                Transform::UtcOffset,
                &Value::Text("Europe/Berlin".into()),
                &key,
                "s"
            ),
            None
        );
    }
}
