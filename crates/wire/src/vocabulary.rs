//! The policy's closed vocabularies: device data fields, agent flows, legal bases, transforms.
//!
//! Fields carry W3C DPV identifiers where DPV has one (`pd:`, `tech:`) and `camagent:` names
//! where it has none, so privacy people can map a profile onto their records of processing.
//!
//! Over 400 lines: each vocabulary comes with its tables (identifiers, descriptions, value
//! kinds), so a new field or flow is added in this one file.

use serde::{Deserialize, Serialize};

macro_rules! vocabulary {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($(#[$vmeta])* $variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The name used in policy files and payloads.
            pub fn name(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.pad(self.name())
            }
        }
    };
}

vocabulary! {
    /// Device data the agent can hold. Anything not in this list cannot be named in a policy.
    Field {
        SerialNumber = "serial_number",
        MacAddress = "mac_address",
        IpAddress = "ip_address",
        Model = "model",
        FirmwareVersion = "firmware_version",
        DeviceName = "device_name",
        Timezone = "timezone",
        Dst = "dst",
        Country = "country",
        Location = "location",
        WifiSsid = "wifi_ssid",
        DeviceCredentials = "device_credentials",
        EmailAlertCredentials = "email_alert_credentials",
        Channel = "channel",
        OnlineStatus = "online_status",
        AgentStatus = "agent_status",
        Configuration = "configuration",
        Uptime = "uptime",
        Logs = "logs",
        UsageStatistics = "usage_statistics",
        EventData = "event_data",
        Snapshot = "snapshot",
        Clip = "clip",
        ConsentRecord = "consent_record",
        ErasureRecord = "erasure_record",
    }
}

impl Field {
    /// Data the agent makes itself (status, events, media, receipts, counters) rather than
    /// reads from the board: no `[device.sources]` entry may name it.
    pub fn made_by_agent(self) -> bool {
        matches!(
            self,
            Field::OnlineStatus
                | Field::AgentStatus
                | Field::Uptime
                | Field::UsageStatistics
                | Field::EventData
                | Field::Snapshot
                | Field::Clip
                | Field::ConsentRecord
                | Field::ErasureRecord
        )
    }

    /// The kinds of value the field may hold (any field may also be unavailable).
    pub fn kinds(self) -> &'static [ValueKind] {
        use ValueKind::*;
        match self {
            Field::Uptime => &[Count],
            // A zone read from the board, or its name given in `[device.sources]`.
            Field::Timezone => &[Zone, Text],
            // The media itself, or the manifest of the chunks it travels in.
            Field::Snapshot | Field::Clip => &[Media, Structured],
            Field::AgentStatus
            | Field::UsageStatistics
            | Field::EventData
            | Field::ConsentRecord
            | Field::ErasureRecord => &[Structured],
            Field::Logs | Field::Configuration => &[Text, Structured],
            _ => &[Text],
        }
    }

    /// Credentials: secret whatever a policy says, so the gate stops their values in any field.
    pub fn is_secret(self) -> bool {
        matches!(
            self,
            Field::DeviceCredentials | Field::EmailAlertCredentials
        )
    }

    /// DPV identifier where DPV has one, else the local `camagent:` name.
    pub fn vocabulary_id(self) -> &'static str {
        match self {
            Field::SerialNumber => "camagent:SerialNumber",
            Field::MacAddress => "pd:MACAddress",
            Field::IpAddress => "pd:IPAddress",
            Field::Model => "camagent:DeviceModel",
            Field::FirmwareVersion => "pd:DeviceSoftware",
            Field::DeviceName => "camagent:DeviceName",
            Field::Timezone => "camagent:TimeZone",
            Field::Dst => "camagent:DaylightSavingTime",
            Field::Country => "pd:Country",
            Field::Location => "pd:Location",
            Field::WifiSsid => "camagent:WifiSSID",
            Field::DeviceCredentials => "pd:Password",
            Field::EmailAlertCredentials => "pd:Password",
            Field::Channel => "camagent:ChannelInfo",
            Field::OnlineStatus => "camagent:OnlineStatus",
            Field::AgentStatus => "camagent:AgentStatus",
            Field::Configuration => "camagent:DeviceConfiguration",
            Field::Uptime => "camagent:Uptime",
            Field::Logs => "camagent:DeviceLogs",
            Field::UsageStatistics => "camagent:UsageStatistics",
            Field::EventData => "camagent:EventData",
            Field::Snapshot => "camagent:Snapshot",
            Field::Clip => "tech:VideoContent",
            Field::ConsentRecord => "camagent:ConsentRecord",
            Field::ErasureRecord => "camagent:ErasureRecord",
        }
    }

    /// What the field is and where the agent gets it.
    pub fn description(self) -> &'static str {
        match self {
            Field::SerialNumber => "the board's serial number (device tree, /proc/cpuinfo, DMI)",
            Field::MacAddress => "MAC address of the configured network interface (sysfs)",
            Field::IpAddress => "the device's IP address ([device.sources])",
            Field::Model => "hardware model (device tree, DMI)",
            Field::FirmwareVersion => "firmware / OS version (/etc/os-release)",
            Field::DeviceName => "the name the owner gave the camera ([device.sources])",
            Field::Timezone => {
                "IANA time zone (/etc/timezone, /etc/localtime) and its UTC offset now (tzdb)"
            }
            Field::Dst => {
                "whether daylight saving time is in effect in the time zone (its tzdb rules)"
            }
            Field::Country => "country the device is set up in ([device.sources])",
            Field::Location => "geographic coordinates \"lat,lon\" ([device.sources])",
            Field::WifiSsid => "name of the Wi-Fi network the device joined ([device.sources])",
            Field::DeviceCredentials => "the device's admin password",
            Field::EmailAlertCredentials => "mail account and password used for e-mail alerts",
            Field::Channel => "video channel information ([device.sources])",
            Field::OnlineStatus => "whether the agent is connected: online / offline",
            Field::AgentStatus => {
                "the agent's state: queued records, clip uploads, evictions, camera, last event"
            }
            Field::Configuration => "device configuration ([device.sources])",
            Field::Uptime => "seconds since boot (/proc/uptime)",
            Field::Logs => "the agent's operational logs",
            Field::UsageStatistics => "counters of the agent's own activity (records, reconnects)",
            Field::EventData => "motion event metadata: id, time, score, regions",
            Field::Snapshot => "JPEG picture taken when motion starts",
            Field::Clip => "MP4 video of a motion event",
            Field::ConsentRecord => "a consent receipt: purposes and their consent state",
            Field::ErasureRecord => "what an erase removed from the device",
        }
    }
}

vocabulary! {
    /// The agent's flows: each kind of record it produces. A purpose claims at most one flow,
    /// and its name is the topic's last level.
    Flow {
        /// Device facts at start and every `agent.facts_interval`.
        Activation = "activation",
        /// Retained online / offline marker and last will.
        Status = "status",
        /// Periodic health: uptime, firmware, connectivity.
        Telemetry = "telemetry",
        /// Counters of the agent's own activity (user experience programmes).
        UsageStatistics = "usage_statistics",
        /// The device's configured location and country, for location-based services.
        Location = "location",
        /// Motion alert with snapshot (capture, when it lands).
        Alarm = "alarm",
        /// Motion clip (capture, when it lands).
        Clip = "clip",
        /// Consent receipts: built in, never named by a policy.
        ConsentReceipt = "consent_receipt",
        /// Erase confirmations: built in, never named by a policy.
        ErasureConfirmation = "erasure_confirmation",
    }
}

impl Flow {
    /// Flows the agent itself governs: always permitted, with fixed fields and basis.
    pub fn is_built_in(self) -> bool {
        self.built_in().is_some()
    }

    /// The purpose the agent declares for a flow it governs itself: its id (reserved, so no
    /// policy can use it) and the one field its records carry. Their basis is the legal
    /// obligation the owner's rights put on the maker.
    pub fn built_in(self) -> Option<BuiltInPurpose> {
        match self {
            Flow::ConsentReceipt => Some(BuiltInPurpose {
                id: "consent_management",
                field: Field::ConsentRecord,
            }),
            Flow::ErasureConfirmation => Some(BuiltInPurpose {
                id: "erasure_confirmation",
                field: Field::ErasureRecord,
            }),
            _ => None,
        }
    }

    /// Status is retained so a subscriber that comes later still learns it.
    pub fn retained(self) -> bool {
        matches!(self, Flow::Status)
    }
}

/// What a value is, for [`Field::kinds`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueKind {
    Text,
    Count,
    Zone,
    Media,
    /// A structured payload the agent makes itself (receipts, events, manifests, counters).
    Structured,
}

/// See [`Flow::built_in`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuiltInPurpose {
    pub id: &'static str,
    pub field: Field,
}

/// The media the agent sends, by its MIME type on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ContentType {
    #[serde(rename = "image/jpeg")]
    Jpeg,
    #[serde(rename = "video/mp4")]
    Mp4,
}

impl ContentType {
    pub fn mime(self) -> &'static str {
        match self {
            Self::Jpeg => "image/jpeg",
            Self::Mp4 => "video/mp4",
        }
    }

    /// The file name extension media of this type is stored under.
    pub fn extension(self) -> &'static str {
        match self {
            Self::Jpeg => "jpg",
            Self::Mp4 => "mp4",
        }
    }
}

impl std::fmt::Display for ContentType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.mime())
    }
}

/// The lawful basis of a purpose (GDPR Art. 6(1)). Policy files may write the short name, the
/// DPV identifier, or the GDPR article.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LegalBasis {
    #[serde(
        alias = "dpv:Consent",
        alias = "GDPR-6-1-a",
        alias = "GDPR Art. 6(1)(a)"
    )]
    Consent,
    #[serde(
        alias = "dpv:Contract",
        alias = "GDPR-6-1-b",
        alias = "GDPR Art. 6(1)(b)"
    )]
    Contract,
    #[serde(
        alias = "dpv:LegalObligation",
        alias = "GDPR-6-1-c",
        alias = "GDPR Art. 6(1)(c)"
    )]
    LegalObligation,
    #[serde(
        alias = "dpv:LegitimateInterest",
        alias = "GDPR-6-1-f",
        alias = "GDPR Art. 6(1)(f)"
    )]
    LegitimateInterest,
}

impl LegalBasis {
    pub fn name(self) -> &'static str {
        match self {
            LegalBasis::Consent => "consent",
            LegalBasis::Contract => "contract",
            LegalBasis::LegalObligation => "legal_obligation",
            LegalBasis::LegitimateInterest => "legitimate_interest",
        }
    }

    pub fn dpv(self) -> &'static str {
        match self {
            LegalBasis::Consent => "dpv:Consent",
            LegalBasis::Contract => "dpv:Contract",
            LegalBasis::LegalObligation => "dpv:LegalObligation",
            LegalBasis::LegitimateInterest => "dpv:LegitimateInterest",
        }
    }

    pub fn gdpr(self) -> &'static str {
        match self {
            LegalBasis::Consent => "GDPR Art. 6(1)(a)",
            LegalBasis::Contract => "GDPR Art. 6(1)(b)",
            LegalBasis::LegalObligation => "GDPR Art. 6(1)(c)",
            LegalBasis::LegitimateInterest => "GDPR Art. 6(1)(f)",
        }
    }

    /// Whether the owner can stop the purpose: withdraw consent or object to the interest.
    pub fn owner_can_stop(self) -> bool {
        matches!(self, LegalBasis::Consent | LegalBasis::LegitimateInterest)
    }
}

vocabulary! {
    /// How a permitted field is changed before it leaves.
    Transform {
        /// Keyed HMAC-SHA256 pseudonym (24 hex digits).
        Pseudonym = "pseudonym",
        /// IPv4 to its /24, IPv6 to its /48.
        TruncateIp = "truncate_ip",
        /// Coordinates rounded to 0.1° (about 11 km).
        CoarseLocation = "coarse_location",
        /// Time zone name reduced to the current UTC offset, e.g. `+01:00`.
        UtcOffset = "utc_offset",
        /// Only the field's presence leaves: the value is replaced by `"redacted"`.
        Redact = "redact",
    }
}

impl Transform {
    /// Whether this transform makes sense for `field`.
    pub fn applies_to(self, field: Field) -> bool {
        match self {
            Transform::Pseudonym => matches!(
                field,
                Field::SerialNumber
                    | Field::MacAddress
                    | Field::DeviceName
                    | Field::WifiSsid
                    | Field::Channel
            ),
            Transform::TruncateIp => field == Field::IpAddress,
            Transform::CoarseLocation => field == Field::Location,
            Transform::UtcOffset => field == Field::Timezone,
            Transform::Redact => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_serde_names() {
        for field in Field::ALL {
            assert_eq!(
                serde_json::to_string(field).unwrap(),
                format!("\"{field}\"")
            );
        }
        for flow in Flow::ALL {
            assert_eq!(serde_json::to_string(flow).unwrap(), format!("\"{flow}\""));
        }
        for t in Transform::ALL {
            assert_eq!(serde_json::to_string(t).unwrap(), format!("\"{t}\""));
        }
    }

    #[test]
    fn policy_documentation_covers_every_vocabulary_entry() {
        let doc = include_str!("../../../docs/POLICY.md");
        for field in Field::ALL {
            let row = format!("| `{field}` | `{}` |", field.vocabulary_id());
            assert!(doc.contains(&row), "docs/POLICY.md lacks {row}");
        }
        for flow in Flow::ALL {
            assert!(
                doc.contains(&format!("| `{flow}` |")),
                "docs/POLICY.md lacks flow {flow}"
            );
        }
        for t in Transform::ALL {
            assert!(
                doc.contains(&format!("| `{t}` |")),
                "docs/POLICY.md lacks transform {t}"
            );
        }
    }

    #[test]
    fn legal_basis_accepts_dpv_and_gdpr_forms() {
        for text in ["\"consent\"", "\"dpv:Consent\"", "\"GDPR-6-1-a\""] {
            assert_eq!(
                serde_json::from_str::<LegalBasis>(text).unwrap(),
                LegalBasis::Consent
            );
        }
        assert!(serde_json::from_str::<LegalBasis>("\"vibes\"").is_err());
    }
}
