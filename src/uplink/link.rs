//! The session's one way out to the broker. It publishes only [`Admitted`] gate output, so no
//! caller can publish bytes the policy did not pass. rumqttc's client implements it; the
//! session's unit tests put a recording link in its place.

use rumqttc::{AsyncClient, ClientError, QoS};

use crate::policy::Admitted;

/// The client refused a request: its queue is full (the session tries again at the next
/// pump) or its event loop is gone (the agent is stopping).
#[derive(Debug, thiserror::Error)]
#[error("the MQTT client did not take the request: {0}")]
pub struct NotTaken(pub(super) String);

impl From<ClientError> for NotTaken {
    fn from(e: ClientError) -> Self {
        Self(e.to_string())
    }
}

/// What the session asks of an MQTT client. Every call returns at once; the outcome arrives
/// later as a [`super::driver::Net`] event.
pub trait Link {
    /// Publishes at QoS 1.
    fn publish(&self, admitted: &Admitted) -> Result<(), NotTaken>;
    fn subscribe(&self, topic: &str) -> Result<(), NotTaken>;
    fn unsubscribe(&self, topic: &str) -> Result<(), NotTaken>;
    /// Ends the connection so the driver connects again (with the current last will).
    fn reconnect(&self) -> Result<(), NotTaken>;
    /// Ends the connection for good, cleanly: the broker does not publish the last will.
    fn disconnect(&self) -> impl std::future::Future<Output = Result<(), NotTaken>>;
}

impl Link for AsyncClient {
    fn publish(&self, admitted: &Admitted) -> Result<(), NotTaken> {
        Ok(self.try_publish(
            admitted.topic(),
            QoS::AtLeastOnce,
            admitted.retain(),
            admitted.payload(),
        )?)
    }

    fn subscribe(&self, topic: &str) -> Result<(), NotTaken> {
        Ok(self.try_subscribe(topic, QoS::AtLeastOnce)?)
    }

    fn unsubscribe(&self, topic: &str) -> Result<(), NotTaken> {
        Ok(self.try_unsubscribe(topic)?)
    }

    fn reconnect(&self) -> Result<(), NotTaken> {
        Ok(self.try_disconnect()?)
    }

    async fn disconnect(&self) -> Result<(), NotTaken> {
        Ok(AsyncClient::disconnect(self).await?)
    }
}
