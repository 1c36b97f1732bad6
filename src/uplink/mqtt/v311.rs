//! MQTT 3.1.1: an incoming message over the limit reaches the client, which refuses it from its
//! header and drops the connection.

use rumqttc::{
    ConnectReturnCode, ConnectionError, Event, EventLoop, LastWill, MqttOptions, Outgoing, Packet,
    QoS, StateError, Transport,
};

use super::{oversized_hint, transport_hint, with_hint, Failure, Polled, Protocol, Refusal, Will};
use crate::config::BrokerConfig;

pub struct Connection {
    pub(super) eventloop: EventLoop,
    /// The options without a will: rumqttc can set one but not remove one.
    without_will: MqttOptions,
}

impl Connection {
    pub(super) fn new(
        b: &BrokerConfig,
        client_id: String,
        transport: Transport,
        will: Option<&Will>,
        requests: usize,
    ) -> (rumqttc::AsyncClient, Self) {
        let mut options = MqttOptions::new(client_id, b.host.clone(), b.port);
        options
            .set_keep_alive(super::super::driver::ping_every(b.keep_alive))
            .set_clean_session(false)
            .set_inflight(b.max_inflight + 2)
            .set_max_packet_size(b.max_packet_bytes, b.max_packet_bytes)
            .set_transport(transport);
        let without_will = options.clone();
        if let Some(will) = will {
            options.set_last_will(last_will(will));
        }
        let (client, eventloop) = rumqttc::AsyncClient::new(options, requests);
        (
            client,
            Self {
                eventloop,
                without_will,
            },
        )
    }

    pub(super) async fn poll(&mut self) -> Result<Polled, Failure> {
        Ok(match self.eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => Polled::Connected {
                session_present: ack.session_present,
            },
            Ok(Event::Incoming(Packet::Publish(p))) => Polled::Message {
                topic: p.topic,
                payload: p.payload.to_vec(),
            },
            Ok(Event::Incoming(Packet::PubAck(ack))) => Polled::Acked(ack.pkid),
            Ok(Event::Outgoing(Outgoing::Publish(pkid))) => Polled::Sent(pkid),
            Ok(_) => Polled::Other,
            Err(e) => return Err(failure(&e, &self.without_will.broker_address().0)),
        })
    }

    pub(super) fn prepare_reconnect(&mut self, will: Option<&Will>, clean_start: bool) {
        self.eventloop.clean();
        let mut options = self.without_will.clone();
        if let Some(will) = will {
            options.set_last_will(last_will(will));
        }
        options.set_clean_session(clean_start);
        self.eventloop.mqtt_options = options;
    }
}

fn last_will(will: &Will) -> LastWill {
    LastWill::new(
        &will.topic,
        will.payload.clone(),
        QoS::AtLeastOnce,
        will.retain,
    )
}

/// The size of the incoming message that ended an MQTT 3.1.1 connection for being over the
/// limit (the client reads its header only, never the message).
pub fn oversized(e: &ConnectionError) -> Option<usize> {
    match e {
        ConnectionError::MqttState(StateError::Deserialization(
            rumqttc::mqttbytes::Error::PayloadSizeLimitExceeded(bytes),
        )) => Some(*bytes),
        _ => None,
    }
}

fn failure(e: &ConnectionError, host: &str) -> Failure {
    let oversized = oversized(e);
    let text = e.to_string();
    let hint = match (e, oversized) {
        (_, Some(bytes)) => Some(oversized_hint(bytes)),
        (ConnectionError::ConnectionRefused(code), _) => Some(refusal(*code).hint(Protocol::V311)),
        _ => transport_hint(&text, host),
    };
    Failure {
        message: with_hint(text, hint),
        oversized: oversized.is_some(),
        done: matches!(e, ConnectionError::RequestsDone),
    }
}

fn refusal(code: ConnectReturnCode) -> Refusal {
    match code {
        ConnectReturnCode::BadUserNamePassword | ConnectReturnCode::NotAuthorized => {
            Refusal::Identity
        }
        ConnectReturnCode::BadClientId => Refusal::ClientId,
        ConnectReturnCode::ServiceUnavailable => Refusal::Busy,
        ConnectReturnCode::RefusedProtocolVersion => Refusal::Protocol,
        ConnectReturnCode::Success => Refusal::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_identity_is_told_from_a_closed_port() {
        let refused = failure(
            &ConnectionError::ConnectionRefused(ConnectReturnCode::NotAuthorized),
            "h",
        );
        assert!(
            refused.message.contains("does not authorise"),
            "{refused:?}"
        );
        let closed = failure(
            &ConnectionError::Io(std::io::Error::new(
                std::io::ErrorKind::ConnectionRefused,
                "Connection refused (os error 111)",
            )),
            "h",
        );
        assert!(closed.message.contains("nothing accepts"), "{closed:?}");
        assert!(!closed.oversized && !closed.done);
    }

    #[test]
    fn an_oversized_message_asks_for_a_clean_session() {
        let e = ConnectionError::MqttState(StateError::Deserialization(
            rumqttc::mqttbytes::Error::PayloadSizeLimitExceeded(10_000_000),
        ));
        let f = failure(&e, "h");
        assert!(f.oversized);
        assert!(f.message.contains("10000000 bytes"), "{f:?}");
    }
}
