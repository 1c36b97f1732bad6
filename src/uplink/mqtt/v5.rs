//! MQTT 5: the device declares its Maximum Packet Size at connect, and the broker drops what is
//! larger instead of sending it. The session is kept across connections by a session expiry
//! that never ends (MQTT 5 ends a session at disconnect unless told otherwise).

use rumqttc::v5::mqttbytes::v5::{ConnectReturnCode, LastWill, Packet};
use rumqttc::v5::mqttbytes::{Error as MqttError, QoS};
use rumqttc::v5::{AsyncClient, ConnectionError, Event, EventLoop, MqttOptions, StateError};
use rumqttc::{Outgoing, Transport};

use super::{oversized_hint, transport_hint, with_hint, Failure, Polled, Protocol, Refusal, Will};
use crate::config::BrokerConfig;

/// "The Session does not expire" (MQTT 5, 3.1.2.11.2).
const NEVER_EXPIRES: u32 = u32::MAX;

pub struct Connection {
    pub(super) eventloop: EventLoop,
    /// The options without a will: rumqttc can set one but not remove one.
    without_will: MqttOptions,
    /// The broker accepted this connection (a failure before means the connect went wrong).
    connected: bool,
}

impl Connection {
    pub(super) fn new(
        b: &BrokerConfig,
        client_id: String,
        transport: Transport,
        will: Option<&Will>,
        requests: usize,
    ) -> (AsyncClient, Self) {
        let mut options = MqttOptions::new(client_id, b.host.clone(), b.port);
        options
            .set_keep_alive(super::super::driver::ping_every(b.keep_alive))
            .set_clean_start(false)
            .set_session_expiry_interval(Some(NEVER_EXPIRES))
            .set_outgoing_inflight_upper_limit(b.max_inflight + 2)
            .set_max_packet_size(Some(b.max_packet_bytes.try_into().unwrap_or(u32::MAX)))
            .set_transport(transport);
        let without_will = options.clone();
        if let Some(will) = will {
            options.set_last_will(last_will(will));
        }
        let (client, eventloop) = AsyncClient::new(options, requests);
        (
            client,
            Self {
                eventloop,
                without_will,
                connected: false,
            },
        )
    }

    pub(super) async fn poll(&mut self) -> Result<Polled, Failure> {
        Ok(match self.eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                self.connected = true;
                Polled::Connected {
                    session_present: ack.session_present,
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) => Polled::Message {
                topic: String::from_utf8_lossy(&p.topic).into_owned(),
                payload: p.payload.to_vec(),
            },
            Ok(Event::Incoming(Packet::PubAck(ack))) => Polled::Acked(ack.pkid),
            Ok(Event::Outgoing(Outgoing::Publish(pkid))) => Polled::Sent(pkid),
            Ok(_) => Polled::Other,
            Err(e) => {
                let connected = std::mem::take(&mut self.connected);
                return Err(failure(
                    &e,
                    &self.without_will.broker_address().0,
                    connected,
                ));
            }
        })
    }

    pub(super) fn prepare_reconnect(&mut self, will: Option<&Will>, clean_start: bool) {
        self.eventloop.clean();
        let mut options = self.without_will.clone();
        if let Some(will) = will {
            options.set_last_will(last_will(will));
        }
        options.set_clean_start(clean_start);
        self.eventloop.options = options;
    }
}

fn last_will(will: &Will) -> LastWill {
    LastWill::new(
        &will.topic,
        will.payload.clone(),
        QoS::AtLeastOnce,
        will.retain,
        None,
    )
}

fn failure(e: &ConnectionError, host: &str, connected: bool) -> Failure {
    // A broker that ignores the declared maximum still cannot make the client read it.
    let oversized = match e {
        ConnectionError::MqttState(StateError::Deserialization(
            MqttError::PayloadSizeLimitExceeded { pkt_size, .. },
        ))
        | ConnectionError::MqttState(StateError::IncomingPacketTooLarge { pkt_size, .. }) => {
            Some(*pkt_size)
        }
        _ => None,
    };
    let text = e.to_string();
    let hint = match (e, oversized) {
        (_, Some(bytes)) => Some(oversized_hint(bytes)),
        (ConnectionError::ConnectionRefused(code), _) => Some(refusal(*code).hint(Protocol::V5)),
        // A 3.1.1 broker answers an MQTT 5 connect with a 3.1.1 refusal, which does not parse
        // as MQTT 5, or with nothing.
        (
            ConnectionError::MqttState(
                StateError::Deserialization(_) | StateError::ConnectionAborted,
            )
            | ConnectionError::Timeout(_),
            _,
        ) if !connected => Some(
            "if the broker speaks only MQTT 3.1.1 (RabbitMQ 3.10, older brokers), set \
             broker.protocol = \"3.1.1\""
                .to_owned(),
        ),
        _ => transport_hint(&text, host),
    };
    Failure {
        message: with_hint(text, hint),
        oversized: oversized.is_some(),
        done: matches!(e, ConnectionError::RequestsDone),
    }
}

fn refusal(code: ConnectReturnCode) -> Refusal {
    use ConnectReturnCode as C;
    match code {
        C::BadUserNamePassword | C::NotAuthorized | C::Banned | C::BadAuthenticationMethod => {
            Refusal::Identity
        }
        C::BadClientId | C::ClientIdentifierNotValid => Refusal::ClientId,
        C::ServiceUnavailable
        | C::ServerUnavailable
        | C::ServerBusy
        | C::ConnectionRateExceeded
        | C::QuotaExceeded => Refusal::Busy,
        C::RefusedProtocolVersion | C::UnsupportedProtocolVersion => Refusal::Protocol,
        _ => Refusal::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_and_a_3_1_1_answer_get_their_own_hints() {
        let refused = |code| failure(&ConnectionError::ConnectionRefused(code), "h", false);
        let identity = refused(ConnectReturnCode::NotAuthorized).message;
        assert!(identity.contains("does not authorise"), "{identity}");
        let version = refused(ConnectReturnCode::UnsupportedProtocolVersion).message;
        assert!(version.contains("broker.protocol = \"3.1.1\""), "{version}");
        let garbled = ConnectionError::MqttState(StateError::ConnectionAborted);
        assert!(failure(&garbled, "h", false)
            .message
            .contains("broker.protocol"));
        // Once connected, a dropped connection says nothing of the protocol.
        assert!(!failure(&garbled, "h", true)
            .message
            .contains("broker.protocol"));
    }

    #[test]
    fn an_oversized_message_asks_for_a_clean_session() {
        let e = ConnectionError::MqttState(StateError::Deserialization(
            MqttError::PayloadSizeLimitExceeded {
                pkt_size: 10_000_000,
                max: 131_072,
            },
        ));
        let f = failure(&e, "h", true);
        assert!(f.oversized);
        assert!(f.message.contains("10000000 bytes"), "{f:?}");
    }
}
