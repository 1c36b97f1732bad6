//! camagent: the camera agent's library. The binary (`src/main.rs`) is a thin command line
//! over [`agent::run`] and the inspection commands.

#![deny(unsafe_code)]

#[cfg(feature = "capture")]
pub mod agent;
pub mod capture;
pub mod clip_marker;
pub mod command;
pub mod config;
pub mod device;
pub mod durable;
pub mod log_limit;
pub mod open_event;
#[allow(unsafe_code)]
pub mod os;
pub mod policy;
pub mod report;
pub mod state_dir;
pub mod status;
pub mod systemd;
pub mod timezone;
pub mod uplink;

/// The pure parts in crates of their own, under the names the rest of the agent uses.
pub use camagent_motion as motion;
pub use camagent_motion::human_duration;
pub use camagent_policy::record;
pub use camagent_wire as wire;
pub use camagent_wire::hex;
pub use camagent_wire::vocabulary;
