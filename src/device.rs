//! Device facts read from where a Linux board keeps them.
//!
//! Each fact has default places to look (device tree, sysfs, `/etc`); a board that keeps a
//! fact elsewhere names the source in `[device]`. A fact that cannot be read is reported as
//! [`Value::Unavailable`] with the reason — never guessed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::policy::Field;
use crate::record::Value;

/// Where one fact comes from: a file (whole, or one `KEY=VALUE` / `Key : value` line of it),
/// or a fixed value for boards that bake it into their config.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Source {
    pub file: Option<PathBuf>,
    pub key: Option<String>,
    pub value: Option<String>,
}

/// `[device]`: the network interface whose MAC identifies the board, and where each fact
/// comes from when the defaults do not fit (`[device.sources]`, keyed by field name).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FactSources {
    #[serde(default = "default_interface")]
    pub interface: String,
    #[serde(default = "default_net_class_dir")]
    pub net_class_dir: PathBuf,
    #[serde(default = "default_uptime_file")]
    pub uptime_file: PathBuf,
    /// The compiled tz database the zone's offset and DST are read from.
    #[serde(default = "default_zoneinfo_dir")]
    pub zoneinfo_dir: PathBuf,
    #[serde(default)]
    pub sources: BTreeMap<Field, Source>,
}

impl Default for FactSources {
    fn default() -> Self {
        Self {
            interface: default_interface(),
            net_class_dir: default_net_class_dir(),
            uptime_file: default_uptime_file(),
            zoneinfo_dir: default_zoneinfo_dir(),
            sources: BTreeMap::new(),
        }
    }
}

fn default_interface() -> String {
    "eth0".into()
}
fn default_net_class_dir() -> PathBuf {
    "/sys/class/net".into()
}
fn default_uptime_file() -> PathBuf {
    "/proc/uptime".into()
}
fn default_zoneinfo_dir() -> PathBuf {
    crate::timezone::DEFAULT_ZONEINFO.into()
}

fn file(path: &str) -> Source {
    Source {
        file: Some(path.into()),
        ..Source::default()
    }
}

fn keyed(path: &str, key: &str) -> Source {
    Source {
        key: Some(key.into()),
        ..file(path)
    }
}

/// The places tried, in order, when config does not name one.
fn default_sources(field: Field) -> Vec<Source> {
    match field {
        Field::SerialNumber => vec![
            file("/proc/device-tree/serial-number"),
            file("/sys/firmware/devicetree/base/serial-number"),
            keyed("/proc/cpuinfo", "Serial"),
            file("/sys/class/dmi/id/product_serial"),
        ],
        Field::Model => vec![
            file("/proc/device-tree/model"),
            file("/sys/class/dmi/id/product_name"),
        ],
        Field::FirmwareVersion => vec![
            keyed("/etc/os-release", "VERSION_ID"),
            keyed("/etc/os-release", "PRETTY_NAME"),
        ],
        _ => Vec::new(),
    }
}

/// Facts read without configuration; any other fact is read only from a configured source.
const DEFAULT_FACTS: [Field; 6] = [
    Field::SerialNumber,
    Field::Model,
    Field::FirmwareVersion,
    Field::Timezone,
    Field::Dst,
    Field::MacAddress,
];

impl FactSources {
    /// Reads every fact now. Cheap: a handful of small files.
    pub fn read(&self) -> BTreeMap<Field, Value> {
        let mut facts = BTreeMap::new();
        for field in DEFAULT_FACTS.iter().chain(self.sources.keys()) {
            facts.entry(*field).or_insert_with(|| self.read_one(*field));
        }
        facts.insert(Field::Uptime, read_uptime(&self.uptime_file));
        facts
    }

    /// Reads one fact: from its configured source alone if there is one, else the defaults.
    pub fn read_one(&self, field: Field) -> Value {
        if field != Field::Timezone {
            if let Some(source) = self.sources.get(&field) {
                return read_source(source);
            }
        }
        match field {
            Field::MacAddress => self.read_mac(),
            Field::Timezone => match self.zone_now() {
                Ok((name, utc_offset_secs, _)) => Value::Zone {
                    name,
                    utc_offset_secs,
                },
                Err(reason) => Value::Unavailable(reason),
            },
            Field::Dst => match self.zone_now() {
                Ok((_, _, dst)) => Value::Text(if dst { "on" } else { "off" }.into()),
                Err(reason) => Value::Unavailable(reason),
            },
            Field::Uptime => read_uptime(&self.uptime_file),
            field => first_readable(&default_sources(field)),
        }
    }

    /// The configured zone (its source, else `/etc/timezone`, else the `/etc/localtime`
    /// link) with its UTC offset and DST now, by the zone's own tzdb rules. A zone the
    /// database does not know is not reported as if it were one.
    fn zone_now(&self) -> Result<(String, i32, bool), String> {
        let name = match self.sources.get(&Field::Timezone) {
            Some(source) => read_source(source),
            None => match first_readable(&[file("/etc/timezone")]) {
                Value::Unavailable(reason) => zone_from_localtime_link(Path::new("/etc/localtime"))
                    .map_or_else(
                        || {
                            Value::Unavailable(format!(
                                "{reason}; /etc/localtime is not a zoneinfo link"
                            ))
                        },
                        Value::Text,
                    ),
                found => found,
            },
        };
        let name = match name {
            Value::Text(name) => name,
            Value::Unavailable(reason) => return Err(reason),
            other => return Err(format!("not a zone name: {other}")),
        };
        let (offset, dst) =
            crate::timezone::offset_now(&name, &self.zoneinfo_dir).map_err(|e| e.to_string())?;
        Ok((name, offset, dst))
    }

    fn read_mac(&self) -> Value {
        let path = self.net_class_dir.join(&self.interface).join("address");
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let mac = text.trim().to_ascii_lowercase();
                if is_mac(&mac) {
                    Value::Text(mac)
                } else {
                    Value::Unavailable(format!("{} holds {mac:?}, not a MAC", path.display()))
                }
            }
            Err(e) => Value::Unavailable(format!("{}: {e}", path.display())),
        }
    }
}

fn first_readable(sources: &[Source]) -> Value {
    let mut reasons = Vec::new();
    for source in sources {
        match read_source(source) {
            Value::Unavailable(reason) => reasons.push(reason),
            known => return known,
        }
    }
    Value::Unavailable(reasons.join("; "))
}

fn read_source(source: &Source) -> Value {
    if let Some(value) = &source.value {
        return Value::Text(value.clone());
    }
    let Some(path) = &source.file else {
        return Value::Unavailable("source names neither `file` nor `value`".into());
    };
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) => return Value::Unavailable(format!("{}: {e}", path.display())),
    };
    // Device-tree strings end in NUL; sysfs and /etc files in a newline.
    let text = String::from_utf8_lossy(&bytes);
    let found = match &source.key {
        None => Some(
            text.trim_matches(|c: char| c == '\0' || c.is_whitespace())
                .to_owned(),
        ),
        Some(key) => lookup_key(&text, key),
    };
    match found {
        Some(v) if !v.is_empty() => Value::Text(v),
        Some(_) => Value::Unavailable(format!("{} is empty", path.display())),
        None => Value::Unavailable(format!(
            "{} has no {:?} line",
            path.display(),
            source.key.as_deref().unwrap_or_default()
        )),
    }
}

/// Finds `KEY=VALUE` (os-release, quotes removed) or `Key : value` (cpuinfo).
fn lookup_key(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once('=').or_else(|| line.split_once(':'))?;
        (k.trim() == key).then(|| v.trim().trim_matches('"').trim_matches('\'').to_owned())
    })
}

fn zone_from_localtime_link(link: &Path) -> Option<String> {
    let target = std::fs::read_link(link).ok()?;
    let target = target.to_string_lossy();
    let (_, zone) = target.split_once("zoneinfo/")?;
    (!zone.is_empty()).then(|| zone.to_owned())
}

fn read_uptime(path: &Path) -> Value {
    let parsed = std::fs::read_to_string(path)
        .map_err(|e| e.to_string())
        .and_then(|text| {
            text.split_whitespace()
                .next()
                .and_then(|s| s.parse::<f64>().ok())
                .ok_or_else(|| "no seconds value".to_owned())
        });
    match parsed {
        Ok(secs) => Value::Count(secs as u64),
        Err(e) => Value::Unavailable(format!("{}: {e}", path.display())),
    }
}

fn is_mac(s: &str) -> bool {
    s.len() == 17
        && s.split(':').count() == 6
        && s.split(':')
            .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn board() -> (tempfile::TempDir, FactSources) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        std::fs::create_dir_all(p.join("net/eth0")).unwrap();
        std::fs::write(p.join("net/eth0/address"), "AA:BB:cc:dd:ee:01\n").unwrap();
        std::fs::write(p.join("serial-number"), b"CAM12345\0").unwrap();
        std::fs::write(
            p.join("os-release"),
            "NAME=\"CamOS\"\nVERSION_ID=\"2.4.1\"\n",
        )
        .unwrap();
        std::fs::write(p.join("uptime"), "4242.17 8000.00\n").unwrap();
        let src = |name: &str| file(p.join(name).to_str().unwrap());
        let sources = FactSources {
            net_class_dir: p.join("net"),
            uptime_file: p.join("uptime"),
            sources: BTreeMap::from([
                (Field::SerialNumber, src("serial-number")),
                (
                    Field::Model,
                    Source {
                        value: Some("Cam-1".into()),
                        ..Source::default()
                    },
                ),
                (
                    Field::FirmwareVersion,
                    keyed(p.join("os-release").to_str().unwrap(), "VERSION_ID"),
                ),
                (Field::Timezone, src("timezone")),
            ]),
            ..FactSources::default()
        };
        (dir, sources)
    }

    #[test]
    fn reads_each_fact_from_its_source() {
        let (_dir, sources) = board();
        let facts = sources.read();
        assert_eq!(facts[&Field::SerialNumber], Value::Text("CAM12345".into()));
        assert_eq!(
            facts[&Field::MacAddress],
            Value::Text("aa:bb:cc:dd:ee:01".into())
        );
        assert_eq!(facts[&Field::FirmwareVersion], Value::Text("2.4.1".into()));
        assert_eq!(facts[&Field::Model], Value::Text("Cam-1".into()));
        assert_eq!(facts[&Field::Uptime], Value::Count(4242));
    }

    #[test]
    fn missing_fact_is_unavailable_with_reason_not_invented() {
        let (_dir, sources) = board();
        let facts = sources.read();
        match &facts[&Field::Timezone] {
            Value::Unavailable(reason) => assert!(reason.contains("timezone"), "{reason}"),
            other => panic!("invented a timezone: {other:?}"),
        }
    }

    #[test]
    fn configured_zone_carries_an_offset() {
        let (dir, mut sources) = board();
        std::fs::write(dir.path().join("timezone"), "Europe/Berlin\n").unwrap();
        sources.sources.insert(
            Field::Location,
            Source {
                value: Some("1,2".into()),
                ..Source::default()
            },
        );
        let facts = sources.read();
        assert!(
            matches!(&facts[&Field::Timezone], Value::Zone { name, .. } if name == "Europe/Berlin")
        );
        assert_eq!(facts[&Field::Location], Value::Text("1,2".into()));
        assert!(!facts.contains_key(&Field::WifiSsid));
    }

    #[test]
    fn wrong_interface_is_unavailable() {
        let (_dir, mut sources) = board();
        sources.interface = "wlan9".into();
        assert!(matches!(
            sources.read()[&Field::MacAddress],
            Value::Unavailable(_)
        ));
    }

    #[test]
    fn cpuinfo_style_keys_are_found() {
        let text = "processor\t: 0\nSerial\t\t: 00000000abcdef01\n";
        assert_eq!(
            lookup_key(text, "Serial").as_deref(),
            Some("00000000abcdef01")
        );
        assert_eq!(lookup_key(text, "Model"), None);
    }
}
