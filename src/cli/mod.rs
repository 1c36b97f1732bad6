//! The commands besides `run`, one module per job.

pub mod consent;
pub mod erase;
pub mod motion;
pub mod show;
