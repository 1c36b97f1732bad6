//! Everything between the gate and the broker: TLS, topics, the durable outbox and the MQTT
//! session.

pub mod backoff;
pub mod outbox;
pub mod retained;
pub mod session;
pub mod tls;
pub mod topic;
pub mod upload;
