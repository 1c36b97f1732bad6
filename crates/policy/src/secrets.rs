//! Secret values the gate must never let out, whatever field, transform or encoding carries
//! them.
//!
//! `never_leave` stops a field by its name. A secret can still travel inside another field: a
//! board's config file read as `configuration` holds the Wi-Fi key, a device name may repeat
//! the admin password. So the gate also knows the secret values themselves and withholds any
//! field whose output holds one.

use std::collections::{BTreeMap, BTreeSet};

use super::Field;
use crate::record::Value;

/// Values shorter than this cannot be searched for without refusing ordinary text (a
/// three-letter SSID occurs in words); they are still stopped by field name.
pub const MIN_SECRET_LEN: usize = 4;

/// Words in a config key that mark its value as a secret (`wifi_psk`, `smtp_pass`, `ApiToken`).
const SECRET_KEY_WORDS: [&str; 12] = [
    "psk",
    "pass",
    "passwd",
    "password",
    "passphrase",
    "pwd",
    "pin",
    "secret",
    "token",
    "key",
    "credential",
    "ssid",
];

/// The secret values known to the gate, each in every form the gate's output could hold it.
#[derive(Debug, Clone, Default)]
pub struct Secrets {
    /// Raw bytes, and the JSON-escaped text where that differs.
    forms: BTreeSet<Vec<u8>>,
}

impl Secrets {
    /// Adds one secret value (surrounding whitespace and quotes are not part of it).
    pub fn add(&mut self, value: &str) {
        let value = value.trim().trim_matches(['"', '\'']).trim();
        if value.len() < MIN_SECRET_LEN {
            return;
        }
        self.forms.insert(value.as_bytes().to_vec());
        let escaped = serde_json::Value::from(value).to_string();
        let escaped = &escaped[1..escaped.len() - 1];
        if escaped != value {
            self.forms.insert(escaped.as_bytes().to_vec());
        }
    }

    /// Key material read from a file (a PEM key, the pseudonym key): the whole text and each
    /// line of it, so a fact source that reads the file whole or by line is caught.
    pub fn add_key_material(&mut self, bytes: &[u8]) {
        let text = String::from_utf8_lossy(bytes);
        self.add(text.trim_matches(|c: char| c == '\0' || c.is_whitespace()));
        for line in text.lines().filter(|l| !l.starts_with("-----")) {
            self.add(line);
        }
    }

    /// The secrets among the device's facts: every value of a field that never leaves, the
    /// credentials (secret whatever the policy says), and values under secret-named keys of
    /// a `configuration` text.
    pub fn from_facts(facts: &BTreeMap<Field, Value>, never_leave: &BTreeSet<Field>) -> Self {
        let mut secrets = Self::default();
        secrets.learn(facts, never_leave);
        secrets
    }

    /// Adds the secrets among `facts` (see [`Secrets::from_facts`]).
    pub fn learn(&mut self, facts: &BTreeMap<Field, Value>, never_leave: &BTreeSet<Field>) {
        for (field, value) in facts {
            let Value::Text(text) = value else { continue };
            if field.is_secret() || never_leave.contains(field) {
                self.add(text);
            }
            if *field == Field::Configuration {
                for value in secret_config_values(text) {
                    self.add(value);
                }
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.forms.is_empty()
    }

    /// Whether `bytes` hold any secret in any known form.
    pub fn found_in(&self, bytes: &[u8]) -> bool {
        self.forms
            .iter()
            .any(|form| memchr::memmem::find(bytes, form).is_some())
    }
}

/// Values of `KEY=VALUE` / `key: value` lines whose key names a secret.
fn secret_config_values(text: &str) -> impl Iterator<Item = &str> {
    text.lines().filter_map(|line| {
        let (key, value) = line.split_once('=').or_else(|| line.split_once(':'))?;
        is_secret_key(key).then_some(value)
    })
}

/// `wifi_psk`, `smtp.pass`, `ApiToken`, `admin-password`: a word of the key names a secret.
pub fn is_secret_key(key: &str) -> bool {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut after_lowercase = false;
    for c in key.trim().chars() {
        // A lower-to-upper step starts a word (camelCase); so does any separator.
        if !c.is_alphanumeric() || (c.is_uppercase() && after_lowercase) {
            words.push(std::mem::take(&mut word));
        }
        if c.is_alphanumeric() {
            word.push(c.to_ascii_lowercase());
        }
        after_lowercase = c.is_lowercase();
    }
    words.push(word);
    words.iter().any(|w| {
        SECRET_KEY_WORDS.contains(&w.as_str())
            || ["pass", "secret", "token", "credential"]
                .iter()
                .any(|p| w.starts_with(p))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_include_json_escaping_and_skip_short_values() {
        let mut s = Secrets::default();
        s.add("pa\"ss\\word");
        s.add(" abc ");
        assert!(s.found_in(br#"{"x":"pa\"ss\\word"}"#));
        assert!(s.found_in(b"pa\"ss\\word"));
        assert!(!s.found_in(b"abc abc"));
    }

    #[test]
    fn config_files_give_up_their_secrets() {
        let facts = BTreeMap::from([(
            Field::Configuration,
            Value::Text(
                "resolution=1080p\nwifi_ssid=HomeNet5\nwifi_psk = \"hunter2hunter2\"\nsmtpPass: m41lpass\nkeyframe_interval=50\n"
                    .into(),
            ),
        )]);
        let s = Secrets::from_facts(&facts, &BTreeSet::new());
        for secret in ["HomeNet5", "hunter2hunter2", "m41lpass"] {
            assert!(s.found_in(secret.as_bytes()), "{secret}");
        }
        assert!(!s.found_in(b"1080p") && !s.found_in(b"50"));
    }

    #[test]
    fn never_leave_and_credential_values_are_secrets() {
        let facts = BTreeMap::from([
            (Field::WifiSsid, Value::Text("CafeGuest".into())),
            (Field::DeviceCredentials, Value::Text("admin:0pen!".into())),
            (Field::Model, Value::Text("Cam-1 Pro".into())),
        ]);
        let s = Secrets::from_facts(&facts, &BTreeSet::from([Field::WifiSsid]));
        assert!(s.found_in(b"CafeGuest") && s.found_in(b"admin:0pen!"));
        assert!(!s.found_in(b"Cam-1 Pro"));
    }

    #[test]
    fn secret_keys_are_recognised_by_their_words() {
        for key in [
            "wifi_psk",
            "smtp.pass",
            "ApiToken",
            "admin-password",
            "WIFI_KEY",
            "passwd",
        ] {
            assert!(is_secret_key(key), "{key}");
        }
        for key in ["keyframe_interval", "resolution", "compass", "pinhole_lens"] {
            assert!(!is_secret_key(key), "{key}");
        }
    }

    #[test]
    fn key_material_is_caught_whole_and_by_line() {
        let pem = b"-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49\nAwEHBG0wawIBAQQg\n-----END PRIVATE KEY-----\n";
        let mut s = Secrets::default();
        s.add_key_material(pem);
        assert!(s.found_in(b"xx MIGHAgEAMBMGByqGSM49AgEGCCqGSM49 xx"));
        assert!(!s.found_in(b"BEGIN PRIVATE KEY"));
    }
}
