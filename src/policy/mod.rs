//! The privacy policy: which fields may leave the device, for which purpose.
//!
//! Default deny: a purpose the policy does not list sends nothing, and a field a purpose does
//! not list is dropped from its records. The policy is pure data; [`Gate`] applies it.

mod gate;
mod pseudonym;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use gate::{Admitted, Gate, Refusal};
pub use pseudonym::{PseudonymKey, PseudonymKeyError};

/// Purpose of the device-facts record.
pub const DEVICE_ACTIVATION: &str = "device_activation";
/// Purpose of the retained online / offline status and the last will.
pub const DEVICE_STATUS: &str = "device_status";

/// The closed vocabulary of device data fields. A policy naming anything else is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Field {
    /// The board's serial number (device tree, cpuinfo or DMI).
    SerialNumber,
    /// MAC address of the configured network interface.
    MacAddress,
    /// Firmware / OS version (`/etc/os-release`).
    FirmwareVersion,
    /// Hardware model (device tree or DMI).
    Model,
    /// IANA time zone name (`/etc/timezone` or the `/etc/localtime` link).
    Timezone,
    /// Seconds since boot (`/proc/uptime`).
    Uptime,
    /// Whether the agent is connected: `online` or `offline`.
    OnlineStatus,
}

impl Field {
    pub const ALL: [Field; 7] = [
        Field::SerialNumber,
        Field::MacAddress,
        Field::FirmwareVersion,
        Field::Model,
        Field::Timezone,
        Field::Uptime,
        Field::OnlineStatus,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Field::SerialNumber => "serial_number",
            Field::MacAddress => "mac_address",
            Field::FirmwareVersion => "firmware_version",
            Field::Model => "model",
            Field::Timezone => "timezone",
            Field::Uptime => "uptime",
            Field::OnlineStatus => "online_status",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("cannot read policy file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("policy file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("policy file {path}: purpose `{purpose}` is listed twice; merge its fields into one [[purpose]] table")]
    DuplicatePurpose { path: PathBuf, purpose: String },
    #[error(
        "policy file {path}: schema {found} is not supported; this agent reads schema {SCHEMA}"
    )]
    Schema { path: PathBuf, found: u32 },
}

/// The policy file format version this agent reads.
pub const SCHEMA: u32 = 1;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    pub schema: u32,
    pub name: String,
    pub version: String,
    #[serde(default, rename = "purpose")]
    pub purposes: Vec<Purpose>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Purpose {
    pub id: String,
    #[serde(default)]
    pub description: String,
    pub fields: BTreeSet<Field>,
}

impl Policy {
    pub fn load(path: &Path) -> Result<Self, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Self, PolicyError> {
        let policy: Policy = toml::from_str(text).map_err(|e| PolicyError::Parse {
            path: path.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        if policy.schema != SCHEMA {
            return Err(PolicyError::Schema {
                path: path.to_owned(),
                found: policy.schema,
            });
        }
        let mut seen = BTreeSet::new();
        for purpose in &policy.purposes {
            if !seen.insert(purpose.id.as_str()) {
                return Err(PolicyError::DuplicatePurpose {
                    path: path.to_owned(),
                    purpose: purpose.id.clone(),
                });
            }
        }
        Ok(policy)
    }

    pub fn purpose(&self, id: &str) -> Option<&Purpose> {
        self.purposes.iter().find(|p| p.id == id)
    }

    /// Whether `field` may leave the device for purpose `id`.
    pub fn permits(&self, id: &str, field: Field) -> bool {
        self.purpose(id).is_some_and(|p| p.fields.contains(&field))
    }

    /// The purposes that may carry `field`, for people reading `camagent facts`.
    pub fn purposes_for(&self, field: Field) -> Vec<&str> {
        self.purposes
            .iter()
            .filter(|p| p.fields.contains(&field))
            .map(|p| p.id.as_str())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Policy, PolicyError> {
        Policy::parse(text, Path::new("p.toml"))
    }

    const HEAD: &str = "schema = 1\nname = \"t\"\nversion = \"1\"\n";

    #[test]
    fn shipped_default_policy_is_valid() {
        let p = parse(include_str!("../../etc/policy.toml")).unwrap();
        assert!(p.permits(DEVICE_STATUS, Field::OnlineStatus));
        assert!(!p.permits(DEVICE_ACTIVATION, Field::MacAddress));
    }

    #[test]
    fn permits_only_listed_fields_of_listed_purposes() {
        let p = parse(&format!(
            "{HEAD}[[purpose]]\nid = \"device_activation\"\nfields = [\"model\"]\n"
        ))
        .unwrap();
        assert!(p.permits(DEVICE_ACTIVATION, Field::Model));
        assert!(!p.permits(DEVICE_ACTIVATION, Field::SerialNumber));
        assert!(!p.permits("marketing", Field::Model));
    }

    #[test]
    fn unknown_field_is_refused_with_line() {
        let err = parse(&format!(
            "{HEAD}[[purpose]]\nid = \"x\"\nfields = [\"shoe_size\"]\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("shoe_size") && err.contains("line 6"), "{err}");
    }

    #[test]
    fn duplicate_purpose_is_refused() {
        let p = "[[purpose]]\nid = \"x\"\nfields = []\n";
        let err = parse(&format!("{HEAD}{p}{p}")).unwrap_err().to_string();
        assert!(err.contains("`x` is listed twice"), "{err}");
    }

    #[test]
    fn field_names_match_serde_names() {
        for field in Field::ALL {
            let json = serde_json::to_string(&field).unwrap();
            assert_eq!(json, format!("\"{}\"", field.name()));
        }
    }
}
