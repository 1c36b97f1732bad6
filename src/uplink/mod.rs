//! Everything between the gate and the broker: TLS, topics, the durable outbox and the MQTT
//! session.

pub mod backoff;
mod clips;
pub mod driver;
pub mod erase;
pub mod link;
pub mod mqtt;
pub mod outbox;
mod presence;
mod privacy;
mod ready;
pub mod retained;
pub mod session;
pub mod tls;
pub mod upload;
pub mod window;
