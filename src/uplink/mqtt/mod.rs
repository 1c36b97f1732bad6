//! The MQTT client in the version the broker speaks (`broker.protocol`). MQTT 5 by default:
//! the device declares its Maximum Packet Size at connect, so the broker drops a message over
//! `broker.max_packet_bytes` instead of sending it, and the connection stays up. MQTT 3.1.1
//! for brokers that speak only that (RabbitMQ 3.10): such a message reaches the client, which
//! refuses it from its header and drops the connection, and the driver starts the next one
//! with a clean session so the broker forgets it.
//!
//! Both versions present the same two halves: a [`Client`] the session publishes through,
//! and a [`Connection`] the driver polls, reporting [`Polled`] events or a [`Failure`].

mod v311;
mod v5;

pub use v311::oversized as oversized_v311;

use std::sync::Arc;

use rumqttc::v5::mqttbytes::QoS as QoS5;
use rumqttc::QoS;
use serde::Deserialize;

use super::link::{Link, NotTaken};
use crate::config::BrokerConfig;
use crate::policy::Admitted;

/// The MQTT version spoken to the broker.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum Protocol {
    #[default]
    #[serde(rename = "5")]
    V5,
    #[serde(rename = "3.1.1")]
    V311,
}

/// The last will: the retained offline status the broker publishes if the device vanishes.
#[derive(Debug, Clone, PartialEq)]
pub struct Will {
    pub topic: String,
    pub payload: Vec<u8>,
    pub retain: bool,
}

/// What one poll of the connection brought that the driver acts on.
#[derive(Debug)]
pub enum Polled {
    Connected {
        session_present: bool,
    },
    Message {
        topic: String,
        payload: Vec<u8>,
    },
    /// A publish left with this packet id (first send or replay).
    Sent(u16),
    Acked(u16),
    /// Anything else (pings, subscription acknowledgements).
    Other,
}

/// A connection that failed, in words.
#[derive(Debug)]
pub struct Failure {
    /// The error with the likely fix, where one is known.
    pub message: String,
    /// An incoming message over `broker.max_packet_bytes` ended it: the next connection
    /// starts a clean session, or the broker sends it again.
    pub oversized: bool,
    /// The client was dropped: the agent is stopping.
    pub done: bool,
}

impl Failure {
    fn new(message: String) -> Self {
        Self {
            message,
            oversized: false,
            done: false,
        }
    }
}

/// The session's half of the client: requests go to the connection's queue.
pub enum Client {
    V311(rumqttc::AsyncClient),
    V5(rumqttc::v5::AsyncClient),
}

/// The driver's half: the event loop that connects, sends and receives. One lives per agent.
#[allow(clippy::large_enum_variant)]
pub enum Connection {
    V311(v311::Connection),
    V5(v5::Connection),
}

/// A client and its connection for `broker`, with `will` registered at the first connect.
/// `requests` bounds the client's queue.
pub fn client(
    broker: &BrokerConfig,
    client_id: String,
    tls: Arc<rustls::ClientConfig>,
    will: Option<&Will>,
    requests: usize,
) -> (Client, Connection) {
    let transport = rumqttc::Transport::tls_with_config(rumqttc::TlsConfiguration::Rustls(tls));
    match broker.protocol {
        Protocol::V311 => {
            let (client, connection) =
                v311::Connection::new(broker, client_id, transport, will, requests);
            (Client::V311(client), Connection::V311(connection))
        }
        Protocol::V5 => {
            let (client, connection) =
                v5::Connection::new(broker, client_id, transport, will, requests);
            (Client::V5(client), Connection::V5(connection))
        }
    }
}

impl Connection {
    /// The next event, or the failure that ended the connection.
    pub async fn poll(&mut self) -> Result<Polled, Failure> {
        match self {
            Self::V311(c) => c.poll().await,
            Self::V5(c) => c.poll().await,
        }
    }

    /// Forgets what was queued for replay: it must not be sent (consent withdrawn, data
    /// erased while offline).
    pub fn drop_replay(&mut self) {
        match self {
            Self::V311(c) => c.eventloop.pending.clear(),
            Self::V5(c) => c.eventloop.pending.clear(),
        }
    }

    /// Readies the next connect after a failure: what is unacknowledged or still queued in
    /// the client goes to the replay list, `will` (as consent stands now) is registered, and
    /// `clean_start` asks the broker to forget the session.
    pub fn prepare_reconnect(&mut self, will: Option<&Will>, clean_start: bool) {
        match self {
            Self::V311(c) => c.prepare_reconnect(will, clean_start),
            Self::V5(c) => c.prepare_reconnect(will, clean_start),
        }
    }
}

impl Link for Client {
    fn publish(&self, admitted: &Admitted) -> Result<(), NotTaken> {
        let (topic, retain, payload) = (admitted.topic(), admitted.retain(), admitted.payload());
        match self {
            Self::V311(c) => Ok(c.try_publish(topic, QoS::AtLeastOnce, retain, payload)?),
            Self::V5(c) => Ok(c.try_publish(topic, QoS5::AtLeastOnce, retain, payload.to_vec())?),
        }
    }

    fn subscribe(&self, topic: &str) -> Result<(), NotTaken> {
        match self {
            Self::V311(c) => Ok(c.try_subscribe(topic, QoS::AtLeastOnce)?),
            Self::V5(c) => Ok(c.try_subscribe(topic, QoS5::AtLeastOnce)?),
        }
    }

    fn unsubscribe(&self, topic: &str) -> Result<(), NotTaken> {
        match self {
            Self::V311(c) => Ok(c.try_unsubscribe(topic)?),
            Self::V5(c) => Ok(c.try_unsubscribe(topic)?),
        }
    }

    fn reconnect(&self) -> Result<(), NotTaken> {
        match self {
            Self::V311(c) => Ok(c.try_disconnect()?),
            Self::V5(c) => Ok(c.try_disconnect()?),
        }
    }

    async fn disconnect(&self) -> Result<(), NotTaken> {
        match self {
            Self::V311(c) => Ok(c.disconnect().await?),
            Self::V5(c) => Ok(c.disconnect().await?),
        }
    }
}

impl From<rumqttc::v5::ClientError> for NotTaken {
    fn from(e: rumqttc::v5::ClientError) -> Self {
        Self(e.to_string())
    }
}

/// The hint for a failure both versions report the same way (DNS, TLS, a closed port), from
/// its text.
fn transport_hint(text: &str, host: &str) -> Option<String> {
    let lower = text.to_ascii_lowercase();
    if lower.contains("could not resolve") || lower.contains("failed to lookup") {
        Some(format!(
            "the name {host:?} does not resolve; check broker.host and DNS"
        ))
    } else if lower.contains("unknownissuer") {
        Some("the broker's certificate is not signed by a CA in broker.ca_file".to_owned())
    } else if lower.contains("notvalidforname") || lower.contains("not valid for name") {
        Some(format!(
            "the broker's certificate does not name {host:?}; set broker.host to a name in that certificate"
        ))
    } else if lower.contains("expired") || lower.contains("notvalidyet") {
        Some("a certificate is outside its validity period; check the device clock".to_owned())
    } else if ["certificaterequired", "badcertificate", "unknownca"]
        .iter()
        .any(|alert| lower.contains(alert))
    {
        Some(
            "the broker refused the device certificate (broker.cert_file, broker.key_file)"
                .to_owned(),
        )
    } else if lower.contains("connection refused") {
        Some("nothing accepts connections at broker.host:broker.port".to_owned())
    } else {
        None
    }
}

/// The broker's answer to a connect that it refused, as a hint.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Refusal {
    Identity,
    ClientId,
    Busy,
    Protocol,
    Other,
}

impl Refusal {
    fn hint(self, protocol: Protocol) -> String {
        match self {
            Self::Identity => "the broker does not authorise this device's identity: register \
                the device certificate (broker.cert_file) or its client id with the broker"
                .to_owned(),
            Self::ClientId => "the broker refused the client id (camagent-<device id>)".to_owned(),
            Self::Busy => {
                "the broker is up but not taking clients now; the agent keeps retrying".to_owned()
            }
            Self::Protocol => match protocol {
                Protocol::V5 => "the broker does not speak MQTT 5: set broker.protocol = \
                    \"3.1.1\" (RabbitMQ 3.10, older brokers)"
                    .to_owned(),
                Protocol::V311 => "the broker does not speak MQTT 3.1.1".to_owned(),
            },
            Self::Other => "the broker refused the connection".to_owned(),
        }
    }
}

/// The hint for an incoming message over `broker.max_packet_bytes`.
fn oversized_hint(bytes: usize) -> String {
    format!(
        "a message of {bytes} bytes came for this device, over broker.max_packet_bytes; it was \
         refused unread and the next connection starts a clean session so the broker drops it, \
         with anything else it held for this device"
    )
}

/// `text` with `hint` after it.
fn with_hint(text: String, hint: Option<String>) -> String {
    match hint {
        Some(hint) => format!("{text} ({hint})"),
        None => text,
    }
}

/// A poll that did not return within `keep_alive`.
pub fn stopped_answering(keep_alive: std::time::Duration) -> Failure {
    Failure::new(format!(
        "the broker stopped answering for {} (broker.keep_alive)",
        humantime::format_duration(keep_alive)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transport_hints_name_the_setting_to_fix() {
        let hint = |text: &str, host: &str| transport_hint(text, host).unwrap_or_default();
        assert!(hint("invalid peer certificate: UnknownIssuer", "h").contains("broker.ca_file"));
        assert!(hint(
            "invalid peer certificate: certificate not valid for name \"10.0.0.1\"",
            "10.0.0.1"
        )
        .contains("\"10.0.0.1\""));
        assert!(hint("Connection refused (os error 111)", "h").contains("nothing accepts"));
        assert_eq!(transport_hint("something else", "h"), None);
    }

    #[test]
    fn the_protocol_is_named_as_mqtt_names_it() {
        #[derive(Deserialize)]
        struct P {
            protocol: Protocol,
        }
        let parse = |s: &str| toml::from_str::<P>(s).map(|p| p.protocol);
        assert_eq!(parse("protocol = \"5\"").unwrap(), Protocol::V5);
        assert_eq!(parse("protocol = \"3.1.1\"").unwrap(), Protocol::V311);
        let err = parse("protocol = \"4\"").unwrap_err().to_string();
        assert!(err.contains("3.1.1"), "{err}");
    }
}
